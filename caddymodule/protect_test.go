package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// newProtect provisions p as a config load does (Provision with a
// caddy.Context, then Validate), then points it at the test app a, so that
// it checks tokens against a's memory store and clock.
func newProtect(t testing.TB, a *App, p Protect) *Protect {
	t.Helper()
	cfgCtx, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(cfgCtx)
	t.Cleanup(cancel)
	if err := p.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	p.app = a
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return &p
}

// legacyRoute is the route the tests protect: both scopes, the identity
// headers of a legacy API, GET, HEAD and POST.
var legacyRoute = Protect{
	Scopes:       []string{"profile:read", "seatime:read"},
	UserHeader:   "X-Legacy-User",
	ClientHeader: "X-Legacy-Client",
	ScopeHeader:  "X-Legacy-Scope",
	Methods:      []string{"GET", "HEAD", "POST"},
}

// upstream stands for reverse_proxy behind Protect: it records the request
// it would forward and answers with a JSON body.
type upstream struct {
	called bool
	header http.Header
	body   string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.called = true
	u.header = r.Header.Clone()
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		u.body = string(b)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := io.WriteString(w, `{"total_days":412}`)
	return err
}

// apiRequest is a request to the protected route, with token in the
// Authorization header unless it is "".
func apiRequest(method, target, token string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// callAPI sends r through p, with the replacer Caddy's server puts in every
// request, to a recording upstream.
func callAPI(t *testing.T, p *Protect, r *http.Request) (*httptest.ResponseRecorder, *upstream, *caddy.Replacer) {
	t.Helper()
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	up := new(upstream)
	if err := p.ServeHTTP(w, r, up); err != nil {
		t.Fatal(err)
	}
	return w, up, repl
}

// Every refusal is an RFC 9457 problem with the RFC 6750 §3 challenge a
// partner's client library acts on (401: get a new token; 403: ask the
// user again for more scope; 400: fix the request), and never reaches the
// upstream.
func TestProtectRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		// request builds the call from a token pair of partner with both
		// scopes; it may change the app (the clock, the store) first.
		request func(t *testing.T, a *App, clk *storetest.Clock, tr tokenResponse) *http.Request
		status  int
		code    string
		scope   string
	}{
		{"no Authorization header is a bare challenge", func(*testing.T, *App, *storetest.Clock, tokenResponse) *http.Request {
			return apiRequest("GET", "/v1/me", "")
		}, 401, "", ""},
		{"another scheme is a bare challenge", func(_ *testing.T, _ *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			r := apiRequest("GET", "/v1/me", "")
			r.Header.Set("Authorization", "Basic "+tr.AccessToken)
			return r
		}, 401, "", ""},
		{"Bearer without a token is invalid_request", func(*testing.T, *App, *storetest.Clock, tokenResponse) *http.Request {
			r := apiRequest("GET", "/v1/me", "")
			r.Header.Set("Authorization", "Bearer ")
			return r
		}, 400, "invalid_request", ""},
		{"two Authorization headers are invalid_request", func(_ *testing.T, _ *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			r := apiRequest("GET", "/v1/me", tr.AccessToken)
			r.Header.Add("Authorization", "Bearer "+tr.AccessToken)
			return r
		}, 400, "invalid_request", ""},
		{"a malformed token is invalid_token", func(*testing.T, *App, *storetest.Clock, tokenResponse) *http.Request {
			return apiRequest("GET", "/v1/me", "not-a-token")
		}, 401, "invalid_token", ""},
		{"a token never issued is invalid_token", func(_ *testing.T, _ *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			return apiRequest("GET", "/v1/me", otherLastByte(tr.AccessToken))
		}, 401, "invalid_token", ""},
		{"a refresh token is not an access token", func(_ *testing.T, _ *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			return apiRequest("GET", "/v1/me", tr.RefreshToken)
		}, 401, "invalid_token", ""},
		{"an expired token is invalid_token", func(_ *testing.T, _ *App, clk *storetest.Clock, tr tokenResponse) *http.Request {
			clk.Advance(time.Hour)
			return apiRequest("GET", "/v1/me", tr.AccessToken)
		}, 401, "invalid_token", ""},
		{"a revoked token is invalid_token", func(t *testing.T, a *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			if w := revoke(t, a, tr.AccessToken); w.Code != http.StatusOK {
				t.Fatalf("revoke: %d %s", w.Code, w.Body)
			}
			return apiRequest("GET", "/v1/me", tr.AccessToken)
		}, 401, "invalid_token", ""},
		{"a token without every scope of the route is insufficient_scope, naming them", func(t *testing.T, a *App, _ *storetest.Clock, _ tokenResponse) *http.Request {
			return apiRequest("GET", "/v1/me", issue(t, a, "partner", testSecret, "profile:read").AccessToken)
		}, 403, "insufficient_scope", "profile:read seatime:read"},
		{"a copy of the token in the query is invalid_request", func(_ *testing.T, _ *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			return apiRequest("GET", "/v1/me?access_token="+tr.AccessToken, tr.AccessToken)
		}, 400, "invalid_request", ""},
		{"a copy of the token in a form body is invalid_request", func(_ *testing.T, _ *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			r := httptest.NewRequest("POST", "/v1/me", strings.NewReader(url.Values{"access_token": {tr.AccessToken}}.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Authorization", "Bearer "+tr.AccessToken)
			return r
		}, 400, "invalid_request", ""},
		{"a Connection header naming the identity header is invalid_request", func(_ *testing.T, _ *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			r := apiRequest("GET", "/v1/me", tr.AccessToken)
			r.Header.Set("Connection", "keep-alive, x-legacy-user")
			return r
		}, 400, "invalid_request", ""},
		{"a store that fails is 503, never 401", func(_ *testing.T, a *App, _ *storetest.Clock, tr tokenResponse) *http.Request {
			closeStore(a)
			return apiRequest("GET", "/v1/me", tr.AccessToken)
		}, 503, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clk := newTestApp(t)
			tr := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
			p := newProtect(t, a, legacyRoute)
			w, up, _ := callAPI(t, p, tc.request(t, a, clk, tr))
			wantProblem(t, w, tc.status, tc.code, tc.scope)
			if up.called {
				t.Fatal("the refused request reached the upstream")
			}
			if tc.status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") != "5" {
				t.Errorf("503 with Retry-After %q, want 5", w.Header().Get("Retry-After"))
			}
		})
	}
}

// The upstream learns who calls from the identity headers and placeholders
// Protect sets, never from what the caller sent: the token, forged
// identity headers and the gateway's own cookies are removed; everything
// else passes untouched (docs/architecture.md §5.1).
func TestProtectForwardsTheCallerAndStripsWhatTheUpstreamMustNotSee(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
	p := newProtect(t, a, legacyRoute)
	r := apiRequest("GET", "/v1/me/sea-time?page=2", tr.AccessToken)
	r.Header.Set("X-Legacy-User", "mallory")
	r.Header.Add("X-Legacy-User", "eve")
	r.Header.Set("X-Legacy-Client", "forged-client")
	r.Header.Set("X-Legacy-Scope", "admin")
	r.Header.Set("Cookie", "tollgate_session=s3ss10n; theme=dark; tollgate_login=l0g1n")
	r.Header.Set("X-Request-Id", "req-42")

	w, up, repl := callAPI(t, p, r)
	if w.Code != http.StatusOK || !up.called || w.Body.String() != `{"total_days":412}` {
		t.Fatalf("%d upstream called=%v %s, want the upstream's answer", w.Code, up.called, w.Body)
	}
	for name, want := range map[string][]string{
		"X-Legacy-User":   {"alice"},
		"X-Legacy-Client": {"partner"},
		"X-Legacy-Scope":  {"profile:read seatime:read"},
		"Cookie":          {"theme=dark"},
		"X-Request-Id":    {"req-42"},
		"Authorization":   nil,
	} {
		if got := up.header.Values(name); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("upstream %s = %q, want %q", name, got, want)
		}
	}
	for key, want := range map[string]string{
		"http.auth.user.id":        "alice",
		"http.auth.user.client_id": "partner",
		"http.auth.user.scope":     "profile:read seatime:read",
	} {
		if got, _ := repl.GetString(key); got != want {
			t.Errorf("placeholder {%s} = %q, want %q", key, got, want)
		}
	}
	if w.Header().Get("X-RateLimit-Limit") != "2" || w.Header().Get("X-RateLimit-Remaining") != "1" {
		t.Errorf("budget headers %v, want limit 2, remaining 1 (docs/partners.md D48)", w.Header())
	}
}

// A route's methods are checked before the token: another method is 405
// with Allow (RFC 9110 §15.5.6), reaches no upstream and spends no budget.
func TestProtectRefusesOtherMethodsBeforeSpendingBudget(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
	route := legacyRoute
	route.Methods = []string{"GET", "HEAD"}
	p := newProtect(t, a, route)
	for _, m := range []string{"DELETE", "PUT", "POST", "PATCH", "get"} {
		w, up, _ := callAPI(t, p, apiRequest(m, "/v1/me", tr.AccessToken))
		wantProblem(t, w, http.StatusMethodNotAllowed, "", "")
		if allow := w.Header().Get("Allow"); allow != "GET, HEAD" {
			t.Errorf("%s: Allow %q, want GET, HEAD", m, allow)
		}
		if up.called {
			t.Fatalf("%s reached the upstream", m)
		}
	}
	// Had the refusals spent budget (2/1h), these would be 429.
	for i, m := range []string{"HEAD", "GET"} {
		w, up, _ := callAPI(t, p, apiRequest(m, "/v1/me", tr.AccessToken))
		if w.Code != http.StatusOK || !up.called || w.Header().Get("X-RateLimit-Remaining") != strconv.Itoa(1-i) {
			t.Fatalf("%s: %d, remaining %s; want it forwarded with %d left", m, w.Code, w.Header().Get("X-RateLimit-Remaining"), 1-i)
		}
	}
}

// A grant's budget (partner: 2/1h) is counted on every forwarded call and
// shown in X-RateLimit-* (docs/partners.md D48); once it is spent, calls
// are 429 with Retry-After until the window ends (RFC 6585 §4), without
// reaching the upstream, and pass again after it.
func TestProtectRateLimit(t *testing.T) {
	a, clk := newTestApp(t)
	// Half-way through a window, with a token that outlives it.
	clk.Advance(30 * time.Minute)
	tr := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
	p := newProtect(t, a, legacyRoute)
	call := func() (*httptest.ResponseRecorder, *upstream) {
		w, up, _ := callAPI(t, p, apiRequest("GET", "/v1/me", tr.AccessToken))
		return w, up
	}
	for _, left := range []string{"1", "0"} {
		if w, up := call(); w.Code != http.StatusOK || !up.called || w.Header().Get("X-RateLimit-Remaining") != left {
			t.Fatalf("%d, remaining %q; want 200 with %s left", w.Code, w.Header().Get("X-RateLimit-Remaining"), left)
		}
	}
	w, up := call()
	wantProblem(t, w, http.StatusTooManyRequests, "rate_limited", "")
	if up.called {
		t.Fatal("a call over budget reached the upstream")
	}
	h := w.Header()
	reset, err1 := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	retry, err2 := strconv.ParseInt(h.Get("Retry-After"), 10, 64)
	now := clk.Now().Unix()
	if err1 != nil || err2 != nil || reset <= now || reset > now+3600 || retry != reset-now {
		t.Fatalf("Retry-After %q, X-RateLimit-Reset %q at %d: want the seconds until the window ends", h.Get("Retry-After"), h.Get("X-RateLimit-Reset"), now)
	}
	if h.Get("X-RateLimit-Limit") != "2" || h.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("429 budget headers %v, want limit 2, remaining 0", h)
	}
	clk.Advance(time.Duration(retry-1) * time.Second)
	if w, _ := call(); w.Code != http.StatusTooManyRequests {
		t.Fatalf("a second before the window ends: %d, want 429", w.Code)
	}
	clk.Advance(time.Second)
	if w, up := call(); w.Code != http.StatusOK || !up.called || w.Header().Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("in the next window: %d, remaining %q; want 200 with 1 left", w.Code, w.Header().Get("X-RateLimit-Remaining"))
	}
}

// With etag, a 304 from an unchanged body is given back to the budget and
// its budget headers say so; "If-None-Match: *" is never refunded (README,
// Rate limits).
func TestProtectRefundsNotModified(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
	route := legacyRoute
	route.ETag = true
	p := newProtect(t, a, route)
	call := func(inm string) *httptest.ResponseRecorder {
		r := apiRequest("GET", "/v1/me", tr.AccessToken)
		if inm != "" {
			r.Header.Set("If-None-Match", inm)
		}
		w, up, _ := callAPI(t, p, r)
		if !up.called {
			t.Fatalf("If-None-Match %q: the upstream was not called", inm)
		}
		return w
	}
	first := call("")
	etag := first.Header().Get("ETag")
	if first.Code != http.StatusOK || etag == "" || first.Header().Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("first call: %d, ETag %q, remaining %q", first.Code, etag, first.Header().Get("X-RateLimit-Remaining"))
	}
	// Refunds are capped at the budget's count per window; one refund
	// keeps this under the cap.
	for _, tc := range []struct{ inm, left string }{{etag, "1"}, {"*", "0"}} {
		w := call(tc.inm)
		if w.Code != http.StatusNotModified || w.Header().Get("X-RateLimit-Remaining") != tc.left {
			t.Fatalf("If-None-Match %s: %d, remaining %q; want 304 with %s left", tc.inm, w.Code, w.Header().Get("X-RateLimit-Remaining"), tc.left)
		}
	}
}

// Every authenticated response carries X-RateLimit-Limit,
// X-RateLimit-Remaining and X-RateLimit-Reset (docs/partners.md D48); with
// rate_limit_headers, also draft-ietf-httpapi-ratelimit-headers-10's
// RateLimit-Policy and RateLimit.
func TestRateHeaders(t *testing.T) {
	now := time.Unix(1_795_622_400, 0)
	s := store.RateStatus{Limit: 5000, Remaining: 4998, Reset: now.Add(1500 * time.Second), Window: time.Hour, Allowed: true}
	for _, draft := range []bool{false, true} {
		a := &App{RateLimitHeaders: draft, now: func() time.Time { return now }}
		h := http.Header{}
		a.rateHeaders(h, s)
		if h.Get("X-RateLimit-Limit") != "5000" || h.Get("X-RateLimit-Remaining") != "4998" || h.Get("X-RateLimit-Reset") != "1795623900" {
			t.Fatalf("X-RateLimit-*: %v", h)
		}
		if draft {
			if h.Get("RateLimit-Policy") != `"grant";q=5000;w=3600` || h.Get("RateLimit") != `"grant";r=4998;t=1500` {
				t.Fatalf("draft fields: %v", h)
			}
		} else if h.Get("RateLimit") != "" || h.Get("RateLimit-Policy") != "" {
			t.Fatalf("draft fields sent without rate_limit_headers: %v", h)
		}
	}
	h := http.Header{}
	(&App{}).rateHeaders(h, store.RateStatus{Allowed: true})
	if len(h) != 0 {
		t.Fatalf("an unlimited grant got budget headers: %v", h)
	}
}

// RFC 6750 §3.1: a request using "more than one method" to send the token
// is invalid_request; the names are judged after decoding, and what does
// not decode is refused, not passed unchecked.
func TestTokenElsewhere(t *testing.T) {
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, target, ctype, body string
		want                      string // "" ok, else the detail's start
	}{
		{"no query", "/v1/me", "", "", ""},
		{"ordinary query", "/v1/me?page=2&sort=asc", "", "", ""},
		{"access_token", "/v1/me?access_token=t", "", "", "send the access token"},
		{"percent-encoded name", "/v1/me?access%5Ftoken=t", "", "", "send the access token"},
		{"fully encoded name", "/v1/me?%61%63%63%65%73%73%5f%74%6f%6b%65%6e=t", "", "", "send the access token"},
		{"other case", "/v1/me?Access_Token=t", "", "", "send the access token"},
		{"repeated", "/v1/me?x=1&access_token=a&access_token=b", "", "", "send the access token"},
		{"padded name", "/v1/me?access_token%20=t", "", "", "send the access token"},
		{"bad escape in query", "/v1/me?access_token=t&x=%zz", "", "", "the query cannot be parsed"},
		{"semicolon in query", "/v1/me?x=1;access_token=t", "", "", "the query cannot be parsed"},
		{"other access name", "/v1/me?access_level=2", "", "", ""},
		{"form body", "/v1/me", form, "access_token=t", "send the access token"},
		{"form body with a bad escape", "/v1/me", form, "access_token=t&x=%zz", "the form body cannot be parsed"},
		{"encoded name in form body", "/v1/me", form, "access%5ftoken=t", "send the access token"},
		{"form body, malformed content type", "/v1/me", form + "; charset", "access_token=t", "send the access token"},
		{"form body, upper-case content type", "/v1/me", "Application/X-WWW-Form-Urlencoded", "ACCESS_TOKEN=t", "send the access token"},
		{"ordinary form body", "/v1/me", form, "a=1&b=2", ""},
		{"json body", "/v1/me", "application/json", `{"access_token":"t"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *http.Request
			if tc.body == "" {
				r = httptest.NewRequest(http.MethodGet, tc.target, nil)
			} else {
				r = httptest.NewRequest(http.MethodPost, tc.target, strings.NewReader(tc.body))
				r.Header.Set("Content-Type", tc.ctype)
			}
			got := tokenElsewhere(r)
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("refused: %+v", got)
			case tc.want != "" && (got == nil || got.Status != http.StatusBadRequest || got.Code != "invalid_request" || !strings.HasPrefix(got.Detail, tc.want)):
				t.Fatalf("got %+v, want 400 invalid_request %q…", got, tc.want)
			}
			if tc.body != "" {
				if b, _ := io.ReadAll(r.Body); string(b) != tc.body {
					t.Fatalf("body left for the proxy = %q, want %q", b, tc.body)
				}
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/me?page=2&sort=asc", nil)
	if n := testing.AllocsPerRun(100, func() { tokenElsewhere(r) }); n != 0 {
		t.Errorf("tokenElsewhere allocates %v times for an ordinary query", n)
	}
}

// Methods are compared with r.Method byte for byte, so a lower-case or
// malformed one would lock every partner out: it fails the load.
func TestCheckMethods(t *testing.T) {
	for _, ok := range [][]string{nil, {"GET"}, {"GET", "HEAD"}, {"PROPFIND", "M-SEARCH"}} {
		if err := checkMethods(ok); err != nil {
			t.Errorf("checkMethods(%q) = %v", ok, err)
		}
	}
	for _, bad := range [][]string{{""}, {"get"}, {"Get"}, {"GET", "GET"}, {"GET,HEAD"}, {"GET HEAD"}, {"GÉT"}} {
		if err := checkMethods(bad); err == nil {
			t.Errorf("checkMethods(%q) accepted", bad)
		}
	}
}
