package redisstore

import (
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Record layout, shared by every script (all times are Unix milliseconds of
// the store's injected clock, never Redis's own clock). A grant is one hash,
// and everything it holds is bounded: no key is written per rotation, so a
// grant costs the same after 10,000 refreshes as after its first token
// (README.md "What a grant costs, and how far back reuse is caught"):
//
//	grant hash: cid sub scp(JSON array) prof(JSON object, absent when empty)
//	            c(created) u(last used) exp n(nonce); the id is in the key
//	            up to pairSlots pairs, slot k's fields suffixed with k
//	            (slot 0's with nothing: "a", "a1", "a2", "a3"):
//	              a ax as   access digest, expiry, scopes (encodeScopes)
//	              lc lw     the access token's budget (count, window ms),
//	                        absent when it has none
//	              r rx rs   refresh digest, expiry, scopes; rs is absent
//	                        when they are the access token's, r rx rs when
//	                        the pair has no refresh token
//	            the rotation ring (reuse.go):
//	              o0..o3    one rotated-out refresh token each: 128 bits of
//	                        its digest (ringForm), then when it was rotated
//	                        out and when it would have expired, 6-byte
//	                        big-endian integers (struct.pack '>i6i6')
//	              oi        the slot the next rotation writes
//	code   hash: exp n rec(JSON store.Code)
//	marker string: state (c consumed, r replayed, i issued) and expiry, e.g.
//	             "c1893456000000"; named by 128 bits of the code's digest
//	rl     hash: i(window index) n(requests counted in that window)
//
// Every value stays short (a digest, a number, a short scope list), so Redis
// keeps the grant hash as a listpack: one allocation rather than an entry
// per field (hash-max-listpack-value, 64 bytes by default).
//
// One key is not a grant's: a subject's index of grants, tg:u:{<hex
// SHA-256 of the subject>}:grants, a hash of grant id -> nonce (index.go).
// Nor are blobs (tg:b:<key>, blob.go) or failure counters,
// tg:f:{<key>}:<window ms>:<window index>, an integer (failure.go).
//
// "n" is the grant's incarnation nonce, drawn when the grant is created and
// copied into every code written for it. The tokens live inside the grant
// hash, so a revocation (which deletes the hash and the counter) kills them
// at once; a pending code lives in its own key, and the nonce is what makes
// it dead at that same instant, even when a grant with the same id is
// created before the code's key expires.
//
// Redis key TTLs are set to the record's logical life plus gcMargin so that
// Redis collects the garbage but never drops a record the clock still
// considers live.

// gcMargin is how long a key outlives its logical expiry. The Lua prelude
// spells it out as a literal; TestScriptConstants keeps the two in step.
const gcMargin = 60_000 // ms

// pairSlots is how many token pairs a grant holds at once
// (store.PairsPerGrant). Spelt as a literal in luaPrelude, luaGetToken and
// luaAuthenticate, like gcMargin.
const pairSlots = store.PairsPerGrant

// ringSize is how many rotated-out refresh tokens a grant remembers
// (reuse.go, store.RotatedRemembered). Spelt as a literal in luaPrelude,
// like gcMargin.
const ringSize = store.RotatedRemembered

// ringDigest is how many hex digits of a digest the ring and the replay
// markers keep: 32, 128 bits of SHA-256 (ringForm).
const ringDigest = 32

// Script results that are not data.
const (
	resNotFound = 0
	resOK       = 1
	resMismatch = -1 // SaveGrant: other client/subject
)

// luaPrelude holds the helpers every script shares. Scripts are plain EVAL
// bodies rather than Redis 7 FUNCTIONs, and use no command newer than 6.0,
// so that the Redis 6 of older distribution packages works too.
const luaPrelude = `
local MARGIN = 60000 -- gcMargin
local RING = 4 -- ringSize
local function gc(key, exp, now)
  redis.call('PEXPIRE', key, exp - now + MARGIN)
end
-- live returns the grant's expiry and nonce, or nil when it is absent or
-- logically expired.
local function live(gkey, now)
  local g = redis.call('HMGET', gkey, 'exp', 'n')
  local exp = tonumber(g[1])
  if not exp or exp <= now then return nil end
  return exp, g[2]
end
-- extend makes the grant live at least until exp.
local function extend(gkey, gexp, exp, now)
  if exp > gexp then
    redis.call('HSET', gkey, 'exp', exp)
    gexp = exp
  end
  gc(gkey, gexp, now)
end
-- inval tells every gateway that the pairs of the grant whose hash is
-- gkey changed (watch.go): PUBLISH <key prefix>inval <kind><grant id>,
-- kind 'r' when the grant is revoked, else 'c'. pcall: an ACL user
-- without the channel must not fail the write; its gateways cannot hear
-- their own heartbeats either, so none vouches for anything and all ask
-- Redis.
local function inval(gkey, kind)
  local p, id = string.match(gkey, '^([^{]*){(.*)}:grant$')
  redis.pcall('PUBLISH', p .. 'inval', kind .. id)
end
-- revoke deletes the grant, with its pair and rotation ring, and its
-- counter. Pending codes are left to their TTL: the nonce makes them dead.
local function revoke(gkey, ckey)
  redis.call('DEL', gkey, ckey)
  inval(gkey, 'r')
end
local PAIRS = 4 -- pairSlots
-- sfx is pair slot k's field suffix: slot 0 has none, so a grant with one
-- pair spends no byte on it.
local function sfx(k)
  if k == 0 then return '' end
  return tostring(k)
end
-- slotof returns the slot whose field f ('a' or 'r') is digest d, or nil.
local function slotof(gkey, f, d)
  if d == '' then return nil end
  local names = {}
  for k = 0, PAIRS - 1 do names[k + 1] = f .. sfx(k) end
  local v = redis.call('HMGET', gkey, unpack(names))
  for k = 0, PAIRS - 1 do
    if v[k + 1] == d then return k end
  end
  return nil
end
-- freeslot returns the slot a new pair goes to: an empty one or one whose
-- pair has expired, else the one whose pair would expire first.
local function freeslot(gkey, now)
  local best, bestexp
  for k = 0, PAIRS - 1 do
    local s = sfx(k)
    local v = redis.call('HMGET', gkey, 'a' .. s, 'ax' .. s, 'rx' .. s)
    if not v[1] then return k end
    local e = math.max(tonumber(v[2]) or 0, tonumber(v[3]) or 0)
    if e <= now then return k end
    if not best or e < bestexp then best, bestexp = k, e end
  end
  return best
end
-- putpair makes a[i..i+7] (access digest, expiry, scopes, limit count,
-- limit window, refresh digest, expiry, scopes) the pair in slot k and
-- returns the later of the two expiries.
local function putpair(gkey, k, a, i)
  local s = sfx(k)
  if redis.call('HEXISTS', gkey, 'a' .. s) == 1 then
    inval(gkey, 'c') -- the pair in slot k dies
  end
  redis.call('HSET', gkey, 'a' .. s, a[i], 'ax' .. s, a[i + 1], 'as' .. s, a[i + 2])
  if tonumber(a[i + 3]) > 0 then
    redis.call('HSET', gkey, 'lc' .. s, a[i + 3], 'lw' .. s, a[i + 4])
  else
    redis.call('HDEL', gkey, 'lc' .. s, 'lw' .. s)
  end
  local exp = tonumber(a[i + 1])
  if a[i + 5] ~= '' then
    redis.call('HSET', gkey, 'r' .. s, a[i + 5], 'rx' .. s, a[i + 6])
    -- A refresh token's scopes are almost always its access token's:
    -- then they are not stored twice.
    if a[i + 7] ~= a[i + 2] then
      redis.call('HSET', gkey, 'rs' .. s, a[i + 7])
    else
      redis.call('HDEL', gkey, 'rs' .. s)
    end
    local rexp = tonumber(a[i + 6])
    if rexp > exp then exp = rexp end
  else
    redis.call('HDEL', gkey, 'r' .. s, 'rx' .. s, 'rs' .. s)
  end
  return exp
end
`

// scripts are created per Store rather than as package variables: a
// *redis.Script caches its SHA and is therefore state.
type scripts struct {
	saveGrant, revokeGrant                 *redis.Script
	saveCode, consumeCode, issueTokens     *redis.Script
	getToken, rotate, authenticate, refund *redis.Script
	takeBlob, countFailure                 *redis.Script
	claimEvents, ackEvent, retryEvent      *redis.Script
	checkReuse, unindex                    *redis.Script
}

func newScripts() scripts {
	s := func(body string) *redis.Script { return redis.NewScript(luaPrelude + body) }
	return scripts{
		saveGrant:    s(luaSaveGrant),
		revokeGrant:  s(luaRevokeGrant),
		saveCode:     s(luaSaveCode),
		consumeCode:  s(luaConsumeCode),
		issueTokens:  s(luaIssueTokens),
		getToken:     redis.NewScript(luaGetToken),
		rotate:       s(luaRotate),
		authenticate: redis.NewScript(luaAuthenticate), // no prelude: see luaAuthenticate
		refund:       redis.NewScript(luaRefund),
		takeBlob:     redis.NewScript(luaTakeBlob),
		countFailure: redis.NewScript(luaCountFailure),
		claimEvents:  redis.NewScript(luaClaimEvents),
		ackEvent:     redis.NewScript(luaAckEvent),
		retryEvent:   redis.NewScript(luaRetryEvent),
		checkReuse:   s(luaCheckReuse),
		unindex:      redis.NewScript(luaUnindex),
	}
}

// luaSaveGrant creates the grant or merges scopes and profile into the live
// one, and returns the grant's nonce for the subject's index (or -1). cjson
// encodes an empty table as "{}", hence the explicit "[]".
//
// KEYS: grant. ARGV: now, exp, nonce, id (unused: it is in the key),
// client, subject, scopes JSON, profile JSON, created, used.
const luaSaveGrant = `
local grant_key = KEYS[1]
local now, exp, nonce = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] -- ARGV[4], the id, is in the key
local client, subject, scopes, profile = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local created, used = ARGV[9], ARGV[10]
local g = redis.call('HMGET', grant_key, 'exp', 'cid', 'sub', 'scp', 'prof', 'n')
local gexp = tonumber(g[1])
if gexp and gexp > now then
  if g[2] ~= client or g[3] ~= subject then return -1 end
  local out, seen = {}, {}
  for _, list in ipairs({cjson.decode(g[4] or '[]'), cjson.decode(scopes)}) do
    for _, s in ipairs(list) do
      if not seen[s] then seen[s] = true; out[#out + 1] = s end
    end
  end
  local scp = '[]'
  if #out > 0 then scp = cjson.encode(out) end
  local prof = cjson.decode(g[5] or '{}')
  local n = 0
  for k, v in pairs(cjson.decode(profile)) do prof[k] = v end
  for _ in pairs(prof) do n = n + 1 end
  if n > 0 then
    redis.call('HSET', grant_key, 'scp', scp, 'prof', cjson.encode(prof))
  else
    redis.call('HSET', grant_key, 'scp', scp)
  end
  extend(grant_key, gexp, exp, now)
  return g[6] or ''
end
if gexp then inval(grant_key, 'r') end
redis.call('DEL', grant_key)
redis.call('HSET', grant_key, 'cid', client, 'sub', subject,
  'scp', scopes, 'c', created, 'u', used, 'exp', exp, 'n', nonce)
if profile ~= '{}' then redis.call('HSET', grant_key, 'prof', profile) end
gc(grant_key, exp, now)
return nonce
`

// luaGrantFields is the HMGET a revoking script replies with (see
// revoked): grantFields and the nonce. TestScriptConstants keeps the two in
// step.
const luaGrantFields = `'cid', 'sub', 'scp', 'prof', 'c', 'u', 'exp', 'n'`

// luaRevokeGrant returns {grant fields and nonce, {}} or 0.
//
// KEYS: grant, counter. ARGV: now.
const luaRevokeGrant = `
local grant_key, counter_key = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local g = redis.call('HMGET', grant_key, ` + luaGrantFields + `)
local gexp = tonumber(g[7])
if not gexp or gexp <= now then return 0 end
revoke(grant_key, counter_key)
return {g, {}}
`

// KEYS: grant, code. ARGV: now, exp, record.
const luaSaveCode = `
local grant_key, code_key = KEYS[1], KEYS[2]
local now, exp, record = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local gexp, nonce = live(grant_key, now)
if not gexp then return 0 end
redis.call('DEL', code_key)
redis.call('HSET', code_key, 'exp', exp, 'n', nonce, 'rec', record)
gc(code_key, exp, now)
extend(grant_key, gexp, exp, now)
return 1
`

// luaConsumeCode returns the code record, 0 (not found) or
// {"replayed", 1 when this replay revoked the grant, else 0}.
//
// KEYS: grant, code, marker, counter. ARGV: now, marker expiry.
const luaConsumeCode = `
local grant_key, code_key, marker_key, counter_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, marker_exp = tonumber(ARGV[1]), ARGV[2]
local mk = redis.call('GET', marker_key)
if mk and tonumber(string.sub(mk, 2)) > now then
  local revoked = 0
  if string.sub(mk, 1, 1) == 'i' then revoke(grant_key, counter_key); revoked = 1 end
  redis.call('SET', marker_key, 'r' .. string.sub(mk, 2), 'KEEPTTL')
  return {'replayed', revoked}
end
local c = redis.call('HMGET', code_key, 'exp', 'n', 'rec')
if not c[1] then return 0 end
redis.call('DEL', code_key)
if tonumber(c[1]) <= now then return 0 end
local gexp, nonce = live(grant_key, now)
if not gexp or nonce ~= c[2] then return 0 end
redis.call('SET', marker_key, 'c' .. marker_exp, 'PX', tonumber(marker_exp) - now + MARGIN)
return c[3]
`

// luaIssueTokens returns 1, 0 (not found) or {"replayed", {}}. The pair
// goes into a free slot, or replaces the pair that would expire first when
// the grant already holds pairSlots live ones.
//
// KEYS: grant, marker, counter. ARGV: now, then the pair as putpair takes
// it.
const luaIssueTokens = `
local grant_key, marker_key, counter_key = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local pair_at = 2 -- ARGV[2] to ARGV[9]: the pair, as putpair takes it
local mk = redis.call('GET', marker_key)
if not mk or tonumber(string.sub(mk, 2)) <= now then return 0 end
if string.sub(mk, 1, 1) ~= 'c' then
  revoke(grant_key, counter_key)
  redis.call('SET', marker_key, 'r' .. string.sub(mk, 2), 'KEEPTTL')
  return {'replayed', {}}
end
local gexp = live(grant_key, now)
if not gexp then return 0 end
extend(grant_key, gexp, putpair(grant_key, freeslot(grant_key, now), ARGV, pair_at), now)
redis.call('SET', marker_key, 'i' .. string.sub(mk, 2), 'KEEPTTL')
return 1
`

// luaGetToken returns the token's reply record (record.go) or 0. With
// any_age 1 it returns a token of a live grant's pair past its own expiry
// too (RevocableToken).
//
// KEYS: grant. ARGV: now, kind (at|rt), digest, any_age (0|1).
const luaGetToken = `
local grant_key = KEYS[1]
local now, kind, digest, any_age = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local f = 'a'
if kind == 'rt' then f = 'r' end
local g = redis.call('HMGET', grant_key, 'exp', 'cid', 'sub', f, f .. '1', f .. '2', f .. '3') -- pairSlots
local gexp = tonumber(g[1])
if not gexp or gexp <= now or digest == '' then return 0 end
local s
for k = 0, 3 do
  if g[k + 4] == digest then s = k; break end
end
if not s then return 0 end
if s == 0 then s = '' else s = tostring(s) end
local t = redis.call('HMGET', grant_key, 'a' .. s, 'ax' .. s, 'as' .. s, 'lc' .. s, 'lw' .. s, 'r' .. s, 'rx' .. s, 'rs' .. s)
local x, sc, pair, lc, lw = t[2], t[3], t[6] or '', t[4] or '0', t[5] or '0'
if f == 'r' then x, sc, pair, lc, lw = t[7], t[8] or t[3], t[1] or '', '0', '0' end
if tonumber(x) <= now and any_age ~= '1' then return 0 end
local cid, sub = g[2], g[3]
if #cid < 256 and #sub < 256 and #pair < 256 and #x < 256 and #lc < 256 and #lw < 256 then
  return 't3;' .. string.char(#cid, #sub, #pair, #x, #lc, #lw) .. cid .. sub .. pair .. x .. lc .. lw .. (sc or '')
end
return 't2;' .. #cid .. ':' .. cid .. #sub .. ':' .. sub .. #pair .. ':' .. pair ..
  #x .. ':' .. x .. #lc .. ':' .. lc .. #lw .. ':' .. lw .. (sc or '')
`

// luaRotate returns 1 or 0 (not found): the old refresh token is not the
// grant's current one, has expired, or the grant is gone. Of two
// concurrent rotations the one that finds the token wins; the other's
// token is then in the ring. The old refresh token goes into the ring
// (reuse.go), replacing the oldest entry, and the new pair replaces the
// current one, all in the one hash.
//
// KEYS: grant. ARGV: now, old refresh digest, its ring form (ringForm),
// then the new pair as putpair takes it.
const luaRotate = `
local grant_key = KEYS[1]
local now, old_refresh, old_ring_form = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local pair_at = 4 -- ARGV[4] to ARGV[11]: the new pair, as putpair takes it
local gexp = live(grant_key, now)
if not gexp then return 0 end
local k = slotof(grant_key, 'r', old_refresh)
if not k then return 0 end
local g = redis.call('HMGET', grant_key, 'rx' .. sfx(k), 'oi')
if tonumber(g[1]) <= now then return 0 end
local i = tonumber(g[2]) or 0
redis.call('HSET', grant_key, 'o' .. i, old_ring_form .. struct.pack('>i6i6', now, tonumber(g[1])),
  'oi', (i + 1) % RING)
extend(grant_key, gexp, putpair(grant_key, k, ARGV, pair_at), now)
return 1
`

// luaAuthenticate is the authoritative token check (authenticate.go runs
// it on a token's first use by this gateway, and whenever the cheaper
// check of a remembered token cannot decide): 0 when the token or its
// grant is not live, else {record, count, allowed, window end, slot,
// grant nonce};
// count is -1 when nothing was counted (no budget). The budget is ARGV's,
// or the token's own when ARGV's count is 0. It only counts while under
// the limit, so a client hammering an exhausted budget does not push the
// count (and a later Refund) past the limit.
//
// The counter is a sorted set per grant whose members are named by the
// budget's window and window index: "c<window ms>:<index>" holds the count
// and "r<window ms>:<index>" the refunds of that window. Naming the window
// in the member lets the remembered-token check count with one ZADD XX
// INCR, which cannot create a member (or the key): only this script, which
// has checked the token, opens a window's count, and clears the members
// of windows that have ended when it does.
//
// The token, its grant and its budget are one HMGET of one hash. The
// record's short fields are prefixed by their lengths as bytes (record.go,
// t3): formatting six numbers as decimals cost Redis about 0.8µs a call, as
// much as the HMGET. It runs without luaPrelude, spelling out gc()
// instead: defining the prelude's closures on every call costs Redis ~4% of
// this script's CPU.
const luaAuthenticate = `
local grant_key, counter_key = KEYS[1], KEYS[2]
local now, limit, window, digest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local g = redis.call('HMGET', grant_key, 'a', 'ax', 'exp', 'u', 'lc', 'lw', 'cid', 'sub', 'r', 'as', 'n')
local x, lc, lw, pair, sc = g[2], g[5], g[6], g[9], g[10]
local s = ''
if g[1] ~= digest then
  -- Not slot 0's: look in the others only now, as a field the listpack
  -- lacks costs a scan of all of it.
  local o = redis.call('HMGET', grant_key, 'a1', 'a2', 'a3') -- pairSlots
  s = nil
  for k = 1, 3 do
    if o[k] == digest then s = tostring(k); break end
  end
  if not s then return 0 end
  local t = redis.call('HMGET', grant_key, 'ax' .. s, 'lc' .. s, 'lw' .. s, 'r' .. s, 'as' .. s)
  x, lc, lw, pair, sc = t[1], t[2], t[3], t[4], t[5]
end
local texp, gexp = tonumber(x), tonumber(g[3])
if not texp or texp <= now or not gexp or gexp <= now then return 0 end
if now - (tonumber(g[4]) or 0) >= 60000 then -- store.LastUsedGranularity
  redis.call('HSET', grant_key, 'u', now)
end
lc, lw, pair = lc or '0', lw or '0', pair or ''
local cid, sub, rec = g[7], g[8]
if #cid < 256 and #sub < 256 and #pair < 256 and #x < 256 and #lc < 256 and #lw < 256 then
  rec = 't3;' .. string.char(#cid, #sub, #pair, #x, #lc, #lw) .. cid .. sub .. pair .. x .. lc .. lw .. (sc or '')
else
  rec = 't2;' .. #cid .. ':' .. cid .. #sub .. ':' .. sub .. #pair .. ':' .. pair ..
    #x .. ':' .. x .. #lc .. ':' .. lc .. #lw .. ':' .. lw .. (sc or '')
end
if limit <= 0 then limit, window = tonumber(lc), tonumber(lw) end
if limit <= 0 or window <= 0 then return {rec, -1, 1, 0, s, g[11]} end
local idx = math.floor(now / window)
local reset = (idx + 1) * window
local member = string.format('%d:%d', window, idx) -- counterMember
local n = tonumber(redis.call('ZSCORE', counter_key, 'c' .. member))
if n == nil then
  -- The window's first call: drop the members of windows that ended.
  for _, m in ipairs(redis.call('ZRANGE', counter_key, 0, -1)) do
    local w, i = string.match(m, '^[cr](%d+):(-?%d+)$')
    if not w or math.floor(now / tonumber(w)) ~= tonumber(i) then
      redis.call('ZREM', counter_key, m)
    end
  end
  redis.call('ZADD', counter_key, 1, 'c' .. member)
  local ttl = reset - now + 60000 -- gc(), gcMargin
  if redis.call('PTTL', counter_key) < ttl then
    redis.call('PEXPIRE', counter_key, ttl)
  end
  return {rec, 1, 1, reset, s, g[11]}
end
if n >= limit then return {rec, n, 0, reset, s, g[11]} end
n = tonumber(redis.call('ZINCRBY', counter_key, 1, 'c' .. member))
return {rec, n, 1, reset, s, g[11]}
`

// luaRefund takes one request back from the count of the window the
// caller means, if it is above 0 and fewer than the budget's count of
// refunds were given in that window; it returns 1 when it did. The refunds
// are the window's "r" member of the counter (luaAuthenticate), so they
// end with the window.
//
// KEYS: counter. ARGV: counterMember of the window, budget count (the
// refund cap).
const luaRefund = `
local counter_key = KEYS[1]
local member, cap = ARGV[1], tonumber(ARGV[2])
local n = tonumber(redis.call('ZSCORE', counter_key, 'c' .. member))
if not n or n <= 0 then return 0 end
local r = tonumber(redis.call('ZSCORE', counter_key, 'r' .. member)) or 0
if r >= cap then return 0 end
redis.call('ZINCRBY', counter_key, -1, 'c' .. member)
redis.call('ZADD', counter_key, r + 1, 'r' .. member)
return 1
`

// KEYS: blob. GETDEL would do, but needs Redis 6.2.
const luaTakeBlob = `
local blob_key = KEYS[1]
local v = redis.call('GET', blob_key)
if v then redis.call('DEL', blob_key) end
return v
`

// luaCountFailure counts one failure and returns the window's count. The
// TTL is set on every call, not only the first: it names the same instant
// (the window's end plus gcMargin) each time, and a counter can never be
// left without one.
//
// KEYS: failure counter. ARGV: TTL ms.
const luaCountFailure = `
local counter_key = KEYS[1]
local ttl = ARGV[1]
local n = redis.call('INCR', counter_key)
redis.call('PEXPIRE', counter_key, ttl)
return n
`
