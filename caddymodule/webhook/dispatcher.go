// Package webhook delivers Tollgate's webhooks (user.consent.revoked) to the
// clients that registered a URL, signed per Standard Webhooks
// (https://www.standardwebhooks.com), at least once.
//
// An event is queued in the store before the request that caused it is
// answered (docs/architecture.md §7, §4.4); a Dispatcher in every gateway
// instance claims due events from the shared queue, POSTs them and acks or
// reschedules them. The store's leases make instances share the work
// without sending one event twice at once, and let another instance take
// over the events of one that died. The package knows nothing of Caddy.
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Queue is the part of the store the dispatcher uses: the store's Events
// role.
type Queue = store.Events

// BacklogReader is a Queue that can tell cheaply how many events it holds
// (due, leased or waiting for a retry) and when the oldest of them was
// queued, the zero time when it holds none. The dispatcher asks it once per
// poll at most (Dispatcher.Backlog), never per scrape of the metrics.
type BacklogReader interface {
	Backlog(ctx context.Context) (events int64, oldest time.Time, err error)
}

// Delivery outcomes, as passed to Dispatcher.OnDelivery.
const (
	Delivered = "delivered" // the receiver answered 2xx
	Failed    = "failed"    // no 2xx; the event is retried later
	Abandoned = "abandoned" // failed past MaxAge; the event is dropped
	Gone      = "gone"      // the receiver answered 410; the event is dropped
	Dropped   = "dropped"   // the client has no webhook any more
)

// Defaults of the Dispatcher's fields.
const (
	DefaultMaxAge       = 72 * time.Hour
	DefaultTimeout      = 15 * time.Second
	DefaultPollInterval = time.Second
	DefaultLease        = time.Minute
	DefaultBatch        = 16
)

// Why an event was given up, as GaveUp is told.
const (
	GaveUpMaxAge    = "max_age"    // not delivered within MaxAge
	GaveUpGone      = "gone"       // the receiver answered 410 Gone
	GaveUpNoWebhook = "no_webhook" // the client has no webhook any more
)

// storeTimeout bounds an ack or retry written after the dispatcher was
// told to stop: the attempt already happened, so recording it is worth a
// moment of Stop's time, and not more.
const storeTimeout = 5 * time.Second

// Dispatcher delivers queued events. Set its fields before Start and do not
// change them afterwards; zero fields take the defaults. The methods are
// safe for concurrent use.
type Dispatcher struct {
	// Queue holds the events. Required.
	Queue Queue
	// Endpoint returns a client's webhook URL and secret; ok is false when
	// the client has no webhook (any more). Required.
	Endpoint func(clientID string) (url string, secret []byte, ok bool)

	// Client sends the requests. Default: one that does not follow
	// redirects, which Standard Webhooks counts as failures (the receiver
	// should update its URL instead).
	Client *http.Client
	// Timeout bounds one attempt. Default 15s, the low end of what
	// Standard Webhooks recommends giving a receiver. Keep it well under
	// Lease, or a slow receiver gets the event twice.
	Timeout time.Duration
	// Backoff is the retry schedule.
	Backoff Backoff
	// MaxAge is how long an event is retried: a failure after it abandons
	// the event, logged as an error. Default 72h.
	MaxAge time.Duration
	// Consumer names this instance in the queue. Default: host name and a
	// random suffix.
	Consumer string
	// PollInterval is how often the queue is polled for due events when it
	// had none. Events queued through this Dispatcher are sent at once.
	// Default 1s.
	PollInterval time.Duration
	// Lease is how long a claimed event is this instance's before another
	// may take it (this one died). Default 1m.
	Lease time.Duration
	// Batch is how many events are claimed, and sent in parallel, at once.
	// Default 16.
	Batch int

	// Now is the clock; default time.Now. Rand draws the jitter in [0, 1);
	// default math/rand/v2.Float64.
	Now  func() time.Time
	Rand func() float64
	// Logger receives one line per delivery, failure and abandonment, with
	// client_id and event_id; never a secret, URL or body. Default: none.
	Logger *zap.Logger
	// GaveUp, when set, is called for every event dropped undelivered,
	// with why (GaveUpMaxAge, GaveUpGone, GaveUpNoWebhook) and how many
	// attempts were made; the app writes its audit entry from it.
	GaveUp func(e store.Event, reason string, attempts int)

	// OnDelivery, when set, is told the outcome of every attempt that
	// ran to its end (one of Delivered, Failed, Abandoned, Gone,
	// Dropped); an attempt cut short by Stop is not one.
	OnDelivery func(clientID, outcome string)
	// Backlog, when set, is read after a poll, at most once per
	// PollInterval, and its answer passed to OnBacklog with the oldest
	// event's age (0 when the queue is empty).
	Backlog   func(ctx context.Context) (events int64, oldest time.Time, err error)
	OnBacklog func(events int64, oldestAge time.Duration)

	setupOnce sync.Once
	consumer  string
	client    *http.Client
	wake      chan struct{}
	failing   atomic.Bool // the last claim failed
	// backlogRead is when Backlog was last asked, in Unix nanoseconds.
	backlogRead atomic.Int64

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts delivering in the background until Stop.
func (d *Dispatcher) Start() error {
	if d.Queue == nil || d.Endpoint == nil {
		return errors.New("webhook dispatcher: Queue and Endpoint are required")
	}
	if d.lease() <= d.timeout() {
		return fmt.Errorf("webhook dispatcher: lease %v must be longer than the attempt timeout %v", d.lease(), d.timeout())
	}
	d.setup()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done != nil {
		return errors.New("webhook dispatcher: already started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go d.run(ctx, d.done)
	return nil
}

// Stop stops the loop and waits for it, including the attempts in flight,
// which are cut short and their events handed back to the queue, due at
// once. It is safe to call without Start, and more than once.
func (d *Dispatcher) Stop() {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.cancel, d.done = nil, nil
	d.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// ConsentRevoked queues the user.consent.revoked event of a revoked grant
// when its client has a webhook, and returns once the store holds it.
func (d *Dispatcher) ConsentRevoked(ctx context.Context, g store.Grant) error {
	if _, _, ok := d.Endpoint(g.ClientID); !ok {
		return nil
	}
	e, err := NewConsentRevoked(g, d.now())
	if err != nil {
		return err
	}
	return d.Enqueue(ctx, e)
}

// Enqueue queues an event and wakes the loop, so that it is sent now rather
// than at the next poll.
func (d *Dispatcher) Enqueue(ctx context.Context, e store.Event) error {
	if err := d.Queue.EnqueueEvent(ctx, e); err != nil {
		return fmt.Errorf("queueing webhook event: %w", err)
	}
	d.setup()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

func (d *Dispatcher) setup() {
	d.setupOnce.Do(func() {
		d.wake = make(chan struct{}, 1)
		d.consumer = d.Consumer
		if d.consumer == "" {
			host, _ := os.Hostname()
			var b [4]byte
			_, _ = rand.Read(b[:])
			d.consumer = host + "-" + hex.EncodeToString(b[:])
		}
		d.client = d.Client
		if d.client == nil {
			d.client = &http.Client{
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
		}
	})
}

func (d *Dispatcher) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wake:
		}
		wait := d.pollInterval()
		if d.poll(ctx) {
			wait = 0 // a full batch: more may be due
		}
		t.Reset(wait)
	}
}

// poll claims one batch and delivers it, in parallel so that one slow
// receiver costs the others nothing; it reports whether the batch was full.
func (d *Dispatcher) poll(ctx context.Context) bool {
	d.setup()
	batch := d.batch()
	events, err := d.Queue.ClaimEvents(ctx, d.consumer, batch, d.lease())
	if err != nil {
		// Logged once per outage: the loop retries every PollInterval.
		if ctx.Err() == nil && !d.failing.Swap(true) {
			d.logger().Error("webhook queue unreachable; deliveries wait for it", zap.Error(err))
		}
		return false
	}
	if d.failing.Swap(false) {
		d.logger().Info("webhook queue reachable again")
	}
	d.readBacklog(ctx)
	var wg sync.WaitGroup
	for _, e := range events {
		wg.Go(func() { d.deliver(ctx, e) })
	}
	wg.Wait()
	return len(events) == batch
}

// readBacklog passes the queue's backlog to OnBacklog, unless it was read
// less than a PollInterval ago (a full batch polls again at once). A
// failed read leaves the last figures: the claim just succeeded, so it is
// rare, and the store's own metrics tell of its failures.
func (d *Dispatcher) readBacklog(ctx context.Context) {
	if d.Backlog == nil || d.OnBacklog == nil {
		return
	}
	now := d.now()
	if last := d.backlogRead.Load(); last != 0 && now.Sub(time.Unix(0, last)) < d.pollInterval() {
		return
	}
	d.backlogRead.Store(now.UnixNano())
	n, oldest, err := d.Backlog(ctx)
	if err != nil {
		return
	}
	var age time.Duration
	if !oldest.IsZero() && n > 0 {
		age = max(now.Sub(oldest), 0)
	}
	d.OnBacklog(n, age)
}

// observe passes an attempt's outcome to OnDelivery.
func (d *Dispatcher) observe(e store.Event, outcome string) {
	if d.OnDelivery != nil {
		d.OnDelivery(e.ClientID, outcome)
	}
}

// deliver makes one attempt and records its outcome.
func (d *Dispatcher) deliver(ctx context.Context, e store.Event) {
	log := d.logger().With(zap.String("client_id", e.ClientID), zap.String("event_id", e.ID))
	target, secret, ok := d.Endpoint(e.ClientID)
	if !ok || target == "" || len(secret) == 0 {
		log.Warn("webhook event dropped: the client has no webhook configured any more")
		d.observe(e, Dropped)
		d.ack(ctx, log, e)
		d.gaveUp(e, GaveUpNoWebhook, e.Attempts)
		return
	}
	status, retryAfter, err := d.attempt(ctx, target, secret, e)
	if err == nil && status >= 200 && status < 300 {
		log.Info("webhook delivered", zap.Int("attempt", e.Attempts+1))
		d.observe(e, Delivered)
		d.ack(ctx, log, e)
		return
	}
	if ctx.Err() != nil {
		// Stopping cut the attempt short. The event is handed back due now
		// rather than at its lease's end, so that another instance, or this
		// one's successor after a config reload, sends it without waiting.
		d.retry(ctx, log, e, d.now())
		return
	}
	outcome := zap.Int("status", status)
	if err != nil {
		outcome = zap.String("error", err.Error())
	}
	attempt := e.Attempts + 1
	if status == http.StatusGone {
		// Standard Webhooks: 410 means the receiver wants no more.
		log.Error("webhook event dropped: the receiver answered 410 Gone", zap.Int("attempt", attempt))
		d.observe(e, Gone)
		d.ack(ctx, log, e)
		d.gaveUp(e, GaveUpGone, attempt)
		return
	}
	next, abandon := d.schedule(e, attempt, d.now(), retryAfter)
	if abandon {
		log.Error("webhook event abandoned: not delivered within max age",
			zap.Int("attempts", attempt), zap.Time("created", e.CreatedAt), zap.Duration("max_age", d.maxAge()), outcome)
		d.observe(e, Abandoned)
		d.ack(ctx, log, e)
		d.gaveUp(e, GaveUpMaxAge, attempt)
		return
	}
	d.retry(ctx, log, e, next)
	d.observe(e, Failed)
	log.Warn("webhook delivery failed; will retry", zap.Int("attempt", attempt), outcome, zap.Time("next_attempt", next))
}

// schedule returns when to try again after failed attempt number attempt
// made at now, or abandon when the event is past MaxAge. The last retry is
// moved to the deadline rather than dropped, so that an event is tried
// until the very end of MaxAge.
func (d *Dispatcher) schedule(e store.Event, attempt int, now time.Time, retryAfter time.Duration) (next time.Time, abandon bool) {
	deadline := e.CreatedAt.Add(d.maxAge())
	if !now.Before(deadline) {
		return time.Time{}, true
	}
	delay := d.Backoff.Delay(attempt, d.rand())
	if retryAfter > delay {
		delay = min(retryAfter, d.Backoff.ceiling())
	}
	next = now.Add(delay)
	if next.After(deadline) {
		next = deadline
	}
	return next, false
}

// attempt POSTs the event once and returns the status and Retry-After.
// Errors never carry the URL, which may hold a credential of the receiver.
func (d *Dispatcher) attempt(ctx context.Context, target string, secret []byte, e store.Event) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(e.Payload))
	if err != nil {
		return 0, 0, errors.New("invalid webhook url")
	}
	ts := d.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tollgate-Webhooks")
	req.Header.Set(HeaderID, e.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(secret, e.ID, ts, e.Payload))
	resp, err := d.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return 0, 0, err
	}
	defer resp.Body.Close()
	// Drained (up to a bound) so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), ts), nil
}

// retryAfter reads a Retry-After header (seconds or an HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// retry reschedules an event, even when the dispatcher is stopping.
func (d *Dispatcher) retry(ctx context.Context, log *zap.Logger, e store.Event, next time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := d.Queue.RetryEvent(ctx, e, next); err != nil && !errors.Is(err, store.ErrNotFound) {
		// The lease brings the event back, only later.
		log.Error("recording a failed webhook attempt", zap.Error(err))
	}
}

// ack removes an event, even when the dispatcher is stopping: the attempt
// is over and sending it again would only be a duplicate.
func (d *Dispatcher) ack(ctx context.Context, log *zap.Logger, e store.Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := d.Queue.AckEvent(ctx, e); err != nil {
		log.Error("acking a webhook event; it will be sent again", zap.Error(err))
	}
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Dispatcher) rand() float64 {
	if d.Rand != nil {
		return d.Rand()
	}
	return mrand.Float64()
}

func (d *Dispatcher) gaveUp(e store.Event, reason string, attempts int) {
	if d.GaveUp != nil {
		d.GaveUp(e, reason, attempts)
	}
}

func (d *Dispatcher) logger() *zap.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return zap.NewNop()
}

// The zero value of a setting means its default.

func (d *Dispatcher) timeout() time.Duration { return orDefault(d.Timeout, DefaultTimeout) }
func (d *Dispatcher) maxAge() time.Duration  { return orDefault(d.MaxAge, DefaultMaxAge) }
func (d *Dispatcher) lease() time.Duration   { return orDefault(d.Lease, DefaultLease) }

func (d *Dispatcher) pollInterval() time.Duration {
	return orDefault(d.PollInterval, DefaultPollInterval)
}

func (d *Dispatcher) batch() int {
	if d.Batch > 0 {
		return d.Batch
	}
	return DefaultBatch
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}
