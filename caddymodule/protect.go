package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

func init() {
	caddy.RegisterModule(Protect{})
}

// Protect guards an API route: it checks the bearer token, the scopes the
// route needs and the grant's rate-limit budget, in one store round trip,
// then hands the request on (usually to reverse_proxy) with the caller
// published as placeholders:
//
//	{http.auth.user.id}         the subject (user id)
//	{http.auth.user.client_id}  the partner's client_id
//	{http.auth.user.scope}      the token's scopes, space-separated
//
// The Authorization header and every identity header this handler can set
// are removed from the incoming request first, so the upstream never sees
// the token nor a header a caller forged; so are the gateway's own cookies
// (names starting with tollgate_).
type Protect struct {
	// Name labels the route's token checks in the metrics (README
	// "Metrics"). Default: its scopes, space-separated, or "unscoped".
	Name string `json:"name,omitempty"`

	// Scopes the token must all carry.
	Scopes []string `json:"scopes,omitempty"`

	// UserHeader, ClientHeader and ScopeHeader, when set, name request
	// headers that carry the subject, client_id and scopes to the
	// upstream.
	UserHeader   string `json:"user_header,omitempty"`
	ClientHeader string `json:"client_header,omitempty"`
	ScopeHeader  string `json:"scope_header,omitempty"`

	// ETag enables conditional GETs: when the upstream sends no ETag, a
	// strong one is computed from the body (up to ETagMaxBytes), a
	// matching If-None-Match is answered 304, and a 304 is not counted
	// against the budget, up to the budget's count of refunds per window
	// and never for If-None-Match: * (README, Rate limits).
	ETag bool `json:"etag,omitempty"`
	// ETagMaxBytes bounds the body buffered to compute an ETag; larger
	// bodies stream through without one. Default 1 MiB.
	ETagMaxBytes int `json:"etag_max_bytes,omitempty"`

	// Methods, when set, are the only request methods the route accepts
	// (upper-case, as RFC 9110 §9.1 methods are case-sensitive and
	// registered in upper case); any other is answered 405 with Allow
	// (RFC 9110 §15.5.6) before the token is checked, so it costs no
	// budget and never reaches the upstream. A read-only scope's route
	// should accept GET and HEAD only: the upstream cannot tell a read
	// token from a write one.
	Methods []string `json:"methods,omitempty"`

	app   *App
	route apiRoute
	allow string // Methods, comma-separated, for the Allow header
	// guarded are the request headers this handler sets or strips, which a
	// Connection field may not name (ServeHTTP).
	guarded []string
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Protect) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_protect",
		New: func() caddy.Module { return new(Protect) },
	}
}

// Provision reaches the tollgate app.
func (p *Protect) Provision(ctx caddy.Context) error {
	app, err := tollgateApp(ctx)
	if err != nil {
		return err
	}
	p.app = app
	p.logger = ctx.Logger()
	p.route = apiRoute{scopes: p.Scopes, scopeList: oauth.FormatScope(p.Scopes)}
	p.allow = strings.Join(p.Methods, ", ")
	p.guarded = []string{"Authorization", p.UserHeader, p.ClientHeader, p.ScopeHeader}
	if p.ETagMaxBytes == 0 {
		p.ETagMaxBytes = 1 << 20
	}
	p.route.checks = newRouteChecks(p.routeLabel())
	return nil
}

// routeLabel is the route's label in the metrics: its name, else its
// scopes, which the config bounds as it bounds names.
func (p *Protect) routeLabel() string {
	switch {
	case p.Name != "":
		return p.Name
	case p.route.scopeList != "":
		return p.route.scopeList
	}
	return "unscoped"
}

// Validate checks that the route's scopes exist in the catalogue, so a typo
// fails the config load instead of locking every partner out.
func (p *Protect) Validate() error {
	for _, s := range p.Scopes {
		if !p.app.HasScope(s) {
			return fmt.Errorf("tollgate_protect: scope %q is not in the scope catalogue", s)
		}
	}
	for _, h := range []string{p.UserHeader, p.ClientHeader, p.ScopeHeader} {
		if strings.EqualFold(h, "Authorization") {
			return fmt.Errorf("tollgate_protect: identity header may not be Authorization")
		}
	}
	if err := checkMethods(p.Methods); err != nil {
		return fmt.Errorf("tollgate_protect: %w", err)
	}
	if err := checkRouteName(p.Name); err != nil {
		return fmt.Errorf("tollgate_protect: %w", err)
	}
	return nil
}

// checkMethods accepts upper-case method tokens (RFC 9110 §9.1, §5.6.2),
// each once. A lower-case "get" would never match Go's r.Method for a GET
// and would lock every partner out, so it fails the load instead.
func checkMethods(methods []string) error {
	for i, m := range methods {
		if m == "" {
			return fmt.Errorf("methods: empty method")
		}
		for j := 0; j < len(m); j++ {
			c := m[j]
			if 'a' <= c && c <= 'z' || !isTokenChar(c) {
				return fmt.Errorf("methods: %q is not an upper-case method token", m)
			}
		}
		if slices.Contains(methods[:i], m) {
			return fmt.Errorf("methods: %q given twice", m)
		}
	}
	return nil
}

// isTokenChar reports whether c is a tchar (RFC 9110 §5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (p *Protect) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	a := p.app
	if len(p.Methods) > 0 && !slices.Contains(p.Methods, r.Method) {
		w.Header().Set("Allow", p.allow)
		(&apiError{Status: http.StatusMethodNotAllowed, Detail: "this route accepts only " + p.allow}).write(w, a.Realm)
		p.route.checks.count(checkBadRequest)
		return nil
	}
	// A Connection field naming a header this handler sets or strips would
	// have reverse_proxy drop it after us (RFC 9110 §7.6.1): the upstream
	// would then get no identity header at all, so such a request is
	// refused, before it costs a store round trip (README, Configuration
	// reference: tollgate_protect).
	if conn := r.Header["Connection"]; len(conn) > 0 {
		if n := connectionNames(conn, p.guarded); n != "" {
			(&apiError{Status: http.StatusBadRequest, Code: "invalid_request", Detail: "the Connection header may not name " + n}).write(w, a.Realm)
			p.route.checks.count(checkBadRequest)
			return nil
		}
	}
	// Read the token, then strip it and every identity header before
	// anything else can forward them (docs/architecture.md §5.1).
	c, aerr := a.authenticateBearer(r)
	r.Header.Del("Authorization")
	// The gateway's own cookies (the sign-in session) are no business of
	// the upstream (README, "Security").
	stripGatewayCookies(r.Header)
	for _, h := range [...]string{p.UserHeader, p.ClientHeader, p.ScopeHeader} {
		if h != "" {
			r.Header.Del(h)
		}
	}
	if aerr == nil {
		aerr = tokenElsewhere(r)
	}
	if !p.route.admit(a, w, &c, aerr) {
		return nil
	}
	p.route.checks.count(checkOK)

	scope := oauth.FormatScope(c.Token.Scopes)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", c.Token.Subject)
	repl.Set("http.auth.user.client_id", c.Token.ClientID)
	repl.Set("http.auth.user.scope", scope)
	if p.UserHeader != "" {
		r.Header.Set(p.UserHeader, c.Token.Subject)
	}
	if p.ClientHeader != "" {
		r.Header.Set(p.ClientHeader, c.Token.ClientID)
	}
	if p.ScopeHeader != "" {
		r.Header.Set(p.ScopeHeader, scope)
	}

	if !p.ETag || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return next.ServeHTTP(w, r)
	}
	cw := newConditionalWriter(w, r, p.ETagMaxBytes)
	if c.Rate.Limit > 0 && !noneMatchStar(r.Header["If-None-Match"]) {
		// A 304 is refunded before it is sent, so that its budget headers
		// show whether it was (README, Rate limits): the store gives back
		// at most the budget's count per window, which keeps the upstream
		// to twice the budget per grant however many 304s it answers.
		cw.onNotModified = func(h http.Header) {
			ok, err := a.budgets.Refund(r.Context(), c.GrantID, c.Token.Limit)
			if err != nil {
				p.logger.Warn("refunding a 304 failed", zap.Error(err))
			}
			if ok {
				st := c.Rate
				st.Remaining = min(st.Remaining+1, st.Limit)
				a.rateHeaders(h, st)
			}
		}
	}
	err := next.ServeHTTP(cw, r)
	if ferr := cw.finish(); err == nil {
		err = ferr
	}
	return err
}

// noneMatchStar reports whether an If-None-Match field holds "*" (RFC 9110
// §13.1.2: it matches any current representation). Such a 304 tells the
// client nothing it had to know beforehand, so it is never refunded:
// otherwise "If-None-Match: *" would make every request free while the
// upstream still served each one.
func noneMatchStar(fields []string) bool {
	for _, f := range fields {
		if strings.IndexByte(f, '*') >= 0 {
			return true
		}
	}
	return false
}

// tokenElsewhere refuses a request that also carries an access token in
// the query or a form body (RFC 6750 §2.2, §2.3). Tollgate reads only the
// Authorization header, so such a copy would otherwise be forwarded to the
// upstream; and RFC 6750 §3.1 makes "more than one method" invalid_request.
// Names are compared after percent-decoding, ignoring ASCII case and
// surrounding spaces, so that access%5Ftoken or Access_Token, which an
// upstream's parser may well read as access_token, are caught; a query or
// form body that does not parse is refused rather than passed unchecked.
// The query is only parsed when it holds "access" (in any case) or a '%',
// so ordinary requests pay nothing; only form-encoded bodies are read, and
// they are put back for the proxy.
func tokenElsewhere(r *http.Request) *apiError {
	if q := r.URL.RawQuery; q != "" && (strings.IndexByte(q, '%') >= 0 || containsFold(q, "access")) {
		if aerr := formToken(q, "query"); aerr != nil {
			return aerr
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		// A malformed parameter must not hide a form from the check: an
		// upstream may still read the body as one.
		mt, _, _ = strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	if mt != "application/x-www-form-urlencoded" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIFormBytes+1))
	if err != nil || len(body) > maxAPIFormBytes {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Detail: "form bodies on API routes are limited to 1 MiB"}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return formToken(string(body), "form body")
}

// formToken refuses an application/x-www-form-urlencoded string (a query
// or a form body) that names an access_token parameter or cannot be parsed.
func formToken(s, where string) *apiError {
	v, err := url.ParseQuery(s)
	if err != nil {
		return &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Detail: "the " + where + " cannot be parsed as application/x-www-form-urlencoded"}
	}
	for k := range v {
		if asciiEqualFold(strings.Trim(k, " \t"), "access_token") {
			return tokenNotInHeader()
		}
	}
	return nil
}

func tokenNotInHeader() *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Detail: "send the access token in the Authorization header only, not in the query or the body"}
}

// maxAPIFormBytes bounds the form bodies read to look for a token.
const maxAPIFormBytes = 1 << 20

// rateHeaders sets the budget headers that DSS requires on every
// authenticated response: X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset (docs/partners.md D48); Reset is in epoch seconds, as
// GitHub's.
func (a *App) rateHeaders(h http.Header, s store.RateStatus) {
	if s.Limit == 0 {
		return
	}
	h["X-Ratelimit-Limit"] = []string{strconv.FormatInt(s.Limit, 10)}
	h["X-Ratelimit-Remaining"] = []string{strconv.FormatInt(s.Remaining, 10)}
	h["X-Ratelimit-Reset"] = []string{strconv.FormatInt(s.Reset.Unix(), 10)}
	if a.RateLimitHeaders {
		// draft-ietf-httpapi-ratelimit-headers-10, §4 and §5.
		secs := int64(time.Duration(s.Window) / time.Second)
		h["Ratelimit-Policy"] = []string{`"grant";q=` + strconv.FormatInt(s.Limit, 10) + ";w=" + strconv.FormatInt(secs, 10)}
		t := int64(s.Reset.Sub(a.now()).Round(time.Second) / time.Second)
		if t < 0 {
			t = 0
		}
		h["Ratelimit"] = []string{`"grant";r=` + strconv.FormatInt(s.Remaining, 10) + ";t=" + strconv.FormatInt(t, 10)}
	}
}

// tooMany answers 429 with Retry-After (RFC 6585 §4); the upstream is not
// called.
func tooMany(w http.ResponseWriter, s store.RateStatus, now time.Time, realm string) {
	secs := int64(s.Reset.Sub(now) / time.Second)
	if s.Reset.Sub(now)%time.Second > 0 {
		secs++
	}
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	(&apiError{
		Status: http.StatusTooManyRequests,
		Code:   "rate_limited",
		Detail: "the rate-limit budget of this grant is spent; retry after " + strconv.FormatInt(secs, 10) + " seconds",
	}).write(w, realm)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Protect)(nil)
	_ caddy.Validator             = (*Protect)(nil)
	_ caddyhttp.MiddlewareHandler = (*Protect)(nil)
)
