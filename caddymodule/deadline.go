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

// deadlineStore bounds every call to the store it wraps by timeout. It
// lists each method rather than embedding the store, so that a method added
// to backend cannot skip the deadline unnoticed.
type deadlineStore struct {
	st      backend
	timeout time.Duration
}

// bound returns ctx with the store deadline, unless ctx already ends
// sooner. The check costs a clock read; context.WithTimeout costs a few
// small allocations (see BenchmarkAuthenticateDeadline).
func (s deadlineStore) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

func (s deadlineStore) SaveGrant(ctx context.Context, g store.Grant, ttl time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.SaveGrant(ctx, g, ttl)
}

func (s deadlineStore) GetGrant(ctx context.Context, grantID string) (store.Grant, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.GetGrant(ctx, grantID)
}

func (s deadlineStore) RevokeGrant(ctx context.Context, grantID string) (store.Grant, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.RevokeGrant(ctx, grantID)
}

func (s deadlineStore) SaveCode(ctx context.Context, grantID, digest string, c store.Code) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.SaveCode(ctx, grantID, digest, c)
}

func (s deadlineStore) ConsumeCode(ctx context.Context, grantID, digest string) (store.Code, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.ConsumeCode(ctx, grantID, digest)
}

func (s deadlineStore) IssueTokens(ctx context.Context, grantID, codeDigest string, p store.Pair) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.IssueTokens(ctx, grantID, codeDigest, p)
}

func (s deadlineStore) GetToken(ctx context.Context, grantID string, kind store.Kind, digest string) (store.Token, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.GetToken(ctx, grantID, kind, digest)
}

func (s deadlineStore) Rotate(ctx context.Context, grantID, oldRefresh string, p store.Pair) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.Rotate(ctx, grantID, oldRefresh, p)
}

func (s deadlineStore) Authenticate(ctx context.Context, grantID, accessDigest string, l store.Limit) (store.Token, store.RateStatus, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.Authenticate(ctx, grantID, accessDigest, l)
}

func (s deadlineStore) Refund(ctx context.Context, grantID string, l store.Limit) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.Refund(ctx, grantID, l)
}

func (s deadlineStore) SetBlob(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.SetBlob(ctx, key, value, ttl)
}

func (s deadlineStore) GetBlob(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.GetBlob(ctx, key)
}

func (s deadlineStore) TakeBlob(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.TakeBlob(ctx, key)
}

func (s deadlineStore) DeleteBlob(ctx context.Context, key string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.DeleteBlob(ctx, key)
}

func (s deadlineStore) CountFailure(ctx context.Context, key string, window time.Duration) (int64, time.Time, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.CountFailure(ctx, key, window)
}

func (s deadlineStore) LoadOrStoreBlob(ctx context.Context, key string, value []byte) ([]byte, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.LoadOrStoreBlob(ctx, key, value)
}

func (s deadlineStore) ClearFailures(ctx context.Context, key string, window time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.ClearFailures(ctx, key, window)
}

func (s deadlineStore) Failures(ctx context.Context, key string, window time.Duration) (int64, time.Time, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.Failures(ctx, key, window)
}

func (s deadlineStore) CheckReuse(ctx context.Context, grantID, refreshDigest string, grace time.Duration) (store.Grant, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.CheckReuse(ctx, grantID, refreshDigest, grace)
}

func (s deadlineStore) ListGrants(ctx context.Context, subject string) ([]store.Grant, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.ListGrants(ctx, subject)
}

func (s deadlineStore) EnqueueEvent(ctx context.Context, e store.Event) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.EnqueueEvent(ctx, e)
}

func (s deadlineStore) ClaimEvents(ctx context.Context, consumer string, max int, lease time.Duration) ([]store.Event, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.ClaimEvents(ctx, consumer, max, lease)
}

func (s deadlineStore) AckEvent(ctx context.Context, e store.Event) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.AckEvent(ctx, e)
}

func (s deadlineStore) RetryEvent(ctx context.Context, e store.Event, next time.Time) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.st.RetryEvent(ctx, e, next)
}

// Close is not bounded: it releases the client, it does not ask the store.
func (s deadlineStore) Close() error { return s.st.Close() }

var _ backend = deadlineStore{}
