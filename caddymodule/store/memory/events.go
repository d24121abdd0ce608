package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// eventQueue is the embedded store's webhook queue, with the Redis queue's
// semantics (leases and due times judged by the injected clock) but none of
// its durability: like every token, a queued event dies with the process.
type eventQueue struct {
	seq     uint64
	entries map[string]*queuedEvent // by handle
}

type queuedEvent struct {
	e   store.Event // Attempts and Handle kept here; NextAttempt is due
	seq uint64      // enqueue order, for a stable claim order
	due int64       // ms: when it may be claimed (next attempt or lease end)
}

// EnqueueEvent queues a copy of the event.
func (s *Store) EnqueueEvent(_ context.Context, e store.Event) error {
	if e.ID == "" {
		return errors.New("memory enqueue event: empty event id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	q := &s.events
	if q.entries == nil {
		q.entries = make(map[string]*queuedEvent)
	}
	q.seq++
	now := s.nowMillis()
	created := now
	if !e.CreatedAt.IsZero() {
		created = e.CreatedAt.UnixMilli()
	}
	due := created
	if !e.NextAttempt.IsZero() {
		due = e.NextAttempt.UnixMilli()
	}
	e.Handle = "e" + strconv.FormatUint(q.seq, 10)
	e.Payload = slices.Clone(e.Payload)
	e.CreatedAt = time.UnixMilli(created)
	e.Attempts = 0
	q.entries[e.Handle] = &queuedEvent{e: e, seq: q.seq, due: due}
	return nil
}

// ClaimEvents leases up to max due events to consumer, earliest due first.
// The consumer is not recorded: a lease is just a due time moved forward,
// which is all the Redis store's pending list amounts to as well.
func (s *Store) ClaimEvents(_ context.Context, consumer string, max int, lease time.Duration) ([]store.Event, error) {
	if err := store.CheckClaim(consumer, max, lease); err != nil {
		return nil, fmt.Errorf("memory claim events: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	now := s.nowMillis()
	var due []*queuedEvent
	for _, q := range s.events.entries {
		if q.due <= now {
			due = append(due, q)
		}
	}
	slices.SortFunc(due, func(a, b *queuedEvent) int {
		return cmp.Or(cmp.Compare(a.due, b.due), cmp.Compare(a.seq, b.seq))
	})
	out := make([]store.Event, 0, min(max, len(due)))
	for _, q := range due[:min(max, len(due))] {
		e := q.e
		e.Payload = slices.Clone(e.Payload)
		e.NextAttempt = time.UnixMilli(q.due)
		out = append(out, e)
		q.due = now + lease.Milliseconds()
	}
	return out, nil
}

// AckEvent removes the event; acking one that is gone is not an error.
func (s *Store) AckEvent(_ context.Context, e store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	delete(s.events.entries, e.Handle)
	return nil
}

// RetryEvent counts a failed attempt and makes the event due at next, or
// returns ErrNotFound when it is no longer queued.
func (s *Store) RetryEvent(_ context.Context, e store.Event, next time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	q := s.events.entries[e.Handle]
	if q == nil {
		return store.ErrNotFound
	}
	q.e.Attempts++
	q.due = next.UnixMilli()
	return nil
}

// Backlog reports how many events are queued (due, leased or waiting for a
// retry) and when the oldest of them was queued, the zero time when none
// is (the webhook dispatcher's BacklogReader). It walks the queue under the
// store's lock, which the dispatcher asks for once per poll at most.
func (s *Store) Backlog(_ context.Context) (int64, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, time.Time{}, errClosed
	}
	var oldest time.Time
	for _, q := range s.events.entries {
		if oldest.IsZero() || q.e.CreatedAt.Before(oldest) {
			oldest = q.e.CreatedAt
		}
	}
	return int64(len(s.events.entries)), oldest, nil
}
