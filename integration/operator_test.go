package integration

// The operator's tools (README "Operator commands"): the new-client and
// hash-secret commands of the binary, and the support routes on Caddy's
// admin endpoint that list a user's grants and revoke one.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// runBinary runs the tollgate binary with args, stdin as its input, and
// returns its stdout, stderr and exit code.
func runBinary(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = environWithout("TOLLGATE_", "XDG_", "HOME=")
	cmd.Env = append(cmd.Env, "HOME="+cmd.Dir)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("running %s %q: %v", binary, args, err)
	}
	return out.String(), errOut.String(), code
}

// newClientOutput is what new-client printed.
type newClientOutput struct {
	clientID, clientSecret, webhookSecret string
	block                                 string // the client { } block
	all                                   string
}

// parseNewClient reads the labelled values and the client block.
func parseNewClient(t *testing.T, out string) newClientOutput {
	t.Helper()
	label := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\S+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("new-client output has no %q line:\n%s", name+":", out)
		}
		return m[1]
	}
	o := newClientOutput{clientID: label("client_id"), clientSecret: label("client_secret"), webhookSecret: label("webhook_secret"), all: out}
	start := strings.Index(out, "\nclient "+o.clientID+" {\n")
	end := strings.Index(out[max(start, 0):], "\n}\n")
	if start < 0 || end < 0 {
		t.Fatalf("new-client output has no `client %s { … }` block:\n%s", o.clientID, out)
	}
	o.block = out[start+1 : start+end+2]
	return o
}

// TestNewClientRegistersAWorkingPartner runs new-client as an operator
// would, pastes its block into the example's tollgate block, starts the
// gateway and completes the partner flow with the printed credentials:
// the printed client secret authenticates at the token endpoint, the block
// (and the running config) holds only its digest, hash-secret gives the
// same digest, and the printed webhook secret, set in the environment
// variable the block names, signs the user.consent.revoked event.
func TestNewClientRegistersAWorkingPartner(t *testing.T) {
	t.Parallel()
	for _, s := range stores {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			// Served once the printed webhook secret is known.
			rcv := newReceiver(t, l.Addr().String())

			out, errOut, code := runBinary(t, "", "new-client",
				"--name", "Harbour Crew Tools",
				"--redirect-uri", redirectURI, "--redirect-uri", "https://crew.example.com/oauth/cb",
				"--scopes", "profile:read seatime:read",
				"--webhook-url", rcv.url)
			if code != 0 {
				t.Fatalf("new-client exited %d:\n%s\n%s", code, out, errOut)
			}
			nc := parseNewClient(t, out)

			// The shapes the partner documents give (docs/partners.md):
			// a lowercase prefix (the name's initials) and 8 hex digits.
			if !regexp.MustCompile(`^hct_[0-9a-f]{8}$`).MatchString(nc.clientID) {
				t.Errorf("client_id %q, want hct_ and 8 lowercase hex digits", nc.clientID)
			}
			if raw, err := base64.RawURLEncoding.DecodeString(nc.clientSecret); err != nil || len(raw) < 32 {
				t.Errorf("client_secret %q: want base64url of at least 256 bits (%d bytes, %v)", nc.clientSecret, len(raw), err)
			}
			key, err := parseWebhookSecret(nc.webhookSecret)
			if err != nil || len(key) != 32 {
				t.Errorf("webhook_secret %q: want whsec_ and the base64 of 32 bytes (%d bytes, %v)", nc.webhookSecret, len(key), err)
			}
			if strings.Contains(errOut, nc.clientSecret) || strings.Contains(errOut, nc.webhookSecret) {
				t.Errorf("new-client wrote a secret to stderr:\n%s", errOut)
			}

			// The block: the digest, never a secret in clear.
			sum := sha256.Sum256([]byte(nc.clientSecret))
			digest := hex.EncodeToString(sum[:])
			envVar := strings.ToUpper(nc.clientID) + "_WEBHOOK_SECRET"
			for _, want := range []string{
				"secret_sha256 " + digest,
				"redirect_uri " + redirectURI + " https://crew.example.com/oauth/cb",
				"scopes profile:read seatime:read",
				"webhook " + rcv.url + " {env." + envVar + "}",
				`name "Harbour Crew Tools"`,
			} {
				if !strings.Contains(nc.block, want) {
					t.Errorf("the client block lacks %q:\n%s", want, nc.block)
				}
			}
			b64 := strings.TrimPrefix(nc.webhookSecret, "whsec_")
			if strings.Contains(nc.block, nc.clientSecret) || strings.Contains(nc.block, b64) || regexp.MustCompile(`(?m)^\s*secret\s`).MatchString(nc.block) {
				t.Fatalf("the client block holds a secret in clear:\n%s", nc.block)
			}

			// hash-secret prints the digest the gateway compares, from
			// stdin (with or without a line ending) or the flag.
			for _, tc := range []struct{ stdin, flag string }{
				{stdin: nc.clientSecret + "\n"}, {stdin: nc.clientSecret + "\r\n"}, {stdin: nc.clientSecret}, {flag: nc.clientSecret},
			} {
				args := []string{"hash-secret"}
				if tc.flag != "" {
					args = append(args, "--secret", tc.flag)
				}
				got, errOut, code := runBinary(t, tc.stdin, args...)
				if code != 0 || strings.TrimSpace(got) != digest {
					t.Fatalf("hash-secret %q (stdin %q): exit %d, printed %q, want %s\n%s", args, tc.stdin, code, got, digest, errOut)
				}
			}

			// The gateway on the example plus the pasted block, with the
			// webhook secret in the variable the block names.
			config := writeConfig(t, gatewayConfig{appLines: []string{nc.block}})
			storeURL := ""
			if s == "redis" {
				storeURL = storetest.StartRedis(t)
			}
			gw, err := launch(t, s, storeURL, config, envVar+"="+nc.webhookSecret)
			if err != nil {
				t.Fatal(err)
			}
			cfg := adminConfig(t, gw)
			if !strings.Contains(cfg, digest) || strings.Contains(cfg, nc.clientSecret) || strings.Contains(cfg, b64) {
				t.Fatalf("the running config should hold the digest and neither secret:\n%s", cfg)
			}

			// The full code flow with the printed credentials.
			conf := &oauth2.Config{
				ClientID: nc.clientID, ClientSecret: nc.clientSecret,
				Endpoint:    oauth2.Endpoint{AuthURL: gw.base + "/oauth/authorize", TokenURL: gw.base + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams},
				RedirectURL: redirectURI, Scopes: []string{"profile:read", "seatime:read"},
			}
			a := newAuthRequest(conf)
			b := newBrowser(t, gw)
			if p := b.consentPage(a.url); !strings.Contains(p.text(), "Harbour Crew Tools") {
				t.Fatalf("the consent page does not name the new partner:\n%s", p)
			}
			tok, err := conf.Exchange(clientCtx(t), b.authorize(a), oauth2.VerifierOption(a.verifier))
			if err != nil {
				t.Fatalf("exchanging the code with the printed client secret: %v", err)
			}
			wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
			// And only that secret: the digest itself, or the demo
			// client's secret, is refused.
			for _, wrong := range []string{digest, clientSecret} {
				r := gw.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, authBasic, nc.clientID, wrong)
				wantOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
			}
			basic := gw.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, authBasic, nc.clientID, nc.clientSecret)
			wantTokenResponse(t, basic, "profile:read seatime:read")

			// The printed webhook secret signs the new client's events.
			rcv.secret = key
			rcv.serveOn(l)
			if r := adminDo(t, gw, http.MethodDelete, "/tollgate/users/alice/grants/"+nc.clientID); r.status != http.StatusNoContent {
				t.Fatalf("revoking the new client's grant: want 204:\n%s", r)
			}
			got := rcv.waitFor(10*time.Second, "accepted event", func(ds []delivery) bool { return len(accepted(ds)) > 0 })
			rcv.wantAllSigned()
			var ev consentRevoked
			if err := json.Unmarshal(accepted(got)[0].body, &ev); err != nil || ev.Type != "user.consent.revoked" || ev.Data.ClientID != nc.clientID || ev.Data.Subject != username {
				t.Fatalf("want user.consent.revoked for %s and alice (%v):\n%s", nc.clientID, err, rcv.describe())
			}
		})
	}
}

// TestNewClientRefusesBadInput: what the gateway would refuse at load (a
// plain-http redirect URI off loopback, a fragment, a relative URI; RFC
// 6749 §3.1.2, RFC 8252 §7.3), and what is missing or malformed, is an
// error naming the problem and a non-zero exit, and no secret is printed.
func TestNewClientRefusesBadInput(t *testing.T) {
	t.Parallel()
	good := map[string]string{"--name": "Yacht Crew App", "--redirect-uri": "https://app.example.com/cb", "--scopes": "profile:read"}
	for _, tc := range []struct {
		name, flag, value, want string
	}{
		{"plain http off loopback", "--redirect-uri", "http://app.example.com/cb", "must be https"},
		{"fragment", "--redirect-uri", "https://app.example.com/cb#x", "fragment"},
		{"relative", "--redirect-uri", "/cb", "absolute"},
		{"response parameter in the query", "--redirect-uri", "https://app.example.com/cb?state=1", "state"},
		{"no redirect URI", "--redirect-uri", "", "--redirect-uri is required"},
		{"no name", "--name", "", "--name is required"},
		{"quote in the name", "--name", `Yacht "Crew"`, "quotes"},
		{"no scopes", "--scopes", "", "--scopes is required"},
		{"scope with a quote", "--scopes", `profile:read a"b`, "scope token"},
		{"upper-case prefix", "--prefix", "YWC", "--prefix"},
		{"prefix too long", "--prefix", "abcdefghi", "--prefix"},
		{"webhook URL not http(s)", "--webhook-url", "ftp://hooks.example.com/", "--webhook-url"},
		{"placeholder in the webhook URL", "--webhook-url", "https://{env.X}/hooks", "--webhook-url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"new-client"}
			for _, f := range []string{"--name", "--redirect-uri", "--scopes", "--prefix", "--webhook-url"} {
				v, ok := good[f]
				if f == tc.flag {
					v, ok = tc.value, tc.value != ""
				}
				if ok {
					args = append(args, f, v)
				}
			}
			out, errOut, code := runBinary(t, "", args...)
			if code == 0 {
				t.Fatalf("new-client %q: exit 0, want an error:\n%s", args, out)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("new-client %q: stderr does not say %q:\n%s", args, tc.want, errOut)
			}
			if out != "" {
				t.Errorf("new-client %q printed on stdout although it failed (credentials an operator might hand out):\n%s", args, out)
			}
		})
	}
	// An empty secret is refused by hash-secret as by the gateway.
	if out, _, code := runBinary(t, "\n", "hash-secret"); code == 0 {
		t.Errorf("hash-secret of an empty line: exit 0 (%q), want an error", out)
	}
}

// adminDo sends a request to Caddy's admin endpoint.
func adminDo(t *testing.T, gw *gateway, method, path string) *response {
	t.Helper()
	req, err := http.NewRequest(method, gw.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req, method+" (admin) "+path)
}

// adminGrant is one entry of GET /tollgate/users/<subject>/grants.
type adminGrant struct {
	ClientID   string    `json:"client_id"`
	ClientName string    `json:"client_name"`
	Scopes     []string  `json:"scopes"`
	GrantedAt  time.Time `json:"granted_at"`
	LastUsedAt time.Time `json:"last_used_at"`
}

// listGrants is GET /tollgate/users/<subject>/grants, decoded.
func listGrants(t *testing.T, gw *gateway, subject string) ([]adminGrant, *response) {
	t.Helper()
	r := adminDo(t, gw, http.MethodGet, "/tollgate/users/"+subject+"/grants")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("listing %s's grants: want 200 JSON:\n%s", subject, r)
	}
	var gs []adminGrant
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&gs); err != nil || gs == nil {
		t.Fatalf("listing %s's grants: want a JSON array of {client_id, client_name, scopes, granted_at, last_used_at} (%v):\n%s", subject, err, r)
	}
	return gs, r
}

// TestAdminListsAndRevokesAUsersGrants: support staff list alice's grants
// after she consented, and revoke the one to the demo client. The revoke
// is the user's Disconnect (README "Webhooks"): the token is refused on
// the next API call, the partner gets a signed user.consent.revoked, the
// audit log names the operator, and the list is then empty. A subject
// outside A-Z a-z 0-9 . _ @ + - is 400 (README "Security"), an unknown
// client or grant 404, a wrong method 405 with Allow.
func TestAdminListsAndRevokesAUsersGrants(t *testing.T) {
	forEachStoreWithReceiver(t, gatewayConfig{}, func(t *testing.T, gw *gateway, rcv *webhookReceiver) {
		if gs, _ := listGrants(t, gw, username); len(gs) != 0 {
			t.Fatalf("alice has grants before consenting: %+v", gs)
		}
		start := time.Now()
		scopes := []string{"profile:read", "seatime:read"}
		tok := connect(t, gw, newBrowser(t, gw), scopes...)
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))

		gs, r := listGrants(t, gw, username)
		if len(gs) != 1 {
			t.Fatalf("want alice's one grant:\n%s", r)
		}
		g := gs[0]
		if g.ClientID != clientID || g.ClientName != clientName || scopeSet(strings.Join(g.Scopes, " ")) != scopeSet(strings.Join(scopes, " ")) {
			t.Errorf("grant %+v, want client %s (%q) with scopes %q", g, clientID, clientName, scopes)
		}
		now := time.Now()
		for what, at := range map[string]time.Time{"granted_at": g.GrantedAt, "last_used_at": g.LastUsedAt} {
			if at.Before(start.Add(-time.Second)) || at.After(now.Add(time.Second)) {
				t.Errorf("%s = %s, want between the consent (%s) and now", what, at, start.Format(time.RFC3339))
			}
		}
		// Never a token, nor a token's digest.
		for _, secret := range []string{tok.AccessToken, tok.RefreshToken} {
			sum := sha256.Sum256([]byte(secret))
			if bytes.Contains(r.body, []byte(secret)) || bytes.Contains(r.body, []byte(hex.EncodeToString(sum[:]))) {
				t.Fatalf("the grant list holds a token or its digest:\n%s", r)
			}
		}
		if bytes.Contains(r.body, []byte("tga_")) || bytes.Contains(r.body, []byte("tgr_")) {
			t.Fatalf("the grant list holds something shaped like a token:\n%s", r)
		}

		// Refused requests change nothing.
		for _, tc := range []struct {
			method, path string
			status       int
		}{
			{http.MethodGet, "/tollgate/users/a%2Fb/grants", http.StatusBadRequest},
			{http.MethodGet, "/tollgate/users/al%20ice/grants", http.StatusBadRequest},
			{http.MethodGet, "/tollgate/users/alice%3F/grants", http.StatusBadRequest},
			{http.MethodGet, "/tollgate/users/%2E%2E/grants", http.StatusBadRequest},
			{http.MethodDelete, "/tollgate/users/al!ce/grants/" + clientID, http.StatusBadRequest},
			{http.MethodDelete, "/tollgate/users/alice/grants/no_such_client", http.StatusNotFound},
			{http.MethodDelete, "/tollgate/users/bob/grants/" + clientID, http.StatusNotFound},
			{http.MethodGet, "/tollgate/users/alice/tokens", http.StatusNotFound},
			{http.MethodDelete, "/tollgate/users/alice/grants/", http.StatusNotFound},
			{http.MethodPost, "/tollgate/users/alice/grants", http.StatusMethodNotAllowed},
			{http.MethodDelete, "/tollgate/users/alice/grants", http.StatusMethodNotAllowed},
			{http.MethodGet, "/tollgate/users/alice/grants/" + clientID, http.StatusMethodNotAllowed},
			{http.MethodPost, "/tollgate/users/alice/grants/" + clientID, http.StatusMethodNotAllowed},
		} {
			r := adminDo(t, gw, tc.method, tc.path)
			if r.status != tc.status {
				t.Errorf("%s %s: want %d:\n%s", tc.method, tc.path, tc.status, r)
			}
			if tc.status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
				t.Errorf("%s %s: 405 without Allow:\n%s", tc.method, tc.path, r)
			}
		}
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
		if gs, _ := listGrants(t, gw, username); len(gs) != 1 {
			t.Fatalf("refused requests changed alice's grants: %+v", gs)
		}

		before := time.Now()
		if r := adminDo(t, gw, http.MethodDelete, "/tollgate/users/alice/grants/"+clientID); r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("revoking alice's grant: want 204 and no body:\n%s", r)
		}
		wantDead(t, gw, tok)
		got := rcv.waitFor(10*time.Second, "accepted event", func(ds []delivery) bool { return len(accepted(ds)) > 0 })
		rcv.wantAllSigned()
		wantConsentRevoked(t, accepted(got)[0], scopes, before, tok.AccessToken, tok.RefreshToken)
		entry := waitForLogEntry(t, gw, "grant_disconnected", 5*time.Second)
		if entry["client_id"] != clientID || entry["subject"] != username || entry["by"] != "operator" {
			t.Errorf("audit entry %v, want client_id %s, subject %s and by operator", entry, clientID, username)
		}
		if gs, r := listGrants(t, gw, username); len(gs) != 0 || strings.TrimSpace(string(r.body)) != "[]" {
			t.Fatalf("after the revoke: want an empty list []:\n%s", r)
		}
		// Revoking again: the grant is gone, and no second event is sent.
		if r := adminDo(t, gw, http.MethodDelete, "/tollgate/users/alice/grants/"+clientID); r.status != http.StatusNotFound {
			t.Fatalf("revoking a revoked grant: want 404:\n%s", r)
		}
		time.Sleep(time.Second)
		if ids := distinctIDs(rcv.all()); len(ids) != 1 {
			t.Fatalf("one revoke sent %d distinct events, want one:\n%s", len(ids), rcv.describe())
		}
	})
}
