package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// rotatedKey is the mark Rotate leaves for a refresh token it rotated out.
// It is listed in the grant's tokens index, so that every revocation
// deletes it with the grant's tokens: once the grant is gone the mark has
// nothing left to protect, as CheckReuse answers ErrNotFound for a gone
// grant anyway. The mark carries the grant's nonce all the same, because
// grant ids are reused (one per client and subject): a mark that outlived a
// lost cleanup must not revoke the grant the user consents to next.
func rotatedKey(grantID, digest string) string { return "tg:{" + grantID + "}:rotated:" + digest }

// CheckReuse revokes the grant when refreshDigest was rotated out of it more
// than grace ago (RFC 9700 §4.14.2): the old token is in two hands, and the
// store cannot tell which is the thief's. The check and the revocation are
// one script, so a reuse cannot slip between them; the grant's dead keys and
// its index entry go next, as in RevokeGrant.
func (s *Store) CheckReuse(ctx context.Context, grantID, refreshDigest string, grace time.Duration) (store.Grant, error) {
	if !validGrantID(grantID) {
		return store.Grant{}, store.ErrNotFound
	}
	res, err := s.scripts.checkReuse.Run(ctx, s.client,
		[]string{grantKey(grantID), tokensKey(grantID), rotatedKey(grantID, refreshDigest)},
		s.nowMillis(), grace.Milliseconds(),
	).Result()
	if err != nil {
		return store.Grant{}, fmt.Errorf("redis check reuse: %w", err)
	}
	if n, ok := res.(int64); ok && n == resNotFound {
		return store.Grant{}, store.ErrNotFound
	}
	g, err := s.revoked(ctx, res)
	if err != nil {
		return store.Grant{}, fmt.Errorf("redis check reuse: %w", err)
	}
	return g, store.ErrRefreshReused
}

// luaCheckReuse returns 0 (no live mark, a grant that is gone or another
// incarnation's, or a reuse inside grace) or, having revoked the grant, the
// same reply as luaRevokeGrant.
//
// KEYS: grant, tokens, rotated mark. ARGV: now, grace ms.
const luaCheckReuse = `
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local m = redis.call('HMGET', KEYS[3], 'at', 'exp', 'n')
local mexp = tonumber(m[2])
if not mexp or mexp <= now then return 0 end
local g = redis.call('HMGET', KEYS[1], 'id', 'cid', 'sub', 'scp', 'prof', 'created', 'used', 'exp', 'n')
local gexp = tonumber(g[8])
if not gexp or gexp <= now or g[9] ~= m[3] then return 0 end
if now - tonumber(m[1]) <= grace then return 0 end
return {g, revoke(KEYS[1], KEYS[2])}
`
