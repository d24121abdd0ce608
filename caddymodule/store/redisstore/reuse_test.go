package redisstore

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

func TestRotationRing(t *testing.T) {
	url := storetest.StartRedis(t)
	const grace = 30 * time.Second
	rotate := func(t *testing.T, f *fixture) store.Pair {
		t.Helper()
		now := f.clk.Now()
		p := store.Pair{
			Access:  store.Token{Digest: "at2", ExpiresAt: now.Add(time.Hour)},
			Refresh: store.Token{Digest: "rt2", ExpiresAt: now.Add(30 * 24 * time.Hour)},
		}
		if err := f.s.Rotate(t.Context(), f.id, "rt1", p); err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		return p
	}

	t.Run("rotate writes the old token's entry into the grant's ring", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		f.clk.Advance(time.Minute)
		rotate(t, f)
		v, err := f.c.HMGet(ctx, defaultKeys.grant(f.id), "o0", "oi", "r", "a").Result()
		if err != nil {
			t.Fatal(err)
		}
		var want [12]byte // the ring's times: 6-byte big-endian milliseconds
		at, exp := f.clk.Now().UnixMilli(), f.fresh.ExpiresAt.UnixMilli()
		for i := range 6 {
			want[5-i], want[11-i] = byte(at>>(8*i)), byte(exp>>(8*i))
		}
		if v[0] != "rt1"+string(want[:]) || v[1] != "1" || v[2] != "rt2" || v[3] != "at2" {
			t.Errorf("o0, oi, r, a = %q, want %q, 1, rt2, at2", v, "rt1"+string(want[:]))
		}
	})

	t.Run("the ring keeps 128 bits of a digest", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		long := storetest.Random() + storetest.Random() // 64 hex digits, as oauth.Digest makes
		p := store.Pair{
			Access:  store.Token{Digest: "at2", ExpiresAt: f.clk.Now().Add(time.Hour)},
			Refresh: store.Token{Digest: long, ExpiresAt: f.clk.Now().Add(time.Hour)},
		}
		if err := f.s.Rotate(ctx, f.id, "rt1", p); err != nil {
			t.Fatal(err)
		}
		if err := f.s.Rotate(ctx, f.id, long, store.Pair{Access: store.Token{Digest: "at3", ExpiresAt: f.clk.Now().Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		v, err := f.c.HGet(ctx, defaultKeys.grant(f.id), "o1").Result()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := hex.DecodeString(long[:ringDigest])
		if len(v) != 16+12 || v[:16] != string(raw) {
			t.Errorf("o1 = %x, want 28 bytes starting with %x", v, raw)
		}
		f.clk.Advance(time.Minute)
		if _, err := f.s.CheckReuse(ctx, f.id, long, grace); !errors.Is(err, store.ErrRefreshReused) {
			t.Errorf("CheckReuse = %v, want ErrRefreshReused", err)
		}
	})

	t.Run("a reuse deletes the grant's hash and counter like a revocation", func(t *testing.T) {
		f := newFixture(t, url)
		rotate(t, f)
		f.clk.Advance(time.Minute)
		if _, err := f.s.CheckReuse(t.Context(), f.id, "rt1", grace); !errors.Is(err, store.ErrRefreshReused) {
			t.Fatalf("CheckReuse = %v", err)
		}
		keys := f.keys(t)
		for _, k := range keys {
			if k == defaultKeys.grant(f.id) || k == defaultKeys.counter(f.id) {
				t.Errorf("key %q survived the reuse", k)
			}
		}
	})
}
