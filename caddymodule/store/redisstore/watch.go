package redisstore

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Liveness kept in the gateway (docs/architecture.md, "The API hot path").
//
// A remembered token (tokencache.go) needs Redis for two things: is it
// still its grant's, and may the call be counted. The second is answered
// by leases of the budget (lease.go). The first is answered here, without
// a round trip, for as long as the gateway is sure to hear of every
// change:
//
//   - Every script that replaces or deletes a grant's pair PUBLISHes the
//     grant id on the channel "<key prefix>inval" (inval in luaPrelude),
//     in the same script, so no change goes unannounced even if the
//     gateway that made it dies the next instant (message, below).
//   - Each Store keeps one subscription to that channel. Once a check in
//     Redis has found a token live, the token is vouched for locally
//     until a message names its grant. Vouching is per token: a message
//     moves the grant to a new epoch, and a token is vouched for only in
//     the epoch and subscription generation it was checked in, so a
//     later check of another token of the grant cannot vouch for it.
//   - Freshness: every watchPing the Store PUBLISHes a heartbeat of its
//     own through its data connection, on the node every PUBLISH of the
//     channel goes to. Redis delivers a subscription's messages in order,
//     so hearing its own heartbeat sent at t proves that every message
//     published there before t has been applied, and that this user may
//     publish. Nothing is vouched for more than
//     watchFresh after the last heartbeat heard: a subscription that stalls
//     silently or hears nothing costs at most that much staleness, after
//     which every call asks Redis again (and gets 503 if Redis is gone).
//   - Losing the subscription forgets everything vouched for; subscribing
//     again starts a new generation, so nothing learnt before the loss is
//     vouched for after it.
//   - A revocation (disconnect, logout, a replayed code or refresh token)
//     does not answer its caller until every gateway has applied it: the
//     revoking Store publishes the grant id with a nonce on the channel's
//     node, and waits for an acknowledgement from every gateway whose
//     heartbeat it heard lately, and from at least as many as PUBLISH
//     reached (announce). A gateway that does not acknowledge within
//     watchFresh cannot be vouching any more by then, for want of a
//     heartbeat of its own. So "revoked on one instance, refused on the
//     very next request to any" holds.
//   - A rotation only announces itself (the old access token dies with its
//     pair): another instance may accept the rotated-out access token
//     until the message reaches it (on a Cluster it crosses the cluster
//     bus first), which is the partner's own, unrevoked grant.
//
// The fill race is closed by a sequence number: a check in Redis only
// vouches if no message (and no change of subscription) was applied
// between the moment it was sent and the moment it is recorded.

const (
	watchPing     = 250 * time.Millisecond // how often a heartbeat is published
	watchFresh    = time.Second            // how long a heartbeat heard vouches
	watchRetryMin = 50 * time.Millisecond  // first wait before subscribing again
	watchRetryMax = 2 * time.Second
	// watchAckQueue bounds the acknowledgements waiting to be published;
	// past it one is dropped, and its revoker waits watchFresh instead.
	watchAckQueue = 256
	// watchMaxPeers bounds the watchers a revocation waits for; past it
	// (a channel shared with something else?) new ones are not tracked,
	// and revocations rely on PUBLISH's count and watchFresh.
	watchMaxPeers = 1024
)

// grantState is what this gateway knows of one grant: the epoch of its
// liveness, and the budget it holds (lease.go).
type grantState struct {
	epoch atomic.Uint64 // moved on by every message naming the grant
	lease atomic.Pointer[lease]

	mu      sync.Mutex    // guards the two below (lease.go, fillOrWait)
	filling chan struct{} // closed when the lease being taken is added
	waiting int64         // calls that waited for it
}

// vouch is a token found live in Redis in one generation (0: none that
// vouches) and epoch of its grant, whose incarnation nonce was then
// nonce.
type vouch struct {
	gs         *grantState
	gen, epoch uint64
	nonce      string
}

// watcher is a Store's subscription to the invalidation channel.
type watcher struct {
	client  redis.UniversalClient
	now     func() int64 // the store's clock, ms (budget windows)
	channel string       // set by start
	id      string       // names this watcher's heartbeats
	base    time.Time    // monotonic origin of fresh

	gen    atomic.Uint64 // the current subscription's generation; 0: not subscribed
	fresh  atomic.Int64  // ns since base until which the subscription is known current
	seq    atomic.Uint64 // moved on by every message applied and change of generation
	denied atomic.Bool   // the Redis user may not use the channel: nothing is vouched for

	mu           sync.Mutex
	gens         uint64
	subscribedAt time.Duration // since base, when the current generation began
	grants       map[string]*grantState
	max          int // bound of grants: tokenCacheMax, smaller in tests
	waits        map[string]*ackWait
	peers        map[string]time.Duration // watchers heard (their heartbeats), by id: when, since base

	leaseMu sync.Mutex
	leased  map[*lease]struct{} // leases holding units, for sweep

	once    sync.Once
	started atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // every goroutine of the watcher
	fills   fillGroup      // lease fills in flight (lease.go)
	acks    chan string
}

// ackWait is one announce waiting for its acknowledgements: from as many
// subscribers as PUBLISH reached, and from every watcher heard lately
// (PUBLISH counts only the subscribers of the node it ran on, and a
// subscription Redis dropped is not counted while its gateway may still
// be vouching).
type ackWait struct {
	want   int             // -1 until PUBLISH has answered
	peers  map[string]bool // the watchers heard lately: true once acknowledged
	got    int
	ch     chan struct{}
	closed bool
}

func newWatcher(c redis.UniversalClient, now func() int64) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &watcher{
		client: c, now: now, id: newNonce(), base: time.Now(),
		grants: make(map[string]*grantState), max: tokenCacheMax,
		waits: make(map[string]*ackWait), leased: make(map[*lease]struct{}),
		peers: make(map[string]time.Duration),
		ctx:   ctx, cancel: cancel,
		acks: make(chan string, watchAckQueue),
	}
}

// start subscribes on channel, once; later calls return at once.
func (w *watcher) start(channel string) {
	w.once.Do(func() {
		w.channel = channel
		w.started.Store(true)
		w.wg.Add(4)
		go w.run()
		go w.every(w.beat)
		go w.acknowledge()
		go w.every(func(ctx context.Context) { w.sweep(ctx, leaseIdle) }) // idle budget units go back
	})
}

// stop ends the subscription, waits for every goroutine of the watcher,
// and gives back the budget units held.
func (w *watcher) stop() {
	w.once.Do(func() {}) // a watcher never started stays so
	w.cancel()
	w.wg.Wait()
	w.fills.close()
	ctx, cancel := context.WithTimeout(context.Background(), watchFresh)
	defer cancel()
	w.sweep(ctx, -1)
}

// vouches reports whether the token v was checked for is known live
// without asking Redis.
func (w *watcher) vouches(v *vouch) bool {
	if v == nil {
		return false
	}
	return v.gen == w.gen.Load() && v.gen != 0 && v.epoch == v.gs.epoch.Load() &&
		int64(time.Since(w.base)) < w.fresh.Load()
}

// snapshot is taken before a check is sent to Redis, and given to
// confirm with its answer.
func (w *watcher) snapshot() uint64 { return w.seq.Load() }

// confirm records that Redis found e live, in the grant incarnation
// nonce, in a check sent at snap: e is vouched for unless something was
// applied since (or there is no subscription). It returns the grant's
// state.
func (w *watcher) confirm(e *remembered, snap uint64, nonce string) *grantState {
	w.mu.Lock()
	defer w.mu.Unlock()
	gs := w.grants[e.grant]
	if gs == nil {
		if len(w.grants) >= w.max {
			// Forget every grant rather than track which is oldest: it
			// only costs each token one round trip.
			for _, old := range w.grants {
				old.epoch.Add(1)
			}
			clear(w.grants)
		}
		gs = &grantState{}
		w.grants[e.grant] = gs
	}
	g := w.gen.Load()
	if w.seq.Load() != snap {
		g = 0 // something was applied since the check was sent
	}
	e.vouch.Store(&vouch{gs: gs, gen: g, epoch: gs.epoch.Load(), nonce: nonce})
	return gs
}

// state returns the grant's state, or nil when this gateway has none.
func (w *watcher) state(grantID string) *grantState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.grants[grantID]
}

// invalidate stops vouching for every token of the grant; revoked also
// drops the budget this gateway holds of it, whose counter is gone.
func (w *watcher) invalidate(grantID string, revoked bool) {
	w.mu.Lock()
	w.seq.Add(1)
	gs := w.grants[grantID]
	if gs != nil {
		gs.epoch.Add(1)
	}
	w.mu.Unlock()
	if gs != nil && revoked {
		if l := gs.lease.Swap(nil); l != nil {
			l.dead.Store(true)
		}
	}
}

// subscribed starts a new generation: nothing vouched for before counts.
func (w *watcher) subscribed() {
	w.mu.Lock()
	w.gens++
	w.gen.Store(w.gens)
	w.subscribedAt = time.Since(w.base)
	w.seq.Add(1)
	w.mu.Unlock()
}

// lost stops vouching for anything until subscribed again.
func (w *watcher) lost() {
	w.mu.Lock()
	w.gen.Store(0)
	w.fresh.Store(0)
	w.seq.Add(1)
	w.mu.Unlock()
}

// run keeps the subscription up until stop.
func (w *watcher) run() {
	defer w.wg.Done()
	retry := watchRetryMin
	for w.ctx.Err() == nil {
		began := time.Now()
		w.session()
		w.lost()
		if time.Since(began) > 4*watchFresh {
			retry = watchRetryMin
		}
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, watchRetryMax)
	}
}

// session is one subscription. It returns when the subscription fails,
// when nothing came for watchFresh, when its own heartbeats have not come
// back for 2*watchFresh (it is on the wrong node, or this user may not
// publish), or at stop.
func (w *watcher) session() {
	ps := w.client.Subscribe(w.ctx, w.channel)
	ctx, end := context.WithCancel(w.ctx)
	defer end()
	w.wg.Add(1)
	go func() { // keeps the connection's reads going; closes it at the end
		defer w.wg.Done()
		t := time.NewTicker(watchPing)
		defer t.Stop()
		for {
			_ = ps.Ping(ctx)
			select {
			case <-ctx.Done():
				_ = ps.Close() // unblocks ReceiveTimeout
				return
			case <-t.C:
			}
		}
	}()
	began := time.Since(w.base)
	for {
		msg, err := ps.ReceiveTimeout(ctx, watchFresh)
		if err != nil {
			if redis.HasErrorPrefix(err, "NOPERM") {
				w.denied.Store(true)
			}
			return
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == w.channel {
				w.subscribed()
			}
		case *redis.Message:
			w.message(m.Payload)
		}
		now := time.Since(w.base)
		if f := time.Duration(w.fresh.Load()); now-began > 2*watchFresh && now-f > watchFresh {
			return
		}
	}
}

// every runs f every watchPing, with watchFresh to do it in, until stop.
func (w *watcher) every(f func(ctx context.Context)) {
	defer w.wg.Done()
	t := time.NewTicker(watchPing)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(w.ctx, watchFresh)
			f(ctx)
			cancel()
		}
	}
}

// beat publishes a heartbeat while subscribed.
func (w *watcher) beat(ctx context.Context) {
	if w.gen.Load() == 0 {
		return
	}
	_, err := w.publish(ctx, "h"+w.id+" "+strconv.FormatInt(int64(time.Since(w.base)), 10))
	if redis.HasErrorPrefix(err, "NOPERM") {
		w.denied.Store(true)
	}
}

// message applies one message. Its first byte says what it is, as grant
// ids may start with any base64url character: "c<grant id>" a pair
// changed and "r<grant id>" a grant revoked, from a script; "R<nonce>
// <grant id>" a revocation from announce, acknowledged once applied;
// "a<nonce> <watcher id>" an acknowledgement; "h<watcher id> <ns>" a
// heartbeat.
func (w *watcher) message(p string) {
	if p == "" {
		return
	}
	kind, rest := p[0], p[1:]
	switch kind {
	case 'a':
		nonce, peer, _ := strings.Cut(rest, " ")
		w.mu.Lock()
		if a := w.waits[nonce]; a != nil {
			a.got++
			if _, ok := a.peers[peer]; ok {
				a.peers[peer] = true
			}
			a.check()
		}
		w.mu.Unlock()
	case 'h':
		id, sent, _ := strings.Cut(rest, " ")
		w.mu.Lock()
		if len(w.peers) < watchMaxPeers || w.peers[id] != 0 {
			w.peers[id] = time.Since(w.base)
		}
		w.mu.Unlock()
		if id == w.id {
			w.heard(sent)
		}
	case 'c', 'r':
		w.invalidate(rest, kind == 'r')
	case 'R':
		nonce, grant, _ := strings.Cut(rest, " ")
		w.invalidate(grant, true)
		select {
		case w.acks <- "a" + nonce + " " + w.id:
		default:
		}
	}
}

// heard extends freshness to watchFresh past the moment the heartbeat was
// sent.
func (w *watcher) heard(sent string) {
	t, err := strconv.ParseInt(sent, 10, 64)
	if err != nil || w.gen.Load() == 0 {
		return
	}
	w.denied.Store(false)
	until := t + int64(watchFresh)
	for {
		f := w.fresh.Load()
		if until <= f || w.fresh.CompareAndSwap(f, until) {
			return
		}
	}
}

func (a *ackWait) check() {
	if a.closed || a.want < 0 || a.got < a.want {
		return
	}
	for _, acked := range a.peers {
		if !acked {
			return
		}
	}
	a.closed = true
	close(a.ch)
}

// recentPeers is the watchers heard within 2*watchFresh, each not yet
// acknowledged, and forgets those heard longer ago. The caller holds w.mu.
func (w *watcher) recentPeers() map[string]bool {
	now := time.Since(w.base)
	out := make(map[string]bool, len(w.peers))
	for id, at := range w.peers {
		if now-at > 2*watchFresh {
			delete(w.peers, id)
			continue
		}
		out[id] = false
	}
	return out
}

// acknowledge publishes acknowledgements until stop.
func (w *watcher) acknowledge() {
	defer w.wg.Done()
	for {
		select {
		case <-w.ctx.Done():
			return
		case a := <-w.acks:
			ctx, cancel := context.WithTimeout(w.ctx, watchFresh)
			_, _ = w.publish(ctx, a)
			cancel()
		}
	}
}

// publish sends msg on the channel and returns how many subscribers got
// it. On a Cluster it goes to the node that owns the channel's slot,
// which is where every Store subscribes (go-redis picks that node), so the
// count is all of them.
func (w *watcher) publish(ctx context.Context, msg string) (int64, error) {
	if cc, ok := w.client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, w.channel)
		if err != nil {
			return 0, err
		}
		return node.Publish(ctx, w.channel, msg).Result()
	}
	return w.client.Publish(ctx, w.channel, msg).Result()
}

// announce makes sure every gateway stops vouching for the revoked grant
// before it returns: this one at once, the others when they acknowledge,
// or watchFresh after the message at most (see above). It waits whatever
// becomes of the caller's context (a store_timeout shorter than
// watchFresh, a client hanging up): the revocation is done, and answering
// before the other gateways stopped vouching is what the wait prevents.
func (w *watcher) announce(channel, grantID string) {
	w.invalidate(grantID, true)
	w.start(channel)
	// Acknowledgements reach this gateway through its own subscription:
	// give a new one a moment to be up.
	for i := 0; w.gen.Load() == 0 && !w.denied.Load() && i < 20 && w.ctx.Err() == nil; i++ {
		time.Sleep(watchFresh / 100)
	}
	nonce := newNonce()
	w.mu.Lock()
	// A subscription younger than the peers' memory may not have heard
	// every gateway yet: then nothing but the full wait is enough.
	settled := w.gen.Load() != 0 && time.Since(w.base)-w.subscribedAt > 2*watchFresh
	a := &ackWait{want: -1, peers: w.recentPeers(), ch: make(chan struct{})}
	w.waits[nonce] = a
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.waits, nonce)
		w.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), watchFresh)
	defer cancel()
	var n int64
	var err error
	for try := 0; try < 3; try++ { // a publish that fails is worth a retry within the wait
		if n, err = w.publish(ctx, "R"+nonce+" "+grantID); err == nil || ctx.Err() != nil {
			break
		}
		if redis.HasErrorPrefix(err, "NOPERM") {
			w.denied.Store(true)
			return // no gateway of this user can hear its own heartbeat, so none vouches
		}
	}
	// The wait starts once the message is out: a gateway that has not
	// acknowledged it within watchFresh has not heard its own heartbeat
	// for that long either.
	wait := time.NewTimer(watchFresh)
	defer wait.Stop()
	if err == nil && settled {
		w.mu.Lock()
		a.want = int(n)
		a.check()
		w.mu.Unlock()
	}
	select {
	case <-a.ch:
	case <-wait.C:
	}
}
