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
	// The Redis store's rule (hash tags need a non-empty grant id), kept
	// here so that the two stores accept the same grants.
	if in.ID == "" || in.ID[0] == '}' {
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
		if g.g.ClientID != in.ClientID || g.g.Subject != in.Subject {
			return fmt.Errorf("memory save grant: %w", errGrantOwner)
		}
		g.g.Scopes = dedupe(append(slices.Clip(g.g.Scopes), in.Scopes...))
		if len(in.Profile) > 0 {
			if g.g.Profile == nil {
				g.g.Profile = make(map[string]string, len(in.Profile))
			}
			maps.Copy(g.g.Profile, in.Profile)
		}
		g.exp = max(g.exp, exp)
		s.index(in.Subject, in.ID)
		return nil
	}
	if old := s.grants[in.ID]; old != nil && old.g.Subject != in.Subject {
		// An expired grant's id, taken by another subject.
		s.unindex(old.g.Subject, in.ID)
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
		g:      in,
		exp:    exp,
		used:   used,
		codes:  make(map[string]store.Code),
		tokens: make(map[tokenRef]store.Token),
	}
	g.g.Scopes = dedupe(in.Scopes)
	g.g.Profile = nil
	if len(in.Profile) > 0 {
		g.g.Profile = maps.Clone(in.Profile)
	}
	g.g.CreatedAt = time.UnixMilli(created)
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
	s.unindex(g.g.Subject, grantID)
	return g.snapshot(), nil
}

// snapshot is a copy the caller may keep and change.
func (g *grant) snapshot() store.Grant {
	out := g.g
	out.Scopes = slices.Clone(g.g.Scopes)
	out.Profile = maps.Clone(g.g.Profile)
	out.LastUsedAt = time.UnixMilli(g.used)
	return out
}

// dedupe returns the scopes in order without repeats, never nil.
func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
