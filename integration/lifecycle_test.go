package integration

// The end of a connection: the user's connected-apps page at
// /oauth/connections, its Disconnect button, and the user.consent.revoked
// webhook the disconnect sends to the partner.
//
// The connected-apps page at /oauth/connections is for the signed-in user
// (same sign-in as authorize) and lists each connected partner with its
// display name, granted scopes in plain English, when granted and when
// last used, and a CSRF-protected form per partner with a submit button
// name="disconnect" whose value is the client_id. Disconnect revokes every
// token of that client for that user at once (docs/partners.md D42, D43;
// docs/architecture.md §4.4).

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

const connectionsPath = "/oauth/connections"

// forEachStoreWithReceiver is forEachStore with a webhook receiver of its
// own per subtest, registered as the demo client's webhook URL.
func forEachStoreWithReceiver(t *testing.T, cfg gatewayConfig, fn func(t *testing.T, gw *gateway, rcv *webhookReceiver)) {
	t.Helper()
	t.Parallel()
	for _, s := range stores {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			rcv := newWebhookReceiver(t)
			c := cfg
			c.webhookURL = rcv.url
			fn(t, startGateway(t, s, c), rcv)
		})
	}
}

// connect runs the authorization flow in browser b, signing in when asked,
// and exchanges the code: b is then signed in as alice.
func connect(t *testing.T, gw *gateway, b *browser, scopes ...string) *oauth2.Token {
	t.Helper()
	conf := gw.oauthConfig(oauth2.AuthStyleInParams, scopes...)
	a := newAuthRequest(conf)
	code := b.authorize(a)
	tok, err := conf.Exchange(clientCtx(t), code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("exchanging the code: %v", err)
	}
	return tok
}

// connections opens the connected-apps page.
func (b *browser) connections() *page {
	b.t.Helper()
	return b.get(b.gw.base + connectionsPath)
}

// disconnect submits the page's Disconnect form for the demo client and
// checks the Post/Redirect/Get answer: 303 back to the page.
func (b *browser) disconnect(p *page) *page {
	b.t.Helper()
	f := p.form()
	if f == nil || !f.hasButton("disconnect="+clientID) {
		b.t.Fatalf("no Disconnect form (button name=disconnect value=%s) on the page:\n%s", clientID, p)
	}
	r := b.submit(p, url.Values{"disconnect": {clientID}})
	wantBackToConnections(b.t, r)
	return r
}

// wantBackToConnections checks a 303 See Other to the connections page.
func wantBackToConnections(t *testing.T, r *page) {
	t.Helper()
	if r.status != http.StatusSeeOther {
		t.Fatalf("want 303 See Other back to %s:\n%s", connectionsPath, r)
	}
	loc, err := r.url.Parse(r.header.Get("Location"))
	if err != nil || loc.Path != connectionsPath {
		t.Fatalf("303 to %q, want %s:\n%s", r.header.Get("Location"), connectionsPath, r)
	}
}

// wantConnectedApp checks p is alice's connections page listing the demo
// client with exactly the granted scopes in plain English, when it was
// granted and last used (today, in UTC), and a CSRF-protected Disconnect
// form; it returns the form's csrf value.
func wantConnectedApp(t *testing.T, p *page, since time.Time, scopes ...string) string {
	t.Helper()
	if p.status != http.StatusOK || p.doc == nil {
		t.Fatalf("connections page: want 200 HTML:\n%s", p)
	}
	text := p.text()
	if !strings.Contains(text, clientName) {
		t.Errorf("the page does not show the partner's display name %q", clientName)
	}
	granted := map[string]bool{}
	for _, s := range scopes {
		granted[s] = true
	}
	for _, s := range allScopes {
		switch has := strings.Contains(text, scopeText[s]); {
		case granted[s] && !has:
			t.Errorf("the page does not show granted scope %s in plain English (%q)", s, scopeText[s])
		case !granted[s] && has:
			t.Errorf("the page shows %q, but scope %s was not granted", scopeText[s], s)
		}
	}
	// The page formats both times as "2 Jan 2006 15:04 UTC".
	days := []string{since.UTC().Format("2 Jan 2006"), time.Now().UTC().Format("2 Jan 2006")}
	for _, label := range []string{"Connected", "last used"} {
		if !strings.Contains(text, label+" "+days[0]) && !strings.Contains(text, label+" "+days[1]) {
			t.Errorf("the page does not say %q today (%s): when granted and when last used", label, days[1])
		}
	}
	f := p.form()
	switch {
	case f == nil:
		t.Errorf("no <form method=post> on the page")
	case !f.hasButton("disconnect=" + clientID):
		t.Errorf("form buttons %q, want a submit button name=disconnect value=%s", f.buttons, clientID)
	case f.hidden.Get("csrf") == "":
		t.Errorf("the Disconnect form has no csrf hidden input (hidden: %v)", f.hidden)
	}
	if t.Failed() {
		t.Fatalf("connections page:\n%s", p)
	}
	return f.hidden.Get("csrf")
}

// wantNoApp checks p is the connections page of a signed-in user with
// nothing connected.
func wantNoApp(t *testing.T, p *page) {
	t.Helper()
	if p.status != http.StatusOK || p.doc == nil || p.isLogin() {
		t.Fatalf("connections page: want 200 HTML for the signed-in user:\n%s", p)
	}
	if strings.Contains(p.text(), clientName) {
		t.Fatalf("the page still lists %q after the disconnect:\n%s", clientName, p)
	}
	if f := p.form(); f != nil && f.hasButton("disconnect="+clientID) {
		t.Fatalf("the page still has a Disconnect button for %s:\n%s", clientID, p)
	}
}

// wantDead checks tokens are revoked on the very next request: each access
// token gets 401 invalid_token at userinfo and at the API, each refresh
// token invalid_grant.
//
// After a disconnect every access and refresh token issued to the client
// for that user is revoked at once, and the next call gets invalid_token
// → 401 (docs/partners.md D43).
func wantDead(t *testing.T, gw *gateway, toks ...*oauth2.Token) {
	t.Helper()
	for _, tok := range toks {
		wantBearerError(t, gw.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")
		wantBearerError(t, gw.call(t, "/v1/me", bearer(tok.AccessToken), nil).response, http.StatusUnauthorized, "invalid_token")
		wantOAuthError(t, gw.refreshRaw(t, tok.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")
	}
}

// TestConnectionsPageListsConnectedApps connects alice with two of the
// three scopes and opens the page in the browser that signed in during
// authorize.
//
// The page is for the signed-in user (same sign-in as authorize) and lists
// each connected partner with its display name, granted scopes in plain
// English, when granted and when last used, and a CSRF-protected form per
// partner with a submit button name="disconnect" whose value is the
// client_id (docs/partners.md D42; docs/architecture.md §4.4).
func TestConnectionsPageListsConnectedApps(t *testing.T) {
	forEachStoreWithReceiver(t, gatewayConfig{}, func(t *testing.T, gw *gateway, rcv *webhookReceiver) {
		start := time.Now()
		b := newBrowser(t, gw)
		scopes := []string{"profile:read", "seatime:read"}
		tok := connect(t, gw, b, scopes...)
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))

		p := b.connections()
		wantConnectedApp(t, p, start, scopes...)
		if !strings.Contains(p.text(), username) {
			t.Errorf("the page does not say who is signed in (%s):\n%s", username, p)
		}
		// A page with a Disconnect button must not be framed or cached
		// (the same headers as the consent page).
		if xfo := p.header.Get("X-Frame-Options"); !strings.EqualFold(xfo, "DENY") {
			t.Errorf("X-Frame-Options = %q, want DENY (clickjacking the Disconnect button)", xfo)
		}
		if cc := p.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}
		// The listing itself disconnects nothing.
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
		if n := len(rcv.all()); n != 0 {
			t.Fatalf("opening the page sent %d webhook(s):\n%s", n, rcv.describe())
		}
	})
}

// TestConnectionsPageSignsInWithoutSession opens the page in a browser that
// never signed in: it gets the sign-in form (inputs username and
// password), and after signing in the page.
//
// The page is for the signed-in user, with the same sign-in as authorize:
// with no session, the user sees a login form whose inputs are named
// username and password (docs/architecture.md §4.4).
func TestConnectionsPageSignsInWithoutSession(t *testing.T) {
	forEachStoreWithReceiver(t, gatewayConfig{}, func(t *testing.T, gw *gateway, _ *webhookReceiver) {
		start := time.Now()
		tok, _ := obtainTokens(t, gw, allScopes...) // in a browser of its own

		fresh := newBrowser(t, gw)
		login := fresh.connections()
		if login.status != http.StatusOK || !login.isLogin() {
			t.Fatalf("connections page without a session: want 200 and the sign-in form (inputs username, password):\n%s", login)
		}
		if strings.Contains(login.text(), clientName) {
			t.Fatalf("the sign-in form shows alice's connections before sign-in:\n%s", login)
		}

		// The sign-in form is CSRF-protected too (login CSRF).
		action, _ := login.url.Parse(login.form().action)
		r := fresh.post(action.String(), url.Values{"username": {username}, "password": {password}})
		if r.status != http.StatusForbidden {
			t.Fatalf("sign-in without the form's csrf: want 403:\n%s", r)
		}
		// A wrong password shows the form again.
		r = fresh.submit(login, url.Values{"username": {username}, "password": {"not-" + password}})
		if !r.isLogin() || strings.Contains(r.text(), clientName) {
			t.Fatalf("wrong password: want the sign-in form again:\n%s", r)
		}

		before := fresh.cookie(sessionCookieName)
		r = fresh.submit(login, url.Values{"username": {username}, "password": {password}})
		wantBackToConnections(t, r)
		if after := fresh.cookie(sessionCookieName); after == "" || after == before {
			t.Errorf("session id %q → %q: want a new id at sign-in (session fixation)", before, after)
		}
		wantConnectedApp(t, fresh.connections(), start, allScopes...)

		// The same sign-in then serves authorize: straight to consent.
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		if p := fresh.get(newAuthRequest(conf).url); !p.isConsent() {
			t.Fatalf("authorize after signing in on the connections page: want the consent form:\n%s", p)
		}
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
	})
}

// sessionCookieName is the gateway's session cookie.
const sessionCookieName = "tollgate_session"

// TestDisconnectRequiresCSRF posts the Disconnect form without its csrf
// value, with a made-up one and with another browser's: each is refused
// with 403 and nothing is revoked or sent.
//
// Each partner has a CSRF-protected form with a submit button
// name="disconnect" whose value is the client_id (docs/partners.md D42;
// docs/architecture.md §4.4).
func TestDisconnectRequiresCSRF(t *testing.T) {
	forEachStoreWithReceiver(t, gatewayConfig{}, func(t *testing.T, gw *gateway, rcv *webhookReceiver) {
		start := time.Now()
		b := newBrowser(t, gw)
		tok := connect(t, gw, b, allScopes...)
		p := b.connections()
		csrf := wantConnectedApp(t, p, start, allScopes...)
		action, err := p.url.Parse(p.form().action)
		if err != nil {
			t.Fatal(err)
		}

		// Another browser's token: alice signed in elsewhere, and an
		// anonymous visitor of the page.
		other := newBrowser(t, gw)
		connect(t, gw, other, allScopes...)
		otherCSRF := wantConnectedApp(t, other.connections(), start, allScopes...)
		anon := newBrowser(t, gw).connections().form()
		if anon == nil || anon.hidden.Get("csrf") == "" {
			t.Fatalf("the anonymous sign-in form has no csrf value")
		}

		for _, tc := range []struct{ name, csrf string }{
			{"no csrf", ""},
			{"made-up csrf", "Zm9yZ2VkLWNzcmYtdG9rZW4tMDEyMzQ1Njc4OWFiY2RlZg"},
			{"csrf of another signed-in browser", otherCSRF},
			{"csrf of an anonymous session", anon.hidden.Get("csrf")},
			{"csrf with its last character changed", flipLast(csrf)},
		} {
			form := url.Values{"disconnect": {clientID}}
			if tc.csrf != "" {
				form.Set("csrf", tc.csrf)
			}
			r := b.post(action.String(), form)
			if r.status != http.StatusForbidden {
				t.Fatalf("%s: want 403:\n%s", tc.name, r)
			}
			wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
		}
		// Nothing revoked: the page still lists the app and the refresh
		// token still refreshes.
		wantConnectedApp(t, b.connections(), start, allScopes...)
		wantTokenResponse(t, gw.refreshRaw(t, tok.RefreshToken, ""), strings.Join(allScopes, " "))
		// And no event left: the dispatcher sends a queued event at once.
		time.Sleep(time.Second)
		if n := len(rcv.all()); n != 0 {
			t.Fatalf("refused disconnects sent %d webhook(s):\n%s", n, rcv.describe())
		}
	})
}

// TestDisconnectRevokesEveryTokenAtOnce connects alice twice (two token
// pairs of one client, with different scopes), disconnects the client from the page and checks
// both pairs are dead on the very next request and the page lists no app.
//
// Disconnect revokes every access and refresh token of that client for
// that user at once, and the next call gets invalid_token → 401
// (docs/partners.md D43).
func TestDisconnectRevokesEveryTokenAtOnce(t *testing.T) {
	forEachStoreWithReceiver(t, gatewayConfig{}, func(t *testing.T, gw *gateway, rcv *webhookReceiver) {
		start := time.Now()
		b := newBrowser(t, gw)
		first := connect(t, gw, b, "profile:read", "seatime:read")
		second := connect(t, gw, b, "vessels:read")
		wantUserinfoOK(t, gw.userinfo(t, bearer(first.AccessToken)))
		// Alive, only not for userinfo's scope.
		wantBearerError(t, gw.userinfo(t, bearer(second.AccessToken)), http.StatusForbidden, "insufficient_scope")
		// The page lists what the app can read: both consents.
		p := b.connections()
		wantConnectedApp(t, p, start, allScopes...)
		if n := strings.Count(p.body, `name="disconnect"`); n != 1 {
			t.Errorf("two connections of one client show %d Disconnect buttons, want one per partner", n)
		}

		r := b.disconnect(p)
		wantDead(t, gw, first, second)
		loc, _ := r.url.Parse(r.header.Get("Location"))
		wantNoApp(t, b.get(loc.String()))

		// The stale form submitted again (a double click, a reload of the
		// POST) is harmless: the same answer, still no app, no second event.
		wantBackToConnections(t, b.submit(p, url.Values{"disconnect": {clientID}}))
		wantNoApp(t, b.connections())
		got := rcv.waitFor(10*time.Second, "accepted event", func(ds []delivery) bool { return len(accepted(ds)) > 0 })
		time.Sleep(time.Second)
		if ids := distinctIDs(rcv.all()); len(ids) != 1 {
			t.Fatalf("one disconnect (submitted twice) sent %d distinct events %q, want one:\n%s", len(ids), ids, rcv.describe())
		}
		rcv.wantAllSigned()
		wantConsentRevoked(t, accepted(got)[0], allScopes, start,
			first.AccessToken, first.RefreshToken, second.AccessToken, second.RefreshToken)

		// A new consent after the disconnect is a new connection.
		again := connect(t, gw, b, "profile:read")
		wantUserinfoOK(t, gw.userinfo(t, bearer(again.AccessToken)))
		wantConnectedApp(t, b.connections(), start, "profile:read")
		wantDead(t, gw, first, second)
	})
}

// TestDisconnectSendsSignedConsentRevokedWebhook disconnects with the
// receiver up and checks the one event it gets.
//
// On a user's disconnect a signed user.consent.revoked webhook goes to the
// partner's registered URL (docs/partners.md D44): a JSON body with type,
// an event id, a timestamp and data naming client_id, subject and scopes
// (never a token), signed per the Standard Webhooks scheme (webhook-id,
// webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of
// id.timestamp.body>, secret whsec_<base64>) (README "Webhooks";
// docs/architecture.md §7).
func TestDisconnectSendsSignedConsentRevokedWebhook(t *testing.T) {
	forEachStoreWithReceiver(t, gatewayConfig{}, func(t *testing.T, gw *gateway, rcv *webhookReceiver) {
		b := newBrowser(t, gw)
		scopes := []string{"profile:read", "vessels:read"}
		tok := connect(t, gw, b, scopes...)
		p := b.connections()
		wantConnectedApp(t, p, time.Now().Add(-time.Minute), scopes...)

		before := time.Now()
		b.disconnect(p)
		wantDead(t, gw, tok)
		got := rcv.waitFor(10*time.Second, "accepted event", func(ds []delivery) bool { return len(accepted(ds)) > 0 })
		rcv.wantAllSigned()
		// wantAllSigned checked webhook-timestamp (Unix seconds, within
		// 5 minutes of now) and the v1 HMAC-SHA256 with the whsec_ secret.
		wantConsentRevoked(t, accepted(got)[0], scopes, before, tok.AccessToken, tok.RefreshToken)

		// Delivered means acknowledged: no further attempt, no other event.
		time.Sleep(2 * time.Second)
		if n := len(rcv.all()); n != 1 {
			t.Fatalf("an acknowledged event was sent %d times, want once:\n%s", n, rcv.describe())
		}
	})
}

// TestWebhookRetriedWithBackoffUntilReceiverUp disconnects while the
// receiver answers 503, lets two attempts fail and brings it up: the same
// event (same webhook-id, same bytes) is retried, the first retry within
// 10 s and the next one later, and exactly one logical event arrives.
//
// The event is durable: queued in the store before the disconnect
// answers, retried with exponential backoff starting within 10 s, and
// delivered at least once with a stable event id for de-duplication
// (README "Webhooks"; docs/architecture.md §7).
func TestWebhookRetriedWithBackoffUntilReceiverUp(t *testing.T) {
	forEachStoreWithReceiver(t, gatewayConfig{}, func(t *testing.T, gw *gateway, rcv *webhookReceiver) {
		rcv.setStatus(http.StatusServiceUnavailable)
		b := newBrowser(t, gw)
		tok := connect(t, gw, b, allScopes...)
		before := time.Now()
		b.disconnect(b.connections())
		// The disconnect does not wait for the receiver.
		if d := time.Since(before); d > 5*time.Second {
			t.Errorf("the disconnect took %s with the receiver failing; it should only queue the event", d)
		}
		wantDead(t, gw, tok)

		failed := rcv.waitFor(10*time.Second, "first attempt", func(ds []delivery) bool { return len(ds) >= 1 })
		first := failed[0]
		failed = rcv.waitFor(12*time.Second, "first retry", func(ds []delivery) bool { return len(ds) >= 2 })
		gap1 := failed[1].at.Sub(first.at)
		if gap1 > 11*time.Second {
			t.Errorf("first retry %s after the failed attempt, want within 10 s (README \"Webhooks\": first retry within 10 s)", gap1)
		}
		rcv.setStatus(http.StatusNoContent)
		got := rcv.waitFor(30*time.Second, "accepted retry", func(ds []delivery) bool { return len(accepted(ds)) > 0 })
		rcv.wantAllSigned()
		if len(got) < 3 {
			t.Fatalf("want two failed attempts before the accepted one:\n%s", rcv.describe())
		}
		gap2 := got[2].at.Sub(got[1].at)
		if gap2 <= gap1 {
			t.Errorf("retry gaps %s then %s: want the backoff to grow (README \"Webhooks\": exponential backoff)", gap1, gap2)
		}
		for i, d := range got {
			if d.id() != first.id() || string(d.body) != string(first.body) {
				t.Fatalf("attempt #%d differs from the first (webhook-id %q vs %q): a retry must resend the same event with a stable id:\n%s",
					i+1, d.id(), first.id(), rcv.describe())
			}
		}
		wantConsentRevoked(t, accepted(got)[0], allScopes, before, tok.AccessToken, tok.RefreshToken)
		time.Sleep(2 * time.Second)
		if ids, n := distinctIDs(rcv.all()), len(accepted(rcv.all())); len(ids) != 1 || n != 1 {
			t.Fatalf("want exactly one logical event, acknowledged once; got ids %q, %d acknowledged:\n%s", ids, n, rcv.describe())
		}
		t.Logf("attempt gaps: %s, %s", gap1.Round(time.Millisecond), gap2.Round(time.Millisecond))
	})
}

// TestWebhookSurvivesGatewayRestart disconnects while the receiver is down
// (its port refuses connections), kills the gateway, starts a new one on
// the same Redis and brings the receiver up: the event the first process
// queued arrives from the second, signed, with the event id the first
// process logged, once. Redis only: the embedded memory store lives in the
// process and loses its queue with it, by design (the memory subtests of
// TestWebhookRetriedWithBackoffUntilReceiverUp cover delivery there).
//
// The event is durable: queued in the store before the disconnect
// answers, it survives a gateway restart (on Redis) and is delivered at
// least once with a stable event id for de-duplication (README "Webhooks";
// docs/architecture.md §7). So: disconnect with the receiver down, restart
// the gateway, bring the receiver up, and exactly one logical event
// arrives, its signature valid.
func TestWebhookSurvivesGatewayRestart(t *testing.T) {
	t.Parallel()
	rcv := newDownWebhookReceiver(t)
	cfg := gatewayConfig{webhookURL: rcv.url}
	redisURL := storetest.StartRedis(t)

	gw1 := startGatewayOn(t, "redis", redisURL, cfg)
	b := newBrowser(t, gw1)
	tok := connect(t, gw1, b, allScopes...)
	before := time.Now()
	b.disconnect(b.connections())
	wantDead(t, gw1, tok)

	// The first process tries, is refused and records the retry; then it
	// dies (SIGKILL: no chance to hand anything over).
	failed := waitForLogEntry(t, gw1, "webhook delivery failed; will retry", 10*time.Second)
	id, _ := failed["event_id"].(string)
	if id == "" {
		t.Fatalf("the failed attempt's log entry names no event_id: %v", failed)
	}
	gw1.stop()
	killedAt := time.Now()

	gw2 := startGatewayOn(t, "redis", redisURL, cfg)
	rcv.up()
	got := rcv.waitFor(30*time.Second, "event delivered after the restart", func(ds []delivery) bool { return len(accepted(ds)) > 0 })
	rcv.wantAllSigned()
	d := accepted(got)[0]
	if d.id() != id {
		t.Fatalf("the event after the restart has webhook-id %q, want %q, the id the first process tried:\n%s", d.id(), id, rcv.describe())
	}
	wantConsentRevoked(t, d, allScopes, before, tok.AccessToken, tok.RefreshToken)
	waitForLog(t, gw2, "webhook delivered", 5*time.Second) // by the new process

	time.Sleep(2 * time.Second)
	if ids, n := distinctIDs(rcv.all()), len(accepted(rcv.all())); len(ids) != 1 || n != 1 {
		t.Fatalf("want exactly one logical event, acknowledged once; got ids %q, %d acknowledged:\n%s", ids, n, rcv.describe())
	}
	// The disconnect itself survived too.
	wantDead(t, gw2, tok)
	wantNoApp(t, newBrowserSignedIn(t, gw2))
	t.Logf("delivered %s after the kill", d.at.Sub(killedAt).Round(time.Millisecond))
}

// waitForLogEntry waits until the gateway logged a JSON entry with message
// msg and returns it.
func waitForLogEntry(t *testing.T, gw *gateway, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if es := logEntries(gw.output.String(), "", msg); len(es) > 0 {
			return es[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not log %q within %s; output:\n%s", msg, timeout, tail(gw.output.String(), logTail))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newBrowserSignedIn returns a browser signed in as alice on the
// connections page, showing it.
func newBrowserSignedIn(t *testing.T, gw *gateway) *page {
	t.Helper()
	b := newBrowser(t, gw)
	login := b.connections()
	if !login.isLogin() {
		t.Fatalf("want the sign-in form:\n%s", login)
	}
	wantBackToConnections(t, b.submit(login, url.Values{"username": {username}, "password": {password}}))
	return b.connections()
}

// waitForLog waits until the gateway's output contains s.
func waitForLog(t *testing.T, gw *gateway, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(gw.output.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not log %q within %s; output:\n%s", s, timeout, tail(gw.output.String(), logTail))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
