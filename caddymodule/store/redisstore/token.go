package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// GetToken returns a live token of a live grant.
func (s *Store) GetToken(ctx context.Context, grantID string, kind store.Kind, digest string) (store.Token, error) {
	if !validGrantID(grantID) {
		return store.Token{}, store.ErrNotFound
	}
	res, err := s.scripts.getToken.Run(ctx, s.client,
		[]string{tokenKey(grantID, kind, digest), grantKey(grantID)}, s.nowMillis()).Result()
	if err != nil {
		return store.Token{}, fmt.Errorf("redis get token: %w", err)
	}
	switch v := res.(type) {
	case string:
		t, err := decodeToken(v)
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

// Rotate replaces a refresh token and its access token by a new pair and
// marks the old refresh token rotated out (see CheckReuse).
//
// It costs two round trips: the old access token's key must be declared to
// the script, and only the old refresh token's record names it. Reading the
// pair first is race-free because a stored record's pair never changes; the
// script re-checks it, and the script alone decides which of two
// concurrent rotations wins (the one that finds the refresh token).
func (s *Store) Rotate(ctx context.Context, grantID, oldRefresh string, p store.Pair) error {
	w, err := encodePair(p)
	if err != nil {
		return fmt.Errorf("redis rotate: %w", err)
	}
	if !validGrantID(grantID) {
		return store.ErrNotFound
	}
	oldKey := tokenKey(grantID, store.Refresh, oldRefresh)
	oldPair, err := s.client.HGet(ctx, oldKey, "pair").Result()
	if isNil(err) {
		return store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("redis rotate: %w", err)
	}
	n, err := s.scripts.rotate.Run(ctx, s.client,
		[]string{
			grantKey(grantID), tokensKey(grantID), oldKey,
			tokenKey(grantID, store.Access, oldPair),
			tokenKey(grantID, store.Access, p.Access.Digest),
			tokenKey(grantID, store.Refresh, p.Refresh.Digest),
			rotatedKey(grantID, oldRefresh),
		},
		s.nowMillis(), oldPair, w.accessExp, w.access, w.refreshExp, w.refresh,
		p.Access.Digest, p.Refresh.Digest, p.Access.Limit.Count, p.Access.Limit.Window.Milliseconds(),
	).Int64()
	if err != nil {
		return fmt.Errorf("redis rotate: %w", err)
	}
	switch n {
	case resOK:
		return nil
	case resNotFound:
		return store.ErrNotFound
	case resMismatch:
		return fmt.Errorf("redis rotate: %w", errors.New("refresh token's pair changed under us"))
	}
	return fmt.Errorf("redis rotate: %w", errReply(n))
}
