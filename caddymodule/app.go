// Package caddymodule is the Tollgate Caddy plugin: the `tollgate` app, which
// owns the store, the registered clients, the scope catalogue and the user
// authenticator, and thin HTTP handlers for the OAuth endpoints that reach it
// through ctx.App. The protocol rules live in the Caddy-free package oauth
// and the state in package store.
package caddymodule

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/webhook"
)

func init() {
	caddy.RegisterModule(App{})
}

// Defaults of the DSS documents: "Access tokens live for 1 hour",
// "Refresh tokens are 90-day TTL", codes "expire after 60 seconds".
const (
	defaultAccessLifetime  = time.Hour
	defaultRefreshLifetime = 90 * 24 * time.Hour
	defaultCodeLifetime    = 60 * time.Second
	defaultSessionLifetime = 12 * time.Hour
	defaultReuseGrace      = 10 * time.Second
	maxReuseGrace          = 5 * time.Minute
	defaultWebhookMaxAge   = 72 * time.Hour
	// How long a user has to sign in and decide on the consent screen.
	pendingLifetime = 15 * time.Minute
)

// App is the `tollgate` Caddy app: an OAuth 2.0 authorization server whose
// state lives in a store shared by every gateway instance.
type App struct {
	// Store is where grants, tokens, codes and sessions live: empty or
	// "memory" for the embedded store (one node), a redis:// or rediss://
	// URL for Redis (any number of nodes). Placeholders such as
	// {env.TOLLGATE_STORE} are resolved when the config is loaded, so a
	// password in the URL never shows in the /config API.
	Store string `json:"store,omitempty"`
	// Redis is the structured Redis store, for Cluster, Sentinel, TLS
	// with a private CA or ACL credentials from placeholders (README
	// "Redis topologies"). It excludes Store.
	Redis *RedisConfig `json:"redis,omitempty"`
	// StoreTimeout bounds each store call made for a request, so that a
	// hung store answers 503 after this long rather than after the Redis
	// client's read timeout. Default 250ms, at most 30s.
	StoreTimeout caddy.Duration `json:"store_timeout,omitempty"`

	// Issuer is the public origin of the authorization server, e.g.
	// https://api.example.com. When set, it is returned as the `iss`
	// parameter of authorization responses (RFC 9207).
	Issuer string `json:"issuer,omitempty"`

	// Realm is the realm of WWW-Authenticate challenges. Default: tollgate.
	Realm string `json:"realm,omitempty"`

	// AccessTokenLifetime is how long an access token is valid. Default 1h.
	AccessTokenLifetime caddy.Duration `json:"access_token_lifetime,omitempty"`
	// RefreshTokenLifetime is how long a refresh token is valid; each
	// refresh issues a new one, so the lifetime slides with use. Default 90 days.
	RefreshTokenLifetime caddy.Duration `json:"refresh_token_lifetime,omitempty"`
	// CodeLifetime is how long an authorization code can be exchanged. Default 60s.
	CodeLifetime caddy.Duration `json:"code_lifetime,omitempty"`
	// SessionLifetime is how long a user stays signed in to the
	// authorization pages. Default 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`
	// RefreshReuseGrace is how long after a rotation the old refresh token
	// only gets invalid_grant (two racing refreshes). Presented later, it
	// revokes the whole grant (RFC 9700 §4.14.2). Default 10s, at most 5m.
	RefreshReuseGrace caddy.Duration `json:"refresh_reuse_grace,omitempty"`
	// WebhookMaxAge is how long a webhook event is retried before it is
	// abandoned. Default 72h.
	WebhookMaxAge caddy.Duration `json:"webhook_max_age,omitempty"`

	// RateLimit is the default budget of every grant (one user's consent
	// to one client), as <count>/<duration>, e.g. 5000/1h: a fixed window
	// counted in the store, so every gateway instance shares it. Empty
	// means unlimited. A client's own rate_limit overrides it.
	RateLimit string `json:"rate_limit,omitempty"`
	// RateLimitHeaders adds the RateLimit and RateLimit-Policy fields of
	// draft-ietf-httpapi-ratelimit-headers-10 to the X-RateLimit-* ones.
	RateLimitHeaders bool `json:"rate_limit_headers,omitempty"`

	// SignInLimit is how many sign-in attempts one username gets per
	// window, as <count>/<duration>, counted in the store across every
	// instance; a successful sign-in clears the count. Default 10/15m.
	SignInLimit string `json:"sign_in_limit,omitempty"`
	// SignInAddressLimit is how many sign-in attempts one client address
	// (an IPv6 /64) gets per window, whatever the usernames. The address is
	// Caddy's client IP, which honours the server's trusted_proxies.
	// Default 100/15m.
	SignInAddressLimit string `json:"sign_in_address_limit,omitempty"`

	// Scopes is the scope catalogue: every scope a client may be allowed,
	// with the plain-English description shown on the consent screen.
	Scopes []Scope `json:"scopes,omitempty"`

	// Clients are the registered partner applications.
	Clients []ClientConfig `json:"clients,omitempty"`

	// UsersRaw is the user authenticator, a module of the namespace
	// tollgate.authenticators: `static` (users declared in the config) or
	// `caddy_auth` (signed in by a preceding Caddy auth handler).
	UsersRaw json.RawMessage `json:"users,omitempty" caddy:"namespace=tollgate.authenticators inline_key=authenticator"`

	users   Authenticator
	clients map[string]*client // by client_id

	signInLimit, signInAddressLimit store.Limit
	scopes                          map[string]string
	webhooks                        *webhook.Dispatcher
	poolKey                         string
	logger                          *zap.Logger

	// The store, one field per role of store.Store, all holding the same
	// deadlineStore (useStore): each handler calls the role it uses.
	grants   store.Grants
	codes    store.Codes
	tokens   store.Tokens
	budgets  store.Budgets
	blobs    store.Blobs
	failures store.FailureCounts

	// formKeyCache holds the form-signing key once read (forms.go).
	formKeyCache *atomic.Pointer[[]byte]
	audit        *zap.Logger

	// rateLimited counts 429s by client (metrics.go).
	rateLimited clientCounters

	// formKeyChecked is when the cached form key was last confirmed
	// against the store, in Unix nanoseconds (forms.go).
	formKeyChecked *atomic.Int64

	// now and rand are injected so that tests control time and randomness.
	now  func() time.Time
	rand io.Reader
}

// Scope is one entry of the scope catalogue.
type Scope struct {
	// Name is the scope token, e.g. profile:read.
	Name string `json:"name"`
	// Description says in plain English what the scope grants.
	Description string `json:"description"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tollgate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves secrets, builds the catalogue and opens the store. It
// makes no network call: a Redis that is down now fails the first request
// that needs it (with a 503), not the config load.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.audit = newAuditLogger(a.logger)
	a.formKeyCache = new(atomic.Pointer[[]byte])
	a.formKeyChecked = new(atomic.Int64)
	if a.now == nil {
		a.now = time.Now
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	if a.Realm == "" {
		a.Realm = "tollgate"
	}
	if a.AccessTokenLifetime == 0 {
		a.AccessTokenLifetime = caddy.Duration(defaultAccessLifetime)
	}
	if a.RefreshTokenLifetime == 0 {
		a.RefreshTokenLifetime = caddy.Duration(defaultRefreshLifetime)
	}
	if a.CodeLifetime == 0 {
		a.CodeLifetime = caddy.Duration(defaultCodeLifetime)
	}
	if a.SessionLifetime == 0 {
		a.SessionLifetime = caddy.Duration(defaultSessionLifetime)
	}
	if a.RefreshReuseGrace == 0 {
		a.RefreshReuseGrace = caddy.Duration(defaultReuseGrace)
	}
	if a.WebhookMaxAge == 0 {
		a.WebhookMaxAge = caddy.Duration(defaultWebhookMaxAge)
	}
	if a.StoreTimeout == 0 {
		a.StoreTimeout = caddy.Duration(defaultStoreTimeout)
	}

	a.scopes = make(map[string]string, len(a.Scopes))
	for _, s := range a.Scopes {
		a.scopes[s.Name] = s.Description
	}

	repl := caddy.NewReplacer()
	if err := a.provisionClients(repl); err != nil {
		return err
	}
	var err error
	for _, sl := range []struct {
		name, raw string
		def       store.Limit
		dst       *store.Limit
	}{
		{"sign_in_limit", a.SignInLimit, defaultSignInLimit, &a.signInLimit},
		{"sign_in_address_limit", a.SignInAddressLimit, defaultSignInAddressLimit, &a.signInAddressLimit},
	} {
		*sl.dst = sl.def
		if sl.raw != "" {
			// "unlimited" turns that count off.
			if *sl.dst, err = parseRateLimit(repl.ReplaceAll(sl.raw, "")); err != nil {
				return fmt.Errorf("%s: %w", sl.name, err)
			}
		}
	}

	if a.UsersRaw != nil {
		mod, err := ctx.LoadModule(a, "UsersRaw")
		if err != nil {
			return fmt.Errorf("loading user authenticator: %w", err)
		}
		a.users = mod.(Authenticator)
	}

	var st store.Store
	var key string
	switch {
	case a.Redis != nil && a.Store != "":
		err = fmt.Errorf("give store or redis, not both")
	case a.Redis != nil:
		st, key, err = openRedis(a.Redis, repl, a.now, a.logger)
	default:
		st, key, err = openStore(repl.ReplaceAll(a.Store, ""), a.now)
	}
	if err != nil {
		return err
	}
	a.poolKey = key
	// Every store call goes through deadlineStore, which times it. The
	// embedded store answers from process memory and cannot hang; only a
	// networked store needs the deadline (and its allocations on the hot
	// path).
	timeout := time.Duration(a.StoreTimeout)
	if key == "memory" {
		timeout = 0
	}
	a.useStore(deadlineStore{st: st, timeout: timeout})
	a.webhooks = &webhook.Dispatcher{
		// The dispatcher's calls have deadlines of their own.
		Queue:      deadlineStore{st: st},
		Endpoint:   a.webhookEndpoint,
		MaxAge:     time.Duration(a.WebhookMaxAge),
		Now:        a.now,
		Logger:     a.logger.Named("webhook"),
		GaveUp:     a.auditWebhookGivenUp,
		OnDelivery: a.countDelivery,
	}
	if br, ok := st.(webhook.BacklogReader); ok {
		a.webhooks.Backlog = br.Backlog
		a.webhooks.OnBacklog = setBacklog
	}
	return metrics.register(ctx.GetMetricsRegistry())
}

// provisionClients provisions each registered client (client.go) under
// its client_id, with the app's rate_limit as the default budget.
func (a *App) provisionClients(repl *caddy.Replacer) error {
	defaultLimit, err := parseRateLimit(repl.ReplaceAll(a.RateLimit, ""))
	if err != nil {
		return fmt.Errorf("rate_limit: %w", err)
	}
	a.clients = make(map[string]*client, len(a.Clients))
	for i := range a.Clients {
		cc := &a.Clients[i]
		if cc.ClientID == "" {
			return fmt.Errorf("a client has no client_id")
		}
		c, err := cc.provision(repl, defaultLimit, a.logger)
		if err != nil {
			return fmt.Errorf("client %s: %w", cc.ClientID, err)
		}
		a.clients[cc.ClientID] = c
	}
	a.rateLimited = newClientCounters(metrics.rateLimited, a.Clients)
	return nil
}

// Validate checks the configuration for mistakes an operator would want to
// hear about at load time rather than from a partner.
func (a *App) Validate() error {
	if g := time.Duration(a.RefreshReuseGrace); g < 0 || g > maxReuseGrace {
		return fmt.Errorf("refresh_reuse_grace must be between 0 and %s", maxReuseGrace)
	}
	if d := time.Duration(a.StoreTimeout); d <= 0 || d > maxStoreTimeout {
		return fmt.Errorf("store_timeout must be positive and at most %s", maxStoreTimeout)
	}
	if r := a.Redis; r != nil && r.WaitReplicas > 0 && r.WaitTimeout >= a.StoreTimeout {
		// Else the request's deadline cuts WAIT short and the write is
		// answered 503 rather than acknowledged.
		return fmt.Errorf("store redis: wait_timeout must be shorter than store_timeout (%s)", time.Duration(a.StoreTimeout))
	}
	for _, s := range a.Scopes {
		if s.Name == "" || strings.ContainsAny(s.Name, " \"\\") {
			return fmt.Errorf("scope %q: a scope is one token without spaces, quotes or backslashes", s.Name)
		}
	}
	// Each client's own settings were checked as it was provisioned;
	// what remains spans the config.
	seen := make(map[string]bool, len(a.Clients))
	for _, cc := range a.Clients {
		if seen[cc.ClientID] {
			return fmt.Errorf("client %s is registered twice", cc.ClientID)
		}
		seen[cc.ClientID] = true
		for _, s := range cc.Scopes {
			if !a.HasScope(s) {
				return fmt.Errorf("client %s: scope %q is not in the scope catalogue", cc.ClientID, s)
			}
		}
	}
	return nil
}

// Start starts delivering webhook events. During a reload the old and the
// new config's dispatchers overlap for a moment; the queue's leases keep
// them from sending one event twice.
func (a *App) Start() error {
	metrics.maxAge.Set(time.Duration(a.WebhookMaxAge).Seconds())
	if a.webhooks.Backlog == nil {
		// A store that cannot report its backlog: no figures rather than
		// an earlier config's.
		metrics.queueDepth.Reset()
		metrics.oldestAge.Reset()
	}
	return a.webhooks.Start()
}

// Stop stops the webhook dispatcher; events in flight come back when their
// lease runs out, here or on another instance.
func (a *App) Stop() error {
	a.webhooks.Stop()
	return nil
}

// Cleanup releases this config's reference to the shared store; the last
// reference closes it. Safe after a partial Provision.
func (a *App) Cleanup() error {
	if a.poolKey == "" {
		return nil
	}
	_, err := stores.Delete(a.poolKey)
	return err
}

// parseRateLimit parses a budget written <count>/<duration>, e.g. 5000/1h.
// "" and "unlimited" mean no limit.
func parseRateLimit(s string) (store.Limit, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "unlimited" {
		return store.Limit{}, nil
	}
	count, window, ok := strings.Cut(s, "/")
	n, err := strconv.ParseInt(count, 10, 64)
	if !ok || err != nil || n <= 0 {
		return store.Limit{}, fmt.Errorf("%q: want <count>/<duration> with a positive count, e.g. 5000/1h", s)
	}
	d, err := caddy.ParseDuration(window)
	if err != nil || d < time.Second {
		return store.Limit{}, fmt.Errorf("%q: the window must be a duration of at least 1s, e.g. 5000/1h", s)
	}
	return store.Limit{Count: n, Window: d}, nil
}

// Client implements oauth.Catalogue.
func (a *App) Client(id string) *oauth.Client {
	if c := a.clients[id]; c != nil {
		return &c.Client
	}
	return nil
}

// HasScope implements oauth.Catalogue.
func (a *App) HasScope(s string) bool {
	_, ok := a.scopes[s]
	return ok
}

// appRef is embedded by the endpoint handlers, which are thin: all they
// need is the app of the running config, reached in Provision.
type appRef struct {
	app *App
}

// Provision reaches the tollgate app.
func (h *appRef) Provision(ctx caddy.Context) error {
	app, err := tollgateApp(ctx)
	h.app = app
	return err
}

// tollgateApp returns the tollgate app of the running config.
func tollgateApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("tollgate")
	if err != nil {
		return nil, fmt.Errorf("loading tollgate app: %w", err)
	}
	return v.(*App), nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ oauth.Catalogue    = (*App)(nil)
)
