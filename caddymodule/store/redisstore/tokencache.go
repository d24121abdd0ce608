package redisstore

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Remembered tokens (docs/architecture.md, "The API hot path").
//
// What luaAuthenticate reads about an access token besides its liveness
// (client, subject, scopes, expiry, budget, pair slot) never changes while
// the token lives: a pair is written whole and replaced whole. So once
// the script has vouched for a token, the gateway keeps that record in
// process. Later calls need Redis only when the gateway cannot vouch for
// the grant's liveness itself (watch.go) or holds none of its budget
// (lease.go); that check is one HMGET of the token's slot and, to take
// budget, one ZADD XX INCR (checkRemembered).
//
// Only tokens the script accepted are remembered, so a caller cannot make
// the cache grow with forged tokens; it is also bounded (tokenCacheMax),
// and entries go when their token expires or is found dead.

// tokenCacheMax bounds the remembered tokens per store: about 300 bytes
// each, so at most ~20 MB, for more live tokens per gateway than one
// instance serves in a token lifetime in practice. Past it, an arbitrary
// entry makes room: a forgotten token only costs one script call.
const tokenCacheMax = 1 << 16

// recheckEvery is how often (ms) the script, rather than the cheaper
// check, runs for a remembered token, so that its grant's last_used (which
// only the script writes) stays within store.LastUsedGranularity plus this
// of the truth.
const recheckEvery = int64(store.LastUsedGranularity/time.Millisecond) / 2

// remembered is one token the script accepted. Only zadd and vouch are
// ever modified (atomically), so readers need no lock; Token's slices and
// the argument slices are shared and read-only.
type remembered struct {
	tok     store.Token
	grant   string
	checked int64                 // when the script last vouched for it (ms)
	vouch   atomic.Pointer[vouch] // when Redis last found it live (watch.go); nil once found dead
	// The check's commands' arguments, built once: HMGET of the grant
	// hash's field of the token's slot (a, a1, a2 or a3), exp and n; and
	// ZADD XX INCR of the current window's member (zaddArgs, rebuilt once
	// per window).
	hmgetArgs []any
	counter   string
	zadd      atomic.Pointer[zaddArgs]
}

// zaddArgs is the count command of one budget window.
type zaddArgs struct {
	w, idx int64
	args   []any // zadd <counter> xx incr 1 c<w>:<idx>
}

// remember makes the entry of a token the script found in slot s ("",
// "1", "2", "3") of the grant whose keys are keys; ok is false for a slot
// this code does not know.
func remember(t store.Token, grantID string, keys []string, slot string, now int64) (e *remembered, ok bool) {
	field, ok := slotField(slot)
	if !ok {
		return nil, false
	}
	return &remembered{
		tok:       t,
		grant:     grantID,
		checked:   now,
		hmgetArgs: []any{"hmget", keys[0], field, "exp", "n"},
		counter:   keys[1],
	}, true
}

// zaddArgs returns the arguments that count k calls in window idx of
// length w ms; those of k = 1 are built once per window.
func (e *remembered) zaddArgs(w, idx, k int64) []any {
	z := e.zadd.Load()
	if z == nil || z.w != w || z.idx != idx {
		z = &zaddArgs{w: w, idx: idx, args: []any{"zadd", e.counter, "xx", "incr", int64(1), counterMember("c", w, idx)}}
		e.zadd.Store(z)
	}
	if k == 1 {
		return z.args
	}
	a := append([]any(nil), z.args...)
	a[4] = k
	return a
}

// tokenCache is the remembered tokens of one Store. A nil *tokenCache
// remembers nothing (tests of the script path use one).
type tokenCache struct {
	max int // tokenCacheMax, smaller in tests
	mu  sync.RWMutex
	m   map[string]*remembered // by access token digest
}

func newTokenCache() *tokenCache {
	return &tokenCache{max: tokenCacheMax, m: make(map[string]*remembered)}
}

func (c *tokenCache) get(digest string) *remembered {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e := c.m[digest]
	c.mu.RUnlock()
	return e
}

func (c *tokenCache) put(digest string, e *remembered, now int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[digest]; !ok && len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[digest] = e
}

// evict makes room for one entry: it drops expired tokens among the first
// few it meets (Go's map order is random), else the first it met.
func (c *tokenCache) evict(now int64) {
	const look = 16
	var first string
	n, dropped := 0, false
	for d, e := range c.m {
		if n == 0 {
			first = d
		}
		if e.tok.ExpiresAt.UnixMilli() <= now {
			delete(c.m, d)
			dropped = true
		}
		if n++; n == look {
			break
		}
	}
	if !dropped {
		delete(c.m, first)
	}
}

// forget drops digest's entry if it is still e (a newer one is kept).
func (c *tokenCache) forget(digest string, e *remembered) {
	c.mu.Lock()
	if c.m[digest] == e {
		delete(c.m, digest)
	}
	c.mu.Unlock()
}

// slotField is the access digest field of the slot the script names ("",
// "1", "2", "3"), without allocating.
func slotField(s string) (string, bool) {
	switch s {
	case "":
		return "a", true
	case "1":
		return "a1", true
	case "2":
		return "a2", true
	case "3":
		return "a3", true
	}
	return "", false
}
