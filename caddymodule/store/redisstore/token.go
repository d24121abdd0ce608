package redisstore

import (
	"context"
	"fmt"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// GetToken returns a live token of a live grant.
func (s *Store) GetToken(ctx context.Context, grantID string, kind store.Kind, digest string) (store.Token, error) {
	return s.getToken(ctx, grantID, kind, digest, false)
}

// RevocableToken returns a token of one of a live grant's pairs, expired
// or not (store.Tokens.RevocableToken).
func (s *Store) RevocableToken(ctx context.Context, grantID string, kind store.Kind, digest string) (store.Token, error) {
	return s.getToken(ctx, grantID, kind, digest, true)
}

func (s *Store) getToken(ctx context.Context, grantID string, kind store.Kind, digest string, expired bool) (store.Token, error) {
	if !store.ValidGrantID(grantID) {
		return store.Token{}, store.ErrNotFound
	}
	anyAge := 0
	if expired {
		anyAge = 1
	}
	res, err := s.scripts.getToken.Run(ctx, s.client,
		[]string{s.k().grant(grantID)}, s.nowMillis(), string(kind), digest, anyAge).Result()
	if err != nil {
		return store.Token{}, fmt.Errorf("redis get token: %w", err)
	}
	switch v := res.(type) {
	case string:
		t, err := decodeToken(digest, v)
		if err != nil {
			return store.Token{}, fmt.Errorf("redis get token: decoding: %w", err)
		}
		return t, nil
	case int64:
		if v == resNotFound {
			return store.Token{}, store.ErrNotFound
		}
	}
	return store.Token{}, fmt.Errorf("redis get token: %w", errReply(res))
}

// Rotate replaces the grant's current pair by a new one and puts the old
// refresh token into the grant's rotation ring (see CheckReuse). It is one
// script over the one grant hash: the script alone decides which of two
// concurrent rotations wins (the one that still finds the refresh token
// current).
func (s *Store) Rotate(ctx context.Context, grantID, oldRefresh string, p store.Pair) error {
	w, err := encodePair(p)
	if err != nil {
		return fmt.Errorf("redis rotate: %w", err)
	}
	if !store.ValidGrantID(grantID) || oldRefresh == "" {
		return store.ErrNotFound
	}
	args := append([]any{s.nowMillis(), oldRefresh, ringForm(oldRefresh)}, w.args()...)
	n, err := s.scripts.rotate.Run(ctx, s.client, []string{s.k().grant(grantID)}, args...).Int64()
	if err != nil {
		return fmt.Errorf("redis rotate: %w", err)
	}
	s.changed(grantID)
	switch n {
	case resOK:
		return nil
	case resNotFound:
		return store.ErrNotFound
	}
	return fmt.Errorf("redis rotate: %w", errReply(n))
}
