package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// SaveGrant creates the grant or merges scopes and profile into it.
func (s *Store) SaveGrant(_ context.Context, in store.Grant, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memory save grant: ttl %v is not positive", ttl)
	}
	if !store.ValidGrantID(in.ID) {
		return fmt.Errorf("memory save grant: invalid grant id %q", in.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.nowMillis()
	exp := now + ttl.Milliseconds()
	if g := s.live(in.ID, now); g != nil {
		if g.clientID != in.ClientID || g.subject != in.Subject {
			return fmt.Errorf("memory save grant: %w", store.ErrGrantOwner)
		}
		g.scopes = store.DedupeScopes(append(slices.Clip(g.scopes), in.Scopes...))
		if len(in.Profile) > 0 {
			p := g.profileMap()
			if p == nil {
				p = make(map[string]string, len(in.Profile))
			}
			maps.Copy(p, in.Profile)
			g.profile = profilePairs(p)
		}
		g.exp = max(g.exp, exp)
		s.index(in.Subject, in.ID)
		return nil
	}
	if old := s.grants[in.ID]; old != nil && old.subject != in.Subject {
		// An expired grant's id, taken by another subject.
		s.unindex(old.subject, in.ID)
	}
	created := now
	if !in.CreatedAt.IsZero() {
		created = in.CreatedAt.UnixMilli()
	}
	used := created
	if !in.LastUsedAt.IsZero() {
		used = in.LastUsedAt.UnixMilli()
	}
	g := &grant{
		id: in.ID, clientID: in.ClientID, subject: in.Subject, scopes: store.DedupeScopes(in.Scopes),
		profile: profilePairs(in.Profile), created: created, exp: exp, used: used,
	}
	s.grants[in.ID] = g
	s.index(in.Subject, in.ID)
	return nil
}

// GetGrant returns a live grant.
func (s *Store) GetGrant(_ context.Context, grantID string) (store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Grant{}, errClosed
	}
	g := s.live(grantID, s.nowMillis())
	if g == nil {
		return store.Grant{}, store.ErrNotFound
	}
	return g.snapshot(), nil
}

// RevokeGrant drops the grant with its codes, tokens and counters.
func (s *Store) RevokeGrant(_ context.Context, grantID string) (store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Grant{}, errClosed
	}
	g := s.live(grantID, s.nowMillis())
	if g == nil {
		return store.Grant{}, store.ErrNotFound
	}
	s.revoke(grantID)
	s.unindex(g.subject, grantID)
	return g.snapshot(), nil
}

// snapshot is a copy the caller may keep and change.
func (g *grant) snapshot() store.Grant {
	return store.Grant{
		ID: g.id, ClientID: g.clientID, Subject: g.subject, Scopes: slices.Clone(g.scopes),
		Profile: g.profileMap(), CreatedAt: time.UnixMilli(g.created), LastUsedAt: time.UnixMilli(g.used),
	}
}

// profilePairs is a profile as the grant keeps it: key, value, key, value,
// sorted by key; nil for none. A slice costs a tenth of a small map.
func profilePairs(p map[string]string) []string {
	if len(p) == 0 {
		return nil
	}
	out := make([]string, 0, 2*len(p))
	for _, k := range slices.Sorted(maps.Keys(p)) {
		out = append(out, k, p[k])
	}
	return out
}

// profileMap is the grant's profile as a new map, nil for none.
func (g *grant) profileMap() map[string]string {
	if len(g.profile) == 0 {
		return nil
	}
	m := make(map[string]string, len(g.profile)/2)
	for i := 0; i < len(g.profile); i += 2 {
		m[g.profile[i]] = g.profile[i+1]
	}
	return m
}
