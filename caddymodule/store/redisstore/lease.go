package redisstore

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Budget leases (docs/architecture.md, "The API hot path").
//
// A grant's budget is one counter in Redis, shared by every instance. A
// gateway that sees a grant call often takes several requests of it at
// once (one ZADD XX INCR k) and lets calls through locally on the units
// it holds, so most calls cost no round trip. The count in Redis is never
// less than what was let through, so the budget can never be overspent,
// whatever the number of instances. What a lease may cost instead is
// budget taken and not used:
//
//   - A lease is sized for about leaseGrow of the grant's own traffic on
//     this gateway: it starts at 1 and doubles only while each lease is
//     used up within leaseGrow of the last (halving when one lasted
//     longer than leaseShrink), up to leaseMax, plus one unit for each
//     call that waited for it.
//   - It never takes more than 1/leaseShare of what the budget had left,
//     so the last requests of a budget are counted one by one, exactly as
//     without leases: a budget of a few hundred is never leased in bulk.
//   - A lease is taken once per grant at a time (fillOrWait), and to
//     completion even when the call that takes it gives up, so that no
//     unit is counted in Redis without being held here.
//   - Units not used leaseIdle after their lease was taken go back to
//     Redis (sweep), and those held when the budget's window ends simply
//     end with it. A lease belongs to one incarnation of the grant (its
//     nonce): a revoked grant's units are dropped, never given to the
//     grant re-created under the same id.
//   - A lease taken past the limit gives back what it could not have, so
//     the count rests at the limit, as the script's does, and the window
//     is then known spent for leaseSpent: calls meanwhile are refused
//     without a round trip, unless a refund comes first.
//
// X-RateLimit-Remaining is computed from what this gateway has seen: exact
// with one instance, and, with several, lower by what the others have
// used since this one last asked Redis.

const (
	leaseMax    = 512  // the most units one lease takes
	leaseGrow   = 20   // ms: a lease used up sooner than this doubles the next
	leaseShrink = 200  // ms: one that lasted longer than this halves the next
	leaseIdle   = 1000 // ms: units still held this long after the lease go back
	leaseShare  = 16   // a lease takes at most 1/leaseShare of what is left
	leaseSpent  = 100  // ms: how long a window found spent is refused locally
)

// lease is the units of one budget window that a gateway holds for one
// incarnation of a grant.
type lease struct {
	limit, w, idx int64
	nonce         string // the grant's incarnation
	grant         string // the grant hash's key, for sweep
	counter       string // the grant's counter key
	member        string // the window's count member
	left          atomic.Int64
	top           atomic.Int64 // the window's count in Redis as last seen, less what went back
	size          atomic.Int64 // the last lease's size
	took          atomic.Int64 // when it was taken (ms)
	spent         atomic.Int64 // when the window was found spent (ms), 0 if not
	swept         atomic.Bool  // in the watcher's leased set
	dead          atomic.Bool  // its grant was revoked: its units are not given back
}

func (l *lease) is(limit, w, idx int64, nonce string) bool {
	return l != nil && l.limit == limit && l.w == w && l.idx == idx && l.nonce == nonce
}

// takeResult is what take found.
type takeResult int

const (
	noUnit takeResult = iota // none held: a lease must be taken
	took                     // one unit taken
	spent                    // the window was found spent moments ago
)

// take lets one call through on a unit held, and returns what is left of
// the budget after it.
func (gs *grantState) take(limit, w, idx int64, nonce string, now int64) (int64, takeResult) {
	if gs == nil {
		return 0, noUnit
	}
	l := gs.lease.Load()
	if !l.is(limit, w, idx, nonce) {
		return 0, noUnit
	}
	if l.left.Load() <= 0 {
		if at := l.spent.Load(); at != 0 && now >= at && now-at < leaseSpent {
			return 0, spent
		}
		return 0, noUnit
	}
	n := l.left.Add(-1)
	if n < 0 {
		l.left.Add(1)
		return 0, noUnit
	}
	return max(limit-(l.top.Load()-n), 0), took
}

// fillOrWait makes the caller the one that takes the grant's next lease,
// or has it wait for the lease being taken: one round trip per grant at a
// time, so that concurrent calls do not each take units the others then
// leave unused (which could refuse calls the budget still had room for).
// The one that fills gets end, to call once its lease is added, and the
// number of calls that waited for the last lease, to size this one.
func (gs *grantState) fillOrWait(ctx context.Context) (end func(), waiting int64, err error) {
	gs.mu.Lock()
	if ch := gs.filling; ch != nil {
		gs.waiting++
		gs.mu.Unlock()
		select {
		case <-ch:
			return nil, 0, nil
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	ch := make(chan struct{})
	gs.filling = ch
	waiting = gs.waiting
	gs.waiting = 0
	gs.mu.Unlock()
	return func() {
		gs.mu.Lock()
		gs.filling = nil
		close(ch)
		gs.mu.Unlock()
	}, waiting, nil
}

// nextSize is how many units the next lease of the window takes, for
// waiting calls besides the usual.
func (gs *grantState) nextSize(limit, w, idx int64, nonce string, now, waiting int64) int64 {
	size, top := int64(1), int64(0)
	if l := gs.lease.Load(); l.is(limit, w, idx, nonce) {
		size, top = l.size.Load(), l.top.Load()
		switch since := now - l.took.Load(); {
		case since < leaseGrow:
			size *= 2
		case since > leaseShrink:
			size /= 2
		}
	}
	size = min(max(size, 1)+waiting, leaseMax, (limit-top)/leaseShare)
	return max(size, 1)
}

// add records a lease of k units that brought the window's count in Redis
// to n, of which granted were within the limit (the rest went back); one
// of them is the caller's. It returns what is left of the budget after the
// caller's call.
func (gs *grantState) add(w *watcher, l0 *lease, k, n, granted, now int64) int64 {
	top := n - (k - granted)
	for {
		l := gs.lease.Load()
		if l.is(l0.limit, l0.w, l0.idx, l0.nonce) {
			l.left.Add(granted - 1)
			for t := l.top.Load(); top > t && !l.top.CompareAndSwap(t, top); t = l.top.Load() {
			}
			l.size.Store(k)
			l.took.Store(now)
			l.spent.Store(0)
			w.hold(l)
			return max(l0.limit-(l.top.Load()-l.left.Load()), 0)
		}
		nl := &lease{limit: l0.limit, w: l0.w, idx: l0.idx, nonce: l0.nonce, grant: l0.grant, counter: l0.counter, member: l0.member}
		nl.left.Store(granted - 1)
		nl.top.Store(top)
		nl.size.Store(k)
		nl.took.Store(now)
		if gs.lease.CompareAndSwap(l, nl) {
			w.hold(nl)
			return max(l0.limit-top+granted-1, 0)
		}
	}
}

// markSpent records that Redis found the window spent.
func (gs *grantState) markSpent(l0 *lease, now int64) {
	for {
		l := gs.lease.Load()
		if l.is(l0.limit, l0.w, l0.idx, l0.nonce) {
			l.spent.Store(now)
			return
		}
		nl := &lease{limit: l0.limit, w: l0.w, idx: l0.idx, nonce: l0.nonce, grant: l0.grant, counter: l0.counter, member: l0.member}
		nl.top.Store(l0.limit)
		nl.size.Store(1)
		nl.took.Store(now)
		nl.spent.Store(now)
		if gs.lease.CompareAndSwap(l, nl) {
			return
		}
	}
}

// refunded notes that Redis took one request back from the window's
// count.
func (gs *grantState) refunded(limit, w, idx int64) {
	if l := gs.lease.Load(); l != nil && l.limit == limit && l.w == w && l.idx == idx {
		l.top.Add(-1)
		l.spent.Store(0)
	}
}

// fillGroup tracks the lease fills in flight, which run to completion
// even when their callers give up (authenticate.go), so that Close waits
// for them before it gives back what the store holds.
type fillGroup struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// begin registers a fill, or reports false once the store is closed.
func (g *fillGroup) begin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *fillGroup) done() { g.wg.Done() }

// close refuses new fills and waits for those in flight.
func (g *fillGroup) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// hold puts a lease holding units in the set sweep looks at.
func (w *watcher) hold(l *lease) {
	if l.left.Load() <= 0 || l.swept.Load() {
		return
	}
	w.leaseMu.Lock()
	if !l.swept.Load() {
		l.swept.Store(true)
		w.leased[l] = struct{}{}
	}
	w.leaseMu.Unlock()
}

// sweep gives back the units of leases taken idle ms ago or more (all of
// them when idle is negative), in one pipeline, while their window lasts
// and their grant is the incarnation that leased them (luaGiveBack).
func (w *watcher) sweep(ctx context.Context, idle int64) {
	now := w.now()
	var back []*lease
	var units []int64
	// Held until the units are back, so that a sweep that returns has
	// seen the end of any other (Close's, the ticker's).
	w.leaseMu.Lock()
	defer w.leaseMu.Unlock()
	for l := range w.leased {
		if idle >= 0 && now-l.took.Load() < idle {
			continue
		}
		delete(w.leased, l)
		l.swept.Store(false)
		for v := l.left.Load(); v > 0; v = l.left.Load() {
			if l.left.CompareAndSwap(v, 0) {
				if !l.dead.Load() && store.WindowIndex(now, l.w) == l.idx {
					back = append(back, l)
					units = append(units, v)
				}
				break
			}
		}
	}
	if len(back) == 0 {
		return
	}
	pipe := w.client.Pipeline()
	cmds := make([]*redis.Cmd, len(back))
	for i, l := range back {
		cmds[i] = pipe.Eval(ctx, luaGiveBack, []string{l.grant, l.counter}, l.nonce, l.member, units[i])
	}
	_, _ = pipe.Exec(ctx) // units not given back only end with their window
	for i, l := range back {
		if cmds[i].Err() == nil {
			l.top.Add(-units[i])
		}
	}
}

// luaGiveBack takes units back from a window's count, if the grant is
// still the incarnation that leased them. EVAL rather than EVALSHA: it is
// sent rarely, in a pipeline, where a NOSCRIPT could not be retried.
//
// KEYS: grant, counter. ARGV: the grant's nonce, the window's count
// member, units.
const luaGiveBack = `
local grant_key, counter_key = KEYS[1], KEYS[2]
local nonce, member, units = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HGET', grant_key, 'n') ~= nonce then return 0 end
redis.call('ZADD', counter_key, 'XX', 'INCR', -units, member)
return 1
`

// giveBack takes v requests back from a window's count (ZADD XX INCR -v:
// never creating it), right after the caller's own ZADD took them. Its
// error is not the caller's: the caller's answer is decided, and a count
// left standing only spends budget.
func giveBack(ctx context.Context, c redis.UniversalClient, counter, member string, v int64) {
	if v > 0 {
		_ = c.Do(ctx, "zadd", counter, "xx", "incr", -v, member).Err()
	}
}
