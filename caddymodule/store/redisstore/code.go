package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// SaveCode stores an authorization code of a live grant, extending the
// grant to outlive the code.
func (s *Store) SaveCode(ctx context.Context, grantID, digest string, c store.Code) error {
	if !validGrantID(grantID) {
		return store.ErrNotFound
	}
	rec, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("redis save code: %w", err)
	}
	n, err := s.scripts.saveCode.Run(ctx, s.client,
		[]string{grantKey(grantID), codeKey(grantID, digest), tokensKey(grantID)},
		s.nowMillis(), c.ExpiresAt.UnixMilli(), rec,
	).Int64()
	if err != nil {
		return fmt.Errorf("redis save code: %w", err)
	}
	if n == resNotFound {
		return store.ErrNotFound
	}
	return nil
}

// ConsumeCode takes the code and leaves a replay marker behind for a day.
// The replay marker's states are "consumed" (taken, no tokens yet),
// "issued" (tokens handed out: a replay revokes the grant now) and
// "replayed" (presented twice before the tokens were stored: IssueTokens
// revokes the grant instead of storing them).
func (s *Store) ConsumeCode(ctx context.Context, grantID, digest string) (store.Code, error) {
	if !validGrantID(grantID) {
		return store.Code{}, store.ErrNotFound
	}
	now := s.nowMillis()
	res, err := s.scripts.consumeCode.Run(ctx, s.client,
		[]string{grantKey(grantID), codeKey(grantID, digest), markerKey(grantID, digest), tokensKey(grantID)},
		now, now+markerLife,
	).Result()
	if err != nil {
		return store.Code{}, fmt.Errorf("redis consume code: %w", err)
	}
	switch v := res.(type) {
	case string:
		var c store.Code
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			return store.Code{}, fmt.Errorf("redis consume code: decoding: %w", err)
		}
		return c, nil
	case int64:
		if v == resNotFound {
			return store.Code{}, store.ErrNotFound
		}
	case []any:
		if err := s.replayed(ctx, v); err != nil {
			return store.Code{}, err
		}
	}
	return store.Code{}, fmt.Errorf("redis consume code: %w", errReply(res))
}

// IssueTokens stores the pair issued for a consumed code.
func (s *Store) IssueTokens(ctx context.Context, grantID, codeDigest string, p store.Pair) error {
	if !validGrantID(grantID) {
		return store.ErrNotFound
	}
	w, err := encodePair(p)
	if err != nil {
		return fmt.Errorf("redis issue tokens: %w", err)
	}
	res, err := s.scripts.issueTokens.Run(ctx, s.client,
		[]string{
			grantKey(grantID), markerKey(grantID, codeDigest), tokensKey(grantID),
			tokenKey(grantID, store.Access, p.Access.Digest),
			tokenKey(grantID, store.Refresh, p.Refresh.Digest),
		},
		s.nowMillis(), w.accessExp, w.access, w.refreshExp, w.refresh,
		p.Access.Digest, p.Refresh.Digest, p.Access.Limit.Count, p.Access.Limit.Window.Milliseconds(),
	).Result()
	if err != nil {
		return fmt.Errorf("redis issue tokens: %w", err)
	}
	switch v := res.(type) {
	case int64:
		switch v {
		case resOK:
			return nil
		case resNotFound:
			return store.ErrNotFound
		}
	case []any:
		if err := s.replayed(ctx, v); err != nil {
			return err
		}
	}
	return fmt.Errorf("redis issue tokens: %w", errReply(res))
}

// replayed handles a {"replayed", members} reply: it deletes what the
// script revoked and returns ErrCodeReplayed, or nil for another shape.
func (s *Store) replayed(ctx context.Context, v []any) error {
	if len(v) != 2 || v[0] != "replayed" {
		return nil
	}
	members, _ := v[1].([]any)
	s.cleanup(ctx, members)
	return store.ErrCodeReplayed
}

// pairWrite is a pair ready for a script: records encoded (record.go), expiries in ms,
// refreshExp "" when there is no refresh token.
type pairWrite struct {
	access, refresh       []byte
	accessExp, refreshExp string
}

// encodePair fills in each token's Pair from the other one, so that Rotate
// always finds the access token to delete whatever the caller set. The
// access token's budget is checked here, once, so that the hot path can
// trust it.
func encodePair(p store.Pair) (pairWrite, error) {
	if p.Access.Digest == "" {
		return pairWrite{}, errors.New("access token digest is empty")
	}
	if err := checkLimit(p.Access.Limit); err != nil {
		return pairWrite{}, err
	}
	p.Access.Pair = p.Refresh.Digest
	p.Refresh.Pair = p.Access.Digest
	w := pairWrite{
		access:    encodeToken(p.Access),
		accessExp: strconv.FormatInt(p.Access.ExpiresAt.UnixMilli(), 10),
	}
	if p.Refresh.Digest != "" {
		w.refresh = encodeToken(p.Refresh)
		w.refreshExp = strconv.FormatInt(p.Refresh.ExpiresAt.UnixMilli(), 10)
	}
	return w, nil
}
