package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// failureRef names a failure counter: one per key and window length, as on
// Redis, where the window length is part of the key's name.
type failureRef struct {
	key string
	wms int64 // window length, ms
}

// failures is a key's failure count in one window. An entry of an earlier
// window counts as 0; the janitor drops it once its window has ended.
type failures struct {
	idx int64 // window index: floor(now / window length)
	n   int64
	end int64 // when the window ends, ms
}

// CountFailure counts one failure under key in the current fixed window,
// aligned to the Unix epoch, and returns the window's count and end.
func (s *Store) CountFailure(_ context.Context, key string, window time.Duration) (int64, time.Time, error) {
	if err := store.CheckFailure(key, window); err != nil {
		return 0, time.Time{}, fmt.Errorf("memory count failure: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, time.Time{}, errClosed
	}
	ref, idx, end := failureWindow(key, window, s.nowMillis())
	f := s.failures[ref]
	if f == nil || f.idx != idx {
		f = &failures{idx: idx, end: end}
		s.failures[ref] = f
	}
	f.n++
	return f.n, time.UnixMilli(end), nil
}

// Failures returns the current window's count for key without counting.
func (s *Store) Failures(_ context.Context, key string, window time.Duration) (int64, time.Time, error) {
	if err := store.CheckFailure(key, window); err != nil {
		return 0, time.Time{}, fmt.Errorf("memory failures: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, time.Time{}, errClosed
	}
	ref, idx, end := failureWindow(key, window, s.nowMillis())
	var n int64
	if f := s.failures[ref]; f != nil && f.idx == idx {
		n = f.n
	}
	return n, time.UnixMilli(end), nil
}

// failureWindow returns the counter of key under window, and the index and
// end of the window now falls in.
func failureWindow(key string, window time.Duration, now int64) (failureRef, int64, int64) {
	wms := window.Milliseconds()
	idx := store.WindowIndex(now, wms)
	return failureRef{key, wms}, idx, (idx + 1) * wms
}

// ClearFailures sets the current window's count for key back to zero.
func (s *Store) ClearFailures(_ context.Context, key string, window time.Duration) error {
	if err := store.CheckFailure(key, window); err != nil {
		return fmt.Errorf("memory clear failures: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	ref, _, _ := failureWindow(key, window, s.nowMillis())
	delete(s.failures, ref)
	return nil
}
