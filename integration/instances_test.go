package integration

// Several gateway instances on one store. README: state lives "in Redis
// (any number of gateway nodes behind a load balancer)". Each test here
// starts its own redis-server and three processes of the real binary on it,
// A, B and C, and plays the load balancer: every request goes to an
// instance the test chose, usually not the one that served the step
// before.
//
// The instances listen on different ports of one host, localhost, and a
// browser's cookies are not isolated by port (RFC 6265 §8.5), so one
// cookie jar stands in for a browser that reaches every instance through a
// load balancer's single origin. Caddyfile.example derives the issuer from
// TOLLGATE_PORT, so here each instance names its own where a deployment's
// share one; that only changes the iss of the authorization response
// (RFC 9207 §2), which these tests do not compare.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// cluster is three gateway processes on one Redis.
type cluster struct {
	redis string
	gws   []*gateway
}

// instanceNames name the cluster's gateways in failure messages and logs.
var instanceNames = []string{"A", "B", "C"}

// startCluster starts a redis-server and three gateways on it, all with
// cfg.
func startCluster(t *testing.T, cfg gatewayConfig) *cluster {
	t.Helper()
	c := &cluster{redis: storetest.StartRedis(t)}
	for range instanceNames {
		c.gws = append(c.gws, startGatewayOn(t, "redis", c.redis, cfg))
	}
	return c
}

// name is the instance's letter.
func (c *cluster) name(gw *gateway) string {
	for i, g := range c.gws {
		if g == gw {
			return instanceNames[i]
		}
	}
	return fmt.Sprintf(":%d", gw.port)
}

// countLog counts the JSON log entries with message msg across the
// cluster's instances.
func (c *cluster) countLog(msg string) int {
	n := 0
	for _, gw := range c.gws {
		n += len(logEntries(gw.output.String(), "", msg))
	}
	return n
}

// at returns b sending its requests to instance gw, with the same cookies.
func (b *browser) at(gw *gateway) *browser {
	c := *b
	c.gw = gw
	return &c
}

// submitAt posts the form of page p, which one instance served, to the
// same path on instance gw: its hidden inputs, overridden or extended by
// fields.
func (b *browser) submitAt(gw *gateway, p *page, fields url.Values) *page {
	b.t.Helper()
	action, values := b.formPost(p, fields)
	return b.at(gw).post(gw.base+action.RequestURI(), values)
}

// exchangeAt exchanges an authorization code at instance gw's token
// endpoint with golang.org/x/oauth2.
func exchangeAt(t *testing.T, gw *gateway, a *authRequest, code string) *oauth2.Token {
	t.Helper()
	conf := gw.oauthConfig(oauth2.AuthStyleInParams, a.conf.Scopes...)
	tok, err := conf.Exchange(clientCtx(t), code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("exchanging the code at :%d: %v", gw.port, err)
	}
	return tok
}

// refreshAt refreshes at instance gw's token endpoint with
// golang.org/x/oauth2.
func refreshAt(t *testing.T, gw *gateway, refreshToken string, scopes ...string) *oauth2.Token {
	t.Helper()
	tok, err := refresh(t, gw.oauthConfig(oauth2.AuthStyleInParams, scopes...), refreshToken)
	if err != nil {
		t.Fatalf("refreshing at :%d: %v", gw.port, err)
	}
	return tok
}

// wantAPIUser checks a 200 from an API route that the legacy API answered
// for alice.
func wantAPIUser(t *testing.T, r *apiResponse, resource string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("want 200 from the legacy API:\n%s", r)
	}
	var body struct {
		UserID   string `json:"user_id"`
		Resource string `json:"resource"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.UserID != username || body.Resource != resource {
		t.Fatalf("want the legacy API's %s of %s:\n%s", resource, username, r)
	}
}

// wantRefused checks an access token is refused with 401 invalid_token
// (RFC 6750 §3.1) at userinfo and at an API route of gw.
func wantRefused(t *testing.T, gw *gateway, accessToken string) {
	t.Helper()
	wantChallenge(t, gw.call(t, "/v1/me", bearer(accessToken), nil).response, http.StatusUnauthorized, "invalid_token", "", accessToken)
	wantBearerError(t, gw.userinfo(t, bearer(accessToken)), http.StatusUnauthorized, "invalid_token")
}

// TestInstancesShareTokens runs the code flow across the instances, as a
// load balancer may spread a partner's and a user's requests: authorize,
// sign-in and consent on A, the code exchanged on B, the token used on C
// and A; then a refresh on C whose pair works on A and B while the rotated
// pair is dead everywhere; and the code, replayed on C, is still single-use.
//
// README: "any number of gateway nodes behind a load balancer"; Refresh
// tokens: "Every refresh rotates: the old access and refresh tokens are
// revoked atomically and a new pair issued"; "A code presented twice gets
// invalid_grant and revokes the grant" (RFC 6749 §4.1.2, RFC 9700 §4.14.2).
func TestInstancesShareTokens(t *testing.T) {
	t.Parallel()
	c := startCluster(t, gatewayConfig{})
	a, b, cc := c.gws[0], c.gws[1], c.gws[2]

	req := newAuthRequest(a.oauthConfig(oauth2.AuthStyleInParams, allScopes...))
	code := newBrowser(t, a).authorize(req)
	tok := exchangeAt(t, b, req, code)

	wantAPIUser(t, cc.call(t, "/v1/me", bearer(tok.AccessToken), nil), "profile")
	wantUserinfoOK(t, a.userinfo(t, bearer(tok.AccessToken)))
	wantAPIUser(t, b.call(t, "/v1/me/vessels", bearer(tok.AccessToken), nil), "vessels")

	next := refreshAt(t, cc, tok.RefreshToken, allScopes...)
	if next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken {
		t.Fatalf("the refresh on C did not rotate both tokens")
	}
	wantUserinfoOK(t, a.userinfo(t, bearer(next.AccessToken)))
	wantAPIUser(t, b.call(t, "/v1/me/sea-time", bearer(next.AccessToken), nil), "seatime")
	// The rotated pair is dead on every instance, not only on C.
	for _, gw := range c.gws {
		wantRefused(t, gw, tok.AccessToken)
	}
	// Within refresh_reuse_grace a rotated refresh token only gets
	// invalid_grant (README, Refresh tokens), on any instance.
	wantOAuthError(t, a.refreshRaw(t, tok.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")
	wantUserinfoOK(t, b.userinfo(t, bearer(next.AccessToken)))

	// The new refresh token rotates again elsewhere.
	third := refreshAt(t, a, next.RefreshToken, allScopes...)
	wantAPIUser(t, cc.call(t, "/v1/me", bearer(third.AccessToken), nil), "profile")
	wantRefused(t, b, next.AccessToken)

	// The code was spent on B: replayed on C it is refused and the grant
	// it started is revoked with every token it led to.
	wantOAuthError(t, cc.exchange(t, code, req.verifier, redirectURI), http.StatusBadRequest, "invalid_grant")
	for _, gw := range c.gws {
		wantRefused(t, gw, third.AccessToken)
	}
	wantOAuthError(t, b.refreshRaw(t, third.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")
}

// TestInstancesSeeRevocationAtOnce revokes on one instance and checks the
// others refuse the token on the very next request, with no pause: first a
// partner's RFC 7009 revocation on A, then a user's Disconnect on the
// connections page of B, after signing in on A, with the token then
// refused on C.
//
// README: tokens are kept server-side, "revocation is instant"; /oauth/revoke
// "Revoking either token of a pair ends the user's grant to that client"
// (RFC 7009 §2.1); /oauth/connections: Disconnect "revokes every token of
// that partner for that user". README Bearer errors: "bad, expired or
// revoked token → 401 invalid_token" (RFC 6750 §3.1).
func TestInstancesSeeRevocationAtOnce(t *testing.T) {
	t.Parallel()
	rcv := newWebhookReceiver(t)
	c := startCluster(t, gatewayConfig{webhookURL: rcv.url})
	a, b, cc := c.gws[0], c.gws[1], c.gws[2]

	// RFC 7009 on A.
	tok, _ := obtainTokens(t, a, allScopes...)
	wantAPIUser(t, b.call(t, "/v1/me", bearer(tok.AccessToken), nil), "profile")
	wantUserinfoOK(t, cc.userinfo(t, bearer(tok.AccessToken)))
	wantRevoked(t, a.revoke(t, tok.AccessToken))
	wantChallenge(t, b.call(t, "/v1/me", bearer(tok.AccessToken), nil).response, http.StatusUnauthorized, "invalid_token", "", tok.AccessToken)
	wantBearerError(t, cc.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")
	// Revoking the access token revoked its refresh token too.
	wantOAuthError(t, b.refreshRaw(t, tok.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")

	// Disconnect on B, by the browser that signed in on A.
	start := time.Now()
	br := newBrowser(t, a)
	req := newAuthRequest(a.oauthConfig(oauth2.AuthStyleInParams, allScopes...))
	code := br.authorize(req)
	tok = exchangeAt(t, cc, req, code)
	wantAPIUser(t, cc.call(t, "/v1/me", bearer(tok.AccessToken), nil), "profile")
	onB := br.at(b)
	p := onB.connections()
	wantConnectedApp(t, p, start, allScopes...)
	onB.disconnect(p)
	wantDead(t, cc, tok)
	wantRefused(t, a, tok.AccessToken)
	wantNoApp(t, br.at(a).connections())
}

// TestInstancesRefuseWhatTheyVouchedFor: an instance that lets a token
// through without asking Redis (it remembers the token and hears every
// change of its grant on a subscription) refuses it on the very next
// request after another instance revoked it, every time, whichever
// instance revokes.
//
// README: "revocation is instant"; docs/architecture.md, "The API hot
// path".
func TestInstancesRefuseWhatTheyVouchedFor(t *testing.T) {
	t.Parallel()
	c := startCluster(t, gatewayConfig{})
	opt, err := redis.ParseURL(c.redis)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	// calls is what Redis has run of the commands a token check uses.
	calls := func() int64 {
		info, err := rc.Info(t.Context(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, line := range strings.Split(info, "\n") {
			for _, cmd := range []string{"cmdstat_hmget:", "cmdstat_evalsha:", "cmdstat_zadd:"} {
				if rest, ok := strings.CutPrefix(line, cmd+"calls="); ok {
					v, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
					n += v
				}
			}
		}
		return n
	}
	for round := range 6 {
		tok, _ := obtainTokens(t, c.gws[0], allScopes...)
		// Warm every instance until a request costs Redis nothing.
		for _, gw := range c.gws {
			deadline := time.Now().Add(10 * time.Second)
			for {
				before := calls()
				wantAPIUser(t, gw.call(t, "/v1/me", bearer(tok.AccessToken), nil), "profile")
				if calls() == before {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: %s still asks Redis for every request of a token in use", round, c.name(gw))
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		revoker := c.gws[round%len(c.gws)]
		wantRevoked(t, revoker.revoke(t, tok.AccessToken))
		for _, gw := range c.gws {
			wantChallenge(t, gw.call(t, "/v1/me", bearer(tok.AccessToken), nil).response, http.StatusUnauthorized, "invalid_token", "", tok.AccessToken)
		}
	}
}

// TestInstancesShareOneBudget spends one grant's budget of 30 per hour
// round-robin across the three instances: each answer's
// X-RateLimit-Remaining counts down across them, the 31st request is 429
// on every instance, and the legacy API saw exactly 30 requests.
//
// README Rate limits: "Each grant … has a budget, counted atomically in the
// store …, so that every gateway instance shares it"; "A spent budget
// answers 429 with Retry-After (seconds) and the upstream is not called"
// (RFC 6585 §4).
func TestInstancesShareOneBudget(t *testing.T) {
	t.Parallel()
	const limit, window = 30, time.Hour
	up := startUpstream(t)
	c := startCluster(t, gatewayConfig{rateLimit: "30/1h", legacyUpstream: up.addr})

	tok, _ := obtainTokens(t, c.gws[0], allScopes...)
	auth := bearer(tok.AccessToken)
	clearOfWindowEnd(window, 10*time.Second)
	n := up.count()

	var reset int64
	paths := []string{"/v1/me", "/v1/me/sea-time", "/v1/me/vessels"}
	for i := range limit {
		gw := c.gws[i%len(c.gws)]
		r := gw.call(t, paths[i%len(paths)], auth, nil)
		if r.status != http.StatusOK {
			t.Fatalf("request %d of %d, on %s: want 200:\n%s", i+1, limit, c.name(gw), r)
		}
		f := wantRate(t, r, limit, window)
		if want := int64(limit - (i + 1)); f.remaining != want {
			t.Fatalf("request %d, on %s: X-RateLimit-Remaining = %d, want %d: one budget across the instances:\n%s", i+1, c.name(gw), f.remaining, want, r)
		}
		if reset != 0 && f.reset != reset {
			t.Fatalf("X-RateLimit-Reset moved from %d to %d within one window:\n%s", reset, f.reset, r)
		}
		reset = f.reset
	}
	if got := len(up.since(n)); got != limit {
		t.Fatalf("the legacy API received %d requests, want %d", got, limit)
	}
	for _, gw := range c.gws {
		r := gw.call(t, "/v1/me", auth, nil)
		wantProblem(t, r.response, http.StatusTooManyRequests, tok.AccessToken)
		wantRetryAfter(t, r.response, window)
		if f := wantRate(t, r, limit, window); f.remaining != 0 || f.reset != reset {
			t.Fatalf("429 on %s: X-RateLimit-Remaining = %d, Reset = %d; want 0 and %d:\n%s", c.name(gw), f.remaining, f.reset, reset, r)
		}
		wantProblem(t, gw.call(t, "/oauth/userinfo", auth, nil).response, http.StatusTooManyRequests, tok.AccessToken)
	}
	wantUpstreamUntouched(t, up, n+limit, "once the shared budget was spent")
}

// TestInstancesShareSignIn starts a sign-in on one instance and finishes it
// on others: the sign-in form fetched from A is posted to B, whose consent
// form is posted to C, whose code is exchanged on A. Then the sign-in
// throttle: ten wrong passwords spread over the three instances lock the
// account on all of them, and an operator's clear on one instance's admin
// endpoint lifts it on the others.
//
// README Security: "the sign-in form carries its authorization request
// sealed with HMAC-SHA256 under a key every instance shares through the
// store"; sign_in_limit: "counted in the store (every instance shares the
// count)"; "An operator lifts a sign-in lock on every instance at once
// through Caddy's admin endpoint".
func TestInstancesShareSignIn(t *testing.T) {
	t.Parallel()
	awayFromSignInWindowEdge(t)
	c := startCluster(t, gatewayConfig{})
	a, b, cc := c.gws[0], c.gws[1], c.gws[2]

	br := newBrowser(t, a)
	req := newAuthRequest(a.oauthConfig(oauth2.AuthStyleInParams, "profile:read", "vessels:read"))
	login := br.get(req.url)
	if login.status != http.StatusOK || !login.isLogin() {
		t.Fatalf("authorize on A without a session: want the sign-in form:\n%s", login)
	}
	consent := br.submitAt(b, login, url.Values{"username": {username}, "password": {password}})
	if consent.status != http.StatusOK || !consent.isConsent() {
		t.Fatalf("A's sign-in form posted to B: want B's consent page:\n%s", consent)
	}
	// The consent page names the partner and the requested scopes, read
	// back from the request that A sealed into its form.
	for _, want := range []string{clientName, scopeText["profile:read"], scopeText["vessels:read"]} {
		if !strings.Contains(consent.text(), want) {
			t.Errorf("B's consent page does not show %q:\n%s", want, consent)
		}
	}
	done := br.submitAt(cc, consent, url.Values{"decision": {"allow"}})
	if done.status != http.StatusSeeOther {
		t.Fatalf("B's consent form posted to C: want 303 to the client:\n%s", done)
	}
	loc, err := url.Parse(done.header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), redirectURI+"?") || loc.Query().Get("state") != req.state || loc.Query().Get("code") == "" {
		t.Fatalf("want 303 to %s with a code and state %q:\n%s", redirectURI, req.state, done)
	}
	tok := exchangeAt(t, a, req, loc.Query().Get("code"))
	if got, _ := tok.Extra("scope").(string); scopeSet(got) != "profile:read vessels:read" {
		t.Fatalf("token scope %q, want the two scopes asked on A", got)
	}
	wantUserinfoOK(t, b.userinfo(t, bearer(tok.AccessToken)))
	// The session started on B serves the connections page on A.
	wantConnectedApp(t, br.at(a).connections(), time.Now().Add(-time.Minute), "profile:read", "vessels:read")

	// The throttle, in a browser that never signed in.
	guesser := newBrowser(t, a)
	p := guesser.get(newAuthRequest(a.oauthConfig(oauth2.AuthStyleInParams, allScopes...)).url)
	for i := 1; i <= 10; i++ {
		gw := c.gws[i%len(c.gws)]
		p = guesser.submitAt(gw, p, url.Values{"username": {username}, "password": {"guess"}})
		if p.status != http.StatusUnauthorized || !p.isLogin() {
			t.Fatalf("wrong password %d of 10, on %s: want 401 and the form again:\n%s", i, c.name(gw), p)
		}
	}
	for _, gw := range c.gws {
		r := guesser.submitAt(gw, p, url.Values{"username": {username}, "password": {password}})
		if r.status != http.StatusTooManyRequests || r.isConsent() || !strings.Contains(r.text(), "Too many failed sign-ins") {
			t.Fatalf("the right password on %s after ten failures across the instances: want 429 and no sign-in:\n%s", c.name(gw), r)
		}
	}
	resp, err := http.Post(b.admin+"/tollgate/sign-in-locks/clear", "application/json", strings.NewReader(`{"username":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("clearing the lock on B's admin endpoint: status %d, want 204", resp.StatusCode)
	}
	if r := guesser.submitAt(cc, p, url.Values{"username": {username}, "password": {password}}); r.status != http.StatusOK || !r.isConsent() {
		t.Fatalf("the right password on C after the lock was cleared on B: want the consent page:\n%s", r)
	}
}

// TestInstancesDeliverEachWebhookOnce disconnects the demo client six
// times, each cycle's consent, code exchange and Disconnect on three
// different instances, so that every instance queues two events, while
// the one receiver answers 503 and all three dispatchers attempt them.
// Once every first attempt has failed and its retry is scheduled in the
// store, instance A is killed (as in a deploy or a crash) and the receiver
// starts accepting. Each event queued arrives at least once; after
// de-duplication on webhook-id, as a receiver does, there is exactly one
// per disconnect, each the event of its own disconnect; and the two events
// A queued are delivered by B or C.
//
// Each cycle consents to a different set of scopes, so that the event's
// data.scopes tells which disconnect it is (the example has one user and
// one client).
//
// README Webhooks: "webhook-id (the event id, stable across retries:
// de-duplicate on it)"; "on Redis, a Stream with a consumer group that
// every gateway instance shares"; "delivered at least once: a non-2xx
// answer … is retried with exponential backoff (first retry within 10 s)".
func TestInstancesDeliverEachWebhookOnce(t *testing.T) {
	t.Parallel()
	rcv := newWebhookReceiver(t)
	rcv.setStatus(http.StatusServiceUnavailable)
	c := startCluster(t, gatewayConfig{webhookURL: rcv.url})

	type cycle struct {
		scopes      []string
		queuedBy    *gateway // the instance whose connections page disconnected
		from, until time.Time
	}
	var cycles []cycle
	br := newBrowser(t, c.gws[0])
	for i, scopes := range [][]string{
		{"profile:read"},
		{"seatime:read"},
		{"vessels:read"},
		{"profile:read", "seatime:read"},
		{"profile:read", "vessels:read"},
		{"seatime:read", "vessels:read"},
	} {
		consentOn, exchangeOn, disconnectOn := c.gws[i%3], c.gws[(i+1)%3], c.gws[(i+2)%3]
		from := time.Now()
		req := newAuthRequest(consentOn.oauthConfig(oauth2.AuthStyleInParams, scopes...))
		tok := exchangeAt(t, exchangeOn, req, br.at(consentOn).authorize(req))
		onZ := br.at(disconnectOn)
		p := onZ.connections()
		wantConnectedApp(t, p, from, scopes...)
		onZ.disconnect(p)
		wantRefused(t, consentOn, tok.AccessToken)
		cycles = append(cycles, cycle{scopes, disconnectOn, from, time.Now()})
	}

	// Every event is tried and refused at least once, then accepted.
	n := len(cycles)
	rcv.waitFor(15*time.Second, fmt.Sprintf("attempt of each of %d events", n), func(ds []delivery) bool { return len(distinctIDs(ds)) >= n })
	// The dispatcher logs a failed attempt once its retry is in the store.
	deadline := time.Now().Add(10 * time.Second)
	for c.countLog("webhook delivery failed; will retry") < n {
		if time.Now().After(deadline) {
			t.Fatalf("the instances did not log %d failed attempts within 10 s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dead := c.gws[0]
	dead.stop()
	rcv.setStatus(http.StatusNoContent)
	rcv.waitFor(30*time.Second, fmt.Sprintf("acknowledged delivery of each of %d events", n), func(ds []delivery) bool { return len(distinctIDs(accepted(ds))) >= n })
	// Time for a late second delivery of any of them to show.
	time.Sleep(2 * time.Second)
	rcv.wantAllSigned()
	all := rcv.all()
	got := accepted(all)

	// Exactly one logical event per disconnect, and none other.
	ids := distinctIDs(all)
	if len(ids) != n || len(distinctIDs(got)) != n {
		t.Fatalf("%d disconnects: want %d distinct webhook-ids, all acknowledged; got %d distinct, %d acknowledged:\n%s",
			n, n, len(ids), len(distinctIDs(got)), rcv.describe())
	}
	first := map[string]delivery{}
	for _, d := range got {
		if _, ok := first[d.id()]; !ok {
			first[d.id()] = d
		}
	}
	matched := map[int]string{}
	for id, d := range first {
		var ev consentRevoked
		if err := json.Unmarshal(d.body, &ev); err != nil {
			t.Fatalf("event %s: body is not JSON: %v", id, err)
		}
		i := -1
		for j, cy := range cycles {
			if scopeSet(strings.Join(ev.Data.Scopes, " ")) == scopeSet(strings.Join(cy.scopes, " ")) {
				i = j
			}
		}
		if i < 0 {
			t.Fatalf("event %s names scopes %q, granted in no cycle:\n%s", id, ev.Data.Scopes, d)
		}
		if other, dup := matched[i]; dup {
			t.Fatalf("disconnect %d (scopes %q) produced two events, %s and %s", i+1, cycles[i].scopes, other, id)
		}
		matched[i] = id
		ev = wantConsentRevoked(t, d, cycles[i].scopes, cycles[i].from)
		if ts, _ := time.Parse(time.RFC3339Nano, ev.Timestamp); ts.After(cycles[i].until.Add(time.Second)) {
			t.Errorf("event %s: timestamp %s is after its disconnect, which ended at %s", id, ev.Timestamp, cycles[i].until.Format(time.RFC3339Nano))
		}
		// A retry resends the event as it was queued.
		for _, other := range all {
			if other.id() == id && string(other.body) != string(d.body) {
				t.Errorf("event %s: attempts with different bodies:\n%s\n%s", id, d, other)
			}
		}
	}

	// Who sent what, from the instances' logs.
	deliveredBy := map[string][]string{}
	failedOn := map[string]int{}
	for _, gw := range c.gws {
		for _, e := range logEntries(gw.output.String(), "", "") {
			id, _ := e["event_id"].(string)
			switch e["msg"] {
			case "webhook delivered":
				deliveredBy[id] = append(deliveredBy[id], c.name(gw))
			case "webhook delivery failed; will retry":
				failedOn[c.name(gw)]++
			}
		}
	}
	var report []string
	for i, cy := range cycles {
		id := matched[i]
		attempts := 0
		for _, d := range all {
			if d.id() == id {
				attempts++
			}
		}
		if len(deliveredBy[id]) == 0 {
			t.Errorf("event %s was acknowledged, but no instance logged delivering it", id)
		}
		if cy.queuedBy == dead {
			for _, by := range deliveredBy[id] {
				if by == c.name(dead) {
					t.Errorf("event %s, queued on %s, was logged delivered by %s after it was killed", id, by, by)
				}
			}
		}
		report = append(report, fmt.Sprintf("disconnect %d on %s: %d attempt(s), delivered by %s",
			i+1, c.name(cy.queuedBy), attempts, strings.Join(deliveredBy[id], "+")))
	}
	t.Logf("%d events, %d deliveries acknowledged (%d duplicate(s) a de-duplicating receiver drops), %d attempts in all; failed attempts by instance: %v\n%s",
		n, len(got), len(got)-n, len(all), failedOn, strings.Join(report, "\n"))
}

// spread returns a request maker for race that sends the k-th request it
// makes to instance k mod 3: the same request raced across the instances.
func (c *cluster) spread(t *testing.T, path string, form url.Values) func() *http.Request {
	k := 0
	return func() *http.Request {
		gw := c.gws[k%len(c.gws)]
		k++
		req, _ := gw.formRequest(t, path, form, authPost, clientID, clientSecret)
		return req
	}
}

// TestInstancesRaceOnOneStore sends the same request to the three
// instances at the same moment, where only the store can decide: nine
// refreshes of one refresh token, six exchanges of one code, and thirty
// wrong passwords for one user.
//
// README Refresh tokens: "Of two concurrent refreshes of one token,
// exactly one wins; the other gets invalid_grant"; "A code presented twice
// gets invalid_grant and revokes the grant" (RFC 6749 §4.1.2: the code
// must not be used more than once, and tokens issued from it should be
// revoked); sign_in_limit: attempts "counted in the store (every instance
// shares the count) and reserved before the password is checked, so
// concurrency cannot buy more checks".
func TestInstancesRaceOnOneStore(t *testing.T) {
	t.Parallel()
	// Ten bcrypt checks at once load this machine's cores; what is tested
	// is the count, not the store deadline, which the harness sets to 5s.
	awayFromSignInWindowEdge(t)
	c := startCluster(t, gatewayConfig{})

	// Refresh: exactly one of nine wins, and its pair works everywhere.
	tok, _ := obtainTokens(t, c.gws[0], allScopes...)
	current := tok.RefreshToken
	for round := 1; round <= 3; round++ {
		rs := race(t, 9, c.spread(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {current}}))
		var winner map[string]any
		for _, r := range rs {
			if r.status == http.StatusOK && winner == nil {
				winner = wantTokenResponse(t, r, strings.Join(allScopes, " "))
				continue
			}
			wantOAuthError(t, r, http.StatusBadRequest, "invalid_grant")
		}
		if winner == nil {
			t.Fatalf("round %d: none of 9 concurrent refreshes across the instances succeeded, want exactly one", round)
		}
		for _, gw := range c.gws {
			wantUserinfoOK(t, gw.userinfo(t, bearer(winner["access_token"].(string))))
		}
		current = winner["refresh_token"].(string)
	}

	// Code: at most one of six exchanges gets tokens, and none of what it
	// got survives the replay.
	br := newBrowser(t, c.gws[1])
	wins := 0
	for round := 1; round <= 3; round++ {
		req := newAuthRequest(c.gws[1].oauthConfig(oauth2.AuthStyleInParams, allScopes...))
		code := br.authorize(req)
		rs := race(t, 6, c.spread(t, "/oauth/token", url.Values{
			"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirectURI}, "code_verifier": {req.verifier},
		}))
		var issued map[string]any
		for _, r := range rs {
			if r.status == http.StatusOK {
				if issued != nil {
					t.Fatalf("round %d: two of six concurrent exchanges of one code got tokens:\n%s", round, r)
				}
				issued = wantTokenResponse(t, r, strings.Join(allScopes, " "))
				wins++
				continue
			}
			wantOAuthError(t, r, http.StatusBadRequest, "invalid_grant")
		}
		if issued != nil {
			for _, gw := range c.gws {
				wantRefused(t, gw, issued["access_token"].(string))
			}
			wantOAuthError(t, c.gws[2].refreshRaw(t, issued["refresh_token"].(string), ""), http.StatusBadRequest, "invalid_grant")
		}
	}
	t.Logf("concurrent code exchanges: %d of 3 rounds issued a pair (then revoked by the replay), the others none", wins)

	// Sign-in: of thirty wrong passwords at once, ten per instance, ten are
	// checked and twenty refused unchecked.
	conf := c.gws[0].oauthConfig(oauth2.AuthStyleInParams, allScopes...)
	const n = 30
	type attempt struct {
		b   *browser
		req *http.Request
	}
	attempts := make([]attempt, n)
	for i := range attempts {
		gw := c.gws[i%len(c.gws)]
		b := newBrowser(t, c.gws[(i+1)%len(c.gws)])
		login := b.get(newAuthRequest(conf).url)
		f := login.form()
		if f == nil || !login.isLogin() {
			t.Fatalf("want the sign-in form:\n%s", login)
		}
		action, _ := login.url.Parse(f.action)
		values := url.Values{"username": {username}, "password": {"guess"}}
		for k, vs := range f.hidden {
			values[k] = vs
		}
		req, _ := http.NewRequest(http.MethodPost, gw.base+action.RequestURI(), strings.NewReader(values.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", gw.base)
		attempts[i] = attempt{b, req}
	}
	statuses := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, a := range attempts {
		wg.Go(func() {
			<-start
			resp, err := a.b.client.Do(a.req)
			if err != nil {
				errs[i] = err
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for i, s := range statuses {
		if errs[i] != nil {
			t.Fatalf("wrong password %d: %v", i+1, errs[i])
		}
		count[s]++
	}
	if count[http.StatusUnauthorized] != 10 || count[http.StatusTooManyRequests] != n-10 {
		t.Fatalf("%d concurrent wrong passwords across the instances: statuses %v; want exactly 10 checked (401) and %d refused unchecked (429)", n, count, n-10)
	}
}
