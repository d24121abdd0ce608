package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// rawGet sends a GET whose request target is sent byte for byte (Go's
// client would clean or re-escape it) and returns the response.
func rawGet(t *testing.T, gw *gateway, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", gw.port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n", target, gw.port)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, body.String()
}

// formActionOf returns the action attribute of the page's first form.
func formActionOf(t *testing.T, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `<form method="post" action="`)
	if !ok {
		t.Fatalf("no post form on the page:\n%s", body)
	}
	action, _, _ := strings.Cut(rest, `"`)
	return action
}

// A request path that Caddy's matcher cleans onto /oauth/authorize but
// whose raw form names another host must not make the sign-in form post
// there (the password would go to the attacker), nor the connections
// page's redirect point there. Every page also tells the browser that
// forms post only to this origin (CSP form-action).
func TestFormsPostToTheCleanSameOriginPath(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		query := strings.SplitN(newAuthRequest(conf).url, "?", 2)[1]
		for _, target := range []string{
			"/%2Fevil.example%2F..%2Foauth/authorize",
			"//evil.example/../oauth/authorize",
			"/%5Cevil.example/..%2Foauth/authorize",
			"/oauth/./authorize",
		} {
			resp, body := rawGet(t, gw, target+"?"+query, nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: status %d, want the sign-in page", target, resp.StatusCode)
				continue
			}
			if a := formActionOf(t, body); a != "/oauth/authorize" {
				t.Errorf("GET %s: form action %q, want /oauth/authorize", target, a)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self'") {
				t.Errorf("GET %s: CSP %q has no form-action 'self'", target, csp)
			}
		}

		// The connections page: its form and its Post/Redirect/Get.
		target := "/%2Fevil.example%2F..%2Foauth/connections"
		resp, body := rawGet(t, gw, target, nil)
		if a := formActionOf(t, body); resp.StatusCode != http.StatusOK || a != "/oauth/connections" {
			t.Fatalf("GET %s: status %d, form action %q, want 200 and /oauth/connections", target, resp.StatusCode, a)
		}
		b := newBrowser(t, gw)
		p := b.get(gw.base + connectionsPath)
		f := p.form()
		if f == nil {
			t.Fatalf("no form on the connections page:\n%s", p)
		}
		u, _ := url.Parse(gw.base)
		u.Opaque = "//" + u.Host + "/%2Fevil.example%2F..%2Foauth/connections"
		req, _ := http.NewRequest(http.MethodPost, gw.base, strings.NewReader(url.Values{"csrf": f.hidden["csrf"], "username": {username}, "password": {password}}.Encode()))
		req.URL = u
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r := b.do(req, "POST "+u.Opaque)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/oauth/connections" {
			t.Fatalf("sign-in on the raw path: want 303 to /oauth/connections:\n%s", r)
		}
	})
}

// Someone who has not signed in writes nothing to the store: 20,000
// anonymous authorization requests and 200 anonymous visits to the
// connections page leave Redis's key count as it was, and the embedded
// store's process grows by less than 24 MB of RSS (what the Go runtime
// keeps of its heap after serving them, not state: nothing is kept).
func TestAnonymousTrafficStoresNothing(t *testing.T) {
	t.Parallel()
	const requests = 20000
	const rssBound = 24 << 20
	for _, storeKind := range stores {
		t.Run(storeKind, func(t *testing.T) {
			t.Parallel()
			storeURL := ""
			if storeKind == "redis" {
				storeURL = storetest.StartRedis(t)
			}
			gw := startGatewayOn(t, storeKind, storeURL, gatewayConfig{})
			conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
			authURL := newAuthRequest(conf).url
			client := &http.Client{Timeout: 10 * time.Second}
			get := func(u string) int {
				resp, err := client.Get(u)
				if err != nil {
					t.Errorf("GET: %v", err)
					return 0
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			// Warm up: the first anonymous page creates the one shared
			// form-signing key.
			if s := get(authURL); s != http.StatusOK {
				t.Fatalf("authorize: %d", s)
			}
			keys := func() int64 { return -1 }
			if storeURL != "" {
				opt, _ := redis.ParseURL(storeURL)
				rc := redis.NewClient(opt)
				defer rc.Close()
				keys = func() int64 {
					n, err := rc.DBSize(context.Background()).Result()
					if err != nil {
						t.Fatal(err)
					}
					return n
				}
			}
			keysBefore, rssBefore := keys(), rss(t, gw.pid)

			var next atomic.Int64
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for i := next.Add(1); i <= requests; i = next.Add(1) {
						// A new state each time, at the documented maximum
						// for some: the largest request an attacker may send.
						state := strconv.FormatInt(i, 10)
						if i%10 == 0 {
							state = strings.Repeat("s", 1024)
						}
						a := newAuthRequestWith(conf, state, oauth2.GenerateVerifier())
						if s := get(a.url); s != http.StatusOK {
							t.Errorf("anonymous authorize %d: %d", i, s)
							return
						}
					}
				})
			}
			wg.Wait()
			for range 200 {
				if s := get(gw.base + connectionsPath); s != http.StatusOK {
					t.Fatalf("anonymous connections page: %d", s)
				}
			}
			if after := keys(); after != keysBefore {
				t.Errorf("Redis holds %d keys after %d anonymous requests, %d before: anonymous traffic wrote state", after, requests, keysBefore)
			}
			growth := rss(t, gw.pid) - rssBefore
			t.Logf("%s: RSS grew by %.1f MB over %d anonymous requests", storeKind, float64(growth)/(1<<20), requests)
			if growth > rssBound {
				t.Errorf("RSS grew by %d MB, bound %d MB", growth>>20, rssBound>>20)
			}

			// The sealed forms still work: a full sign-in and consent.
			b := newBrowser(t, gw)
			code := b.authorize(newAuthRequest(conf))
			if code == "" {
				t.Fatal("no code after sign-in and consent")
			}
		})
	}
}

// rss is the resident set size of process pid, in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// Every authorization parameter has a maximum; beyond it the request is
// refused on an error page that names the limit, and the value is never
// echoed into a redirect.
func TestAuthorizeParameterMaximums(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		b := newBrowser(t, gw)
		if p := b.get(newAuthRequestWith(conf, strings.Repeat("s", 1024), oauth2.GenerateVerifier()).url); p.status != http.StatusOK || !p.isLogin() {
			t.Fatalf("state of 1024 characters: want the sign-in form:\n%s", p)
		}
		p := b.get(newAuthRequestWith(conf, strings.Repeat("s", 1025), oauth2.GenerateVerifier()).url)
		if p.status != http.StatusBadRequest || p.header.Get("Location") != "" || !strings.Contains(p.text(), "state is longer than 1024") {
			t.Fatalf("state of 1025 characters: want a 400 error page naming the limit:\n%s", p)
		}
		long := newAuthRequest(conf).url + "&x=" + strings.Repeat("a", 8<<10)
		if p := b.get(long); p.status != http.StatusRequestURITooLong || p.header.Get("Location") != "" {
			t.Fatalf("a query over 8 KiB: want a 414 error page:\n%s", p)
		}
		scope := strings.Repeat("profile:read ", 80)
		a := newAuthRequest(gw.oauthConfig(oauth2.AuthStyleInParams, strings.Fields(scope)...))
		if p := b.get(a.url); p.status != http.StatusFound || !strings.Contains(p.header.Get("Location"), "error=invalid_scope") {
			t.Fatalf("scope over 1024 characters: want invalid_scope redirected:\n%s", p)
		}
	})
}

// However many wrong passwords arrive at once for one user, no more than
// the limit (10 per 15 minutes) are checked: the attempt is reserved in
// the store before bcrypt runs. The account is then locked even for the
// right password until an operator clears it through the admin API.
func TestSignInThrottleHoldsUnderConcurrency(t *testing.T) {
	// The per-address count (TestSignInThrottledPerClientAddress) is
	// raised here: every attempt comes from 127.0.0.1.
	forEachStore(t, gatewayConfig{appLines: []string{"sign_in_address_limit 1000/15m"}}, func(t *testing.T, gw *gateway) {
		awayFromSignInWindowEdge(t)
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		// Each attempt comes from its own browser with its own form, as
		// an attacker's scripted clients would.
		const n = 100
		browsers, forms := make([]*browser, n), make([]*page, n)
		for i := range n {
			browsers[i] = newBrowser(t, gw)
			forms[i] = browsers[i].get(newAuthRequest(conf).url)
			if !forms[i].isLogin() {
				t.Fatalf("want the sign-in form:\n%s", forms[i])
			}
		}
		b, form := browsers[0], forms[0]
		var checked, throttled atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				p := browsers[i].submit(forms[i], url.Values{"username": {username}, "password": {"guess"}})
				switch p.status {
				case http.StatusUnauthorized:
					checked.Add(1)
				case http.StatusTooManyRequests:
					throttled.Add(1)
				default:
					t.Errorf("wrong password: status %d", p.status)
				}
			})
		}
		close(start)
		wg.Wait()
		if checked.Load() != 10 || throttled.Load() != n-10 {
			t.Fatalf("%d concurrent wrong passwords: %d checked, %d throttled; want exactly 10 checked", n, checked.Load(), throttled.Load())
		}
		form = b.get(newAuthRequest(conf).url)
		if p := b.submit(form, url.Values{"username": {username}, "password": {password}}); p.status != http.StatusTooManyRequests {
			t.Fatalf("right password on a locked account: want 429:\n%s", p)
		}
		form = b.get(newAuthRequest(conf).url)

		// The operator lifts the lock.
		for _, tc := range []struct {
			body string
			want int
		}{
			{`{}`, http.StatusBadRequest},
			{`{"username":"alice","address":"127.0.0.1"}`, http.StatusBadRequest},
			{`{"address":"not-an-ip"}`, http.StatusBadRequest},
			{`{"username":"ALICE"}`, http.StatusNoContent},
		} {
			resp, err := http.Post(gw.admin+"/tollgate/sign-in-locks/clear", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("clear %s: status %d, want %d", tc.body, resp.StatusCode, tc.want)
			}
		}
		if p := b.submit(form, url.Values{"username": {username}, "password": {password}}); p.status != http.StatusOK || !p.isConsent() {
			t.Fatalf("right password after the operator cleared the lock: want the consent page:\n%s", p)
		}
	})
}

// One client address gets a bounded number of sign-in attempts whatever
// usernames it tries; the address is the connection's, and a forged
// X-Forwarded-For from an untrusted peer does not buy a fresh count.
func TestSignInThrottledPerClientAddress(t *testing.T) {
	forEachStore(t, gatewayConfig{appLines: []string{"sign_in_address_limit 5/15m"}}, func(t *testing.T, gw *gateway) {
		awayFromSignInWindowEdge(t)
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		b := newBrowser(t, gw)
		form := b.get(newAuthRequest(conf).url)
		for i := range 5 {
			p := b.submit(form, url.Values{"username": {fmt.Sprintf("user%d", i)}, "password": {"guess"}})
			if p.status != http.StatusUnauthorized {
				t.Fatalf("attempt %d: want 401:\n%s", i+1, p)
			}
		}
		f := form.form()
		action, _ := form.url.Parse(f.action)
		req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(url.Values{
			"tx": f.hidden["tx"], "csrf": f.hidden["csrf"], "username": {"someone-else"}, "password": {"guess"},
		}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		p := b.do(req, "POST with a forged X-Forwarded-For")
		if p.status != http.StatusTooManyRequests || !strings.Contains(p.text(), "from your network") {
			t.Fatalf("6th attempt from one address: want 429 naming the network:\n%s", p)
		}
	})
}
