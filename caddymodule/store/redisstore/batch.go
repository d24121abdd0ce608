package redisstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Natural batching of Authenticate.
//
// An API request that needs Redis is one round trip (an EVALSHA, or the
// pipeline of a remembered token's check or lease: authenticate.go; most
// need none, watch.go and lease.go), and on a busy gateway much of its
// cost is not the commands but the round trip around them: a write and a
// read system call and a goroutine wake-up in the gateway, a read, a write
// and an event loop pass in Redis. So while a few round trips are already in flight,
// further calls do not start their own: they queue, and the next free
// round trip takes the whole queue (up to authBatchMax) as one pipeline.
// On a ClusterClient, go-redis splits that pipeline per node (one round
// trip to each node the batch touches, concurrently) and follows MOVED and
// ASK redirects, as it does for a single command.
//
// Nothing ever waits for a batch to fill: a call that finds a free round
// trip makes it at once, exactly as an unbatched call would (one EVALSHA on
// the caller's goroutine and context), so a quiet gateway pays no latency at
// all, and batches only form from calls that would otherwise have queued for
// a connection or for Redis anyway. Each such request still costs one
// round trip: its batch's.
//
// Ordering: a call is sent only after it was made, and returns only after
// Redis answered it, so calls of one goroutine reach Redis in order; calls
// that overlap in time had no order to keep. Within a batch the pipeline
// keeps queue order. A call whose context has ended by the time its batch
// goes out is left out of it.
//
// Flushers are goroutines started when a round trip ends with calls
// queued; one keeps the round trip's slot while it finds calls queued and
// exits when it finds none. There is no long-lived goroutine, so nothing is
// left for Close to stop: after Close a flusher's pipeline fails with the
// client's "closed" error, which it hands to its callers, and it exits.
const (
	// authInFlight is how many Authenticate round trips may be in flight
	// at once before calls queue. Redis runs commands one at a time, so
	// more round trips buy no parallelism in Redis; they only keep it busy
	// while the gateway encodes the next batch and decodes the last, and
	// every round trip costs both sides a write, a read and a wake-up.
	// Fewer in flight make larger batches: saturated
	// (BenchmarkAuthenticateParallel16), 1 and 2 cost Redis ~3.3 µs of CPU
	// per call and 4 ~4.1; in the gateway benchmark (make bench, ~6,000
	// requests/s), 1 cost Redis ~9 µs per request and 4 ~12.5. 2 keeps
	// most of that and lets one slow round trip (a Cluster node, a busy
	// script) not hold up every call behind it.
	authInFlight = 2
	// authBatchMax bounds one pipeline: ~130 bytes out and ~300 back per
	// call, so a full batch is a few tens of kilobytes.
	authBatchMax = 128
)

// authCall is one queued Authenticate: a script call (keys, args), or a
// check of a remembered token (check, tokencache.go). The flusher owns it
// from the moment it leaves the queue; its caller may have stopped waiting
// by then (its context ended), which only means nobody reads the results.
type authCall struct {
	ctx   context.Context
	keys  []string
	args  []any
	check *checkCall
	res   any
	err   error
	done  chan struct{} // closed once the results are set
}

// checkCall is the check of a remembered token: HMGET of its slot's digest
// and the grant's expiry, and, when the call is counted, ZADD XX INCR of
// the window's count, which leaves a window nobody opened unopened (the
// reply is then nil). The arguments are the remembered token's, shared
// and read-only (tokencache.go). Each command carries its own reply and
// error.
type checkCall struct {
	hmgetArgs, zaddArgs []any // zaddArgs nil when the call is not counted
	hm                  *redis.SliceCmd
	z                   *redis.Cmd
}

func (c *checkCall) queue(ctx context.Context, p redis.Pipeliner) {
	c.hm = redis.NewSliceCmd(ctx, c.hmgetArgs...)
	_ = p.Process(ctx, c.hm) // queues; errors come with Exec
	if c.zaddArgs != nil {
		c.z = redis.NewCmd(ctx, c.zaddArgs...)
		_ = p.Process(ctx, c.z)
	}
}

// authBatcher batches one Store's Authenticate scripts (see above).
type authBatcher struct {
	client   redis.UniversalClient
	script   *redis.Script
	inFlight int // the limit: authInFlight, smaller in tests

	mu      sync.Mutex
	running int         // round trips in flight: direct calls plus flushers
	queue   []*authCall // FIFO; non-empty only while running == inFlight
}

// authBatcher returns s's batcher.
func (s *Store) authBatcher() *authBatcher { return s.auth }

func newAuthBatcher(c redis.UniversalClient, script *redis.Script) *authBatcher {
	return &authBatcher{client: c, script: script, inFlight: authInFlight}
}

// run runs the script for one call: at once when a round trip is free,
// else in the next batch. It returns the script's reply as Cmd.Result does.
func (b *authBatcher) run(ctx context.Context, keys []string, args ...any) (any, error) {
	return b.do(&authCall{ctx: ctx, keys: keys, args: args})
}

// check runs the commands of c as run runs a script; their replies are in
// c. The error is the caller's context's, when it ended before c's batch
// answered (c must then not be read: its batch may still fill it in);
// every other error is in c's commands.
func (b *authBatcher) check(ctx context.Context, c *checkCall) error {
	_, err := b.do(&authCall{ctx: ctx, check: c})
	return err
}

// do makes c's round trip, or queues c for the next batch and waits for
// it, and returns c's results.
func (b *authBatcher) do(c *authCall) (any, error) {
	b.mu.Lock()
	if b.running < b.inFlight && len(b.queue) == 0 {
		b.running++
		b.mu.Unlock()
		defer b.release()
		b.sendOne(c.ctx, c)
		return c.res, c.err
	}
	c.done = make(chan struct{})
	b.queue = append(b.queue, c)
	start := b.running < b.inFlight // only if the invariant above was broken
	if start {
		b.running++
	}
	b.mu.Unlock()
	if start {
		go b.flush()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-c.ctx.Done():
		select {
		case <-c.done: // answered meanwhile: the answer is worth more
			return c.res, c.err
		default:
			return nil, c.ctx.Err()
		}
	}
}

// sendOne makes the round trip of one call on ctx.
func (b *authBatcher) sendOne(ctx context.Context, c *authCall) {
	if c.check == nil {
		c.res, c.err = b.script.Run(ctx, b.client, c.keys, c.args...).Result()
		return
	}
	pipe := b.client.Pipeline()
	c.check.queue(ctx, pipe)
	_, _ = pipe.Exec(ctx) // every command carries its own error
}

// release ends a direct round trip: its slot goes to a new flusher when
// calls queued meanwhile.
func (b *authBatcher) release() {
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go b.flush()
}

// flush sends batches until it finds the queue empty, then gives its slot
// back.
func (b *authBatcher) flush() {
	batch := make([]*authCall, 0, authBatchMax)
	for {
		b.mu.Lock()
		n := min(len(b.queue), authBatchMax)
		if n == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		batch = append(batch[:0], b.queue[:n]...)
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		b.mu.Unlock()
		b.send(batch)
		clear(batch)
	}
}

// send runs one batch as one pipeline (a single call as sendOne does) and
// completes every call in it.
func (b *authBatcher) send(batch []*authCall) {
	// A caller that has already given up is not sent: it would only
	// count a request nobody is answered for.
	live := batch[:0] // filtered in place: live never overtakes the loop
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := batchContext(live)
	defer cancel()
	if len(live) == 1 {
		c := live[0]
		b.sendOne(ctx, c)
		close(c.done)
		return
	}
	cmds := make([]*redis.Cmd, len(live))
	pipe := b.client.Pipeline()
	for i, c := range live {
		if c.check != nil {
			c.check.queue(ctx, pipe)
			continue
		}
		cmds[i] = b.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // every command carries its own error
	// NOSCRIPT (the script cache was flushed, or this is a new node): the
	// script did not run, so the calls are sent again in full, as Run
	// does, in one more pipeline; EVAL also caches the script again.
	var again redis.Pipeliner
	for i, cmd := range cmds {
		if cmd != nil && isNoScript(cmd.Err()) {
			if again == nil {
				again = b.client.Pipeline()
			}
			cmds[i] = b.script.Eval(ctx, again, live[i].keys, live[i].args...)
		}
	}
	if again != nil {
		_, _ = again.Exec(ctx)
	}
	for i, c := range live {
		if cmds[i] != nil {
			c.res, c.err = cmds[i].Result()
		}
		close(c.done)
	}
}

// batchContext is the context a batch runs under. It must not end with any
// one caller's context, or one client hanging up would fail the others'
// requests: it keeps the first call's values (for tracing hooks) without
// its cancellation, and ends at the latest of the calls' deadlines, so that
// a hung Redis still costs each caller no more than its own deadline (its
// wait ends then) and the batch no more than the longest of them. Without a
// deadline on every call it has none, and the client's timeouts apply, as
// for an unbatched call without a deadline.
func batchContext(calls []*authCall) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(calls[0].ctx)
	var latest time.Time
	for _, c := range calls {
		d, ok := c.ctx.Deadline()
		if !ok {
			return ctx, func() {}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(ctx, latest)
}

// isNoScript reports whether EVALSHA failed only because Redis does not
// have the script cached (as go-redis's Script.Run decides).
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
