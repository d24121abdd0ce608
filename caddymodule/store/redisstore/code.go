package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// SaveCode stores an authorization code of a live grant, extending the
// grant to outlive the code.
func (s *Store) SaveCode(ctx context.Context, grantID, digest string, c store.Code) error {
	if !store.ValidGrantID(grantID) {
		return store.ErrNotFound
	}
	rec, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("redis save code: %w", err)
	}
	n, err := s.scripts.saveCode.Run(ctx, s.client,
		[]string{s.k().grant(grantID), s.k().code(grantID, digest)},
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
	if !store.ValidGrantID(grantID) {
		return store.Code{}, store.ErrNotFound
	}
	now := s.nowMillis()
	res, err := s.scripts.consumeCode.Run(ctx, s.client,
		[]string{s.k().grant(grantID), s.k().code(grantID, digest), s.k().marker(grantID, digest), s.k().counter(grantID)},
		now, now+store.MarkerLife.Milliseconds(),
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
		if err := replayed(v); err != nil {
			if v[1] == int64(1) { // the first replay after the tokens were issued
				s.revokedEverywhere(grantID)
			}
			return store.Code{}, err
		}
	}
	return store.Code{}, fmt.Errorf("redis consume code: %w", errReply(res))
}

// IssueTokens stores the pair issued for a consumed code.
func (s *Store) IssueTokens(ctx context.Context, grantID, codeDigest string, p store.Pair) error {
	if !store.ValidGrantID(grantID) {
		return store.ErrNotFound
	}
	w, err := encodePair(p)
	if err != nil {
		return fmt.Errorf("redis issue tokens: %w", err)
	}
	res, err := s.scripts.issueTokens.Run(ctx, s.client,
		[]string{s.k().grant(grantID), s.k().marker(grantID, codeDigest), s.k().counter(grantID)},
		append([]any{s.nowMillis()}, w.args()...)...,
	).Result()
	if err != nil {
		return fmt.Errorf("redis issue tokens: %w", err)
	}
	s.changed(grantID)
	switch v := res.(type) {
	case int64:
		switch v {
		case resOK:
			return nil
		case resNotFound:
			return store.ErrNotFound
		}
	case []any:
		if err := replayed(v); err != nil {
			s.revokedEverywhere(grantID)
			return err
		}
	}
	return fmt.Errorf("redis issue tokens: %w", errReply(res))
}

// replayed handles a {"replayed", …} reply: ErrCodeReplayed, or nil for
// another shape.
func replayed(v []any) error {
	if len(v) != 2 || v[0] != "replayed" {
		return nil
	}
	return store.ErrCodeReplayed
}

// pairWrite is a pair ready for a script (putpair in scripts.go): digests,
// expiries in ms, scopes encoded (record.go), the access token's budget;
// the refresh fields are "" when there is no refresh token.
type pairWrite struct {
	access, accessExp, accessScopes    string
	limitCount, limitWindow            int64
	refresh, refreshExp, refreshScopes string
}

func (w pairWrite) args() []any {
	return []any{w.access, w.accessExp, w.accessScopes, w.limitCount, w.limitWindow,
		w.refresh, w.refreshExp, w.refreshScopes}
}

// encodePair checks and encodes a pair. The access token's budget is
// checked here, once, so that the hot path can trust it. A token's client
// and subject are not stored: they are its grant's (the grant id is made
// of them, oauth.GrantID), and reads return the grant's.
func encodePair(p store.Pair) (pairWrite, error) {
	if err := store.CheckPair(p); err != nil {
		return pairWrite{}, err
	}
	w := pairWrite{
		access:       p.Access.Digest,
		accessExp:    strconv.FormatInt(p.Access.ExpiresAt.UnixMilli(), 10),
		accessScopes: string(encodeScopes(p.Access.Scopes)),
		limitCount:   p.Access.Limit.Count,
		limitWindow:  p.Access.Limit.Window.Milliseconds(),
	}
	if p.Refresh.Digest != "" {
		w.refresh = p.Refresh.Digest
		w.refreshExp = strconv.FormatInt(p.Refresh.ExpiresAt.UnixMilli(), 10)
		w.refreshScopes = string(encodeScopes(p.Refresh.Scopes))
	}
	return w, nil
}
