package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// SaveCode stores an authorization code of a live grant, extending the
// grant to outlive the code.
func (s *Store) SaveCode(_ context.Context, grantID, digest string, c store.Code) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	g := s.live(grantID, s.nowMillis())
	if g == nil {
		return store.ErrNotFound
	}
	c.Scopes = slices.Clone(c.Scopes)
	g.codes[digest] = c
	g.exp = max(g.exp, c.ExpiresAt.UnixMilli())
	return nil
}

// ConsumeCode takes the code and leaves a replay marker behind for a day:
// "consumed" (no tokens yet), "issued" (a replay revokes the grant now) or
// "replayed" (IssueTokens will revoke the grant instead of storing tokens).
func (s *Store) ConsumeCode(_ context.Context, grantID, digest string) (store.Code, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Code{}, errClosed
	}
	now := s.nowMillis()
	ref := codeRef{grantID, digest}
	if m := s.markers[ref]; m != nil && m.exp > now {
		if m.state == issued {
			s.revoke(grantID)
		}
		m.state = replayed
		return store.Code{}, store.ErrCodeReplayed
	}
	g := s.grants[grantID]
	if g == nil {
		return store.Code{}, store.ErrNotFound
	}
	c, ok := g.codes[digest]
	if !ok {
		return store.Code{}, store.ErrNotFound
	}
	delete(g.codes, digest)
	if c.ExpiresAt.UnixMilli() <= now || g.exp <= now {
		return store.Code{}, store.ErrNotFound
	}
	s.markers[ref] = &marker{state: consumed, exp: now + markerLife}
	return c, nil
}

// IssueTokens stores the pair issued for a consumed code.
func (s *Store) IssueTokens(_ context.Context, grantID, codeDigest string, p store.Pair) error {
	if err := checkPair(p); err != nil {
		return fmt.Errorf("memory issue tokens: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.nowMillis()
	m := s.markers[codeRef{grantID, codeDigest}]
	if m == nil || m.exp <= now {
		return store.ErrNotFound
	}
	if m.state != consumed {
		s.revoke(grantID)
		m.state = replayed
		return store.ErrCodeReplayed
	}
	g := s.live(grantID, now)
	if g == nil {
		return store.ErrNotFound
	}
	g.put(p)
	m.state = issued
	return nil
}

// put stores a pair, each token naming the other as its Pair whatever the
// caller set, and extends the grant to outlive both.
func (g *grant) put(p store.Pair) {
	p.Access.Pair = p.Refresh.Digest
	p.Access.Scopes = slices.Clone(p.Access.Scopes)
	p.Access.ExpiresAt = millis(p.Access.ExpiresAt)
	g.tokens[tokenRef{store.Access, p.Access.Digest}] = p.Access
	g.exp = max(g.exp, p.Access.ExpiresAt.UnixMilli())
	if p.Refresh.Digest != "" {
		p.Refresh.Pair = p.Access.Digest
		p.Refresh.Scopes = slices.Clone(p.Refresh.Scopes)
		p.Refresh.ExpiresAt = millis(p.Refresh.ExpiresAt)
		g.tokens[tokenRef{store.Refresh, p.Refresh.Digest}] = p.Refresh
		g.exp = max(g.exp, p.Refresh.ExpiresAt.UnixMilli())
	}
}

// millis truncates to the millisecond, the precision the Redis store keeps.
func millis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()) }

// checkPair rejects what no handler should send; the access token's budget
// is checked here, once, so that the hot path can trust it.
func checkPair(p store.Pair) error {
	if p.Access.Digest == "" {
		return errors.New("access token digest is empty")
	}
	return checkLimit(p.Access.Limit)
}
