package integration

// The audit log (README "Audit log"): one entry per security-relevant
// event on the logger tollgate.audit, whose msg is the event name and whose
// fields name the client, the user, the grant, the client's address and
// tokens by the first 16 hex digits of their SHA-256; never a secret.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// auditLogger is the logger name operators route (README "Audit log").
const auditLogger = "tollgate.audit"

// auditWant is one expected audit entry: its msg and every field besides
// level, ts, logger and msg.
type auditWant struct {
	msg    string
	fields map[string]any
}

// Placeholders in auditWant fields: varies is a value that only has to be
// there (a time, an event id); grantPlaceholder is the grant's id, learnt
// from the first token (the part after the prefix, README "What partners
// get") after some entries were expected.
const (
	varies           = "<varies>"
	grantPlaceholder = "<grant id>"
)

// shortDigest is how the audit log names a token: the first 16 hex digits
// of its SHA-256.
func shortDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:16]
}

// logEntries returns the JSON entries of the output whose msg is msg (any
// msg when msg is "") and, when logger is not "", whose logger is logger.
func logEntries(output, logger, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(output, "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		if (msg == "" || e["msg"] == msg) && (logger == "" || e["logger"] == logger) {
			out = append(out, e)
		}
	}
	return out
}

// waitForAuditCount waits until the gateway has logged n audit entries
// with message msg.
func waitForAuditCount(t *testing.T, gw *gateway, msg string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(logEntries(gw.output.String(), auditLogger, msg)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not log %d %q audit entries within %s; output:\n%s", n, msg, timeout, tail(gw.output.String(), logTail))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// matches reports whether entry e is w: the same msg, exactly w's fields
// besides level, ts, logger and msg, each with w's value (scopes compared
// as sets).
func (w auditWant) matches(e map[string]any, grantID string) bool {
	if e["msg"] != w.msg || len(e) != len(w.fields)+4 {
		return false
	}
	for k, want := range w.fields {
		got, ok := e[k]
		switch {
		case !ok:
			return false
		case want == varies:
			continue
		case want == grantPlaceholder:
			want = grantID
		case k == "scopes":
			var s []string
			for _, v := range got.([]any) {
				s = append(s, fmt.Sprint(v))
			}
			got = scopeSet(strings.Join(s, " "))
			want = scopeSet(strings.Join(want.([]string), " "))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return false
		}
	}
	return true
}

// secrets is every credential a test saw or configured, each with what it
// is: none may appear anywhere in the gateway's output.
type secrets map[string]string

func (s secrets) add(t *testing.T, what string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v == "" {
			t.Fatalf("an empty %s: the test lost track of a secret", what)
		}
		s[v] = what
	}
}

// fromPage adds the hidden csrf and tx of p's form.
func (s secrets) fromPage(t *testing.T, p *page) {
	t.Helper()
	f := p.form()
	if f == nil {
		t.Fatalf("no form on the page:\n%s", p)
	}
	for _, name := range []string{"csrf", "tx"} {
		if v := f.hidden.Get(name); v != "" {
			s.add(t, "form "+name, v)
		}
	}
}

// fromBrowser adds the gateway's cookies that b holds.
func (s secrets) fromBrowser(t *testing.T, b *browser) {
	t.Helper()
	for _, name := range []string{"tollgate_session", "tollgate_login"} {
		if v := b.cookie(name); v != "" {
			s.add(t, "cookie "+name, v)
		}
	}
}

// wantNoSecret checks that none of s appears in output.
func (s secrets) wantNoSecret(t *testing.T, where, output string) {
	t.Helper()
	for v, what := range s {
		if i := strings.Index(output, v); i >= 0 {
			line := output[strings.LastIndex(output[:i], "\n")+1:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			t.Errorf("%s holds a secret (%s):\n%s", where, what, strings.ReplaceAll(line, v, "<"+what+">"))
		}
	}
}

// TestAuditLogRecordsEveryEventAndNoSecret drives every audited path
// against the real binary: sign-in failures (a known user's, and a password
// typed as the username), a success, consent denied and granted, codes and
// their exchange, a code replayed, a refresh and the rotated-out token
// reused after the grace window, an RFC 7009 revocation, a Disconnect on
// the connections page (after signing in there) whose webhook the receiver
// refuses with 410, the admin API's list and revoke whose webhook is given
// up at webhook_max_age, and the sign-in throttle. Then each expected
// entry is in the process's output exactly once, with exactly its fields,
// every audit entry is expected, and no secret the test saw or configured
// (tokens, codes, code_verifiers, the client secret, passwords, cookies,
// CSRF and form values, the webhook secret) appears anywhere in the
// output (README "Audit log").
func TestAuditLogRecordsEveryEventAndNoSecret(t *testing.T) {
	const grace = time.Second
	cfg := gatewayConfig{
		refreshReuseGrace: "refresh_reuse_grace 1s",
		appLines:          []string{"sign_in_limit 2/15m", "webhook_max_age 2s"},
		// Every log at debug level too: no secret there either.
		globalLines: []string{"debug"},
	}
	forEachStoreWithReceiver(t, cfg, func(t *testing.T, gw *gateway, rcv *webhookReceiver) {
		awayFromSignInWindowEdge(t)
		const ip = "127.0.0.1"
		sec := secrets{}
		sec.add(t, "client secret", clientSecret)
		sec.add(t, "password", password)
		sec.add(t, "webhook secret", webhookSecret, strings.TrimPrefix(webhookSecret, "whsec_"))
		wrongPassword := "wrong-" + oauth2.GenerateVerifier()[:16]
		sec.add(t, "wrong password", wrongPassword)
		var want []auditWant
		expect := func(msg string, fields map[string]any) { want = append(want, auditWant{msg, fields}) }
		grant := func(fields map[string]any) map[string]any {
			fields["client_id"], fields["subject"], fields["grant_id"], fields["client_ip"] = clientID, username, grantPlaceholder, ip
			return fields
		}
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		scopes := strings.Join(allScopes, " ")
		signInPage := func(b *browser) *page {
			t.Helper()
			a := newAuthRequest(conf)
			sec.add(t, "code_verifier", a.verifier)
			p := b.get(a.url)
			if !p.isLogin() {
				t.Fatalf("want the sign-in form:\n%s", p)
			}
			sec.fromPage(t, p)
			sec.fromBrowser(t, b)
			return p
		}
		submit := func(b *browser, p *page, user, pass string, status int) *page {
			t.Helper()
			next := b.submit(p, url.Values{"username": {user}, "password": {pass}})
			if next.status != status {
				t.Fatalf("sign-in as %q: want %d:\n%s", user, status, next)
			}
			sec.fromBrowser(t, b)
			if next.form() != nil {
				sec.fromPage(t, next)
			}
			return next
		}

		// Sign-in on the authorize page: a known user's failure names the
		// user, a password typed as the username is not logged, then a
		// success; the consent is denied.
		b := newBrowser(t, gw)
		login := signInPage(b)
		login = submit(b, login, username, wrongPassword, http.StatusUnauthorized)
		expect("sign_in_failed", map[string]any{"page": "authorize", "client_id": clientID, "subject": username, "client_ip": ip})
		login = submit(b, login, password, wrongPassword, http.StatusUnauthorized)
		expect("sign_in_failed", map[string]any{"page": "authorize", "client_id": clientID, "client_ip": ip})
		consent := submit(b, login, username, password, http.StatusOK)
		expect("sign_in_succeeded", map[string]any{"page": "authorize", "client_id": clientID, "subject": username, "client_ip": ip})
		if q := b.decide(consent, "deny").Query(); q.Get("error") != "access_denied" {
			t.Fatalf("deny: %v", q)
		}
		expect("consent_denied", grant(map[string]any{"scopes": allScopes}))

		// Allow: a code, exchanged for a pair.
		type issued struct{ code, verifier, access, refresh string }
		issue := func() issued {
			t.Helper()
			a := newAuthRequest(conf)
			sec.add(t, "code_verifier", a.verifier)
			consent := b.consentPage(a.url)
			sec.fromPage(t, consent)
			code := b.decide(consent, "allow").Query().Get("code")
			sec.add(t, "code", code)
			m := wantTokenResponse(t, gw.exchange(t, code, a.verifier, redirectURI), scopes)
			p := issued{code, a.verifier, m["access_token"].(string), m["refresh_token"].(string)}
			sec.add(t, "access token", p.access)
			sec.add(t, "refresh token", p.refresh)
			expect("consent_granted", grant(map[string]any{"scopes": allScopes}))
			expect("code_issued", grant(map[string]any{"scopes": allScopes, "code_digest": shortDigest(code)}))
			expect("tokens_issued", grant(map[string]any{"grant_type": "authorization_code", "scopes": allScopes,
				"code_digest": shortDigest(code), "access_digest": shortDigest(p.access), "refresh_digest": shortDigest(p.refresh)}))
			return p
		}
		p := issue()
		grantID := p.access[4:26]

		// The code replayed: the grant is revoked.
		wantOAuthError(t, gw.exchange(t, p.code, p.verifier, redirectURI), http.StatusBadRequest, "invalid_grant")
		expect("code_replayed", map[string]any{"client_id": clientID, "grant_id": grantPlaceholder, "code_digest": shortDigest(p.code), "client_ip": ip})

		// A refresh, then the rotated-out token after the grace window.
		p = issue()
		m := wantTokenResponse(t, gw.refreshRaw(t, p.refresh, ""), scopes)
		rotated := time.Now()
		sec.add(t, "access token", m["access_token"].(string))
		sec.add(t, "refresh token", m["refresh_token"].(string))
		expect("tokens_refreshed", grant(map[string]any{"grant_type": "refresh_token", "scopes": allScopes, "old_refresh_digest": shortDigest(p.refresh),
			"access_digest": shortDigest(m["access_token"].(string)), "refresh_digest": shortDigest(m["refresh_token"].(string))}))
		sleepUntil(rotated.Add(grace + 500*time.Millisecond))
		wantOAuthError(t, gw.refreshRaw(t, p.refresh, ""), http.StatusBadRequest, "invalid_grant")
		expect("refresh_token_reused", grant(map[string]any{"refresh_digest": shortDigest(p.refresh)}))

		// RFC 7009.
		p = issue()
		wantRevoked(t, gw.revoke(t, p.refresh))
		expect("token_revoked", grant(map[string]any{"token_type": "refresh_token", "token_digest": shortDigest(p.refresh)}))

		// Disconnect on the connections page, signed in there; the
		// partner's receiver answers 410 Gone.
		issue()
		rcv.setStatus(http.StatusGone)
		b2 := newBrowser(t, gw)
		login = b2.connections()
		sec.fromPage(t, login)
		sec.fromBrowser(t, b2)
		wantBackToConnections(t, submit(b2, login, username, password, http.StatusSeeOther))
		expect("sign_in_succeeded", map[string]any{"page": "connections", "subject": username, "client_ip": ip})
		apps := b2.connections()
		sec.fromPage(t, apps)
		b2.disconnect(apps)
		expect("grant_disconnected", grant(map[string]any{"by": "user", "scopes": allScopes}))
		waitForAuditCount(t, gw, "webhook_given_up", 1, 15*time.Second)
		expect("webhook_given_up", map[string]any{"client_id": clientID, "subject": username, "grant_id": grantPlaceholder,
			"event_id": varies, "event_type": "user.consent.revoked", "reason": "gone", "attempts": 1, "created": varies})

		// The admin API's list and revoke; the receiver fails until the
		// event is past webhook_max_age.
		issue()
		rcv.setStatus(http.StatusServiceUnavailable)
		if gs, _ := listGrants(t, gw, username); len(gs) != 1 {
			t.Fatalf("want alice's one grant, got %+v", gs)
		}
		expect("grants_listed", map[string]any{"subject": username, "grants": 1, "client_ip": ip})
		if r := adminDo(t, gw, http.MethodDelete, "/tollgate/users/"+username+"/grants/"+clientID); r.status != http.StatusNoContent {
			t.Fatalf("admin revoke: want 204:\n%s", r)
		}
		expect("grant_disconnected", grant(map[string]any{"by": "operator", "scopes": allScopes}))
		waitForAuditCount(t, gw, "webhook_given_up", 2, 30*time.Second)
		expect("webhook_given_up", map[string]any{"client_id": clientID, "subject": username, "grant_id": grantPlaceholder,
			"event_id": varies, "event_type": "user.consent.revoked", "reason": "max_age", "attempts": varies, "created": varies})

		// The throttle (sign_in_limit 2/15m): two failures, then even the
		// right password is refused unchecked.
		b3 := newBrowser(t, gw)
		login = signInPage(b3)
		for range 2 {
			login = submit(b3, login, username, wrongPassword, http.StatusUnauthorized)
			expect("sign_in_failed", map[string]any{"page": "authorize", "client_id": clientID, "subject": username, "client_ip": ip})
		}
		submit(b3, login, username, password, http.StatusTooManyRequests)
		expect("sign_in_throttled", map[string]any{"page": "authorize", "client_id": clientID, "subject": username,
			"limit": "username", "until": varies, "client_ip": ip})

		// The whole output, once the process is gone.
		gw.stop()
		output := gw.output.String()
		entries := logEntries(output, auditLogger, "")
		describe := func() string {
			var sb strings.Builder
			for _, e := range entries {
				line, _ := json.Marshal(e)
				sb.Write(line)
				sb.WriteByte('\n')
			}
			return sb.String()
		}
		// Identical expectations (the throttle's failures) are one group
		// whose entries must number as many.
		groups := map[string][]auditWant{}
		for _, w := range want {
			key, _ := json.Marshal(w.fields)
			groups[w.msg+string(key)] = append(groups[w.msg+string(key)], w)
		}
		for _, g := range groups {
			n := 0
			for _, e := range entries {
				if g[0].matches(e, grantID) {
					n++
				}
			}
			if n != len(g) {
				t.Errorf("%d entries %s %v, want %d", n, g[0].msg, g[0].fields, len(g))
			}
		}
		perMsg := map[string]int{}
		for _, w := range want {
			perMsg[w.msg]++
		}
		got := map[string]int{}
		for _, e := range entries {
			got[fmt.Sprint(e["msg"])]++
			if e["level"] != "info" {
				t.Errorf("audit entry at level %v, want info: %v", e["level"], e)
			}
		}
		if !maps.Equal(got, perMsg) {
			t.Errorf("audit entries per event %v, want %v", got, perMsg)
		}
		if t.Failed() {
			t.Logf("audit entries:\n%s", describe())
		}
		sec.wantNoSecret(t, "the gateway's output", output)
	})
}

// TestAuditLogInItsOwnFile starts the gateway with the README's `log
// audit` block (its file path replaced by a temporary one), runs the code
// flow, and checks that the audit entries are in that file, and only
// there, while the app's other logs stay in the default log (README
// "Audit log").
func TestAuditLogInItsOwnFile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const docPath = "/var/log/tollgate/audit.log"
	lines := strings.Split(string(raw), "\n")
	start := slices.Index(lines, "\tlog audit {")
	end := start + slices.Index(lines[max(start, 0):], "\t}")
	if start < 0 || end < start {
		t.Fatal("README.md no longer has the `log audit { … }` block of \"Audit log\"; update the test")
	}
	block := strings.TrimPrefix(strings.Join(lines[start:end+1], "\n"), "\t")
	path := filepath.Join(t.TempDir(), "audit.log")
	if !strings.Contains(block, docPath) {
		t.Fatalf("the README's block does not write to %s:\n%s", docPath, block)
	}
	block = strings.Replace(block, docPath, path, 1)

	gw := startGateway(t, "memory", gatewayConfig{globalLines: []string{block}})
	tok, _ := obtainTokens(t, gw, allScopes...)
	wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
	gw.stop()

	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the audit log file: %v", err)
	}
	inFile := logEntries(string(file), "", "")
	msgs := map[string]bool{}
	for _, e := range inFile {
		if e["logger"] != auditLogger {
			t.Errorf("the audit file has an entry of logger %v: %v", e["logger"], e)
		}
		msgs[fmt.Sprint(e["msg"])] = true
	}
	for _, msg := range []string{"sign_in_succeeded", "consent_granted", "code_issued", "tokens_issued"} {
		if !msgs[msg] {
			t.Errorf("the audit file has no %s entry:\n%s", msg, file)
		}
	}
	output := gw.output.String()
	if n := len(logEntries(output, auditLogger, "")); n != 0 || strings.Contains(output, auditLogger) {
		t.Errorf("%d audit entries also went to the default log:\n%s", n, tail(output, logTail))
	}
	// The app's other entries (the warning about the example's inline
	// webhook secret) still go to the default log.
	if len(logEntries(output, "tollgate", "")) == 0 {
		t.Errorf("the app's own log is gone from the default log:\n%s", tail(output, logTail))
	}
	sec := secrets{}
	sec.add(t, "token", tok.AccessToken, tok.RefreshToken)
	sec.wantNoSecret(t, "the audit file", string(file))
}
