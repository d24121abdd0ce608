package memory

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// rotation records that a refresh token was rotated out: when, and until
// when the token itself would have lived (after that, presenting it is
// plain expiry, not reuse).
type rotation struct {
	at, exp int64 // ms
}

// markRotated records that the refresh token digest, live until exp, was
// rotated out at now. The mark lives in the grant, so any revocation drops
// it with the grant's tokens, as on Redis, where it sits in the grant's
// index.
func (g *grant) markRotated(digest string, now, exp int64) {
	if g.rotated == nil {
		g.rotated = make(map[string]rotation)
	}
	g.rotated[digest] = rotation{at: now, exp: exp}
}

// sweepRotated drops the marks of tokens that would have expired by now.
func (g *grant) sweepRotated(now int64) {
	for d, r := range g.rotated {
		if r.exp <= now {
			delete(g.rotated, d)
		}
	}
}

// CheckReuse revokes the grant when refreshDigest was rotated out of it more
// than grace ago (RFC 9700 §4.14.2): the old token is in two hands, and the
// store cannot tell which is the thief's.
func (s *Store) CheckReuse(_ context.Context, grantID, refreshDigest string, grace time.Duration) (store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Grant{}, errClosed
	}
	now := s.nowMillis()
	g := s.live(grantID, now)
	if g == nil {
		return store.Grant{}, store.ErrNotFound
	}
	r, ok := g.rotated[refreshDigest]
	if !ok || r.exp <= now || now-r.at <= grace.Milliseconds() {
		return store.Grant{}, store.ErrNotFound
	}
	out := g.snapshot()
	s.revoke(grantID)
	s.unindex(out.Subject, grantID)
	return out, store.ErrRefreshReused
}
