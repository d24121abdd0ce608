package memory

import (
	"context"
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
	if g.codes == nil {
		g.codes = make(map[string]store.Code)
	}
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
	ref := codeRef{grantID, ringForm(digest)}
	if m, ok := s.markers[ref]; ok && m.exp > now {
		if m.state == issued {
			s.revoke(grantID)
		}
		m.state = replayed
		s.markers[ref] = m
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
	if len(g.codes) == 0 {
		g.codes = nil // a map keeps its buckets when emptied
	}
	if c.ExpiresAt.UnixMilli() <= now || g.exp <= now {
		return store.Code{}, store.ErrNotFound
	}
	s.markers[ref] = marker{state: consumed, exp: now + store.MarkerLife.Milliseconds()}
	return c, nil
}

// IssueTokens stores the pair issued for a consumed code.
func (s *Store) IssueTokens(_ context.Context, grantID, codeDigest string, p store.Pair) error {
	if err := store.CheckPair(p); err != nil {
		return fmt.Errorf("memory issue tokens: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.nowMillis()
	ref := codeRef{grantID, ringForm(codeDigest)}
	m, ok := s.markers[ref]
	if !ok || m.exp <= now {
		return store.ErrNotFound
	}
	if m.state != consumed {
		s.revoke(grantID)
		m.state = replayed
		s.markers[ref] = m
		return store.ErrCodeReplayed
	}
	g := s.live(grantID, now)
	if g == nil {
		return store.ErrNotFound
	}
	g.put(p, now)
	m.state = issued
	s.markers[ref] = m
	return nil
}

// put stores a pair issued for a code: in a free slot (or one whose pair
// has expired), else in place of the pair that would expire first, as on
// Redis. The grant is extended to outlive both tokens.
func (g *grant) put(p store.Pair, now int64) {
	np := g.newPair(p)
	for i := range g.pairs {
		if g.pairs[i].life() <= now {
			g.pairs[i] = np
			return
		}
	}
	if len(g.pairs) < pairSlots {
		g.pairs = append(g.pairs, np)
		return
	}
	first := 0
	for i := range g.pairs {
		if g.pairs[i].life() < g.pairs[first].life() {
			first = i
		}
	}
	g.pairs[first] = np
}

// newPair makes p a stored pair, each token naming the other as its Pair
// whatever the caller set, and extends the grant to outlive both. A token's
// client and subject are its grant's, as on Redis. Scopes equal to the
// grant's (or the access token's) are shared, never written to.
func (g *grant) newPair(p store.Pair) pair {
	out := pair{access: token{
		digest: p.Access.Digest,
		exp:    p.Access.ExpiresAt.UnixMilli(),
		scopes: g.scopes,
		limit:  p.Access.Limit,
	}}
	if !slices.Equal(p.Access.Scopes, g.scopes) {
		out.access.scopes = slices.Clone(p.Access.Scopes)
	}
	g.exp = max(g.exp, out.access.exp)
	if p.Refresh.Digest != "" {
		out.refresh = token{digest: p.Refresh.Digest, exp: p.Refresh.ExpiresAt.UnixMilli(), scopes: out.access.scopes}
		if !slices.Equal(p.Refresh.Scopes, p.Access.Scopes) {
			out.refresh.scopes = slices.Clone(p.Refresh.Scopes)
		}
		g.exp = max(g.exp, out.refresh.exp)
	}
	return out
}

// find returns the index of the pair holding the token, or -1.
func (g *grant) find(kind store.Kind, digest string) int {
	if digest == "" {
		return -1
	}
	for i := range g.pairs {
		t := &g.pairs[i].access
		if kind == store.Refresh {
			t = &g.pairs[i].refresh
		}
		if t.digest == digest {
			return i
		}
	}
	return -1
}

// token returns a token of pair i as a store.Token, its scopes shared with
// the store's: the caller clones them before they leave the lock.
func (g *grant) token(i int, kind store.Kind) store.Token {
	t, pair := g.pairs[i].access, g.pairs[i].refresh.digest
	if kind == store.Refresh {
		t, pair = g.pairs[i].refresh, g.pairs[i].access.digest
	}
	return store.Token{
		Digest: t.digest, ClientID: g.clientID, Subject: g.subject, Scopes: t.scopes,
		ExpiresAt: time.UnixMilli(t.exp), Pair: pair, Limit: t.limit,
	}
}
