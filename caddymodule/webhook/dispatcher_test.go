package webhook

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/memory"
	"github.com/tollgate/tollgate/caddymodule/store/redisstore"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// receiver is a client's webhook endpoint that does what the documentation
// asks of one: verify every request and de-duplicate events by webhook-id.
type receiver struct {
	secret []byte
	now    func() time.Time

	mu       sync.Mutex
	answer   func(n int) int // status for the n-th verified request; -1 drops the connection
	events   map[string][]byte
	requests []http.Header // of every verified request
	invalid  int
	srv      *httptest.Server
}

// lostResponse makes the receiver process the event and then drop the
// connection, as if its answer were lost: the sender must try again.
const lostResponse = -1

func newReceiver(t *testing.T, now func() time.Time) *receiver {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	r := &receiver{secret: secret, now: now, events: map[string][]byte{}}
	t.Cleanup(func() {
		if r.srv != nil {
			r.srv.Close()
		}
	})
	return r
}

// listen starts serving on addr ("" for any free port) and returns the URL.
func (r *receiver) listen(t *testing.T, addr string) string {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: r}}
	r.srv.Start()
	return r.srv.URL + "/hooks/tollgate?key=receiver-credential"
}

func (r *receiver) setAnswer(f func(n int) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = f
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" ||
		Verify(r.secret, req.Header, body, r.now()) != nil {
		r.invalid++
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	n := len(r.requests)
	r.requests = append(r.requests, req.Header.Clone())
	answer := r.answer
	r.mu.Unlock()
	status := http.StatusNoContent
	if answer != nil {
		status = answer(n) // unlocked: it may hang
	}
	r.mu.Lock()
	if status == lostResponse || status/100 == 2 {
		if _, dup := r.events[req.Header.Get(HeaderID)]; !dup {
			r.events[req.Header.Get(HeaderID)] = body
		}
	}
	r.mu.Unlock()
	if status == lostResponse {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	if status/100 == 3 {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(status)
}

// counts returns the logical events, verified requests and rejected ones.
func (r *receiver) counts() (events, requests, invalid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events), len(r.requests), r.invalid
}

func (r *receiver) only(t *testing.T) (id string, body []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) != 1 {
		t.Fatalf("receiver holds %d events, want 1", len(r.events))
	}
	for id, body := range r.events {
		return id, body
	}
	return "", nil
}

// endpoint is a client configuration: client "app" has a webhook at url.
type endpoint struct {
	mu     sync.Mutex
	url    string
	secret []byte
}

func (e *endpoint) set(url string, secret []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.url, e.secret = url, secret
}

func (e *endpoint) get(clientID string) (string, []byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if clientID != "app" || e.url == "" {
		return "", nil, false
	}
	return e.url, e.secret, true
}

var alice = store.Grant{ID: "g1", ClientID: "app", Subject: "alice@example.com", Scopes: []string{"profile:read", "seatime:read"}}

func newDispatcher(q Queue, ep *endpoint, clk *storetest.Clock, log *zap.Logger, consumer string) *Dispatcher {
	return &Dispatcher{
		Queue:        q,
		Endpoint:     ep.get,
		Now:          clk.Now,
		Rand:         func() float64 { return 0 },
		Logger:       log,
		Consumer:     consumer,
		PollInterval: 5 * time.Millisecond,
	}
}

// waitLog waits for the dispatcher to log msg: the receiver counts a
// request before it answers, and the dispatcher acks or reschedules only
// after reading the answer.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string) {
	t.Helper()
	waitFor(t, "log "+msg, func() bool { return logs.FilterMessage(msg).Len() > 0 })
}

// gaveUpCalls records the dispatcher's GaveUp calls as "reason attempts".
func gaveUpCalls(d *Dispatcher) func() []string {
	var mu sync.Mutex
	var calls []string
	d.GaveUp = func(e store.Event, reason string, attempts int) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, e.ClientID+" "+reason+" "+strconv.Itoa(attempts))
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), calls...)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// queued reports how many events are claimable once every lease has run
// out, claiming them (the test is over with them).
func queued(t *testing.T, q Queue, clk *storetest.Clock) int {
	t.Helper()
	clk.Advance(DefaultLease)
	got, err := q.ClaimEvents(t.Context(), "inspector", 100, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return len(got)
}

func redisStore(t *testing.T, url string, clk *storetest.Clock) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(url, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func memoryStore(t *testing.T, clk *storetest.Clock) *memory.Store {
	s := memory.New(clk.Now)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestDelivery(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := storetest.NewClock()
			var q Queue
			if backend == "redis" {
				q = redisStore(t, storetest.StartRedis(t), clk)
			} else {
				q = memoryStore(t, clk)
			}
			r := newReceiver(t, clk.Now)
			ep := &endpoint{}
			ep.set(r.listen(t, ""), r.secret)
			core, logs := observer.New(zapcore.DebugLevel)
			d := newDispatcher(q, ep, clk, zap.New(core), "gw1")
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			defer d.Stop()
			if err := d.ConsentRevoked(t.Context(), alice); err != nil {
				t.Fatal(err)
			}
			waitLog(t, logs, "webhook delivered")
			d.Stop()

			id, body := r.only(t)
			var got struct {
				ID, Type, Timestamp string
				Data                ConsentRevoked
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.ID != id || got.Type != TypeConsentRevoked || got.Data.ClientID != "app" ||
				got.Data.Subject != alice.Subject || strings.Join(got.Data.Scopes, " ") != "profile:read seatime:read" {
				t.Errorf("event = %+v (webhook-id %s)", got, id)
			}
			h := r.requests[0]
			if ts := h.Get(HeaderTimestamp); ts != strconv.FormatInt(clk.Now().Unix(), 10) {
				t.Errorf("webhook-timestamp = %s, want the attempt's time %d", ts, clk.Now().Unix())
			}
			if _, requests, invalid := r.counts(); requests != 1 || invalid != 0 {
				t.Errorf("%d verified and %d rejected requests, want 1 and 0", requests, invalid)
			}
			if n := queued(t, q, clk); n != 0 {
				t.Errorf("%d events still queued after delivery", n)
			}
		})
	}
}

// TestReceiverDownThenUp: the receiver's host refuses connections, then
// comes back at the same address; the event arrives once, signed, after the
// first backoff.
func TestReceiverDownThenUp(t *testing.T) {
	clk := storetest.NewClock()
	q := memoryStore(t, clk)
	r := newReceiver(t, clk.Now)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ep := &endpoint{}
	ep.set("http://"+addr+"/hook", r.secret)
	core, logs := observer.New(zapcore.DebugLevel)
	d := newDispatcher(q, ep, clk, zap.New(core), "gw1")
	ctx := t.Context()

	if err := d.ConsentRevoked(ctx, alice); err != nil {
		t.Fatal(err)
	}
	d.poll(ctx)
	retry := logs.FilterMessage("webhook delivery failed; will retry").All()
	if len(retry) != 1 {
		t.Fatalf("logs = %v, want one failed attempt", logs.All())
	}
	if next := retry[0].ContextMap()["next_attempt"].(time.Time); !next.Equal(clk.Now().Add(5 * time.Second)) {
		t.Errorf("next attempt %v, want 5s after the failure", next)
	}

	r.listen(t, addr)
	d.poll(ctx)
	if _, requests, _ := r.counts(); requests != 0 {
		t.Fatalf("retried before the backoff ran out")
	}
	clk.Advance(5 * time.Second)
	d.poll(ctx)
	events, requests, invalid := r.counts()
	if events != 1 || requests != 1 || invalid != 0 {
		t.Errorf("receiver: %d events, %d verified requests, %d rejected; want 1, 1, 0", events, requests, invalid)
	}
	if n := queued(t, q, clk); n != 0 {
		t.Errorf("%d events still queued", n)
	}
}

// TestLostResponseDeduplicated: the receiver processed the event but its
// answer was lost, so the event comes again, with the same webhook-id and a
// fresh timestamp and signature; the receiver keeps one event.
func TestLostResponseDeduplicated(t *testing.T) {
	clk := storetest.NewClock()
	q := memoryStore(t, clk)
	r := newReceiver(t, clk.Now)
	r.setAnswer(func(n int) int {
		if n == 0 {
			return lostResponse
		}
		return http.StatusOK
	})
	ep := &endpoint{}
	ep.set(r.listen(t, ""), r.secret)
	d := newDispatcher(q, ep, clk, nil, "gw1")
	ctx := t.Context()
	if err := d.ConsentRevoked(ctx, alice); err != nil {
		t.Fatal(err)
	}
	d.poll(ctx)
	clk.Advance(5 * time.Second)
	d.poll(ctx)
	events, requests, invalid := r.counts()
	if events != 1 || requests != 2 || invalid != 0 {
		t.Fatalf("receiver: %d events, %d verified requests, %d rejected; want 1, 2, 0", events, requests, invalid)
	}
	first, second := r.requests[0], r.requests[1]
	if first.Get(HeaderID) != second.Get(HeaderID) {
		t.Errorf("webhook-id changed between attempts: %s, %s", first.Get(HeaderID), second.Get(HeaderID))
	}
	if first.Get(HeaderTimestamp) == second.Get(HeaderTimestamp) {
		t.Errorf("both attempts carry timestamp %s, want the attempt's own", first.Get(HeaderTimestamp))
	}
	if n := queued(t, q, clk); n != 0 {
		t.Errorf("%d events still queued", n)
	}
}

// TestRestart: an event survives its gateway on Redis, whether the gateway
// had recorded a failed attempt or died holding the event's lease.
func TestRestart(t *testing.T) {
	url := storetest.StartRedis(t)

	t.Run("after a failed attempt", func(t *testing.T) {
		clk := storetest.NewClock()
		r := newReceiver(t, clk.Now)
		r.setAnswer(func(int) int { return http.StatusServiceUnavailable })
		ep := &endpoint{}
		ep.set(r.listen(t, ""), r.secret)

		s1 := redisStore(t, url, clk)
		core, logs := observer.New(zapcore.DebugLevel)
		d1 := newDispatcher(s1, ep, clk, zap.New(core), "gw1")
		if err := d1.Start(); err != nil {
			t.Fatal(err)
		}
		if err := d1.ConsentRevoked(t.Context(), alice); err != nil {
			t.Fatal(err)
		}
		waitLog(t, logs, "webhook delivery failed; will retry")
		d1.Stop()
		_ = s1.Close()

		r.setAnswer(nil)
		s2 := redisStore(t, url, clk)
		core, logs = observer.New(zapcore.DebugLevel)
		d2 := newDispatcher(s2, ep, clk, zap.New(core), "gw2")
		if err := d2.Start(); err != nil {
			t.Fatal(err)
		}
		defer d2.Stop()
		time.Sleep(20 * time.Millisecond)
		if _, requests, _ := r.counts(); requests != 1 {
			t.Fatalf("%d requests: the retry was sent before its backoff ran out", requests)
		}
		clk.Advance(5 * time.Second)
		waitLog(t, logs, "webhook delivered")
		d2.Stop()
		if n, _, _ := r.counts(); n != 1 {
			t.Errorf("receiver holds %d events, want 1", n)
		}
		if _, requests, invalid := r.counts(); requests != 2 || invalid != 0 {
			t.Errorf("%d verified and %d rejected requests, want 2 and 0", requests, invalid)
		}
		if n := queued(t, s2, clk); n != 0 {
			t.Errorf("%d events still queued", n)
		}
	})

	t.Run("claimed by a gateway that died", func(t *testing.T) {
		clk := storetest.NewClock()
		r := newReceiver(t, clk.Now)
		ep := &endpoint{}
		ep.set(r.listen(t, ""), r.secret)

		s1 := redisStore(t, url, clk)
		d1 := newDispatcher(s1, ep, clk, nil, "gw1") // never started
		if err := d1.ConsentRevoked(t.Context(), alice); err != nil {
			t.Fatal(err)
		}
		if got, err := s1.ClaimEvents(t.Context(), "gw1", 10, DefaultLease); err != nil || len(got) != 1 {
			t.Fatalf("ClaimEvents = %d events, %v", len(got), err)
		}
		_ = s1.Close() // gw1 dies holding the lease

		s2 := redisStore(t, url, clk)
		core, logs := observer.New(zapcore.DebugLevel)
		d2 := newDispatcher(s2, ep, clk, zap.New(core), "gw2")
		if err := d2.Start(); err != nil {
			t.Fatal(err)
		}
		defer d2.Stop()
		time.Sleep(20 * time.Millisecond)
		if _, requests, _ := r.counts(); requests != 0 {
			t.Fatalf("gw2 sent the event within gw1's lease")
		}
		clk.Advance(DefaultLease)
		waitLog(t, logs, "webhook delivered")
		d2.Stop()
		if n, requests, _ := r.counts(); n != 1 || requests != 1 {
			t.Errorf("receiver: %d events from %d requests, want 1 from 1", n, requests)
		}
		if n := queued(t, s2, clk); n != 0 {
			t.Errorf("%d events still queued", n)
		}
	})

	t.Run("an attempt cut short by Stop is handed back at once", func(t *testing.T) {
		clk := storetest.NewClock()
		r := newReceiver(t, clk.Now)
		release := make(chan struct{})
		r.setAnswer(func(n int) int {
			if n == 0 {
				<-release // hangs until the test ends
			}
			return http.StatusNoContent
		})
		t.Cleanup(func() { close(release) })
		ep := &endpoint{}
		ep.set(r.listen(t, ""), r.secret)

		s1 := redisStore(t, url, clk)
		d1 := newDispatcher(s1, ep, clk, nil, "gw1")
		if err := d1.Start(); err != nil {
			t.Fatal(err)
		}
		if err := d1.ConsentRevoked(t.Context(), alice); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the hanging attempt", func() bool { _, n, _ := r.counts(); return n == 1 })
		d1.Stop()

		// No clock movement: the event is due at once, not at the lease's end.
		core, logs := observer.New(zapcore.DebugLevel)
		d2 := newDispatcher(redisStore(t, url, clk), ep, clk, zap.New(core), "gw2")
		if err := d2.Start(); err != nil {
			t.Fatal(err)
		}
		defer d2.Stop()
		waitLog(t, logs, "webhook delivered")
	})
}

// TestAbandonAfterMaxAge: a receiver that never answers 2xx gets the event
// until MaxAge, then the event is dropped with an error log that names the
// client and event, and nothing of the user or the secret.
func TestAbandonAfterMaxAge(t *testing.T) {
	clk := storetest.NewClock()
	q := memoryStore(t, clk)
	r := newReceiver(t, clk.Now)
	r.setAnswer(func(int) int { return http.StatusInternalServerError })
	ep := &endpoint{}
	ep.set(r.listen(t, ""), r.secret)
	core, logs := observer.New(zapcore.DebugLevel)
	d := newDispatcher(q, ep, clk, zap.New(core), "gw1")
	gaveUp := gaveUpCalls(d)
	ctx := t.Context()
	if err := d.ConsentRevoked(ctx, alice); err != nil {
		t.Fatal(err)
	}
	created := clk.Now()
	for i := 0; logs.FilterMessage("webhook event abandoned: not delivered within max age").Len() == 0; i++ {
		if i > 200 {
			t.Fatal("never abandoned")
		}
		d.poll(ctx)
		clk.Advance(time.Hour)
	}
	_, requests, _ := r.counts()
	if requests != 73 { // at 0, then hourly (every delay is at most 1h) up to 72h
		t.Errorf("%d attempts, want 73", requests)
	}
	last, _ := strconv.ParseInt(r.requests[len(r.requests)-1].Get(HeaderTimestamp), 10, 64)
	if at := time.Unix(last, 0); at.Before(created.Add(DefaultMaxAge)) {
		t.Errorf("last attempt %v after creation, want at max age", at.Sub(created))
	}
	abandoned := logs.FilterMessage("webhook event abandoned: not delivered within max age").All()[0]
	if abandoned.Level != zapcore.ErrorLevel || abandoned.ContextMap()["client_id"] != "app" ||
		abandoned.ContextMap()["event_id"] == "" || abandoned.ContextMap()["attempts"] != int64(73) {
		t.Errorf("abandon log = %v %v", abandoned.Level, abandoned.ContextMap())
	}
	for _, entry := range logs.All() {
		line, _ := json.Marshal(entry.ContextMap())
		for _, secret := range []string{alice.Subject, "receiver-credential", string(r.secret)} {
			if strings.Contains(entry.Message+string(line), secret) {
				t.Errorf("log %q %s reveals %q", entry.Message, line, secret)
			}
		}
	}
	if n := queued(t, q, clk); n != 0 {
		t.Errorf("%d events still queued after abandonment", n)
	}
	// The app's audit entry comes from GaveUp, once.
	if got := gaveUp(); len(got) != 1 || got[0] != "app max_age 73" {
		t.Errorf("GaveUp calls %q, want one \"app max_age 73\"", got)
	}
}

func TestDropped(t *testing.T) {
	t.Run("a client whose webhook was removed", func(t *testing.T) {
		clk := storetest.NewClock()
		q := memoryStore(t, clk)
		r := newReceiver(t, clk.Now)
		ep := &endpoint{}
		ep.set(r.listen(t, ""), r.secret)
		core, logs := observer.New(zapcore.DebugLevel)
		d := newDispatcher(q, ep, clk, zap.New(core), "gw1")
		gaveUp := gaveUpCalls(d)
		if err := d.ConsentRevoked(t.Context(), alice); err != nil {
			t.Fatal(err)
		}
		ep.set("", nil) // a config reload removed the webhook
		d.poll(t.Context())
		if _, requests, _ := r.counts(); requests != 0 {
			t.Errorf("%d requests sent", requests)
		}
		if logs.FilterMessage("webhook event dropped: the client has no webhook configured any more").Len() != 1 {
			t.Errorf("logs = %v", logs.All())
		}
		if got := gaveUp(); len(got) != 1 || got[0] != "app no_webhook 0" {
			t.Errorf("GaveUp calls %q, want one \"app no_webhook 0\"", got)
		}
		if n := queued(t, q, clk); n != 0 {
			t.Errorf("%d events still queued", n)
		}
	})

	t.Run("a receiver answering 410 Gone", func(t *testing.T) {
		clk := storetest.NewClock()
		q := memoryStore(t, clk)
		r := newReceiver(t, clk.Now)
		r.setAnswer(func(int) int { return http.StatusGone })
		ep := &endpoint{}
		ep.set(r.listen(t, ""), r.secret)
		core, logs := observer.New(zapcore.DebugLevel)
		d := newDispatcher(q, ep, clk, zap.New(core), "gw1")
		gaveUp := gaveUpCalls(d)
		if err := d.ConsentRevoked(t.Context(), alice); err != nil {
			t.Fatal(err)
		}
		d.poll(t.Context())
		if logs.FilterMessage("webhook event dropped: the receiver answered 410 Gone").Len() != 1 {
			t.Errorf("logs = %v", logs.All())
		}
		if got := gaveUp(); len(got) != 1 || got[0] != "app gone 1" {
			t.Errorf("GaveUp calls %q, want one \"app gone 1\"", got)
		}
		if n := queued(t, q, clk); n != 0 {
			t.Errorf("%d events still queued", n)
		}
	})
}

func TestRedirectIsAFailure(t *testing.T) {
	clk := storetest.NewClock()
	q := memoryStore(t, clk)
	r := newReceiver(t, clk.Now)
	r.setAnswer(func(n int) int {
		if n == 0 {
			return http.StatusFound
		}
		return http.StatusOK
	})
	ep := &endpoint{}
	ep.set(r.listen(t, ""), r.secret)
	d := newDispatcher(q, ep, clk, nil, "gw1")
	if err := d.ConsentRevoked(t.Context(), alice); err != nil {
		t.Fatal(err)
	}
	d.poll(t.Context())
	if events, requests, invalid := r.counts(); events != 0 || requests != 1 || invalid != 0 {
		t.Fatalf("receiver: %d events, %d requests, %d rejected: the redirect was followed", events, requests, invalid)
	}
	clk.Advance(5 * time.Second)
	d.poll(t.Context())
	if events, _, _ := r.counts(); events != 1 {
		t.Errorf("%d events after the retry, want 1", events)
	}
}

func TestConsentRevokedWithoutWebhook(t *testing.T) {
	clk := storetest.NewClock()
	q := memoryStore(t, clk)
	d := newDispatcher(q, &endpoint{}, clk, nil, "gw1")
	if err := d.ConsentRevoked(t.Context(), alice); err != nil {
		t.Fatal(err)
	}
	if n := queued(t, q, clk); n != 0 {
		t.Errorf("%d events queued for a client without a webhook", n)
	}
}

// failingQueue fails every call, as an unreachable store does.
type failingQueue struct {
	Queue
	fail bool
}

func (f *failingQueue) ClaimEvents(ctx context.Context, c string, n int, l time.Duration) ([]store.Event, error) {
	if f.fail {
		return nil, errors.New("connection refused")
	}
	return nil, nil
}

func TestQueueOutageLoggedOnce(t *testing.T) {
	clk := storetest.NewClock()
	core, logs := observer.New(zapcore.DebugLevel)
	q := &failingQueue{fail: true}
	d := newDispatcher(q, &endpoint{}, clk, zap.New(core), "gw1")
	for range 3 {
		d.poll(t.Context())
	}
	q.fail = false
	d.poll(t.Context())
	d.poll(t.Context())
	if n := logs.FilterMessage("webhook queue unreachable; deliveries wait for it").Len(); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
	if n := logs.FilterMessage("webhook queue reachable again").Len(); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

func TestStartStop(t *testing.T) {
	var zero Dispatcher
	zero.Stop() // without Start
	if err := zero.Start(); err == nil {
		t.Error("Start without Queue and Endpoint succeeded")
	}
	clk := storetest.NewClock()
	d := newDispatcher(memoryStore(t, clk), &endpoint{}, clk, nil, "")
	d.Lease = 10 * time.Second
	if err := d.Start(); err == nil {
		t.Error("Start with a lease shorter than the attempt timeout succeeded")
	}
	d.Lease = 0
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	d.Stop()
	d.Stop()
	if err := d.Start(); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	d.Stop()
	if d.consumer == "" {
		t.Error("no default consumer name")
	}
}

// TestSchedule follows one event that never gets through, with the default
// settings: the first retry within 10s, growing delays, capped at an hour,
// the last retry at the 72h deadline, and abandonment after it.
func TestSchedule(t *testing.T) {
	created := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range []float64{0, 0.999} {
		d := &Dispatcher{Rand: func() float64 { return r }}
		e := store.Event{ID: "evt_1", CreatedAt: created}
		now := created
		var delays []time.Duration
		for attempt := 1; ; attempt++ {
			next, abandon := d.schedule(e, attempt, now, 0)
			if abandon {
				if now.Before(created.Add(DefaultMaxAge)) {
					t.Fatalf("r=%v: abandoned at %v, before max age", r, now.Sub(created))
				}
				break
			}
			if next.After(created.Add(DefaultMaxAge)) {
				t.Fatalf("r=%v: retry at %v, past max age", r, next.Sub(created))
			}
			delays = append(delays, next.Sub(now))
			now = next
			if attempt > 1000 {
				t.Fatal("never abandoned")
			}
		}
		if delays[0] > 10*time.Second || delays[0] <= 0 {
			t.Errorf("r=%v: first retry after %v, want within 10s", r, delays[0])
		}
		for i, dl := range delays[:len(delays)-1] {
			if dl > time.Hour {
				t.Errorf("r=%v: delay %d is %v, over the 1h cap", r, i, dl)
			}
			if r == 0 && i > 0 && dl < delays[i-1] {
				t.Errorf("r=%v: delay %d (%v) shorter than the one before (%v)", r, i, dl, delays[i-1])
			}
		}
		if r == 0 && delays[len(delays)-2] != time.Hour {
			t.Errorf("delays never reached the cap: %v", delays)
		}
		if !now.Equal(created.Add(DefaultMaxAge)) {
			t.Errorf("r=%v: last retry %v after creation, want exactly at max age", r, now.Sub(created))
		}
	}

	// Retry-After lengthens a delay, up to the cap.
	d := &Dispatcher{Rand: func() float64 { return 0 }}
	e := store.Event{CreatedAt: created}
	if next, _ := d.schedule(e, 1, created, 2*time.Minute); next.Sub(created) != 2*time.Minute {
		t.Errorf("Retry-After 2m: next after %v", next.Sub(created))
	}
	if next, _ := d.schedule(e, 1, created, 48*time.Hour); next.Sub(created) != time.Hour {
		t.Errorf("Retry-After 48h: next after %v, want the 1h cap", next.Sub(created))
	}
	if next, _ := d.schedule(e, 1, created, time.Second); next.Sub(created) != 5*time.Second {
		t.Errorf("Retry-After 1s: next after %v, want the backoff's 5s", next.Sub(created))
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"Tue, 01 Jan 2030 00:10:00 GMT": 10 * time.Minute,
		"Mon, 31 Dec 2029 00:10:00 GMT": 0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
