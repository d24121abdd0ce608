package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/memory"
	"github.com/tollgate/tollgate/caddymodule/webhook"
)

// The embedded store reports its webhook backlog; the metrics need it.
var _ webhook.BacklogReader = (*memory.Store)(nil)

// A config reload provisions the app again into a new registry (Caddy
// gives each config its own): the same collectors go in, so every count
// carries on, and registering twice into one registry is no error.
func TestMetricsCarryOnIntoANewRegistry(t *testing.T) {
	first, second := prometheus.NewPedanticRegistry(), prometheus.NewPedanticRegistry()
	if err := metrics.register(first); err != nil {
		t.Fatal(err)
	}
	c := metrics.signIns.WithLabelValues("success")
	before := testutil.ToFloat64(c)
	c.Inc()
	for _, reg := range []*prometheus.Registry{second, second} {
		if err := metrics.register(reg); err != nil {
			t.Fatalf("registering again: %v", err)
		}
	}
	got, err := testutil.GatherAndCount(second, "tollgate_sign_in_attempts_total")
	if err != nil || got == 0 {
		t.Fatalf("the new registry has %d sign-in series (%v)", got, err)
	}
	if v := testutil.ToFloat64(c); v != before+1 {
		t.Errorf("count %v after re-registering, want %v", v, before+1)
	}
}

// apiCall runs one request through h and returns the status.
func apiCall(t *testing.T, h interface {
	ServeHTTP(http.ResponseWriter, *http.Request, caddyhttp.Handler) error
}, method, token string) int {
	t.Helper()
	r := httptest.NewRequest(method, "/v1/x", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w.Code
}

// Every answer of a protected route is counted once under its outcome and
// the route's name; a spent budget also counts against the client, and a
// failing store against the store operation.
func TestProtectCountsEachOutcome(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read") // budget 2/1h
	route := func(name string, scopes ...string) *Protect {
		return newProtect(t, a, Protect{Name: name, Scopes: scopes, Methods: []string{"GET"}})
	}
	profile, seatime := route("metrics-test-profile", "profile:read"), route("metrics-test-seatime", "seatime:read")
	count := func(route, outcome string) float64 {
		return testutil.ToFloat64(metrics.checks.WithLabelValues(route, outcome))
	}
	limited := testutil.ToFloat64(metrics.rateLimited.WithLabelValues("partner"))
	storeErrors := testutil.ToFloat64(metrics.storeErrors.WithLabelValues("authenticate"))

	for _, c := range []struct {
		p       *Protect
		method  string
		token   string
		status  int
		outcome string
	}{
		{profile, http.MethodGet, tr.AccessToken, http.StatusOK, "ok"},
		{profile, http.MethodPost, tr.AccessToken, http.StatusMethodNotAllowed, "bad_request"},
		{profile, http.MethodGet, "", http.StatusUnauthorized, "invalid"},
		{profile, http.MethodGet, "tga_not-a-token", http.StatusUnauthorized, "invalid"},
		{seatime, http.MethodGet, tr.AccessToken, http.StatusForbidden, "insufficient_scope"},
		{profile, http.MethodGet, tr.AccessToken, http.StatusTooManyRequests, "rate_limited"},
	} {
		route := c.p.Name
		before := count(route, c.outcome)
		if got := apiCall(t, c.p, c.method, c.token); got != c.status {
			t.Fatalf("%s %s: status %d, want %d", route, c.method, got, c.status)
		}
		if got := count(route, c.outcome); got != before+1 {
			t.Errorf("%s answered %d: %s count went from %v to %v, want one more", route, c.status, c.outcome, before, got)
		}
	}
	if got := testutil.ToFloat64(metrics.rateLimited.WithLabelValues("partner")); got != limited+1 {
		t.Errorf("rate-limited count of partner %v, want %v", got, limited+1)
	}

	closeStore(a)
	before := count(profile.Name, "store_error")
	if got := apiCall(t, profile, http.MethodGet, tr.AccessToken); got != http.StatusServiceUnavailable {
		t.Fatalf("closed store: status %d, want 503", got)
	}
	if got := count(profile.Name, "store_error"); got != before+1 {
		t.Errorf("store_error count %v, want %v", got, before+1)
	}
	if got := testutil.ToFloat64(metrics.storeErrors.WithLabelValues("authenticate")); got != storeErrors+1 {
		t.Errorf("authenticate store errors %v, want %v", got, storeErrors+1)
	}
}

// A route without a name is labelled by its scopes, which the config
// bounds; a name must be short printable ASCII.
func TestRouteLabel(t *testing.T) {
	a, _ := newTestApp(t)
	for _, c := range []struct {
		p    Protect
		want string
	}{
		{Protect{Name: "me"}, "me"},
		{Protect{Scopes: []string{"profile:read", "seatime:read"}}, "profile:read seatime:read"},
		{Protect{}, "unscoped"},
	} {
		if got := newProtect(t, a, c.p).routeLabel(); got != c.want {
			t.Errorf("route label %q, want %q", got, c.want)
		}
	}
	for _, name := range []string{"line\nbreak", strings.Repeat("x", 65), "café"} {
		p := Protect{Name: name, app: a}
		if err := p.Validate(); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}

// What a caller sends never becomes a label value: an unregistered
// client_id counts as "unknown" and an unserved grant type as "other".
func TestTokenLabelsAreBounded(t *testing.T) {
	a, _ := newTestApp(t)
	const chosen = "attacker-chosen-label"
	counter := metrics.token.WithLabelValues("other", "unknown", "invalid_client")
	before := testutil.ToFloat64(counter)
	w := post(t, &Token{appRef{a}}, "/oauth/token", url.Values{
		"grant_type": {"password-" + chosen}, "client_id": {chosen}, "client_secret": {"x"},
	}, "")
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401 invalid_client: %s", w.Code, w.Body)
	}
	if got := testutil.ToFloat64(counter); got != before+1 {
		t.Errorf("count %v, want %v", got, before+1)
	}

	issue(t, a, "partner", testSecret, "profile:read")
	if got := testutil.ToFloat64(metrics.token.WithLabelValues("authorization_code", "partner", "ok")); got == 0 {
		t.Error("the code exchange was not counted as authorization_code, partner, ok")
	}

	reg := prometheus.NewPedanticRegistry()
	if err := metrics.register(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), chosen) {
					t.Errorf("%s has the label %s=%q from a request", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// Counting on the API hot path allocates nothing: the route's counters,
// the client counters and the store timing are resolved beforehand, and
// the timing store without a deadline adds no allocation to the store's
// own.
func TestHotPathCountingAllocatesNothing(t *testing.T) {
	a, _ := newTestApp(t)
	rc := newRouteChecks("metrics-test-allocs")
	for name, f := range map[string]func(){
		"route count":  func() { rc.count(checkOK) },
		"route refuse": func() { rc.refused(http.StatusUnauthorized) },
		"client count": func() { a.rateLimited.inc("partner") },
		"unknown":      func() { a.rateLimited.inc("gone-client") },
		"store timing": func() { observeStore(opAuthenticate, time.Now(), nil) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times", name, n)
		}
	}

	st := memory.New(nil)
	defer st.Close()
	timed := deadlineStore{st: st}
	ctx := t.Context()
	auth := func(s store.Budgets) func() {
		return func() { _, _, _ = s.Authenticate(ctx, "g", "d", store.Limit{}) }
	}
	plain, withTiming := testing.AllocsPerRun(100, auth(st)), testing.AllocsPerRun(100, auth(timed))
	if withTiming != plain {
		t.Errorf("Authenticate allocates %v times timed, %v times plain", withTiming, plain)
	}
}
