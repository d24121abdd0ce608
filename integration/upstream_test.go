package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstream plays the legacy API behind the gateway's API routes: a plain
// HTTP server on a loopback port, started by the test rather than by Caddy,
// that records every request it receives (method, path, headers) and
// answers the way Caddyfile.example's fake legacy API does.
type upstream struct {
	addr string // 127.0.0.1:<port>, for TOLLGATE_LEGACY_UPSTREAM

	mu        sync.Mutex
	reqs      []upstreamRequest
	updatedAt string
}

// upstreamRequest is one request as the upstream received it.
type upstreamRequest struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     string
}

func (r upstreamRequest) String() string {
	target := r.Path
	if r.RawQuery != "" {
		target += "?" + r.RawQuery
	}
	return r.Method + " " + target + "\n" + headerString(r.Header) + "\n" + r.Body
}

// legacyPath is the legacy API's one route, as in Caddyfile.example.
var legacyPath = regexp.MustCompile(`^/legacy/users/([^/]+)/(profile|seatime|vessels)$`)

// startUpstream starts a recording upstream, stopped when t ends.
func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{updatedAt: "2026-11-01T08:00:00Z"}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	srv.Listener.Close()
	srv.Listener = listenFree(t)
	srv.Start()
	t.Cleanup(srv.Close)
	u.addr = srv.Listener.Addr().String()
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	u.mu.Lock()
	u.reqs = append(u.reqs, upstreamRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)})
	updatedAt := u.updatedAt
	u.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	m := legacyPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":"not found"}`)
		return
	}
	record, _ := json.Marshal(struct {
		UserID          string `json:"user_id"`
		Resource        string `json:"resource"`
		RecordUpdatedAt string `json:"record_updated_at"`
	}{m[1], m[2], updatedAt})
	w.Write(record)
}

// count is how many requests the upstream has received.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// since returns the requests received after the first n.
func (u *upstream) since(n int) []upstreamRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upstreamRequest(nil), u.reqs[n:]...)
}

// setUpdatedAt changes the record the upstream serves from now on.
func (u *upstream) setUpdatedAt(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.updatedAt = s
}

// listenFree listens on a loopback port that freePorts has not handed to
// a gateway that may not have bound it yet, and marks it handed out.
func listenFree(t *testing.T) net.Listener {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	var skipped []net.Listener
	defer func() {
		for _, l := range skipped {
			l.Close()
		}
	}()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		if handedOut.ports[p] {
			skipped = append(skipped, l)
			continue
		}
		handedOut.ports[p] = true
		return l
	}
}

// forEachStoreWithUpstream is forEachStore with a recording upstream per
// subtest: each gateway proxies its API routes to its own upstream.
func forEachStoreWithUpstream(t *testing.T, cfg gatewayConfig, fn func(t *testing.T, gw *gateway, up *upstream)) {
	t.Helper()
	t.Parallel()
	for _, s := range stores {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			up := startUpstream(t)
			c := cfg
			c.legacyUpstream = up.addr
			fn(t, startGateway(t, s, c), up)
		})
	}
}

// apiResponse is a response of an API route with the times the request
// left and the answer arrived, to judge X-RateLimit-Reset against.
type apiResponse struct {
	*response
	sent, received time.Time
}

// call sends GET path with the given Authorization ("" for none) and extra
// request headers. The failure messages name the headers, never the token.
func (gw *gateway) call(t *testing.T, path, authorization string, extra http.Header) *apiResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, gw.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	desc := fmt.Sprintf("GET %s (gateway :%d", strings.SplitN(path, "?", 2)[0], gw.port)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
		desc += ", Authorization: " + strings.SplitN(authorization, " ", 2)[0] + " …"
	}
	for k, vs := range extra {
		req.Header[k] = vs
		desc += fmt.Sprintf(", %s: %q", k, vs)
	}
	desc += ")"
	sent := time.Now()
	r := send(t, req, desc)
	return &apiResponse{response: r, sent: sent, received: time.Now()}
}

// wantProblem checks an RFC 9457 problem document: application/problem+json
// with type, title, status and detail, and nothing that looks like a stack
// trace or echoes a secret.
//
// Every body is an RFC 9457 application/problem+json document (type,
// title, status, detail), never a stack trace (docs/architecture.md §5.1;
// docs/partners.md D53).
func wantProblem(t *testing.T, r *response, status int, secrets ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want HTTP %d:\n%s", status, r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("Content-Type = %q, want application/problem+json (RFC 9457 §3):\n%s", ct, r)
	}
	m := r.json(t)
	for _, member := range []string{"type", "title", "detail"} {
		if s, ok := m[member].(string); !ok || s == "" {
			t.Fatalf("problem member %q missing or not a non-empty string (RFC 9457 §3.1):\n%s", member, r)
		}
	}
	if s, ok := m["status"].(float64); !ok || int(s) != status {
		t.Fatalf("problem status = %v, want %d (RFC 9457 §3.1.3):\n%s", m["status"], status, r)
	}
	body := string(r.body)
	for _, marker := range []string{"goroutine ", "panic(", "panic:", ".go:"} {
		if strings.Contains(body, marker) {
			t.Fatalf("problem body contains %q, like a stack trace:\n%s", marker, r)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(body+headerString(r.header), s) {
			t.Fatalf("error response echoes a token:\n%s", redactTokens(r.String(), secrets...))
		}
	}
}

// wantChallenge checks an RFC 6750 §3 refusal on an API route: the status,
// a Bearer challenge with realm "tollgate" and exactly the attributes the
// case calls for, and an RFC 9457 body. code "" is a request without a
// token: the bare challenge Bearer realm="tollgate" (§3.1: no error
// attribute). scope is required with insufficient_scope.
func wantChallenge(t *testing.T, r *response, status int, code, scope string, secrets ...string) {
	t.Helper()
	wantBearerError(t, r, status, code)
	wantProblem(t, r, status, secrets...)
	ch := r.header.Get("WWW-Authenticate")
	scheme, params, err := parseChallenge(ch)
	if err != nil || !strings.EqualFold(scheme, "Bearer") {
		t.Fatalf("WWW-Authenticate %q does not parse as one Bearer challenge (%v):\n%s", ch, err, r)
	}
	if params["realm"] != "tollgate" {
		t.Fatalf(`WWW-Authenticate %q: realm = %q, want "tollgate" (README: Bearer realm="tollgate")`, ch, params["realm"])
	}
	if code == "" {
		if ch != `Bearer realm="tollgate"` {
			t.Fatalf(`WWW-Authenticate = %q, want exactly Bearer realm="tollgate" for a request without a token (RFC 6750 §3.1)`, ch)
		}
		return
	}
	if params["error"] != code {
		t.Fatalf("WWW-Authenticate %q: error = %q, want %q (RFC 6750 §3.1)", ch, params["error"], code)
	}
	if scope != "" && params["scope"] != scope {
		t.Fatalf("WWW-Authenticate %q: scope = %q, want %q (RFC 6750 §3: the scope needed)", ch, params["scope"], scope)
	}
}

// parseChallenge splits one auth challenge (RFC 9110 §11.2) into its scheme
// and its auth-params, unquoting quoted-string values.
func parseChallenge(h string) (string, map[string]string, error) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	s := strings.TrimSpace(rest)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return scheme, nil, fmt.Errorf("no '=' in %q", s)
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " ")
		var val string
		if strings.HasPrefix(s, `"`) {
			var sb strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				sb.WriteByte(s[i])
			}
			if i >= len(s) {
				return scheme, nil, fmt.Errorf("unterminated quoted string in %q", h)
			}
			val, s = sb.String(), s[i+1:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		if _, dup := params[name]; dup {
			return scheme, nil, fmt.Errorf("attribute %q twice", name)
		}
		params[name] = val
		s = strings.TrimSpace(s)
		if s != "" {
			if s[0] != ',' {
				return scheme, nil, fmt.Errorf("want ',' at %q", s)
			}
			s = strings.TrimSpace(s[1:])
		}
	}
	return scheme, params, nil
}

// rateFigures are the X-RateLimit-* headers of one response.
type rateFigures struct {
	limit, remaining, reset int64
}

// wantRate checks the budget headers of an authenticated response and
// returns them: all three present as integers, the limit as configured, the
// remaining count within it, and the reset a Unix time in seconds that is
// after the request left and at most one window after its answer came,
// on a window boundary (windows are aligned to the epoch).
//
// Every authenticated response carries X-RateLimit-Limit,
// X-RateLimit-Remaining and X-RateLimit-Reset (docs/partners.md D48).
// README "Rate limits": "X-RateLimit-Reset: when the window ends, in Unix
// epoch seconds"; "counted … in fixed windows aligned to the epoch".
func wantRate(t *testing.T, r *apiResponse, limit int64, window time.Duration) rateFigures {
	t.Helper()
	num := func(name string) int64 {
		t.Helper()
		v := r.header.Values(name)
		if len(v) != 1 {
			t.Fatalf("%s: want exactly one value, got %q (docs/partners.md D48: every authenticated response carries X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset):\n%s", name, v, r)
		}
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil {
			t.Fatalf("%s = %q, want an integer:\n%s", name, v[0], r)
		}
		return n
	}
	f := rateFigures{num("X-RateLimit-Limit"), num("X-RateLimit-Remaining"), num("X-RateLimit-Reset")}
	if f.limit != limit {
		t.Fatalf("X-RateLimit-Limit = %d, want %d, the configured budget:\n%s", f.limit, limit, r)
	}
	if f.remaining < 0 || f.remaining > f.limit {
		t.Fatalf("X-RateLimit-Remaining = %d, want 0…%d:\n%s", f.remaining, f.limit, r)
	}
	resetMs := f.reset * 1000
	if resetMs <= r.sent.UnixMilli() || resetMs > r.received.UnixMilli()+window.Milliseconds() {
		t.Fatalf("X-RateLimit-Reset = %d (%s), want epoch seconds after the request (%s) and within one %s window of it:\n%s",
			f.reset, time.Unix(f.reset, 0).UTC().Format(time.RFC3339), r.sent.UTC().Format(time.RFC3339Nano), window, r)
	}
	if secs := int64(window / time.Second); secs > 0 && f.reset%secs != 0 {
		t.Fatalf("X-RateLimit-Reset = %d is not on a %s boundary (README: windows \"aligned to the epoch\"):\n%s", f.reset, window, r)
	}
	return f
}

// wantRetryAfter checks Retry-After is a positive integer number of seconds
// (RFC 9110 §10.2.3 delay-seconds) no longer than max, and returns it.
func wantRetryAfter(t *testing.T, r *response, max time.Duration) int64 {
	t.Helper()
	v := r.header.Get("Retry-After")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != v {
		t.Fatalf("Retry-After = %q, want a positive integer of seconds (RFC 6585 §4, RFC 9110 §10.2.3):\n%s", v, r)
	}
	if max > 0 && time.Duration(n)*time.Second > max {
		t.Fatalf("Retry-After = %d s, more than %s:\n%s", n, max, r)
	}
	return n
}

// windowEnd is the end of the window of length w holding now, windows
// being aligned to the Unix epoch as the gateway's are.
func windowEnd(now time.Time, w time.Duration) time.Time {
	ms := w.Milliseconds()
	return time.UnixMilli((now.UnixMilli()/ms + 1) * ms)
}

// startOfWindow sleeps until just after the next window boundary, so that
// a test has a whole fresh window ahead of it.
func startOfWindow(w time.Duration) {
	time.Sleep(time.Until(windowEnd(time.Now(), w)) + 50*time.Millisecond)
}

// clearOfWindowEnd sleeps past the current window's end when less than
// margin of it is left, so that a test's requests fall in one window.
func clearOfWindowEnd(w, margin time.Duration) {
	if end := windowEnd(time.Now(), w); time.Until(end) < margin {
		time.Sleep(time.Until(end) + 50*time.Millisecond)
	}
}

// wantUpstreamUntouched checks the upstream received nothing since it had
// received n requests.
func wantUpstreamUntouched(t *testing.T, up *upstream, n int, why string) {
	t.Helper()
	if got := up.since(n); len(got) != 0 {
		t.Fatalf("the upstream was called %d time(s) %s; first:\n%s", len(got), why, got[0])
	}
}

// waitServedAgain calls GET /v1/me with authorization until it is answered
// 200, and fails the test if any answer in between is not 503 (a store
// outage must never turn into a verdict on the token, README "What
// partners get") or if within passes first. It returns the 200.
func (gw *gateway) waitServedAgain(t *testing.T, authorization string, within time.Duration, what string) *apiResponse {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := gw.call(t, "/v1/me", authorization, nil)
		if r.status == http.StatusOK {
			return r
		}
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("%s: want 503 or 200, never another verdict on the token:\n%s", what, r)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the gateway still answers 503 after %s:\n%s", what, within, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
