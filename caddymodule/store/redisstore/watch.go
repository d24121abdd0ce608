package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Liveness kept in the gateway (docs/architecture.md, "The API hot path").
//
// A remembered token (tokencache.go) needs Redis for two things: is its
// pair still its grant's, and may the call be counted. The second is
// answered by leases of the budget (lease.go). The first is answered here,
// without a round trip, for as long as the gateway is sure to hear of
// every change:
//
//   - Every script that replaces or deletes a grant's pair PUBLISHes the
//     grant id on the channel "<key prefix>inval" (inval in luaPrelude),
//     in the same script, so no change goes unannounced even if the
//     gateway that made it dies the next instant.
//   - Each Store keeps one subscription to that channel. A grant's
//     liveness, once a script or a check in Redis has found its token
//     live, is vouched for locally until a message names the grant.
//   - Redis delivers a subscription's messages and replies in order, so a
//     PING sent at t and answered proves that every change made before t
//     has been applied. The subscription is pinged every watchPing, and
//     nothing is vouched for more than watchFresh after the last ping that
//     was answered: a subscription that stalls silently (a dead peer, a
//     partition) costs at most that much staleness, after which every call
//     asks Redis again (and gets 503 if Redis is gone).
//   - Losing the subscription forgets everything vouched for; subscribing
//     again starts a new generation, so nothing learnt before the loss is
//     vouched for after it.
//   - A revocation (disconnect, logout, a replayed code or refresh token)
//     does not answer its caller until every subscribed gateway has
//     applied it: the revoking Store publishes the grant id with a nonce,
//     PUBLISH says how many subscribers it reached, and each subscriber
//     acknowledges the nonce on the channel once applied (announce). A
//     gateway that does not acknowledge within watchFresh cannot be
//     vouching any more by then, for want of an answered ping. So "revoked
//     on one instance, refused on the very next request to any" holds.
//   - A rotation only announces itself (the old access token dies with its
//     pair): another instance may accept the rotated-out access token for
//     the microseconds the message takes to reach it, which is the
//     partner's own, unrevoked grant.
//
// The fill race is closed by a sequence number: a check in Redis only
// vouches for a grant if no message (and no change of subscription) was
// applied between the moment it was sent and the moment it is recorded.

const (
	watchPing     = 250 * time.Millisecond // how often the subscription is pinged
	watchFresh    = time.Second            // how long an answered ping vouches
	watchRetryMin = 50 * time.Millisecond  // first wait before subscribing again
	watchRetryMax = 2 * time.Second
	// watchAckQueue bounds the acknowledgements waiting to be published;
	// past it one is dropped, and its revoker waits watchFresh instead.
	watchAckQueue = 256
)

// grantState is what this gateway knows of one grant: whether its
// liveness is vouched for, and the budget it holds (lease.go).
type grantState struct {
	id    string
	gen   atomic.Uint64 // the subscription generation that vouches; 0: none
	lease atomic.Pointer[lease]

	mu      sync.Mutex    // guards the two below (lease.go, fillOrWait)
	filling chan struct{} // closed when the lease being taken is added
	waiting int64         // calls that waited for it
}

// watcher is a Store's subscription to the invalidation channel.
type watcher struct {
	client  redis.UniversalClient
	now     func() int64 // the store's clock, ms (budget windows)
	channel string       // set by start
	base    time.Time    // monotonic origin of fresh

	gen    atomic.Uint64 // the current subscription's generation; 0: not subscribed
	denied atomic.Bool   // the ACL user may not use the channel: nothing is vouched for
	fresh  atomic.Int64  // ns since base until which the subscription is known current
	seq    atomic.Uint64 // bumped by every invalidation and change of generation

	mu     sync.Mutex
	gens   uint64
	grants map[string]*grantState
	max    int // bound of grants: tokenCacheMax, smaller in tests
	waits  map[string]*ackWait

	leaseMu sync.Mutex
	leased  map[*lease]struct{} // leases holding units, for sweep

	once    sync.Once
	started atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	acks    chan string
}

// ackWait is one announce waiting for its acknowledgements.
type ackWait struct {
	want, got int // want is -1 until PUBLISH has answered
	ch        chan struct{}
	closed    bool
}

func newWatcher(c redis.UniversalClient, now func() int64) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &watcher{
		client: c, now: now, base: time.Now(),
		grants: make(map[string]*grantState), max: tokenCacheMax,
		waits: make(map[string]*ackWait), leased: make(map[*lease]struct{}),
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		acks: make(chan string, watchAckQueue),
	}
}

// start subscribes on channel, once; later calls return at once.
func (w *watcher) start(channel string) {
	w.once.Do(func() {
		w.channel = channel
		w.started.Store(true)
		go w.run()
		go w.background()
	})
}

// stop ends the subscription and gives back the budget units held.
func (w *watcher) stop() {
	w.once.Do(func() {}) // a watcher never started stays so
	w.cancel()
	if w.started.Load() {
		<-w.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), watchFresh)
	defer cancel()
	w.sweep(ctx, -1)
}

// vouches reports whether gs's grant is known live without asking Redis.
func (w *watcher) vouches(gs *grantState) bool {
	if gs == nil {
		return false
	}
	g := w.gen.Load()
	return g != 0 && gs.gen.Load() == g && int64(time.Since(w.base)) < w.fresh.Load()
}

// snapshot is taken before a check is sent to Redis, and given to
// confirm with its answer.
func (w *watcher) snapshot() uint64 { return w.seq.Load() }

// confirm records that Redis found e's grant live in a check sent at snap,
// unless something was applied since, and returns the grant's state.
func (w *watcher) confirm(e *remembered, snap uint64) *grantState {
	w.mu.Lock()
	defer w.mu.Unlock()
	gs := w.grants[e.grant]
	if gs == nil {
		if len(w.grants) >= w.max {
			// Forget every grant rather than track which is oldest: it
			// only costs each one round trip.
			for _, old := range w.grants {
				old.gen.Store(0)
			}
			clear(w.grants)
		}
		gs = &grantState{id: e.grant}
		w.grants[e.grant] = gs
	}
	e.gs.Store(gs)
	if g := w.gen.Load(); g != 0 && w.seq.Load() == snap {
		gs.gen.Store(g)
	}
	return gs
}

// state returns the grant's state, or nil when this gateway has none.
func (w *watcher) state(grantID string) *grantState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.grants[grantID]
}

// invalidate stops vouching for the grant.
func (w *watcher) invalidate(grantID string) {
	w.mu.Lock()
	w.seq.Add(1)
	if gs := w.grants[grantID]; gs != nil {
		gs.gen.Store(0)
	}
	w.mu.Unlock()
}

// subscribed starts a new generation: nothing vouched for before counts.
func (w *watcher) subscribed() {
	w.mu.Lock()
	w.gens++
	w.gen.Store(w.gens)
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
	defer close(w.done)
	retry := watchRetryMin
	for w.ctx.Err() == nil {
		began := time.Now()
		w.session()
		w.lost()
		if time.Since(began) > 2*watchFresh {
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

// session is one subscription: it returns when it fails, when no message
// or answer to a ping came for watchFresh, or at stop.
func (w *watcher) session() {
	ps := w.client.Subscribe(w.ctx, w.channel)
	ctx, end := context.WithCancel(w.ctx)
	defer end()
	go func() {
		t := time.NewTicker(watchPing)
		defer t.Stop()
		for {
			_ = ps.Ping(ctx, strconv.FormatInt(int64(time.Since(w.base)), 10))
			select {
			case <-ctx.Done():
				_ = ps.Close() // unblocks ReceiveTimeout
				return
			case <-t.C:
			}
		}
	}()
	for {
		msg, err := ps.ReceiveTimeout(ctx, watchFresh)
		if err != nil {
			w.denied.Store(redis.HasErrorPrefix(err, "NOPERM"))
			return
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == w.channel {
				w.denied.Store(false)
				w.subscribed()
			}
		case *redis.Pong:
			w.pong(m.Payload)
		case *redis.Message:
			w.message(m.Payload)
		}
	}
}

// pong extends freshness to watchFresh past the moment the ping was sent.
func (w *watcher) pong(payload string) {
	sent, err := strconv.ParseInt(payload, 10, 64)
	if err != nil || w.gen.Load() == 0 {
		return
	}
	until := sent + int64(watchFresh)
	for {
		f := w.fresh.Load()
		if until <= f || w.fresh.CompareAndSwap(f, until) {
			return
		}
	}
}

// message applies one message: "<grant id>" from a script, "<grant id>
// <nonce>" from announce (acknowledged once applied), "!<nonce>" an
// acknowledgement.
func (w *watcher) message(p string) {
	if nonce, ok := strings.CutPrefix(p, "!"); ok {
		w.mu.Lock()
		if a := w.waits[nonce]; a != nil {
			a.got++
			a.check()
		}
		w.mu.Unlock()
		return
	}
	id, nonce, _ := strings.Cut(p, " ")
	w.invalidate(id)
	if nonce != "" {
		select {
		case w.acks <- "!" + nonce:
		default:
		}
	}
}

func (a *ackWait) check() {
	if !a.closed && a.want >= 0 && a.got >= a.want {
		a.closed = true
		close(a.ch)
	}
}

// background publishes acknowledgements and gives back idle budget
// units, until stop.
func (w *watcher) background() {
	t := time.NewTicker(watchPing)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case a := <-w.acks:
			ctx, cancel := context.WithTimeout(w.ctx, watchFresh)
			_, _ = w.publish(ctx, a)
			cancel()
		case <-t.C:
			ctx, cancel := context.WithTimeout(w.ctx, watchFresh)
			w.sweep(ctx, leaseIdle)
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

// announce makes sure every subscribed gateway stops vouching for the
// grant before it returns: this one at once, the others when they
// acknowledge, or watchFresh at most (see above). It is for revocations.
func (w *watcher) announce(ctx context.Context, channel, grantID string) {
	w.invalidate(grantID)
	w.start(channel)
	// Acknowledgements reach this gateway through its own subscription:
	// give a new one a moment to be up.
	for i := 0; w.gen.Load() == 0 && !w.denied.Load() && i < 100 && ctx.Err() == nil; i++ {
		time.Sleep(watchFresh / 100)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	a := &ackWait{want: -1, ch: make(chan struct{})}
	w.mu.Lock()
	w.waits[nonce] = a
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.waits, nonce)
		w.mu.Unlock()
	}()
	timer := time.NewTimer(watchFresh)
	defer timer.Stop()
	n, err := w.publish(ctx, grantID+" "+nonce)
	if redis.HasErrorPrefix(err, "NOPERM") {
		return // no gateway can subscribe as this user, so none vouches
	}
	if err == nil {
		w.mu.Lock()
		a.want = int(n)
		a.check()
		w.mu.Unlock()
	}
	select {
	case <-a.ch:
	case <-timer.C:
	case <-ctx.Done():
	}
}
