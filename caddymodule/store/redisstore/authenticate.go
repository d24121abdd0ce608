package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Authenticate checks an access token and counts the call in one EVALSHA,
// batched with concurrent calls into one pipeline when Redis is busy
// (batch.go).
//
// The rate limit is a fixed window aligned to the Unix epoch: window index
// floor(now/window), resetting at (index+1)*window. Every gateway instance
// computes the same index from its clock, so they share one counter per
// grant without coordinating.
func (s *Store) Authenticate(ctx context.Context, grantID, accessDigest string, l store.Limit) (store.Token, store.RateStatus, error) {
	if err := checkLimit(l); err != nil {
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: %w", err)
	}
	if !validGrantID(grantID) {
		return store.Token{}, store.RateStatus{}, store.ErrNotFound
	}
	res, err := s.authBatcher().run(ctx, s.k().auth(grantID),
		s.nowMillis(), l.Count, l.Window.Milliseconds(), accessDigest)
	if err != nil {
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: %w", err)
	}
	arr, ok := res.([]any)
	if !ok || len(arr) != 4 {
		if n, isInt := res.(int64); isInt && n == resNotFound {
			return store.Token{}, store.RateStatus{}, store.ErrNotFound
		}
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: %w", errReply(res))
	}
	rec, _ := arr[0].(string)
	count, _ := arr[1].(int64)
	allowed, _ := arr[2].(int64)
	reset, _ := arr[3].(int64)
	t, err := decodeToken(accessDigest, rec)
	if err != nil {
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: decoding token: %w", err)
	}
	if count < 0 {
		return t, store.RateStatus{Allowed: true}, nil
	}
	if l.Count == 0 {
		l = t.Limit
	}
	st := store.RateStatus{
		Limit:   l.Count,
		Window:  l.Window,
		Reset:   time.UnixMilli(reset),
		Allowed: allowed == 1,
	}
	if st.Allowed {
		st.Remaining = max(l.Count-count, 0)
	}
	return t, st, nil
}

// Refund gives back one request of the current window, never going below 0
// and at most l.Count times per window (store.Store.Refund), in one script
// on the grant's counter key (luaRefund).
func (s *Store) Refund(ctx context.Context, grantID string, l store.Limit) (bool, error) {
	if err := checkLimit(l); err != nil {
		return false, fmt.Errorf("redis refund: %w", err)
	}
	if l.Count == 0 || !validGrantID(grantID) {
		return false, nil
	}
	idx := floorDiv(s.nowMillis(), l.Window.Milliseconds())
	n, err := s.scripts.refund.Run(ctx, s.client, []string{s.k().counter(grantID)}, idx, l.Count).Int64()
	if err != nil {
		return false, fmt.Errorf("redis refund: %w", err)
	}
	return n == 1, nil
}

// checkLimit rejects budgets the gateway should never have been configured
// with; they are reported as store errors (503) rather than guessed at.
func checkLimit(l store.Limit) error {
	switch {
	case l.Count < 0:
		return fmt.Errorf("rate limit count %d is negative", l.Count)
	case l.Count > 0 && l.Window < time.Millisecond:
		return fmt.Errorf("rate limit window %v is shorter than 1ms", l.Window)
	}
	return nil
}

// floorDiv is floor(a/b) for b > 0, also for instants before 1970.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
