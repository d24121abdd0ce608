package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// A failure counter is a plain integer key per key, window length and
// window index, tg:f:{<key>}:<window ms>:<window index> (failureKey). The
// window index comes from the injected clock, so a window that has ended is
// simply a key nobody reads any more; its TTL, the window's end plus
// gcMargin, collects it. Every command touches that one key, so it works
// on Cluster whatever the key holds.

// CountFailure counts one failure under key in the current fixed window,
// aligned to the Unix epoch, and returns the window's count and end, in one
// EVALSHA: INCR and PEXPIRE in one script, so that concurrent calls get
// distinct counts and no counter is left without a TTL.
func (s *Store) CountFailure(ctx context.Context, key string, window time.Duration) (int64, time.Time, error) {
	if err := store.CheckFailure(key, window); err != nil {
		return 0, time.Time{}, fmt.Errorf("redis count failure: %w", err)
	}
	now := s.nowMillis()
	k, end := s.failureWindow(key, window, now)
	n, err := s.scripts.countFailure.Run(ctx, s.client, []string{k}, end-now+gcMargin).Int64()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("redis count failure: %w", err)
	}
	return n, time.UnixMilli(end), nil
}

// Failures returns the current window's count for key without counting.
func (s *Store) Failures(ctx context.Context, key string, window time.Duration) (int64, time.Time, error) {
	if err := store.CheckFailure(key, window); err != nil {
		return 0, time.Time{}, fmt.Errorf("redis failures: %w", err)
	}
	k, end := s.failureWindow(key, window, s.nowMillis())
	n, err := s.client.Get(ctx, k).Int64()
	if isNil(err) {
		return 0, time.UnixMilli(end), nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("redis failures: %w", err)
	}
	return n, time.UnixMilli(end), nil
}

// failureWindow returns the counter key of key for the window now falls
// in, and when that window ends.
func (s *Store) failureWindow(key string, window time.Duration, now int64) (string, int64) {
	wms := window.Milliseconds()
	idx := store.WindowIndex(now, wms)
	return s.k().failure(key, wms, idx), (idx + 1) * wms
}

// ClearFailures deletes the current window's counter of key.
func (s *Store) ClearFailures(ctx context.Context, key string, window time.Duration) error {
	if err := store.CheckFailure(key, window); err != nil {
		return fmt.Errorf("redis clear failures: %w", err)
	}
	k, _ := s.failureWindow(key, window, s.nowMillis())
	if err := s.client.Del(ctx, k).Err(); err != nil {
		return fmt.Errorf("redis clear failures: %w", err)
	}
	return nil
}
