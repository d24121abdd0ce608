package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

// Prometheus metrics (README "Metrics").
//
// The collectors are created once per process and registered into the
// registry of every config Caddy loads (App.Provision), so they are served
// wherever Caddy's own metrics are (the admin endpoint's /metrics and the
// metrics handler) and keep counting across config reloads, where Caddy's
// http metrics start again from zero.
//
// Every label value comes from the config (client ids, route names) or from
// a fixed set (outcomes, grant types, store operations), never from a
// request: a client_id that no registered client has is counted as
// "unknown" and a grant_type outside the two served as "other", so a caller
// cannot grow the number of series.
//
// On the API hot path nothing is looked up by label: each route resolves
// its counters in Provision and the store operations theirs here, so
// counting is an atomic add with no allocation (BenchmarkProtect).

// unknownClientLabel labels a client_id that no registered client has.
const unknownClientLabel = "unknown"

// metrics are the process's collectors, shared by every config.
var metrics = newMetricSet()

type metricSet struct {
	authorize   *prometheus.CounterVec   // client, outcome
	token       *prometheus.CounterVec   // grant_type, client, outcome
	checks      *prometheus.CounterVec   // route, outcome
	rateLimited *prometheus.CounterVec   // client
	storeTime   *prometheus.HistogramVec // operation
	storeErrors *prometheus.CounterVec   // operation
	deliveries  *prometheus.CounterVec   // client, outcome
	signIns     *prometheus.CounterVec   // outcome
	// The queue gauges have no labels; they are vectors so that a series
	// exists only once a queue that can report its backlog has done so
	// (webhooks.go), rather than showing an empty queue it never measured.
	queueDepth *prometheus.GaugeVec
	oldestAge  *prometheus.GaugeVec
	maxAge     prometheus.Gauge

	// The store operations' children, resolved once (deadline.go).
	opTime   [numStoreOps]prometheus.Observer
	opErrors [numStoreOps]prometheus.Counter
}

func newMetricSet() *metricSet {
	const ns = "tollgate"
	m := &metricSet{
		authorize: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "authorize_requests_total",
			Help: "Requests to the authorization endpoint by client and outcome: login_form, consent_form, granted, denied, invalid_request, bad_form, unauthenticated, error.",
		}, []string{"client", "outcome"}),
		token: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "token_requests_total",
			Help: "Requests to the token endpoint by grant type, client and outcome (ok or the RFC 6749 error code).",
		}, []string{"grant_type", "client", "outcome"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "token_checks_total",
			Help: "Bearer-token checks on API routes by route and outcome: ok, invalid, insufficient_scope, rate_limited, store_error, bad_request.",
		}, []string{"route", "outcome"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "rate_limited_total",
			Help: "API requests refused with 429 because the grant's budget was spent, by client.",
		}, []string{"client"}),
		storeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "store_operation_duration_seconds",
			Help: "Time each store operation took, by operation, failures included.",
			// From a memory store's microseconds to past the default
			// store_timeout (250ms).
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"operation"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "store_errors_total",
			Help: "Store operations that failed (unreachable, timed out or a bad answer; not found is no error), by operation.",
		}, []string{"operation"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "webhook_deliveries_total",
			Help: "Webhook delivery attempts by client and outcome: delivered, failed (retried later), abandoned (past webhook_max_age), gone (410), dropped (the client has no webhook).",
		}, []string{"client", "outcome"}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "sign_in_attempts_total",
			Help: "Sign-in form submissions by outcome: success, failure, throttled_address, throttled_username.",
		}, []string{"outcome"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "webhook_queue_depth",
			Help: "Webhook events in the queue (due, leased or waiting for a retry), as last read by this instance's dispatcher.",
		}, nil),
		oldestAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "webhook_oldest_event_age_seconds",
			Help: "Age of the oldest webhook event in the queue (0 when empty), as last read by this instance's dispatcher.",
		}, nil),
		maxAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "webhook_max_age_seconds",
			Help: "The configured webhook_max_age: an event still queued at this age is abandoned.",
		}),
	}
	for op := range numStoreOps {
		m.opTime[op] = m.storeTime.WithLabelValues(storeOpNames[op])
		m.opErrors[op] = m.storeErrors.WithLabelValues(storeOpNames[op])
	}
	return m
}

// register adds the collectors to a config's registry. A collector that is
// already there (a second app in one config) is fine: it is the same one.
func (m *metricSet) register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		m.authorize, m.token, m.checks, m.rateLimited, m.storeTime, m.storeErrors,
		m.deliveries, m.signIns, m.queueDepth, m.oldestAge, m.maxAge,
	} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return fmt.Errorf("registering metrics: %w", err)
			}
		}
	}
	return nil
}

// clientLabel is id when a client is registered under it, else "unknown".
func (a *App) clientLabel(id string) string {
	if _, ok := a.clients[id]; ok {
		return id
	}
	return unknownClientLabel
}

// Outcomes of the authorization endpoint.
const (
	authorizeLoginForm       = "login_form"
	authorizeConsentForm     = "consent_form"
	authorizeGranted         = "granted"
	authorizeDenied          = "denied"
	authorizeInvalidRequest  = "invalid_request"
	authorizeBadForm         = "bad_form"
	authorizeUnauthenticated = "unauthenticated"
	authorizeError           = "error"
)

// countAuthorize counts one answer of the authorization endpoint.
func (a *App) countAuthorize(clientID, outcome string) {
	metrics.authorize.WithLabelValues(a.clientLabel(clientID), outcome).Inc()
}

// countToken counts one answer of the token endpoint, labelled by the
// client the request names (authenticated or not: a wrong secret counts
// against the client it claimed) and its grant type.
func (a *App) countToken(r *http.Request, oerr *oauth.Error) {
	gt := r.PostForm.Get("grant_type")
	if gt != "authorization_code" && gt != "refresh_token" {
		gt = "other"
	}
	id, _, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
	} else {
		id = r.PostForm.Get("client_id")
	}
	outcome := "ok"
	if oerr != nil {
		outcome = oerr.Code
	}
	metrics.token.WithLabelValues(gt, a.clientLabel(id), outcome).Inc()
}

// countSignIn counts one sign-in form submission.
func countSignIn(outcome string) { metrics.signIns.WithLabelValues(outcome).Inc() }

// clientCounters is one counter per registered client and one for
// "unknown", resolved when the config loads, so that counting by client on
// the API hot path is a map read.
type clientCounters struct {
	by      map[string]prometheus.Counter
	unknown prometheus.Counter
}

func newClientCounters(v *prometheus.CounterVec, clients []ClientConfig) clientCounters {
	c := clientCounters{by: make(map[string]prometheus.Counter, len(clients)), unknown: v.WithLabelValues(unknownClientLabel)}
	for _, cc := range clients {
		c.by[cc.ClientID] = v.WithLabelValues(cc.ClientID)
	}
	return c
}

func (c clientCounters) inc(clientID string) {
	if n, ok := c.by[clientID]; ok {
		n.Inc()
		return
	}
	c.unknown.Inc()
}

// Outcomes of a token check on an API route.
type checkOutcome uint8

const (
	checkOK checkOutcome = iota
	checkInvalid
	checkInsufficientScope
	checkRateLimited
	checkStoreError
	checkBadRequest
	numCheckOutcomes
)

var checkOutcomeNames = [numCheckOutcomes]string{"ok", "invalid", "insufficient_scope", "rate_limited", "store_error", "bad_request"}

// routeChecks are a route's token-check counters, one per outcome.
type routeChecks [numCheckOutcomes]prometheus.Counter

func newRouteChecks(route string) routeChecks {
	var rc routeChecks
	for o := range numCheckOutcomes {
		rc[o] = metrics.checks.WithLabelValues(route, checkOutcomeNames[o])
	}
	return rc
}

// count counts one check with the given outcome.
func (rc *routeChecks) count(o checkOutcome) { rc[o].Inc() }

// limited counts a check refused for a spent budget, on the route and
// against the token's client.
func (rc *routeChecks) limited(a *App, clientID string) {
	rc.count(checkRateLimited)
	a.rateLimited.inc(clientID)
}

// checkRouteName accepts a route name for the metrics: 1 to 64 printable
// ASCII characters, as a dashboard shows them.
func checkRouteName(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("name %q: at most 64 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] > 0x7e {
			return fmt.Errorf("name %q: printable ASCII only", name)
		}
	}
	return nil
}

// refused counts a check answered with an API error of the given status.
func (rc *routeChecks) refused(status int) {
	switch status {
	case http.StatusUnauthorized:
		rc.count(checkInvalid)
	case http.StatusForbidden:
		rc.count(checkInsufficientScope)
	case http.StatusTooManyRequests:
		rc.count(checkRateLimited)
	case http.StatusServiceUnavailable:
		rc.count(checkStoreError)
	default:
		rc.count(checkBadRequest)
	}
}

// storeOp names a store operation for the latency histogram.
type storeOp uint8

const (
	opSaveGrant storeOp = iota
	opGetGrant
	opRevokeGrant
	opSaveCode
	opConsumeCode
	opIssueTokens
	opGetToken
	opRevocableToken
	opRotate
	opAuthenticate
	opRefund
	opSetBlob
	opGetBlob
	opTakeBlob
	opDeleteBlob
	opLoadOrStoreBlob
	opCountFailure
	opFailures
	opClearFailures
	opCheckReuse
	opListGrants
	opEnqueueEvent
	opClaimEvents
	opAckEvent
	opRetryEvent
	opAuthenticateLocal // an authenticate the store decided in process, with no I/O
	numStoreOps
)

var storeOpNames = [numStoreOps]string{
	"save_grant", "get_grant", "revoke_grant", "save_code", "consume_code", "issue_tokens",
	"get_token", "revocable_token", "rotate", "authenticate", "refund", "set_blob", "get_blob", "take_blob",
	"delete_blob", "load_or_store_blob", "count_failure", "failures", "clear_failures",
	"check_reuse", "list_grants", "enqueue_event", "claim_events", "ack_event", "retry_event",
	"authenticate_local",
}

// observeStore records one store operation that started at start. The
// store's answers that are outcomes (not found, a replayed code, a reused
// refresh token) are no errors, and neither is a caller that went away.
func observeStore(op storeOp, start time.Time, err error) {
	metrics.opTime[op].Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrCodeReplayed) &&
		!errors.Is(err, store.ErrRefreshReused) && !errors.Is(err, context.Canceled) {
		metrics.opErrors[op].Inc()
	}
}
