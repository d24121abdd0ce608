package memory

import (
	"context"
	"slices"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// index adds the grant to its subject's list: a slice, as a subject has a
// grant per client it consented to, a handful, and a slice of one costs a
// tenth of a map of one. The caller holds s.mu.
func (s *Store) index(subject, grantID string) {
	ids := s.subjects[subject]
	if !slices.Contains(ids, grantID) {
		s.subjects[subject] = append(ids, grantID)
	}
}

// unindex drops the grant from its subject's list. The caller holds s.mu.
func (s *Store) unindex(subject, grantID string) {
	ids := slices.DeleteFunc(s.subjects[subject], func(id string) bool { return id == grantID })
	if len(ids) == 0 {
		delete(s.subjects, subject)
		return
	}
	s.subjects[subject] = ids
}

// sweepIndex drops entries whose grant is gone or no longer the subject's.
// The caller holds s.mu.
func (s *Store) sweepIndex(now int64) {
	for subject, ids := range s.subjects {
		for _, id := range slices.Clone(ids) {
			if g := s.live(id, now); g == nil || g.subject != subject {
				s.unindex(subject, id)
			}
		}
	}
}

// ListGrants returns the subject's live grants, newest first. Like the Redis
// store it trusts the grants over the index: an entry whose grant expired,
// or whose id now holds another subject's grant, is dropped.
func (s *Store) ListGrants(_ context.Context, subject string) ([]store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	now := s.nowMillis()
	ids := slices.Clone(s.subjects[subject])
	out := make([]store.Grant, 0, len(ids))
	for _, id := range ids {
		g := s.live(id, now)
		if g == nil || g.subject != subject {
			s.unindex(subject, id)
			continue
		}
		out = append(out, g.snapshot())
	}
	store.SortGrants(out)
	return out, nil
}
