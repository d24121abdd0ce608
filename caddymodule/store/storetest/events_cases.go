package storetest

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// eventLease is the lease the event cases claim with.
const eventLease = time.Minute

func eventCases() []testCase {
	return []testCase{
		{"the backlog counts every event not yet acked and dates the oldest", func(t *testing.T, e *env) {
			b, ok := e.s.(interface {
				Backlog(context.Context) (int64, time.Time, error)
			})
			if !ok {
				t.Fatalf("%T cannot report its webhook backlog (the queue metrics need it)", e.s)
			}
			want := func(n int64, oldest time.Time) {
				t.Helper()
				gotN, gotOldest, err := b.Backlog(e.ctx)
				if err != nil || gotN != n || !gotOldest.Equal(oldest) {
					t.Fatalf("Backlog() = %d, %v, %v; want %d, %v", gotN, gotOldest, err, n, oldest)
				}
			}
			want(0, time.Time{})
			first := e.event(t, []byte(`{}`)).CreatedAt.Truncate(time.Millisecond)
			e.clk.Advance(time.Minute)
			e.event(t, []byte(`{}`))
			want(2, first)
			// Leased, then retried an hour ahead: still queued, still the
			// oldest.
			claimed := e.claim(t, "c", 1)
			if len(claimed) != 1 {
				t.Fatalf("claimed %d events, want 1", len(claimed))
			}
			want(2, first)
			wantErr(t, "RetryEvent", e.s.RetryEvent(e.ctx, claimed[0], e.clk.Now().Add(time.Hour)), nil)
			want(2, first)
			wantErr(t, "AckEvent", e.s.AckEvent(e.ctx, claimed[0]), nil)
			want(1, first.Add(time.Minute))
		}},
		{"an event is queued, claimed and acked", func(t *testing.T, e *env) {
			in := e.event(t, []byte(`{"type":"user.consent.revoked"}`))
			got := e.claim(t, "a", 10)
			if len(got) != 1 {
				t.Fatalf("claimed %d events, want 1", len(got))
			}
			sameEvent(t, got[0], in)
			if got[0].Attempts != 0 || got[0].Handle == "" || !got[0].NextAttempt.Equal(in.CreatedAt) {
				t.Errorf("claimed %+v: want 0 attempts, a handle, next attempt = created", got[0])
			}
			wantErr(t, "AckEvent", e.s.AckEvent(e.ctx, got[0]), nil)
			e.clk.Advance(eventLease)
			if n := len(e.claim(t, "a", 10)); n != 0 {
				t.Errorf("claimed %d events after ack", n)
			}
		}},
		{"a claimed event is leased until the lease runs out", func(t *testing.T, e *env) {
			in := e.event(t, []byte(`{}`))
			if n := len(e.claim(t, "a", 10)); n != 1 {
				t.Fatalf("a claimed %d events, want 1", n)
			}
			if n := len(e.claim(t, "b", 10)); n != 0 {
				t.Fatalf("b claimed %d events within a's lease", n)
			}
			e.clk.Advance(eventLease - time.Millisecond)
			if n := len(e.claim(t, "b", 10)); n != 0 {
				t.Fatalf("b claimed %d events 1ms before a's lease ran out", n)
			}
			e.clk.Advance(time.Millisecond)
			got := e.claim(t, "b", 10)
			if len(got) != 1 {
				t.Fatalf("b claimed %d events after a's lease ran out, want 1", len(got))
			}
			sameEvent(t, got[0], in)
			if got[0].Attempts != 0 {
				t.Errorf("attempts = %d: a lapsed lease is not a failed attempt", got[0].Attempts)
			}
			if n := len(e.claim(t, "a", 10)); n != 0 {
				t.Errorf("a claimed %d events within b's lease", n)
			}
		}},
		{"retrying an event delays it and counts the attempt", func(t *testing.T, e *env) {
			in := e.event(t, []byte(`{}`))
			got := e.claim(t, "a", 10)
			next := e.clk.Now().Add(2 * eventLease)
			wantErr(t, "RetryEvent", e.s.RetryEvent(e.ctx, got[0], next), nil)
			e.clk.Advance(eventLease)
			if n := len(e.claim(t, "a", 10)); n != 0 {
				t.Fatalf("claimed %d events before the retry was due (the lease's end does not override it)", n)
			}
			e.clk.Advance(eventLease - time.Millisecond)
			if n := len(e.claim(t, "b", 10)); n != 0 {
				t.Fatalf("claimed %d events 1ms before the retry was due", n)
			}
			e.clk.Advance(time.Millisecond)
			got = e.claim(t, "b", 10)
			if len(got) != 1 {
				t.Fatalf("claimed %d events when the retry was due, want 1", len(got))
			}
			sameEvent(t, got[0], in)
			if got[0].Attempts != 1 || !got[0].NextAttempt.Equal(next) {
				t.Errorf("attempts %d, next attempt %v; want 1, %v", got[0].Attempts, got[0].NextAttempt, next)
			}
			wantErr(t, "RetryEvent", e.s.RetryEvent(e.ctx, got[0], e.clk.Now()), nil)
			got = e.claim(t, "b", 10)
			if len(got) != 1 || got[0].Attempts != 2 {
				t.Fatalf("after a second retry: %+v, want one event with 2 attempts", got)
			}
		}},
		{"a retry shorter than the lease makes the event due early", func(t *testing.T, e *env) {
			e.event(t, []byte(`{}`))
			got := e.claim(t, "a", 10)
			wantErr(t, "RetryEvent", e.s.RetryEvent(e.ctx, got[0], e.clk.Now().Add(5*time.Second)), nil)
			e.clk.Advance(5 * time.Second)
			if n := len(e.claim(t, "b", 10)); n != 1 {
				t.Errorf("claimed %d events when the retry was due, want 1", n)
			}
		}},
		{"an acked event is gone for good", func(t *testing.T, e *env) {
			e.event(t, []byte(`{}`))
			got := e.claim(t, "a", 10)
			wantErr(t, "AckEvent", e.s.AckEvent(e.ctx, got[0]), nil)
			wantErr(t, "AckEvent again", e.s.AckEvent(e.ctx, got[0]), nil)
			wantErr(t, "RetryEvent after ack", e.s.RetryEvent(e.ctx, got[0], e.clk.Now()), store.ErrNotFound)
			for range 3 {
				e.clk.Advance(24 * time.Hour)
				if n := len(e.claim(t, "b", 10)); n != 0 {
					t.Fatalf("claimed %d events after ack", n)
				}
			}
		}},
		{"a late ack after the lease ran out still removes the event", func(t *testing.T, e *env) {
			e.event(t, []byte(`{}`))
			first := e.claim(t, "a", 10)
			e.clk.Advance(eventLease)
			if n := len(e.claim(t, "b", 10)); n != 1 {
				t.Fatalf("b claimed %d events, want 1", n)
			}
			wantErr(t, "AckEvent by a", e.s.AckEvent(e.ctx, first[0]), nil)
			e.clk.Advance(eventLease)
			if n := len(e.claim(t, "c", 10)); n != 0 {
				t.Errorf("claimed %d events after a's ack", n)
			}
		}},
		{"an unknown event cannot be retried", func(t *testing.T, e *env) {
			for _, h := range []string{"", "0-1", "x"} {
				ev := store.Event{ID: "evt_" + Random(), Handle: h}
				wantErr(t, "RetryEvent "+h, e.s.RetryEvent(e.ctx, ev, e.clk.Now()), store.ErrNotFound)
				wantErr(t, "AckEvent "+h, e.s.AckEvent(e.ctx, ev), nil)
			}
		}},
		{"events are claimed oldest first, at most max at a time", func(t *testing.T, e *env) {
			var ids []string
			for range 5 {
				ids = append(ids, e.event(t, []byte(`{}`)).ID)
				e.clk.Advance(time.Millisecond)
			}
			var got []string
			for _, n := range []int{2, 2, 2} {
				batch := e.claim(t, "a", n)
				if len(batch) > n {
					t.Fatalf("claimed %d events with max %d", len(batch), n)
				}
				for _, ev := range batch {
					got = append(got, ev.ID)
				}
			}
			if !slices.Equal(got, ids) {
				t.Errorf("claimed %q, want %q", got, ids)
			}
		}},
		{"an event queued for later is not due before", func(t *testing.T, e *env) {
			in := store.Event{
				ID: "evt_" + Random(), ClientID: "app", Payload: []byte(`{}`),
				CreatedAt: e.clk.Now(), NextAttempt: e.clk.Now().Add(time.Hour),
			}
			wantErr(t, "EnqueueEvent", e.s.EnqueueEvent(e.ctx, in), nil)
			if n := len(e.claim(t, "a", 10)); n != 0 {
				t.Fatalf("claimed %d events an hour early", n)
			}
			e.clk.Advance(time.Hour)
			got := e.claim(t, "a", 10)
			if len(got) != 1 || !got[0].NextAttempt.Equal(in.NextAttempt) {
				t.Fatalf("claimed %+v, want the event due at %v", got, in.NextAttempt)
			}
		}},
		{"the payload round-trips byte for byte", func(t *testing.T, e *env) {
			payloads := [][]byte{
				[]byte(`{"type":"user.consent.revoked","data":{"subject":"Zoë \u00e9 ☃"}}`),
				{0, 0xff, '\r', '\n', ' ', '"', '\\', 0x80},
				bytes.Repeat([]byte("0123456789abcdef"), 4096),
				[]byte(strings.Repeat(" ", 3) + "{}\n"),
			}
			want := map[string][]byte{}
			for _, p := range payloads {
				want[e.event(t, p).ID] = slices.Clone(p)
				p[0] ^= 1 // the store keeps its own copy
			}
			got := e.claim(t, "a", 10)
			if len(got) != len(payloads) {
				t.Fatalf("claimed %d events, want %d", len(got), len(payloads))
			}
			for _, ev := range got {
				if !bytes.Equal(ev.Payload, want[ev.ID]) {
					t.Errorf("event %s: payload of %d bytes differs from the %d queued", ev.ID, len(ev.Payload), len(want[ev.ID]))
				}
			}
		}},
		{"concurrent claimers get disjoint events", func(t *testing.T, e *env) {
			const events, claimers = 50, 4
			for range events {
				e.event(t, []byte(`{}`))
			}
			var mu sync.Mutex
			seen := map[string]int{}
			var wg sync.WaitGroup
			for c := range claimers {
				consumer := string(rune('a' + c))
				wg.Go(func() {
					for {
						got, err := e.s.ClaimEvents(e.ctx, consumer, 3, eventLease)
						if err != nil {
							t.Errorf("ClaimEvents: %v", err)
							return
						}
						if len(got) == 0 {
							return
						}
						mu.Lock()
						for _, ev := range got {
							seen[ev.ID]++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(seen) != events {
				t.Errorf("%d distinct events claimed, want %d", len(seen), events)
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("event %s claimed %d times within its lease", id, n)
				}
			}
		}},
		{"claiming needs a consumer, a positive max and lease", func(t *testing.T, e *env) {
			for _, c := range []struct {
				consumer string
				max      int
				lease    time.Duration
			}{{"", 1, time.Minute}, {"a", 0, time.Minute}, {"a", 1, 0}} {
				_, err := e.s.ClaimEvents(e.ctx, c.consumer, c.max, c.lease)
				wantStoreError(t, "ClaimEvents", err)
			}
			err := e.s.EnqueueEvent(e.ctx, store.Event{ClientID: "app", Payload: []byte(`{}`)})
			wantStoreError(t, "EnqueueEvent without id", err)
		}},
	}
}

// event queues an event of client "app" created now and returns it.
func (e *env) event(t *testing.T, payload []byte) store.Event {
	t.Helper()
	ev := store.Event{ID: "evt_" + Random(), ClientID: "app", Payload: payload, CreatedAt: e.clk.Now()}
	if err := e.s.EnqueueEvent(e.ctx, ev); err != nil {
		t.Fatalf("EnqueueEvent: %v", err)
	}
	ev.Payload = slices.Clone(payload)
	return ev
}

// claim claims up to max events for consumer with eventLease.
func (e *env) claim(t *testing.T, consumer string, max int) []store.Event {
	t.Helper()
	got, err := e.s.ClaimEvents(e.ctx, consumer, max, eventLease)
	if err != nil {
		t.Fatalf("ClaimEvents: %v", err)
	}
	return got
}

// sameEvent compares a claimed event with the one queued.
func sameEvent(t *testing.T, got, want store.Event) {
	t.Helper()
	if got.ID != want.ID || got.ClientID != want.ClientID || !bytes.Equal(got.Payload, want.Payload) ||
		!got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("event = %+v, want %+v", got, want)
	}
}
