package redisstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// CheckReuse revokes the grant when refreshDigest was rotated out of it more
// than grace ago (RFC 9700 §4.14.2): the old token is in two hands, and the
// store cannot tell which is the thief's. The check and the revocation are
// one script, so a reuse cannot slip between them; the grant's index entry
// goes next, as in RevokeGrant.
//
// What the grant remembers of its rotated-out refresh tokens is a ring of
// the last ringSize of them in its own hash (128 bits of each digest, when
// it was rotated out, when it would have expired), not a key per rotation:
// a grant refreshed hourly for 90 days would otherwise keep 2,160 marks.
// The ring goes with the grant hash, so a revocation forgets it and a grant
// re-created under the same id starts with an empty one. README.md
// ("Refresh tokens, reuse and disconnect") says what this catches and what
// it does not.
func (s *Store) CheckReuse(ctx context.Context, grantID, refreshDigest string, grace time.Duration) (store.Grant, error) {
	if !store.ValidGrantID(grantID) || refreshDigest == "" {
		return store.Grant{}, store.ErrNotFound
	}
	res, err := s.scripts.checkReuse.Run(ctx, s.client,
		[]string{s.k().grant(grantID), s.k().counter(grantID)},
		s.nowMillis(), grace.Milliseconds(), ringForm(refreshDigest),
	).Result()
	if err != nil {
		return store.Grant{}, fmt.Errorf("redis check reuse: %w", err)
	}
	if n, ok := res.(int64); ok && n == resNotFound {
		return store.Grant{}, store.ErrNotFound
	}
	g, err := s.revoked(ctx, grantID, res)
	if err != nil {
		return store.Grant{}, fmt.Errorf("redis check reuse: %w", err)
	}
	return g, store.ErrRefreshReused
}

// luaCheckReuse returns 0 (not in the ring, past its own expiry, rotated
// out within grace, or the grant is gone) or, having revoked the grant, the
// same reply as luaRevokeGrant.
//
// KEYS: grant, counter. ARGV: now, grace ms, the digest's ring form
// (ringForm).
const luaCheckReuse = `
local grant_key, counter_key = KEYS[1], KEYS[2]
local now, grace, ring_form = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local g = redis.call('HMGET', grant_key, ` + luaGrantFields + `)
local gexp = tonumber(g[7])
if not gexp or gexp <= now then return 0 end
for i = 0, RING - 1 do
  local m = redis.call('HGET', grant_key, 'o' .. i)
  if m then
    local at, exp = struct.unpack('>i6i6', m, #m - 11)
    if string.sub(m, 1, #m - 12) == ring_form then
      if tonumber(exp) <= now or now - tonumber(at) <= grace then return 0 end
      revoke(grant_key, counter_key)
      return {g, {}}
    end
  end
end
return 0
`

// ringForm is what the ring keeps of a refresh token's digest: 128 bits,
// as 16 bytes when the digest is hex (oauth.Digest's 64 hex digits), else
// its first 32 characters.
func ringForm(digest string) string {
	if len(digest) < ringDigest {
		return digest
	}
	var b [ringDigest / 2]byte
	if _, err := hex.Decode(b[:], []byte(digest[:ringDigest])); err != nil {
		return digest[:ringDigest]
	}
	return string(b[:])
}
