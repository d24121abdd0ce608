package redisstore

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

func TestEventQueue(t *testing.T) {
	url := storetest.StartRedis(t)
	open := func(t *testing.T, clk *storetest.Clock) *Store {
		t.Helper()
		s, err := New(url, clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	client := func(t *testing.T) *redis.Client {
		t.Helper()
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	event := func(clk *storetest.Clock) store.Event {
		return store.Event{ID: "evt_" + storetest.Random(), ClientID: "app", Payload: []byte(`{}`), CreatedAt: clk.Now()}
	}
	claim := func(t *testing.T, s *Store, consumer string) []store.Event {
		t.Helper()
		got, err := s.ClaimEvents(t.Context(), consumer, 10, time.Minute)
		if err != nil {
			t.Fatalf("ClaimEvents: %v", err)
		}
		return got
	}

	// The subtests run in order on one queue, each leaving it empty.

	t.Run("keys carry the queue's hash tag and the default is {q}", func(t *testing.T) {
		s := open(t, storetest.NewClock())
		want := []string{"tg:wh:{q}:stream", "tg:wh:{q}:due", "tg:wh:{q}:tries"}
		if got := s.eventKeys(); !slices.Equal(got, want) {
			t.Errorf("keys = %q, want %q", got, want)
		}
		s.queue = "staging"
		if got := s.eventKeys()[0]; got != "tg:wh:{staging}:stream" {
			t.Errorf("stream key = %q", got)
		}
	})

	t.Run("a new store over the same Redis still sees unacked events", func(t *testing.T) {
		clk := storetest.NewClock()
		ctx := t.Context()
		s1 := open(t, clk)
		claimed, retried, fresh := event(clk), event(clk), event(clk)
		for _, e := range []store.Event{claimed, retried, fresh} {
			if err := s1.EnqueueEvent(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s1.ClaimEvents(ctx, "gw1", 2, time.Minute)
		if err != nil || len(got) != 2 || got[0].ID != claimed.ID || got[1].ID != retried.ID {
			t.Fatalf("ClaimEvents = %+v, %v", got, err)
		}
		if err := s1.RetryEvent(ctx, got[1], clk.Now().Add(30*time.Second)); err != nil {
			t.Fatal(err)
		}
		// gw1 dies holding the lease of the first event.
		_ = s1.Close()

		s2 := open(t, clk)
		if got := claim(t, s2, "gw2"); len(got) != 1 || got[0].ID != fresh.ID {
			t.Fatalf("after restart: claimed %+v, want only the never-claimed event", got)
		}
		clk.Advance(30 * time.Second)
		got = claim(t, s2, "gw2")
		if len(got) != 1 || got[0].ID != retried.ID || got[0].Attempts != 1 {
			t.Fatalf("at the retry: claimed %+v, want the retried event with 1 attempt", got)
		}
		clk.Advance(30 * time.Second)
		got2 := claim(t, s2, "gw2")
		if len(got2) != 2 {
			t.Fatalf("after gw1's lease ran out: claimed %d events, want 2 (its lapsed one and gw2's own fresh one)", len(got2))
		}
		for _, e := range append(got, got2...) {
			if err := s2.AckEvent(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		c := client(t)
		for _, k := range s2.eventKeys() {
			if k == s2.eventKeys()[0] {
				if n, err := c.XLen(ctx, k).Result(); err != nil || n != 0 {
					t.Errorf("XLEN %s = %d, %v; want 0 after every ack", k, n, err)
				}
				continue
			}
			if n, err := c.Exists(ctx, k).Result(); err != nil || n != 0 {
				t.Errorf("%s left behind after every ack", k)
			}
		}
		pending, err := c.XPending(ctx, s2.eventKeys()[0], eventGroup).Result()
		if err != nil || pending.Count != 0 {
			t.Errorf("XPENDING = %+v, %v; want nothing pending", pending, err)
		}
	})

	t.Run("an entry deleted by hand is forgotten", func(t *testing.T) {
		clk := storetest.NewClock()
		ctx := t.Context()
		s := open(t, clk)
		c := client(t)
		if err := s.EnqueueEvent(ctx, event(clk)); err != nil {
			t.Fatal(err)
		}
		got := claim(t, s, "gw1")
		if len(got) != 1 {
			t.Fatalf("claimed %d, want 1", len(got))
		}
		if err := c.XDel(ctx, s.eventKeys()[0], got[0].Handle).Err(); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
		if got := claim(t, s, "gw2"); len(got) != 0 {
			t.Fatalf("claimed %+v, want nothing", got)
		}
		if n, _ := c.ZCard(ctx, s.eventKeys()[1]).Result(); n != 0 {
			t.Errorf("due zset holds %d members, want 0", n)
		}
		if err := s.RetryEvent(ctx, got[0], clk.Now()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RetryEvent = %v, want ErrNotFound", err)
		}
	})

	t.Run("a stream deleted by hand is recreated with its group", func(t *testing.T) {
		clk := storetest.NewClock()
		ctx := t.Context()
		s := open(t, clk)
		c := client(t)
		if err := c.Del(ctx, s.eventKeys()...).Err(); err != nil {
			t.Fatal(err)
		}
		e := event(clk)
		if err := s.EnqueueEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
		got := claim(t, s, "gw1")
		if len(got) != 1 || got[0].ID != e.ID {
			t.Fatalf("claimed %+v, want the event queued before the group existed", got)
		}
		if err := s.AckEvent(ctx, got[0]); err != nil {
			t.Fatal(err)
		}
	})
}
