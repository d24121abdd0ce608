package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// SaveGrant creates the grant or merges scopes and profile into it, then
// adds it to the subject's index. The index is written second
// (docs/architecture.md §6.5: the grant is the source of truth); when that
// write fails the error is reported, and saving the grant again repairs the
// index.
func (s *Store) SaveGrant(ctx context.Context, g store.Grant, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redis save grant: ttl %v is not positive", ttl)
	}
	if !store.ValidGrantID(g.ID) {
		return fmt.Errorf("redis save grant: invalid grant id %q", g.ID)
	}
	now := s.nowMillis()
	scopes, err := json.Marshal(store.DedupeScopes(g.Scopes))
	if err != nil {
		return fmt.Errorf("redis save grant: %w", err)
	}
	profile := []byte("{}")
	if len(g.Profile) > 0 {
		if profile, err = json.Marshal(g.Profile); err != nil {
			return fmt.Errorf("redis save grant: %w", err)
		}
	}
	created := now
	if !g.CreatedAt.IsZero() {
		created = g.CreatedAt.UnixMilli()
	}
	used := created
	if !g.LastUsedAt.IsZero() {
		used = g.LastUsedAt.UnixMilli()
	}
	res, err := s.scripts.saveGrant.Run(ctx, s.client,
		[]string{s.k().grant(g.ID)},
		now, now+ttl.Milliseconds(), newNonce(), g.ID, g.ClientID, g.Subject,
		scopes, profile, created, used,
	).Result()
	if err != nil {
		return fmt.Errorf("redis save grant: %w", err)
	}
	s.changed(g.ID)
	switch v := res.(type) {
	case string:
		if err := s.index(ctx, g.Subject, g.ID, v); err != nil {
			return fmt.Errorf("redis save grant: %w", err)
		}
		return nil
	case int64:
		if v == resMismatch {
			return fmt.Errorf("redis save grant: %w", store.ErrGrantOwner)
		}
	}
	return fmt.Errorf("redis save grant: %w", errReply(res))
}

// GetGrant returns a live grant. One HMGET: reading one key needs no script.
func (s *Store) GetGrant(ctx context.Context, grantID string) (store.Grant, error) {
	if !store.ValidGrantID(grantID) {
		return store.Grant{}, store.ErrNotFound
	}
	v, err := s.client.HMGet(ctx, s.k().grant(grantID),
		grantFields...).Result()
	if err != nil {
		return store.Grant{}, fmt.Errorf("redis get grant: %w", err)
	}
	g, exp, err := decodeGrant(grantID, v)
	if err != nil {
		return store.Grant{}, fmt.Errorf("redis get grant: %w", err)
	}
	if exp <= s.nowMillis() {
		return store.Grant{}, store.ErrNotFound
	}
	return g, nil
}

// RevokeGrant deletes the grant, its tokens and its counter atomically (one
// script over the grant's hash and counter), then drops its entry in the
// subject's index in a best-effort round trip (see revoked).
func (s *Store) RevokeGrant(ctx context.Context, grantID string) (store.Grant, error) {
	if !store.ValidGrantID(grantID) {
		return store.Grant{}, store.ErrNotFound
	}
	res, err := s.scripts.revokeGrant.Run(ctx, s.client,
		[]string{s.k().grant(grantID), s.k().counter(grantID)}, s.nowMillis()).Result()
	if err != nil {
		return store.Grant{}, fmt.Errorf("redis revoke grant: %w", err)
	}
	if n, ok := res.(int64); ok && n == resNotFound {
		return store.Grant{}, store.ErrNotFound
	}
	g, err := s.revoked(ctx, grantID, res)
	if err != nil {
		return store.Grant{}, fmt.Errorf("redis revoke grant: %w", err)
	}
	return g, nil
}

// revoked finishes what a revoking script did, given its reply {grant
// fields and nonce, {}}: it drops the grant from its subject's index. That
// is best effort: the grant is already gone, and ListGrants skips and
// prunes an entry whose grant is gone.
func (s *Store) revoked(ctx context.Context, grantID string, res any) (store.Grant, error) {
	arr, ok := res.([]any)
	if !ok || len(arr) != 2 {
		return store.Grant{}, errReply(res)
	}
	fields, _ := arr[0].([]any)
	if len(fields) != len(grantFields)+1 {
		return store.Grant{}, errReply(res)
	}
	g, _, err := decodeGrant(grantID, fields[:len(grantFields)])
	if err != nil {
		return store.Grant{}, err
	}
	nonce, _ := fields[len(grantFields)].(string)
	s.unindex(ctx, g.Subject, g.ID, nonce)
	s.revokedEverywhere(grantID)
	return g, nil
}

// grantFields are the grant's own fields in its hash, as decodeGrant reads
// them. The id is not among them: it is in the key.
var grantFields = []string{"cid", "sub", "scp", "prof", "c", "u", "exp"}

// decodeGrant reads grantFields, in that order. A missing grant decodes to
// expiry 0, which is never live.
func decodeGrant(id string, v []any) (store.Grant, int64, error) {
	if len(v) != len(grantFields) || v[0] == nil {
		return store.Grant{}, 0, nil
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	num := func(i int) int64 { n, _ := strconv.ParseInt(str(i), 10, 64); return n }
	g := store.Grant{
		ID:         id,
		ClientID:   str(0),
		Subject:    str(1),
		CreatedAt:  time.UnixMilli(num(4)),
		LastUsedAt: time.UnixMilli(num(5)),
	}
	if err := json.Unmarshal([]byte(str(2)), &g.Scopes); err != nil {
		return store.Grant{}, 0, fmt.Errorf("decoding grant scopes: %w", err)
	}
	if p := str(3); p != "" {
		if err := json.Unmarshal([]byte(p), &g.Profile); err != nil {
			return store.Grant{}, 0, fmt.Errorf("decoding grant profile: %w", err)
		}
	}
	return g, num(6), nil
}

// newNonce draws a grant incarnation nonce (see scripts.go). It only has to
// differ between incarnations of one grant id, not be secret. It is a
// decimal integer, which Redis keeps in a listpack in 9 bytes.
func newNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return strconv.FormatUint(binary.BigEndian.Uint64(b[:])>>1, 10)
}

// isNil reports a go-redis nil reply (a script returning false or nil).
func isNil(err error) bool { return errors.Is(err, redis.Nil) }
