package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// TestRateLimitHeadersOnEveryAuthenticatedResponse makes one grant's first
// authenticated requests, on the API routes, on /oauth/userinfo and on a
// route its token lacks the scope for, and checks each carries the budget
// headers, each counted once against the default 5000/1h budget.
//
// Every authenticated response carries X-RateLimit-Limit,
// X-RateLimit-Remaining and X-RateLimit-Reset (docs/partners.md D48),
// /oauth/userinfo included; Reset is in epoch seconds, a time in the
// future within the window. README "Rate limits": "X-RateLimit-Remaining:
// what is left of it after this request". Caddyfile.example: rate_limit
// {$TOLLGATE_RATE_LIMIT:5000/1h}. The 403 is counted too: the one store
// round trip counts the request before the in-process scope check
// (docs/architecture.md §5.1, §5.2), and its headers say so.
func TestRateLimitHeadersOnEveryAuthenticatedResponse(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		const limit, window = 5000, time.Hour
		tok, _ := obtainTokens(t, gw, "profile:read", "seatime:read")
		auth := bearer(tok.AccessToken)
		clearOfWindowEnd(window, 10*time.Second)
		var reset int64
		for i, step := range []struct {
			path   string
			status int
		}{
			{"/v1/me", http.StatusOK},
			{"/v1/me/sea-time", http.StatusOK},
			{"/oauth/userinfo", http.StatusOK},
			{"/v1/me/vessels", http.StatusForbidden}, // no vessels:read
			{"/v1/me", http.StatusOK},
		} {
			r := gw.call(t, step.path, auth, nil)
			if r.status != step.status {
				t.Fatalf("want %d:\n%s", step.status, r)
			}
			if step.path == "/oauth/userinfo" {
				wantUserinfoOK(t, r.response)
			}
			f := wantRate(t, r, limit, window)
			if want := int64(limit - (i + 1)); f.remaining != want {
				t.Fatalf("request %d of a fresh grant: X-RateLimit-Remaining = %d, want %d (what is left after this request):\n%s", i+1, f.remaining, want, r)
			}
			if i > 0 && f.reset != reset {
				t.Fatalf("X-RateLimit-Reset moved from %d to %d within one window:\n%s", reset, f.reset, r)
			}
			reset = f.reset
		}
	})
}

// TestBudgetRunsOutAndResets runs a gateway with a budget of 3 requests per
// 2 s window, spends it at the start of a window, checks the fourth API
// request and /oauth/userinfo are refused with 429 without reaching the
// upstream, then waits for the reset and checks a fresh budget.
//
// The budget runs out and resets; when exhausted, the answer is 429 with
// Retry-After (positive integer seconds) and problem+json, and the
// upstream is not called (docs/architecture.md §5.3). README "Rate
// limits": "A spent budget answers 429 with Retry-After (seconds) and the
// upstream is not called"; "Every authenticated response, /oauth/userinfo
// included". RFC 6585 §4.
func TestBudgetRunsOutAndResets(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{rateLimit: "3/2s"}, func(t *testing.T, gw *gateway, up *upstream) {
		const limit, window = 3, 2 * time.Second
		tok, _ := obtainTokens(t, gw, allScopes...)
		auth := bearer(tok.AccessToken)

		var rs []*apiResponse
		var n int
		for attempt := 1; ; attempt++ {
			// Start on a boundary so the whole budget is there to spend.
			startOfWindow(window)
			n = up.count()
			rs = nil
			for i := 0; i < limit+1; i++ {
				rs = append(rs, gw.call(t, "/v1/me", auth, nil))
			}
			rs = append(rs, gw.call(t, "/oauth/userinfo", auth, nil))
			last := rs[len(rs)-1]
			if windowEnd(rs[0].sent, window).Equal(windowEnd(last.received, window)) {
				break
			}
			// A machine too slow to send five requests in 2 s: the window
			// rolled over, so the figures are not the ones to check.
			if attempt == 3 {
				t.Fatalf("three attempts to send %d requests within one %s window failed", limit+2, window)
			}
			t.Logf("attempt %d straddled a window boundary; retrying", attempt)
		}

		var reset int64
		for i, r := range rs[:limit] {
			if r.status != http.StatusOK {
				t.Fatalf("request %d of %d within the budget: want 200:\n%s", i+1, limit, r)
			}
			f := wantRate(t, r, limit, window)
			if want := int64(limit - (i + 1)); f.remaining != want {
				t.Fatalf("request %d: X-RateLimit-Remaining = %d, want %d:\n%s", i+1, f.remaining, want, r)
			}
			if i > 0 && f.reset != reset {
				t.Fatalf("X-RateLimit-Reset moved from %d to %d within one window:\n%s", reset, f.reset, r)
			}
			reset = f.reset
		}
		for _, r := range rs[limit:] {
			wantProblem(t, r.response, http.StatusTooManyRequests, tok.AccessToken)
			f := wantRate(t, r, limit, window)
			if f.remaining != 0 || f.reset != reset {
				t.Fatalf("429: X-RateLimit-Remaining = %d, Reset = %d; want 0 and %d:\n%s", f.remaining, f.reset, reset, r)
			}
			ra := time.Duration(wantRetryAfter(t, r.response, window)) * time.Second
			// Retry-After counts the seconds to the reset, rounded up:
			// waiting it out lands after the reset, and not a second more.
			end := time.Unix(reset, 0)
			if r.received.Add(ra).Before(end) || !r.sent.Add(ra).Before(end.Add(time.Second)) {
				t.Fatalf("Retry-After = %s does not reach the reset at %d (answered at %s):\n%s", ra, reset, r.received.UTC().Format(time.RFC3339Nano), r)
			}
		}
		got := up.since(n)
		if len(got) != limit {
			t.Fatalf("the upstream received %d requests, want exactly the %d within the budget (the 429 must not call it)", len(got), limit)
		}
		for _, u := range got {
			if u.Path != "/legacy/users/"+username+"/profile" {
				t.Fatalf("upstream received %s, want GET /legacy/users/%s/profile", u.Path, username)
			}
		}

		// After the reset: a fresh budget.
		time.Sleep(time.Until(time.Unix(reset, 0)) + 150*time.Millisecond)
		r := gw.call(t, "/v1/me", auth, nil)
		if r.status != http.StatusOK {
			t.Fatalf("after the reset at %d: want 200 with a fresh budget:\n%s", reset, r)
		}
		f := wantRate(t, r, limit, window)
		if f.remaining != limit-1 || f.reset <= reset {
			t.Fatalf("after the reset: X-RateLimit-Remaining = %d, Reset = %d; want %d and later than %d:\n%s", f.remaining, f.reset, limit-1, reset, r)
		}
		if got := len(up.since(n)); got != limit+1 {
			t.Fatalf("the upstream received %d requests in all, want %d", got, limit+1)
		}
		wantUserinfoOK(t, gw.userinfo(t, auth))
	})
}

// TestBudgetSharedByTwoGatewaysOnOneRedis runs two gateway processes on one
// Redis with a budget of 4 per minute, uses a token obtained from one on
// both, alternating, and checks they count against one budget: the fifth
// counted request across both is refused by either. A 304 answered by one
// instance for the ETag the other computed costs nothing, and a revocation
// on one is seen by the other on the next request.
//
// The budget is shared by two gateway processes on one Redis: gateway
// instances are stateless, and everything two instances must agree on
// (tokens, budgets, …) lives in the store (docs/architecture.md §9). README
// "Rate limits": "counted atomically in the store …, so that every gateway
// instance shares it". etag.go: a strong validator "on every gateway
// instance" (RFC 9110 §8.8.1).
func TestBudgetSharedByTwoGatewaysOnOneRedis(t *testing.T) {
	t.Parallel()
	const limit, window = 4, time.Minute
	up := startUpstream(t)
	storeURL := storetest.StartRedis(t)
	cfg := gatewayConfig{rateLimit: "4/1m", legacyUpstream: up.addr}
	gw1 := startGatewayOn(t, "redis", storeURL, cfg)
	gw2 := startGatewayOn(t, "redis", storeURL, cfg)

	tok, _ := obtainTokens(t, gw1, allScopes...)
	auth := bearer(tok.AccessToken)
	clearOfWindowEnd(window, 5*time.Second)
	n := up.count()

	var reset int64
	wantRemaining := func(r *apiResponse, want int64) {
		t.Helper()
		f := wantRate(t, r, limit, window)
		if f.remaining != want {
			t.Fatalf("X-RateLimit-Remaining = %d, want %d: one budget across both instances:\n%s", f.remaining, want, r)
		}
		if reset != 0 && f.reset != reset {
			t.Fatalf("X-RateLimit-Reset moved from %d to %d (did the test straddle a minute?):\n%s", reset, f.reset, r)
		}
		reset = f.reset
	}

	// The token from gw1 works on gw2.
	r := gw2.call(t, "/v1/me/sea-time", auth, nil)
	if r.status != http.StatusOK {
		t.Fatalf("a token obtained from one instance, used on the other: want 200:\n%s", r)
	}
	wantRemaining(r, 3)
	etag := wantStrongETag(t, r)
	// gw1 computes the same ETag and answers 304, for free.
	wantNotModified(t, gw1.call(t, "/v1/me/sea-time", auth, http.Header{"If-None-Match": {etag}}), etag)

	for i, g := range []*gateway{gw1, gw2, gw1} {
		r := g.call(t, "/v1/me", auth, nil)
		if r.status != http.StatusOK {
			t.Fatalf("counted request %d across both instances: want 200:\n%s", i+2, r)
		}
		wantRemaining(r, int64(limit-(i+2)))
	}
	spent := up.count()
	for _, g := range []*gateway{gw2, gw1} {
		r := g.call(t, "/v1/me", auth, nil)
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("the budget of %d is spent across both instances: want 429 from the one on port %d:\n%s", limit, g.port, r)
		}
		wantProblem(t, r.response, http.StatusTooManyRequests, tok.AccessToken)
		wantRetryAfter(t, r.response, window)
		wantRemaining(r, 0)
	}
	wantUpstreamUntouched(t, up, spent, "once the shared budget was spent")
	profile := 0
	for _, u := range up.since(n) {
		if u.Path == "/legacy/users/"+username+"/profile" {
			profile++
		}
	}
	if profile != limit-1 {
		t.Fatalf("the upstream received %d profile requests, want %d", profile, limit-1)
	}

	// Revoked on one instance, refused by the other on the next request.
	wantRevoked(t, gw2.revoke(t, tok.RefreshToken))
	r = gw1.call(t, "/v1/me", auth, nil)
	wantChallenge(t, r.response, http.StatusUnauthorized, "invalid_token", "", tok.AccessToken)
}
