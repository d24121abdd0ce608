package caddymodule

import (
	"context"
	"encoding/json"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/webhook"
)

// auditApp is a test app whose audit entries are observed, with alice
// (password "alice-password") as its one user, a sign-in limit of one
// failure per username, and no webhook.
func auditApp(t *testing.T) (*App, *storetest.Clock, *observer.ObservedLogs) {
	t.Helper()
	a, clk := newTestApp(t)
	core, logs := observer.New(zapcore.DebugLevel)
	a.audit = newAuditLogger(zap.New(core).Named("tollgate"))
	a.SessionLifetime = caddy.Duration(time.Hour)
	a.signInLimit = store.Limit{Count: 1, Window: 15 * time.Minute}
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := &StaticUsers{Users: []StaticUser{{Username: "alice", Password: string(hash)}}}
	if err := users.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	a.users = users
	a.webhooks = &webhook.Dispatcher{Queue: a.webhooks.Queue, Endpoint: a.webhookEndpoint}
	return a, clk, logs
}

// fromClient is r as Caddy's HTTP server hands it on: with the client_ip
// variable it determined.
func fromClient(r *http.Request, ip string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip}))
}

// Every audited path writes one entry on tollgate.audit, at Info, whose
// message is the event name and whose fields are exactly the documented
// ones (README "Audit log"): the client, the user, the grant, short token
// digests, the client's address; never a token, code, verifier, secret,
// password, session id or CSRF token.
func TestAuditEntriesNameTheGrantAndNeverASecret(t *testing.T) {
	a, clk, logs := auditApp(t)
	const ip = "203.0.113.7"
	ctx := fromClient(httptest.NewRequest(http.MethodPost, "/", nil), ip).Context()
	grantID := oauth.GrantID("partner", "alice")
	short := func(secret string) string { return oauth.Digest(secret)[:16] }
	var secrets []string
	var want []map[string]any
	expect := func(event string, fields map[string]any) {
		fields["msg"] = event
		want = append(want, fields)
	}

	// Sign-in: a known user's failure names the user; a username that is
	// nobody's (here the password typed into the wrong field) is not
	// logged; then the throttle, and a success.
	signIn := func(clientID, username, password string) signInResult {
		t.Helper()
		w := httptest.NewRecorder()
		r := fromClient(httptest.NewRequest(http.MethodPost, "/", nil), ip)
		r.PostForm = url.Values{"username": {username}, "password": {password}}
		res, err := a.signIn(w, r, clientID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range w.Result().Cookies() {
			secrets = append(secrets, c.Value)
		}
		return res
	}
	secrets = append(secrets, "alice-password", "not-her-password")
	signIn("partner", "alice", "not-her-password")
	expect(auditSignInFailed, map[string]any{"page": "authorize", "client_id": "partner", "subject": "alice", "client_ip": ip})
	signIn("", "alice-password", "x")
	expect(auditSignInFailed, map[string]any{"page": "connections", "client_ip": ip})
	if res := signIn("partner", "alice", "alice-password"); res.Status != http.StatusTooManyRequests {
		t.Fatalf("the second attempt within the limit of 1: %+v, want 429", res)
	}
	expect(auditSignInThrottled, map[string]any{"page": "authorize", "client_id": "partner", "subject": "alice", "limit": "username", "until": clk.Now().Truncate(15 * time.Minute).Add(15 * time.Minute), "client_ip": ip})
	a.signInLimit = store.Limit{}
	if res := signIn("", "alice", "alice-password"); res.Subject != "alice" {
		t.Fatalf("sign-in: %+v", res)
	}
	expect(auditSignInSucceeded, map[string]any{"page": "connections", "subject": "alice", "client_ip": ip})

	// Consent denied, then granted: a code is issued.
	authz := &Authorize{appRef{a}}
	verifier := strings.Repeat("v", 43)
	secrets = append(secrets, verifier, testSecret)
	p := &pending{ClientID: "partner", RedirectURI: "https://partner.example.com/cb", Scopes: []string{"profile:read"}, Subject: "alice", Challenge: oauth.S256(verifier)}
	decide := func(decision string) string {
		t.Helper()
		w := httptest.NewRecorder()
		authz.decide(w, fromClient(httptest.NewRequest(http.MethodPost, "/", nil), ip), p, decision)
		loc, err := url.Parse(w.Header().Get("Location"))
		if w.Code != http.StatusSeeOther || err != nil {
			t.Fatalf("consent %s: %d %q", decision, w.Code, w.Header().Get("Location"))
		}
		code := loc.Query().Get("code")
		if decision == "allow" {
			secrets = append(secrets, code)
			expect(auditConsentGranted, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "scopes": []any{"profile:read"}, "client_ip": ip})
			expect(auditCodeIssued, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "scopes": []any{"profile:read"}, "code_digest": short(code), "client_ip": ip})
		}
		return code
	}
	decide("deny")
	expect(auditConsentDenied, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "scopes": []any{"profile:read"}, "client_ip": ip})

	// The code exchanged, replayed (the grant is revoked), then a new
	// consent's pair refreshed, the old refresh token reused after the
	// grace window, and a third pair revoked by the client.
	client := a.Client("partner")
	exchangeForm := func(code string) url.Values {
		return url.Values{"code": {code}, "redirect_uri": {p.RedirectURI}, "code_verifier": {verifier}}
	}
	exchange := func(code string) *tokenResponse {
		t.Helper()
		resp, oerr := a.exchangeCode(ctx, client, exchangeForm(code))
		if oerr != nil {
			t.Fatalf("exchange: %v", oerr)
		}
		secrets = append(secrets, resp.AccessToken, resp.RefreshToken)
		expect(auditTokensIssued, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "grant_type": "authorization_code", "scopes": []any{"profile:read"},
			"code_digest": short(code), "access_digest": short(resp.AccessToken), "refresh_digest": short(resp.RefreshToken), "client_ip": ip})
		return resp
	}
	code := decide("allow")
	exchange(code)
	if _, oerr := a.exchangeCode(ctx, client, exchangeForm(code)); oerr == nil {
		t.Fatal("a replayed code was exchanged")
	}
	expect(auditCodeReplayed, map[string]any{"client_id": "partner", "grant_id": grantID, "code_digest": short(code), "client_ip": ip})

	tr := exchange(decide("allow"))
	next, oerr := a.refresh(ctx, client, url.Values{"refresh_token": {tr.RefreshToken}})
	if oerr != nil {
		t.Fatal(oerr)
	}
	secrets = append(secrets, next.AccessToken, next.RefreshToken)
	expect(auditTokensRefreshed, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "grant_type": "refresh_token", "scopes": []any{"profile:read"},
		"old_refresh_digest": short(tr.RefreshToken), "access_digest": short(next.AccessToken), "refresh_digest": short(next.RefreshToken), "client_ip": ip})
	clk.Advance(time.Minute)
	if _, oerr := a.refresh(ctx, client, url.Values{"refresh_token": {tr.RefreshToken}}); oerr == nil {
		t.Fatal("a rotated refresh token was refreshed")
	}
	expect(auditRefreshReused, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "refresh_digest": short(tr.RefreshToken), "client_ip": ip})

	tr = exchange(decide("allow"))
	form := url.Values{"token": {tr.RefreshToken}, "client_id": {"partner"}, "client_secret": {testSecret}}
	r := httptest.NewRequest(http.MethodPost, "/oauth/revoke", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	if err := (&Revoke{appRef{a}}).ServeHTTP(w, fromClient(r, ip), nil); err != nil || w.Code != http.StatusOK {
		t.Fatalf("revoke: %v %d %s", err, w.Code, w.Body)
	}
	expect(auditTokenRevoked, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "token_type": "refresh_token", "token_digest": short(tr.RefreshToken), "client_ip": ip})

	// A disconnect by the user; the admin API's list and revoke name the
	// operator's address.
	decide("allow")
	if err := a.disconnect(ctx, "alice", "partner", "user"); err != nil {
		t.Fatal(err)
	}
	expect(auditGrantDisconnected, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "by": "user", "scopes": []any{"profile:read"}, "client_ip": ip})
	decide("allow")
	admin := httptest.NewRequest(http.MethodGet, "/tollgate/users/alice/grants", nil)
	admin.RemoteAddr = "192.0.2.1:5555"
	admin = auditRequest(admin)
	if err := a.listUserGrants(httptest.NewRecorder(), admin, "alice"); err != nil {
		t.Fatal(err)
	}
	expect(auditGrantsListed, map[string]any{"subject": "alice", "grants": 1, "client_ip": "192.0.2.1"})
	if err := a.revokeUserGrant(httptest.NewRecorder(), admin, "alice", "partner"); err != nil {
		t.Fatal(err)
	}
	expect(auditGrantDisconnected, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "by": "operator", "scopes": []any{"profile:read"}, "client_ip": "192.0.2.1"})

	// The webhook dispatcher's hook: no request, so no address.
	ev, err := webhook.NewConsentRevoked(store.Grant{ClientID: "partner", Subject: "alice", Scopes: []string{"profile:read"}}, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.auditWebhookGivenUp(ev, webhook.GaveUpGone, 1)
	expect(auditWebhookGivenUp, map[string]any{"client_id": "partner", "subject": "alice", "grant_id": grantID, "event_id": ev.ID, "event_type": "user.consent.revoked", "reason": "gone", "attempts": 1, "created": ev.CreatedAt})

	got := logs.All()
	if len(got) != len(want) {
		for _, e := range got {
			t.Logf("%s %v", e.Message, e.ContextMap())
		}
		t.Fatalf("%d audit entries, want %d", len(got), len(want))
	}
	for i, e := range got {
		if e.LoggerName != "tollgate.audit" || e.Level != zapcore.InfoLevel {
			t.Errorf("entry %d (%s) on logger %q at %s, want tollgate.audit at info", i, e.Message, e.LoggerName, e.Level)
		}
		fields := e.ContextMap()
		fields["msg"] = e.Message
		raw, _ := json.Marshal(fields)
		for _, s := range secrets {
			if s != "" && strings.Contains(string(raw), s) {
				t.Errorf("entry %d (%s) holds a secret: %s", i, e.Message, raw)
			}
		}
		// Compared as JSON, so that a time is compared as the instant
		// the encoder writes and a count whatever its Go type.
		if wantRaw, _ := json.Marshal(want[i]); string(raw) != string(wantRaw) {
			t.Errorf("entry %d:\n got %s\nwant %s", i, raw, wantRaw)
		}
	}
}
