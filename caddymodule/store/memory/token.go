package memory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// GetToken returns a live token of a live grant.
func (s *Store) GetToken(_ context.Context, grantID string, kind store.Kind, digest string) (store.Token, error) {
	return s.lookup(grantID, kind, digest, s.token)
}

// RevocableToken returns a token of one of the grant's pairs even past its
// own expiry (store.Tokens.RevocableToken).
func (s *Store) RevocableToken(_ context.Context, grantID string, kind store.Kind, digest string) (store.Token, error) {
	return s.lookup(grantID, kind, digest, s.current)
}

// lookup finds a token with find under the lock and returns a copy.
func (s *Store) lookup(grantID string, kind store.Kind, digest string, find func(string, store.Kind, string, int64) (store.Token, *grant, bool)) (store.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Token{}, errClosed
	}
	t, _, ok := find(grantID, kind, digest, s.nowMillis())
	if !ok {
		return store.Token{}, store.ErrNotFound
	}
	t.Scopes = slices.Clone(t.Scopes)
	return t, nil
}

// Rotate replaces a refresh token and its access token by a new pair and
// marks the old refresh token rotated out (see CheckReuse). The lock makes
// it atomic: of two concurrent calls, the second finds no refresh token.
func (s *Store) Rotate(_ context.Context, grantID, oldRefresh string, p store.Pair) error {
	if err := store.CheckPair(p); err != nil {
		return fmt.Errorf("memory rotate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.nowMillis()
	g := s.live(grantID, now)
	if g == nil {
		return store.ErrNotFound
	}
	i := g.find(store.Refresh, oldRefresh)
	if i < 0 || g.pairs[i].refresh.exp <= now {
		return store.ErrNotFound
	}
	g.ring.add(oldRefresh, now, g.pairs[i].refresh.exp)
	g.pairs[i] = g.newPair(p)
	return nil
}

// Authenticate checks an access token and counts the call against a fixed
// window aligned to the Unix epoch, as the Redis store does.
func (s *Store) Authenticate(_ context.Context, grantID, accessDigest string, l store.Limit) (store.Token, store.RateStatus, error) {
	if err := store.CheckLimit(l); err != nil {
		return store.Token{}, store.RateStatus{}, fmt.Errorf("memory authenticate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Token{}, store.RateStatus{}, errClosed
	}
	now := s.nowMillis()
	t, g, ok := s.token(grantID, store.Access, accessDigest, now)
	if !ok {
		return store.Token{}, store.RateStatus{}, store.ErrNotFound
	}
	if now-g.used >= store.LastUsedGranularity.Milliseconds() {
		g.used = now
	}
	t.Scopes = slices.Clone(t.Scopes)
	if l.Count == 0 {
		l = t.Limit
	}
	wms := l.Window.Milliseconds()
	if l.Count <= 0 || wms <= 0 {
		return t, store.RateStatus{Allowed: true}, nil
	}
	idx := store.WindowIndex(now, wms)
	st := store.RateStatus{Limit: l.Count, Window: l.Window, Reset: time.UnixMilli((idx + 1) * wms)}
	w := s.counters[grantID]
	if w == nil {
		w = &window{}
		s.counters[grantID] = w
	}
	if w.idx != idx || w.end == 0 {
		*w = window{idx: idx, end: (idx + 1) * wms}
	}
	if w.n < l.Count {
		w.n++
		st.Allowed = true
		st.Remaining = l.Count - w.n
	}
	return t, st, nil
}

// Refund gives back one request of the current window, never going below 0
// and at most l.Count times per window (store.Store.Refund). The refund
// count lives in the grant's window, which Authenticate resets with the
// window.
func (s *Store) Refund(_ context.Context, grantID string, l store.Limit) (bool, error) {
	if err := store.CheckLimit(l); err != nil {
		return false, fmt.Errorf("memory refund: %w", err)
	}
	if l.Count == 0 {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed
	}
	w := s.counters[grantID]
	if w == nil || w.idx != store.WindowIndex(s.nowMillis(), l.Window.Milliseconds()) || w.n <= 0 || w.refunds >= l.Count {
		return false, nil
	}
	w.n--
	w.refunds++
	return true, nil
}

// token finds a live token of a live grant. The caller holds s.mu.
func (s *Store) token(grantID string, kind store.Kind, digest string, now int64) (store.Token, *grant, bool) {
	t, g, ok := s.current(grantID, kind, digest, now)
	if !ok || t.ExpiresAt.UnixMilli() <= now {
		return store.Token{}, nil, false
	}
	return t, g, true
}

// current finds a token of one of a live grant's pairs, expired or not.
func (s *Store) current(grantID string, kind store.Kind, digest string, now int64) (store.Token, *grant, bool) {
	g := s.live(grantID, now)
	if g == nil {
		return store.Token{}, nil, false
	}
	i := g.find(kind, digest)
	if i < 0 {
		return store.Token{}, nil, false
	}
	return g.token(i, kind), g, true
}
