package memory

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// TestBacklog checks what the webhook metrics read: every event not yet
// acked counts, whether due, leased or waiting for a retry, and the oldest
// is the one queued first, whatever its schedule.
func TestBacklog(t *testing.T) {
	clk := storetest.NewClock()
	s := New(clk.Now)
	defer s.Close()
	ctx := t.Context()
	want := func(n int64, oldest time.Time) {
		t.Helper()
		gotN, gotOldest, err := s.Backlog(ctx)
		if err != nil || gotN != n || !gotOldest.Equal(oldest) {
			t.Fatalf("Backlog() = %d, %v, %v; want %d, %v", gotN, gotOldest, err, n, oldest)
		}
	}
	want(0, time.Time{})

	first := clk.Now().Truncate(time.Millisecond)
	if err := s.EnqueueEvent(ctx, store.Event{ID: "e1", ClientID: "app", Payload: []byte("{}"), CreatedAt: first}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if err := s.EnqueueEvent(ctx, store.Event{ID: "e2", ClientID: "app", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	want(2, first)

	// Leased, then retried an hour ahead: still queued, still the oldest.
	claimed, err := s.ClaimEvents(ctx, "c", 1, time.Minute)
	if err != nil || len(claimed) != 1 || claimed[0].ID != "e1" {
		t.Fatalf("ClaimEvents = %v, %v; want e1", claimed, err)
	}
	want(2, first)
	if err := s.RetryEvent(ctx, claimed[0], clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	want(2, first)

	if err := s.AckEvent(ctx, claimed[0]); err != nil {
		t.Fatal(err)
	}
	want(1, first.Add(time.Minute))
}
