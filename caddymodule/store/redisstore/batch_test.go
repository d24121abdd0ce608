package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// gate holds the next EVALSHA sent on its own (not in a pipeline) until
// released, so that calls made meanwhile queue up deterministically; and it
// logs the size of every pipeline.
type gate struct {
	after   bool          // hold once the reply is in, rather than before sending
	onHold  func()        // run when holding, before entered is closed
	armed   atomic.Bool   // hold the next evalsha
	entered chan struct{} // closed when the held command is being held
	release chan struct{} // close to let it go

	mu    sync.Mutex
	pipes [][]string // command names of each pipeline
}

func newGate(after bool) *gate {
	g := &gate{after: after, entered: make(chan struct{}), release: make(chan struct{})}
	g.armed.Store(true)
	return g
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "evalsha" || !g.armed.CompareAndSwap(true, false) {
			return next(ctx, cmd)
		}
		var err error
		if g.after {
			err = next(ctx, cmd)
		}
		if g.onHold != nil {
			g.onHold()
		}
		close(g.entered)
		<-g.release
		if !g.after {
			err = next(ctx, cmd)
		}
		return err
	}
}
func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		if strings.HasPrefix(names[0], "eval") { // not a new connection's handshake
			g.mu.Lock()
			g.pipes = append(g.pipes, names)
			g.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

func (g *gate) pipelines() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]string(nil), g.pipes...)
}

// queued waits until n calls are queued in b.
func queued(t *testing.T, b *authBatcher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		got := len(b.queue)
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// idle waits until b has nothing in flight or queued: every flusher has
// exited.
func idle(t *testing.T, b *authBatcher) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		running, q := b.running, len(b.queue)
		b.mu.Unlock()
		if running == 0 && q == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batcher not idle: %d round trips in flight, %d queued", running, q)
		}
		time.Sleep(time.Millisecond)
	}
}

// issueToken creates a live grant with one access token "at-<id>".
func issueToken(t *testing.T, s *Store, clk *storetest.Clock, id string) string {
	t.Helper()
	ctx := t.Context()
	now := clk.Now()
	if err := s.SaveGrant(ctx, store.Grant{ID: id, ClientID: "app", Subject: "alice", Scopes: []string{"read"}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCode(ctx, id, "c", store.Code{ClientID: "app", ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeCode(ctx, id, "c"); err != nil {
		t.Fatal(err)
	}
	digest := "at-" + id
	p := store.Pair{Access: store.Token{Digest: digest, ClientID: "app", Subject: "alice", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)}}
	if err := s.IssueTokens(ctx, id, "c", p); err != nil {
		t.Fatal(err)
	}
	return digest
}

type authResult struct {
	tok store.Token
	st  store.RateStatus
	err error
}

// batchRun holds one direct Authenticate at the gate and queues calls
// behind it, one after the other so that their queue order is known, then
// lets them all go and returns the queued calls' results in queue order.
// grants[i] is the grant of queued call i.
func batchRun(t *testing.T, s *Store, g *gate, clk *storetest.Clock, grants, digests []string, l store.Limit) []authResult {
	t.Helper()
	b := s.authBatcher()
	b.inFlight = 1
	ctx := t.Context()
	direct := make(chan error, 1)
	go func() {
		_, _, err := s.Authenticate(ctx, grants[0], digests[0], l)
		direct <- err
	}()
	<-g.entered
	res := make([]authResult, len(grants))
	var wg sync.WaitGroup
	for i := range grants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &res[i]
			r.tok, r.st, r.err = s.Authenticate(ctx, grants[i], digests[i], l)
		}()
		queued(t, b, i+1)
	}
	close(g.release)
	wg.Wait()
	if err := <-direct; err != nil {
		t.Fatalf("held Authenticate: %v", err)
	}
	idle(t, b)
	return res
}

// TestAuthBatch: calls made while the round trips are all in flight go out
// as one pipeline, in queue order, each with its own answer.
func TestAuthBatch(t *testing.T) {
	url := storetest.StartRedis(t)
	for _, noscript := range []bool{false, true} {
		name := map[bool]string{false: "evalsha", true: "script flushed"}[noscript]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, url) // its Authenticate counted 1 in the minute's window
			// To see the pipeline meet NOSCRIPT, the scripts are flushed
			// once the held EVALSHA has run, before the queue is sent.
			g := newGate(noscript)
			f.c.AddHook(g)
			if noscript {
				g.onHold = func() {
					if err := f.c.ScriptFlush(context.Background()).Err(); err != nil {
						t.Error(err)
					}
				}
			}
			const n = 20
			grants, digests := make([]string, n+1), make([]string, n+1)
			for i := range grants {
				grants[i], digests[i] = f.id, "at1"
			}
			grants[5], digests[5] = f.id, "nosuchtoken"
			grants[9], digests[9] = "nosuchgrant", "at1"
			l := store.Limit{Count: 1000, Window: time.Minute}
			res := batchRun(t, f.s, g, f.clk, grants[1:], digests[1:], l)
			counted := int64(2) // the fixture's call and the held one
			for i, r := range res {
				switch i + 1 {
				case 5, 9:
					if !errors.Is(r.err, store.ErrNotFound) {
						t.Errorf("call %d: %v, want ErrNotFound", i, r.err)
					}
					continue
				}
				counted++
				if r.err != nil || r.tok.Digest != "at1" || !r.st.Allowed || r.st.Remaining != l.Count-counted {
					t.Errorf("call %d: %+v, %+v, %v; want remaining %d", i, r.tok, r.st, r.err, l.Count-counted)
				}
			}
			want := []string{strings.TrimSuffix(strings.Repeat("evalsha ", n), " ")}
			if noscript {
				want = append(want, strings.TrimSuffix(strings.Repeat("eval ", n), " "))
			}
			var got []string
			for _, p := range g.pipelines() {
				got = append(got, strings.Join(p, " "))
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("pipelines %q, want %q", got, want)
			}
		})
	}
}

// TestAuthBatchCancel: a queued caller whose context ends returns at once,
// and its call is not sent when its batch goes out.
func TestAuthBatchCancel(t *testing.T) {
	url := storetest.StartRedis(t)
	f := newFixture(t, url)
	g := newGate(false)
	f.c.AddHook(g)
	b := f.s.authBatcher()
	b.inFlight = 1
	l := store.Limit{Count: 1000, Window: time.Minute}
	direct := make(chan error, 1)
	go func() {
		_, _, err := f.s.Authenticate(t.Context(), f.id, "at1", l)
		direct <- err
	}()
	<-g.entered
	ctx, cancel := context.WithCancel(t.Context())
	gone := make(chan error, 1)
	go func() {
		_, _, err := f.s.Authenticate(ctx, f.id, "at1", l)
		gone <- err
	}()
	queued(t, b, 1)
	dl, cancelDL := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelDL()
	late := make(chan error, 1)
	go func() {
		_, _, err := f.s.Authenticate(dl, f.id, "at1", l)
		late <- err
	}()
	queued(t, b, 2)
	kept := make(chan authResult, 1)
	go func() {
		tok, st, err := f.s.Authenticate(t.Context(), f.id, "at1", l)
		kept <- authResult{tok, st, err}
	}()
	queued(t, b, 3)
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	if err := <-late; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("caller past its deadline: %v, want context.DeadlineExceeded", err)
	}
	close(g.release)
	if err := <-direct; err != nil {
		t.Fatal(err)
	}
	r := <-kept
	// Counted: the fixture's call, the held one, and this one only.
	if r.err != nil || r.st.Remaining != l.Count-3 {
		t.Errorf("caller behind the cancelled ones: %+v, %v; want remaining %d", r.st, r.err, l.Count-3)
	}
	idle(t, b)
	if p := g.pipelines(); len(p) != 0 {
		t.Errorf("pipelines %q: the one live call should have gone alone", p)
	}
}

// TestAuthBatchCluster: a batch spanning the nodes of a Cluster is split
// per node by go-redis, and NOSCRIPT on the nodes is recovered from.
func TestAuthBatchCluster(t *testing.T) {
	addrs := storetest.StartRedisCluster(t)
	for _, noscript := range []bool{false, true} {
		name := map[bool]string{false: "evalsha", true: "script flushed"}[noscript]
		t.Run(name, func(t *testing.T) {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
			t.Cleanup(func() { _ = c.Close() })
			clk := storetest.NewClock()
			s := NewFromClient(c, clk.Now)
			const n = 12
			grants, digests := make([]string, n), make([]string, n)
			for i := range grants {
				grants[i] = "g" + strconv.Itoa(i) + storetest.Random()
				digests[i] = issueToken(t, s, clk, grants[i])
			}
			// Until a node has run the script it answers NOSCRIPT: load
			// it everywhere, so that only flushing makes EVAL necessary.
			if err := s.scripts.authenticate.Load(t.Context(), c).Err(); err != nil {
				t.Fatal(err)
			}
			g := newGate(noscript)
			c.AddHook(g)
			if noscript {
				g.onHold = func() {
					err := c.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
						return n.ScriptFlush(ctx).Err()
					})
					if err != nil {
						t.Error(err)
					}
				}
			}
			l := store.Limit{Count: 5, Window: time.Minute}
			res := batchRun(t, s, g, clk, grants, digests, l)
			for i, r := range res {
				want := l.Count - 1
				if i == 0 {
					want-- // grants[0] was also the held call's
				}
				if r.err != nil || r.tok.Digest != digests[i] || !r.st.Allowed || r.st.Remaining != want {
					t.Errorf("call %d: %+v, %+v, %v; want remaining %d", i, r.tok, r.st, r.err, want)
				}
			}
			if p := g.pipelines(); len(p) != 1+btoi(noscript) || len(p[0]) != n {
				t.Errorf("pipelines %q, want one of %d evalsha (then one of eval)", p, n)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestAuthBatchStress: many goroutines on few round trips; every call is
// counted exactly once, and nothing is left running: through the script
// alone, and with the token remembered (its checks batched with the
// script calls of the windows' first calls).
func TestAuthBatchStress(t *testing.T) {
	url := storetest.StartRedis(t)
	for _, remember := range []bool{false, true} {
		t.Run(map[bool]string{false: "script", true: "remembered"}[remember], func(t *testing.T) {
			f := newFixture(t, url)
			if remember {
				f.s.tokens = newTokenCache()
			}
			b := f.s.authBatcher()
			b.inFlight = 2
			const workers, calls = 32, 50
			l := store.Limit{Count: 1 << 40, Window: time.Hour}
			var ok, cancelled atomic.Int64
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range calls {
						ctx := t.Context()
						if (w+i)%7 == 0 { // some callers give up early
							c, cancel := context.WithTimeout(ctx, time.Duration(i%3)*50*time.Microsecond)
							defer cancel()
							ctx = c
						}
						_, st, err := f.s.Authenticate(ctx, f.id, "at1", l)
						switch {
						case err == nil && st.Allowed:
							ok.Add(1)
						case errors.Is(err, context.DeadlineExceeded):
							cancelled.Add(1)
						default:
							t.Errorf("Authenticate: %+v, %v", st, err)
						}
					}
				}()
			}
			wg.Wait()
			idle(t, b)
			f.s.watch.sweep(t.Context(), -1) // the units still held go back
			n := windowCount(t, f, l)
			// A call may be counted and still miss its deadline, so the
			// count lies between the calls answered and the calls made;
			// with leases (lease.go) a caller that gave up while taking
			// one may leave its lease's units counted and unused.
			most := ok.Load() + cancelled.Load()
			if remember {
				most = ok.Load() + cancelled.Load()*leaseMax
			}
			if n < ok.Load() || n > most {
				t.Errorf("count %d, want between %d answered and %d", n, ok.Load(), most)
			}
			if ok.Load()+cancelled.Load() != workers*calls {
				t.Errorf("%d answered + %d cancelled, want %d", ok.Load(), cancelled.Load(), workers*calls)
			}
		})
	}
}

// windowCount is the count of the fixture's grant in l's current window.
func windowCount(t *testing.T, f *fixture, l store.Limit) int64 {
	t.Helper()
	w := l.Window.Milliseconds()
	m := counterMember("c", w, store.WindowIndex(f.clk.Now().UnixMilli(), w))
	n, err := f.c.ZScore(t.Context(), defaultKeys.counter(f.id), m).Result()
	if err != nil {
		t.Fatalf("ZSCORE %s: %v", m, err)
	}
	return int64(n)
}

func TestBatchContext(t *testing.T) {
	base := context.WithValue(t.Context(), struct{}{}, "v")
	early, cancel1 := context.WithTimeout(base, time.Minute)
	defer cancel1()
	later, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	defer cancel2()
	ctx, cancel := batchContext([]*authCall{{ctx: early}, {ctx: later}})
	defer cancel()
	want, _ := later.Deadline()
	if d, ok := ctx.Deadline(); !ok || !d.Equal(want) {
		t.Errorf("deadline %v, %v; want the latest caller's", d, ok)
	}
	if ctx.Value(struct{}{}) != "v" {
		t.Errorf("the first caller's values are lost")
	}
	cancel1()
	if ctx.Err() != nil {
		t.Errorf("a caller's cancellation ended the batch")
	}
	ctx, cancel = batchContext([]*authCall{{ctx: early}, {ctx: base}})
	defer cancel()
	if _, ok := ctx.Deadline(); ok {
		t.Errorf("a caller without a deadline: batch has one")
	}
}

// TestAuthenticateScriptConstants: luaAuthenticate spells gcMargin out.
func TestAuthenticateScriptConstants(t *testing.T) {
	if got := strings.Count(luaAuthenticate, "+ "+strconv.Itoa(gcMargin)+" -- gc(), gcMargin"); got != 1 {
		t.Errorf("luaAuthenticate spells gcMargin %d out %d times, want 1", gcMargin, got)
	}
}

// TestAuthBatchClose: closing the client fails the queued calls with its
// error, and leaves nothing running.
func TestAuthBatchClose(t *testing.T) {
	url := storetest.StartRedis(t)
	clk := storetest.NewClock()
	s, err := New(url, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	digest := issueToken(t, s, clk, "g"+storetest.Random())
	id := strings.TrimPrefix(digest, "at-")
	g := newGate(false)
	s.client.AddHook(g)
	b := s.authBatcher()
	b.inFlight = 1
	l := store.Limit{Count: 10, Window: time.Minute}
	errs := make(chan error, 6)
	go func() {
		_, _, err := s.Authenticate(t.Context(), id, digest, l)
		errs <- err
	}()
	<-g.entered
	for i := range 5 {
		go func() {
			_, _, err := s.Authenticate(t.Context(), id, digest, l)
			errs <- err
		}()
		queued(t, b, i+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	for range 6 {
		if err := <-errs; !errors.Is(err, redis.ErrClosed) {
			t.Errorf("Authenticate after Close: %v, want redis.ErrClosed", err)
		}
	}
	idle(t, b)
}
