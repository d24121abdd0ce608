package storetest

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func blobCases() []testCase {
	return []testCase{
		{"concurrent LoadOrStoreBlob calls agree on the first value stored", func(t *testing.T, e *env) {
			k := Random()
			const n = 50
			got := make([][]byte, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					v, err := e.s.LoadOrStoreBlob(e.ctx, k, []byte{byte(i), 0xff})
					if err != nil {
						t.Errorf("LoadOrStoreBlob: %v", err)
					}
					got[i] = v
				})
			}
			close(start)
			wg.Wait()
			for i := range n {
				if !bytes.Equal(got[i], got[0]) || len(got[i]) != 2 {
					t.Fatalf("call %d got %x, call 0 got %x: want one agreed value", i, got[i], got[0])
				}
			}
			// The value does not expire and is not replaced.
			e.clk.Advance(365 * 24 * time.Hour)
			v, err := e.s.LoadOrStoreBlob(e.ctx, k, []byte("other"))
			wantErr(t, "LoadOrStoreBlob later", err, nil)
			if !bytes.Equal(v, got[0]) {
				t.Fatalf("a year later LoadOrStoreBlob = %x, want %x", v, got[0])
			}
		}},
		{"a blob reads back until deleted", func(t *testing.T, e *env) {
			k, v := Random(), []byte("session\x00\xffdata")
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k, v, time.Hour), nil)
			for range 2 {
				got, err := e.s.GetBlob(e.ctx, k)
				wantErr(t, "GetBlob", err, nil)
				if !bytes.Equal(got, v) {
					t.Fatalf("blob = %q, want %q", got, v)
				}
			}
			wantErr(t, "DeleteBlob", e.s.DeleteBlob(e.ctx, k), nil)
			_, err := e.s.GetBlob(e.ctx, k)
			wantErr(t, "GetBlob after delete", err, store.ErrNotFound)
			wantErr(t, "DeleteBlob again", e.s.DeleteBlob(e.ctx, k), nil)
		}},
		{"a blob is taken once", func(t *testing.T, e *env) {
			k := Random()
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k, []byte("pending"), time.Hour), nil)
			got, err := e.s.TakeBlob(e.ctx, k)
			wantErr(t, "TakeBlob", err, nil)
			if string(got) != "pending" {
				t.Fatalf("blob = %q", got)
			}
			_, err = e.s.TakeBlob(e.ctx, k)
			wantErr(t, "TakeBlob again", err, store.ErrNotFound)
			_, err = e.s.GetBlob(e.ctx, k)
			wantErr(t, "GetBlob after take", err, store.ErrNotFound)
		}},
		{"concurrent takes of a blob: exactly one gets it", func(t *testing.T, e *env) {
			k := Random()
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k, []byte("once"), time.Hour), nil)
			var got atomic.Int64
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					_, err := e.s.TakeBlob(e.ctx, k)
					switch {
					case err == nil:
						got.Add(1)
					case !errors.Is(err, store.ErrNotFound):
						t.Errorf("TakeBlob: %v", err)
					}
				})
			}
			wg.Wait()
			if got.Load() != 1 {
				t.Errorf("%d takes succeeded, want 1", got.Load())
			}
		}},
		{"a blob expires", func(t *testing.T, e *env) {
			k1, k2 := Random(), Random()
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k1, []byte("a"), 10*time.Minute), nil)
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k2, []byte("b"), 10*time.Minute), nil)
			e.clk.Advance(10*time.Minute - time.Millisecond)
			_, err := e.s.GetBlob(e.ctx, k1)
			wantErr(t, "GetBlob just before", err, nil)
			e.clk.Advance(time.Millisecond)
			_, err = e.s.GetBlob(e.ctx, k1)
			wantErr(t, "GetBlob at expiry", err, store.ErrNotFound)
			_, err = e.s.TakeBlob(e.ctx, k2)
			wantErr(t, "TakeBlob at expiry", err, store.ErrNotFound)
		}},
		{"setting a blob again replaces it", func(t *testing.T, e *env) {
			k := Random()
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k, []byte("old"), time.Minute), nil)
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k, []byte("new"), time.Hour), nil)
			e.clk.Advance(time.Minute)
			got, err := e.s.GetBlob(e.ctx, k)
			wantErr(t, "GetBlob", err, nil)
			if string(got) != "new" {
				t.Errorf("blob = %q, want new", got)
			}
		}},
		{"a blob is stored by value", func(t *testing.T, e *env) {
			k, v := Random(), []byte("abc")
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k, v, time.Hour), nil)
			v[0] = 'X'
			got, err := e.s.GetBlob(e.ctx, k)
			wantErr(t, "GetBlob", err, nil)
			got[1] = 'Y'
			again, err := e.s.GetBlob(e.ctx, k)
			wantErr(t, "GetBlob", err, nil)
			if string(again) != "abc" {
				t.Errorf("blob = %q, want abc: the store shares memory with its caller", again)
			}
		}},
		{"an empty blob is a value", func(t *testing.T, e *env) {
			k := Random()
			wantErr(t, "SetBlob", e.s.SetBlob(e.ctx, k, nil, time.Hour), nil)
			got, err := e.s.GetBlob(e.ctx, k)
			wantErr(t, "GetBlob", err, nil)
			if len(got) != 0 {
				t.Errorf("blob = %q, want empty", got)
			}
		}},
		{"an unknown blob is not found", func(t *testing.T, e *env) {
			_, err := e.s.GetBlob(e.ctx, Random())
			wantErr(t, "GetBlob", err, store.ErrNotFound)
			_, err = e.s.TakeBlob(e.ctx, Random())
			wantErr(t, "TakeBlob", err, store.ErrNotFound)
		}},
	}
}
