package caddymodule

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Store deadlines (README "Configuration reference", store_timeout).
//
// A store that is down fails fast: the dial is refused. A store that hangs
// (a Redis paused by a fork, swapping, or stopped on a dead host whose TCP
// stack has not said so) answers nothing, and without a deadline each request
// waits for the Redis client's read timeout (3 s by default) while the
// partner's own timeouts run out. deadlineStore gives every store call made
// on behalf of a request a deadline of its own, so a hung store costs a
// request about store_timeout before it gets its 503 (RFC 6749 §5.2
// temporarily_unavailable at the OAuth endpoints, problem+json on API
// routes). The Redis store passes the deadline to go-redis, which applies
// it to the socket (ContextTimeoutEnabled, redisstore.parseURL), and its
// Authenticate batches end at the latest deadline of their calls
// (redisstore/batch.go).

const (
	// defaultStoreTimeout is well above a healthy Redis round trip (tens of
	// microseconds on a LAN, a few milliseconds across zones) and well below
	// what a partner's HTTP client waits.
	defaultStoreTimeout = 250 * time.Millisecond
	// maxStoreTimeout keeps a typo (250s for 250ms) from bringing back the
	// pile-up the deadline is for.
	maxStoreTimeout = 30 * time.Second
)

// deadlineStore bounds every call to the store it wraps by timeout, and
// times it for the store metrics (metrics.go): it is the one layer every
// store call goes through, so the measurement lives here and nowhere else.
// It lists each method, role by role, rather than embedding the store, so
// that a method added to store.Store cannot skip the deadline or the
// timing unnoticed. A zero timeout only times: the embedded store cannot
// hang, and the webhook dispatcher's background calls have deadlines of
// their own.
type deadlineStore struct {
	st      store.Store
	timeout time.Duration
}

// storeCall is one call under way: its operation, start and deadline.
type storeCall struct {
	op     storeOp
	start  time.Time
	cancel context.CancelFunc
}

// noCancel is the cancel of a call that got no deadline of its own.
func noCancel() {}

// begin starts a call: ctx with the store deadline, unless ctx already ends
// sooner or there is none. The check costs a clock read;
// context.WithTimeout costs a few small allocations (see
// BenchmarkAuthenticateDeadline); the timing costs a clock read and no
// allocation.
func (s deadlineStore) begin(ctx context.Context, op storeOp) (context.Context, storeCall) {
	c := storeCall{op: op, start: time.Now(), cancel: noCancel}
	if s.timeout <= 0 {
		return ctx, c
	}
	if d, ok := ctx.Deadline(); ok && d.Sub(c.start) <= s.timeout {
		return ctx, c
	}
	ctx, c.cancel = context.WithTimeout(ctx, s.timeout)
	return ctx, c
}

// end releases the call's deadline, records it and returns err.
func (c storeCall) end(err error) error {
	c.cancel()
	observeStore(c.op, c.start, err)
	return err
}

// store.Grants

func (s deadlineStore) SaveGrant(ctx context.Context, g store.Grant, ttl time.Duration) error {
	ctx, call := s.begin(ctx, opSaveGrant)
	return call.end(s.st.SaveGrant(ctx, g, ttl))
}

func (s deadlineStore) GetGrant(ctx context.Context, grantID string) (store.Grant, error) {
	ctx, call := s.begin(ctx, opGetGrant)
	v, err := s.st.GetGrant(ctx, grantID)
	return v, call.end(err)
}

func (s deadlineStore) RevokeGrant(ctx context.Context, grantID string) (store.Grant, error) {
	ctx, call := s.begin(ctx, opRevokeGrant)
	v, err := s.st.RevokeGrant(ctx, grantID)
	return v, call.end(err)
}

func (s deadlineStore) ListGrants(ctx context.Context, subject string) ([]store.Grant, error) {
	ctx, call := s.begin(ctx, opListGrants)
	v, err := s.st.ListGrants(ctx, subject)
	return v, call.end(err)
}

// store.Codes

func (s deadlineStore) SaveCode(ctx context.Context, grantID, digest string, c store.Code) error {
	ctx, call := s.begin(ctx, opSaveCode)
	return call.end(s.st.SaveCode(ctx, grantID, digest, c))
}

func (s deadlineStore) ConsumeCode(ctx context.Context, grantID, digest string) (store.Code, error) {
	ctx, call := s.begin(ctx, opConsumeCode)
	v, err := s.st.ConsumeCode(ctx, grantID, digest)
	return v, call.end(err)
}

// store.Tokens

func (s deadlineStore) IssueTokens(ctx context.Context, grantID, codeDigest string, p store.Pair) error {
	ctx, call := s.begin(ctx, opIssueTokens)
	return call.end(s.st.IssueTokens(ctx, grantID, codeDigest, p))
}

func (s deadlineStore) GetToken(ctx context.Context, grantID string, kind store.Kind, digest string) (store.Token, error) {
	ctx, call := s.begin(ctx, opGetToken)
	v, err := s.st.GetToken(ctx, grantID, kind, digest)
	return v, call.end(err)
}

func (s deadlineStore) RevocableToken(ctx context.Context, grantID string, kind store.Kind, digest string) (store.Token, error) {
	ctx, call := s.begin(ctx, opRevocableToken)
	v, err := s.st.RevocableToken(ctx, grantID, kind, digest)
	return v, call.end(err)
}

func (s deadlineStore) Rotate(ctx context.Context, grantID, oldRefresh string, p store.Pair) error {
	ctx, call := s.begin(ctx, opRotate)
	return call.end(s.st.Rotate(ctx, grantID, oldRefresh, p))
}

func (s deadlineStore) CheckReuse(ctx context.Context, grantID, refreshDigest string, grace time.Duration) (store.Grant, error) {
	ctx, call := s.begin(ctx, opCheckReuse)
	v, err := s.st.CheckReuse(ctx, grantID, refreshDigest, grace)
	return v, call.end(err)
}

// store.Budgets

func (s deadlineStore) Authenticate(ctx context.Context, grantID, accessDigest string, l store.Limit) (store.Token, store.RateStatus, error) {
	// A call the store decides in process needs no deadline (a timer and
	// a few allocations, more than the call itself). It is timed as an
	// operation of its own, so that authenticate's latency and errors stay
	// those of the calls that wait for the store.
	if la, ok := s.st.(store.LocalAuthenticator); ok {
		start := time.Now()
		if v, w, ok := la.AuthenticateLocal(grantID, accessDigest, l); ok {
			observeStore(opAuthenticateLocal, start, nil)
			return v, w, nil
		}
	}
	ctx, call := s.begin(ctx, opAuthenticate)
	v, w, err := s.st.Authenticate(ctx, grantID, accessDigest, l)
	return v, w, call.end(err)
}

func (s deadlineStore) Refund(ctx context.Context, grantID string, l store.Limit) (bool, error) {
	ctx, call := s.begin(ctx, opRefund)
	v, err := s.st.Refund(ctx, grantID, l)
	return v, call.end(err)
}

// store.Blobs

func (s deadlineStore) SetBlob(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, call := s.begin(ctx, opSetBlob)
	return call.end(s.st.SetBlob(ctx, key, value, ttl))
}

func (s deadlineStore) GetBlob(ctx context.Context, key string) ([]byte, error) {
	ctx, call := s.begin(ctx, opGetBlob)
	v, err := s.st.GetBlob(ctx, key)
	return v, call.end(err)
}

func (s deadlineStore) TakeBlob(ctx context.Context, key string) ([]byte, error) {
	ctx, call := s.begin(ctx, opTakeBlob)
	v, err := s.st.TakeBlob(ctx, key)
	return v, call.end(err)
}

func (s deadlineStore) DeleteBlob(ctx context.Context, key string) error {
	ctx, call := s.begin(ctx, opDeleteBlob)
	return call.end(s.st.DeleteBlob(ctx, key))
}

func (s deadlineStore) LoadOrStoreBlob(ctx context.Context, key string, value []byte) ([]byte, error) {
	ctx, call := s.begin(ctx, opLoadOrStoreBlob)
	v, err := s.st.LoadOrStoreBlob(ctx, key, value)
	return v, call.end(err)
}

// store.FailureCounts

func (s deadlineStore) CountFailure(ctx context.Context, key string, window time.Duration) (int64, time.Time, error) {
	ctx, call := s.begin(ctx, opCountFailure)
	v, w, err := s.st.CountFailure(ctx, key, window)
	return v, w, call.end(err)
}

func (s deadlineStore) Failures(ctx context.Context, key string, window time.Duration) (int64, time.Time, error) {
	ctx, call := s.begin(ctx, opFailures)
	v, w, err := s.st.Failures(ctx, key, window)
	return v, w, call.end(err)
}

func (s deadlineStore) ClearFailures(ctx context.Context, key string, window time.Duration) error {
	ctx, call := s.begin(ctx, opClearFailures)
	return call.end(s.st.ClearFailures(ctx, key, window))
}

// store.Events

func (s deadlineStore) EnqueueEvent(ctx context.Context, e store.Event) error {
	ctx, call := s.begin(ctx, opEnqueueEvent)
	return call.end(s.st.EnqueueEvent(ctx, e))
}

func (s deadlineStore) ClaimEvents(ctx context.Context, consumer string, max int, lease time.Duration) ([]store.Event, error) {
	ctx, call := s.begin(ctx, opClaimEvents)
	v, err := s.st.ClaimEvents(ctx, consumer, max, lease)
	return v, call.end(err)
}

func (s deadlineStore) AckEvent(ctx context.Context, e store.Event) error {
	ctx, call := s.begin(ctx, opAckEvent)
	return call.end(s.st.AckEvent(ctx, e))
}

func (s deadlineStore) RetryEvent(ctx context.Context, e store.Event, next time.Time) error {
	ctx, call := s.begin(ctx, opRetryEvent)
	return call.end(s.st.RetryEvent(ctx, e, next))
}

// store.Lifecycle is not bounded or timed: Close releases the client and
// does not ask the store, and the handlers never Ping (a caller of Ping
// passes a deadline of its own).

func (s deadlineStore) Ping(ctx context.Context) error { return s.st.Ping(ctx) }
func (s deadlineStore) Close() error                   { return s.st.Close() }

var _ store.Store = deadlineStore{}
