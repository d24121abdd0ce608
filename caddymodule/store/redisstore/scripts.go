package redisstore

import "github.com/redis/go-redis/v9"

// Record layout, shared by every script (all times are Unix milliseconds of
// the store's injected clock, never Redis's own clock):
//
//	grant  hash: id cid sub scp(JSON array) prof(JSON object) created used exp n
//	token  hash: exp n pair lc lw rec(store.Token, see record.go);
//	             lc, lw: an access token's budget (count, window ms)
//	code   hash: exp n rec(JSON store.Code)
//	marker hash: s(consumed|replayed|issued) exp
//	rl     hash: i(window index) n(requests counted in that window)
//	rotated hash: at(when the refresh token was rotated out) exp(when it
//	             would have expired) n; see reuse.go
//	tokens zset: member = key of a code, token, rotated mark or counter of
//	             the grant, score = when that key stops mattering
//
// One key is not a grant's: a subject's index of grants, tg:u:{<hex
// SHA-256 of the subject>}:grants, a hash of grant id -> nonce (index.go).
// Nor are blobs (tg:b:<key>, blob.go) or failure counters,
// tg:f:{<key>}:<window ms>:<window index>, an integer (failure.go).
//
// "n" is the grant's incarnation nonce, drawn when the grant is created and
// copied into every code and token written for it. A revocation deletes only
// the grant and its index inside the script (see revoke below); the nonce is
// what makes the grant's remaining keys dead at that same instant, even if
// the follow-up cleanup is lost and a grant with the same id is created later.
//
// Redis key TTLs are set to the record's logical life plus gcMargin so that
// Redis collects the garbage but never drops a record the clock still
// considers live.

// gcMargin is how long a key outlives its logical expiry. The Lua prelude
// spells it out as a literal; TestScriptConstants keeps the two in step.
const gcMargin = 60_000 // ms

// lastUsedGranularity is how stale a grant's last_used may get before
// Authenticate rewrites it. last_used is shown to users as "last used 5
// minutes ago", so minute precision is all it needs. Rewriting it on every
// call would add a write to the grant hash (propagated to replicas and the
// AOF) to every API call, and would make Authenticate a write even for
// unlimited clients, whose calls otherwise only read. Spelt as a literal in
// luaAuthenticate, like gcMargin.
const lastUsedGranularity = 60_000 // ms

// markerLife is how long a consumed code's replay marker is kept. Codes live
// minutes; a day comfortably covers a client that retries a stale code.
const markerLife = 24 * 60 * 60 * 1000 // ms

// Script results that are not data.
const (
	resNotFound = 0
	resOK       = 1
	resMismatch = -1 // SaveGrant: other client/subject; Rotate: pair changed
)

// luaPrelude holds the helpers every script shares. Scripts are plain EVAL
// bodies rather than Redis 7 FUNCTIONs, and use no command newer than 6.0,
// so that the Redis 6 of older distribution packages works too.
const luaPrelude = `
local MARGIN = 60000 -- gcMargin
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
-- extend makes the grant (and its index) live at least until exp.
local function extend(gkey, ikey, gexp, exp, now)
  if exp > gexp then
    redis.call('HSET', gkey, 'exp', exp)
    gexp = exp
  end
  gc(gkey, gexp, now)
  gc(ikey, gexp, now)
end
-- prune forgets index members that are past their life, so the index of a
-- long-lived grant does not grow with every access token it ever had.
local function prune(ikey, now)
  redis.call('ZREMRANGEBYSCORE', ikey, '-inf', now)
end
-- revoke deletes the grant and its index and returns the index members for
-- the caller to delete next. The members are not deleted here because their
-- names are not in KEYS; the nonce already makes them unusable.
local function revoke(gkey, ikey)
  local m = redis.call('ZRANGE', ikey, 0, -1)
  redis.call('DEL', gkey, ikey)
  return m
end
local function puttoken(key, ikey, exp, nonce, pair, rec, now, lc, lw)
  redis.call('DEL', key)
  redis.call('HSET', key, 'exp', exp, 'n', nonce, 'pair', pair, 'rec', rec, 'lc', lc, 'lw', lw)
  gc(key, exp, now)
  redis.call('ZADD', ikey, exp, key)
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
		getToken:     s(luaGetToken),
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
// KEYS: grant, tokens. ARGV: now, exp, nonce, id, client, subject,
// scopes JSON, profile JSON, created, used.
const luaSaveGrant = `
local now, exp = tonumber(ARGV[1]), tonumber(ARGV[2])
local g = redis.call('HMGET', KEYS[1], 'exp', 'cid', 'sub', 'scp', 'prof', 'n')
local gexp = tonumber(g[1])
if gexp and gexp > now then
  if g[2] ~= ARGV[5] or g[3] ~= ARGV[6] then return -1 end
  local out, seen = {}, {}
  for _, list in ipairs({cjson.decode(g[4] or '[]'), cjson.decode(ARGV[7])}) do
    for _, s in ipairs(list) do
      if not seen[s] then seen[s] = true; out[#out + 1] = s end
    end
  end
  local scp = '[]'
  if #out > 0 then scp = cjson.encode(out) end
  local prof = cjson.decode(g[5] or '{}')
  local n = 0
  for k, v in pairs(cjson.decode(ARGV[8])) do prof[k] = v end
  for _ in pairs(prof) do n = n + 1 end
  if n > 0 then
    redis.call('HSET', KEYS[1], 'scp', scp, 'prof', cjson.encode(prof))
  else
    redis.call('HSET', KEYS[1], 'scp', scp)
  end
  extend(KEYS[1], KEYS[2], gexp, exp, now)
  return g[6] or ''
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[4], 'cid', ARGV[5], 'sub', ARGV[6],
  'scp', ARGV[7], 'created', ARGV[9], 'used', ARGV[10], 'exp', exp, 'n', ARGV[3])
if ARGV[8] ~= '{}' then redis.call('HSET', KEYS[1], 'prof', ARGV[8]) end
gc(KEYS[1], exp, now)
gc(KEYS[2], exp, now)
return ARGV[3]
`

// luaRevokeGrant returns {grant fields and nonce, index members} or 0.
//
// KEYS: grant, tokens. ARGV: now.
const luaRevokeGrant = `
local now = tonumber(ARGV[1])
local g = redis.call('HMGET', KEYS[1], 'id', 'cid', 'sub', 'scp', 'prof', 'created', 'used', 'exp', 'n')
local gexp = tonumber(g[8])
if not gexp or gexp <= now then return 0 end
return {g, revoke(KEYS[1], KEYS[2])}
`

// KEYS: grant, code, tokens. ARGV: now, exp, record.
const luaSaveCode = `
local now, exp = tonumber(ARGV[1]), tonumber(ARGV[2])
local gexp, nonce = live(KEYS[1], now)
if not gexp then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'exp', exp, 'n', nonce, 'rec', ARGV[3])
gc(KEYS[2], exp, now)
redis.call('ZADD', KEYS[3], exp, KEYS[2])
prune(KEYS[3], now)
extend(KEYS[1], KEYS[3], gexp, exp, now)
return 1
`

// luaConsumeCode returns the code record, 0 (not found) or
// {"replayed", members to delete}.
//
// KEYS: grant, code, marker, tokens. ARGV: now, marker expiry.
const luaConsumeCode = `
local now = tonumber(ARGV[1])
local mk = redis.call('HMGET', KEYS[3], 's', 'exp')
if mk[1] and tonumber(mk[2]) > now then
  local gone = {}
  if mk[1] == 'issued' then gone = revoke(KEYS[1], KEYS[4]) end
  redis.call('HSET', KEYS[3], 's', 'replayed')
  return {'replayed', gone}
end
local c = redis.call('HMGET', KEYS[2], 'exp', 'n', 'rec')
if not c[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], KEYS[2])
if tonumber(c[1]) <= now then return 0 end
local gexp, nonce = live(KEYS[1], now)
if not gexp or nonce ~= c[2] then return 0 end
local mexp = tonumber(ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 's', 'consumed', 'exp', mexp)
gc(KEYS[3], mexp, now)
return c[3]
`

// luaIssueTokens returns 1, 0 (not found) or {"replayed", members}.
// An empty refresh expiry means the pair has no refresh token.
//
// KEYS: grant, marker, tokens, access, refresh.
// ARGV: now, access exp, access record, refresh exp, refresh record,
// access digest, refresh digest, access limit count, access limit window.
const luaIssueTokens = `
local now = tonumber(ARGV[1])
local mk = redis.call('HMGET', KEYS[2], 's', 'exp')
if not mk[1] or tonumber(mk[2]) <= now then return 0 end
if mk[1] ~= 'consumed' then
  local gone = revoke(KEYS[1], KEYS[3])
  redis.call('HSET', KEYS[2], 's', 'replayed')
  return {'replayed', gone}
end
local gexp, nonce = live(KEYS[1], now)
if not gexp then return 0 end
local exp = tonumber(ARGV[2])
puttoken(KEYS[4], KEYS[3], exp, nonce, ARGV[7], ARGV[3], now, ARGV[8], ARGV[9])
if ARGV[4] ~= '' then
  local rexp = tonumber(ARGV[4])
  puttoken(KEYS[5], KEYS[3], rexp, nonce, ARGV[6], ARGV[5], now, 0, 0)
  if rexp > exp then exp = rexp end
end
prune(KEYS[3], now)
extend(KEYS[1], KEYS[3], gexp, exp, now)
redis.call('HSET', KEYS[2], 's', 'issued')
return 1
`

// KEYS: token, grant. ARGV: now.
const luaGetToken = `
local now = tonumber(ARGV[1])
local t = redis.call('HMGET', KEYS[1], 'exp', 'n', 'rec')
local texp = tonumber(t[1])
if not texp or texp <= now then return 0 end
local gexp, nonce = live(KEYS[2], now)
if not gexp or nonce ~= t[2] then return 0 end
return t[3]
`

// luaRotate returns 1, 0 (not found) or -1 when the old refresh token's
// pair is not the access token the caller named in KEYS (it read the pair
// beforehand, because a key a script touches must be declared). It leaves
// the old refresh token's rotated mark behind (reuse.go), until the token
// would have expired.
//
// KEYS: grant, tokens, old refresh, old access, new access, new refresh,
// old refresh's rotated mark.
// ARGV: now, old pair digest, access exp, access record, refresh exp,
// refresh record, access digest, refresh digest, access limit count, access
// limit window.
const luaRotate = `
local now = tonumber(ARGV[1])
local r = redis.call('HMGET', KEYS[3], 'exp', 'n', 'pair')
local rexp = tonumber(r[1])
if not rexp or rexp <= now then return 0 end
local gexp, nonce = live(KEYS[1], now)
if not gexp or nonce ~= r[2] then return 0 end
if (r[3] or '') ~= ARGV[2] then return -1 end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[2], KEYS[3], KEYS[4])
redis.call('DEL', KEYS[7])
redis.call('HSET', KEYS[7], 'at', now, 'exp', rexp, 'n', nonce)
gc(KEYS[7], rexp, now)
redis.call('ZADD', KEYS[2], rexp, KEYS[7])
local exp = tonumber(ARGV[3])
puttoken(KEYS[5], KEYS[2], exp, nonce, ARGV[8], ARGV[4], now, ARGV[9], ARGV[10])
if ARGV[5] ~= '' then
  local nexp = tonumber(ARGV[5])
  puttoken(KEYS[6], KEYS[2], nexp, nonce, ARGV[7], ARGV[6], now, 0, 0)
  if nexp > exp then exp = nexp end
end
prune(KEYS[2], now)
extend(KEYS[1], KEYS[2], gexp, exp, now)
return 1
`

// luaAuthenticate is the hot path: 0 when the token or its grant is not
// live, else {record, count, allowed, window end}; count is -1 when nothing
// was counted (no budget). The budget is ARGV's, or the token's own when
// ARGV's count is 0: only the token record names the client, and so the
// budget. As the window then is only known here, the counter is one key per
// grant holding the window index, rather than a key per window (whose name
// the script would have to make up, undeclared). It is only incremented
// while under the limit, so a client hammering an exhausted budget does not
// push the count (and a later Refund) past the limit.
//
// It runs without luaPrelude, spelling out gc() instead: defining the
// prelude's closures on every call costs Redis ~4% of this script's CPU.
//
// KEYS: access, grant, counter, tokens. ARGV: now, limit count, window ms.
const luaAuthenticate = `
local now = tonumber(ARGV[1])
local t = redis.call('HMGET', KEYS[1], 'exp', 'n', 'rec', 'lc', 'lw')
local texp = tonumber(t[1])
if not texp or texp <= now then return 0 end
local g = redis.call('HMGET', KEYS[2], 'exp', 'n', 'used')
local gexp = tonumber(g[1])
if not gexp or gexp <= now or g[2] ~= t[2] then return 0 end
if now - (tonumber(g[3]) or 0) >= 60000 then -- lastUsedGranularity
  redis.call('HSET', KEYS[2], 'used', now)
end
local limit, w = tonumber(ARGV[2]), tonumber(ARGV[3])
if limit <= 0 then limit, w = tonumber(t[4]) or 0, tonumber(t[5]) or 0 end
if limit <= 0 or w <= 0 then return {t[3], -1, 1, 0} end
local idx = math.floor(now / w)
local reset = (idx + 1) * w
local c = redis.call('HMGET', KEYS[3], 'i', 'n')
local n = 0
if tonumber(c[1]) == idx then n = tonumber(c[2]) or 0 end
if n >= limit then return {t[3], n, 0, reset} end
if n == 0 then
  redis.call('HSET', KEYS[3], 'i', idx, 'n', 1)
  redis.call('PEXPIRE', KEYS[3], reset - now + 60000) -- gc(), gcMargin
  redis.call('ZADD', KEYS[4], reset, KEYS[3])
  redis.call('PEXPIRE', KEYS[4], gexp - now + 60000) -- gc(), gcMargin
  n = 1
else
  n = redis.call('HINCRBY', KEYS[3], 'n', 1)
end
return {t[3], n, 1, reset}
`

// luaRefund takes one request back from the counter, if it still counts
// the window the caller means, is above 0, and fewer than the budget's
// count of refunds were given in that window; it returns 1 when it did.
// The refunds are counted in the counter's own hash (fields ri, the window
// index they belong to, and r), so they share its key, its hash tag and
// its expiry, and the hot-path script need not know of them: a new window
// leaves a stale ri, which reads as no refunds yet.
//
// KEYS: counter. ARGV: window index, budget count (the refund cap).
const luaRefund = `
local c = redis.call('HMGET', KEYS[1], 'i', 'n', 'ri', 'r')
local idx = tonumber(ARGV[1])
if tonumber(c[1]) ~= idx or (tonumber(c[2]) or 0) <= 0 then return 0 end
local r = 0
if tonumber(c[3]) == idx then r = tonumber(c[4]) or 0 end
if r >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'n', -1)
redis.call('HSET', KEYS[1], 'ri', idx, 'r', r + 1)
return 1
`

// KEYS: blob. GETDEL would do, but needs Redis 6.2.
const luaTakeBlob = `
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
`

// luaCountFailure counts one failure and returns the window's count. The
// TTL is set on every call, not only the first: it names the same instant
// (the window's end plus gcMargin) each time, and a counter can never be
// left without one.
//
// KEYS: failure counter. ARGV: TTL ms.
const luaCountFailure = `
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
`
