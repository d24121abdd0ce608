package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// The demo data of Caddyfile.example.
const (
	clientID     = "ywc_a1b2c3d4"
	clientSecret = "demo-client-secret"
	clientName   = "Yacht Crew App"
	redirectURI  = "http://localhost:9999/callback"
	username     = "alice"
	password     = "alice-password"
)

var allScopes = []string{"profile:read", "seatime:read", "vessels:read"}

// scopeText is the plain-English line Caddyfile.example gives each scope.
var scopeText = map[string]string{
	"profile:read": "Name, role, country, photo URL",
	"seatime:read": "Aggregate sea-time totals and 12-month trend",
	"vessels:read": "Vessel history",
}

// oauthConfig is the partner's golang.org/x/oauth2 configuration. style
// picks client_secret_post (AuthStyleInParams) or client_secret_basic
// (AuthStyleInHeader).
func (gw *gateway) oauthConfig(style oauth2.AuthStyle, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   gw.base + "/oauth/authorize",
			TokenURL:  gw.base + "/oauth/token",
			AuthStyle: style,
		},
		RedirectURL: redirectURI,
		Scopes:      scopes,
	}
}

// clientCtx carries the HTTP client golang.org/x/oauth2 uses.
func clientCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: 10 * time.Second})
}

// authRequest is one authorization request the partner starts.
type authRequest struct {
	conf     *oauth2.Config
	state    string
	verifier string
	url      string
}

func newAuthRequest(conf *oauth2.Config) *authRequest {
	return newAuthRequestWith(conf, oauth2.GenerateVerifier()[:24], oauth2.GenerateVerifier())
}

// newAuthRequestWith builds the authorization URL with golang.org/x/oauth2
// for a chosen state and code_verifier.
func newAuthRequestWith(conf *oauth2.Config, state, verifier string) *authRequest {
	return &authRequest{
		conf:     conf,
		state:    state,
		verifier: verifier,
		url:      conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)),
	}
}

// signIn opens the authorization URL, expects the login form and submits
// alice's credentials; it returns the page that follows (the consent page).
func (b *browser) signIn(authURL string) *page {
	b.t.Helper()
	p := b.get(authURL)
	if p.status != http.StatusOK || !p.isLogin() {
		b.t.Fatalf("authorize without a session: want 200 and a login form (inputs username, password):\n%s", p)
	}
	consent := b.submit(p, url.Values{"username": {username}, "password": {password}})
	if consent.status != http.StatusOK || !consent.isConsent() {
		b.t.Fatalf("after sign-in: want 200 and the consent form (decision=allow|deny):\n%s", consent)
	}
	return consent
}

// consentPage opens the authorization URL and signs in when asked to,
// returning the consent page.
func (b *browser) consentPage(authURL string) *page {
	b.t.Helper()
	p := b.get(authURL)
	if p.status == http.StatusOK && p.isConsent() {
		return p
	}
	if p.status != http.StatusOK || !p.isLogin() {
		b.t.Fatalf("authorize: want the login or consent form:\n%s", p)
	}
	consent := b.submit(p, url.Values{"username": {username}, "password": {password}})
	if consent.status != http.StatusOK || !consent.isConsent() {
		b.t.Fatalf("after sign-in: want 200 and the consent form (decision=allow|deny):\n%s", consent)
	}
	return consent
}

// decide submits the consent form with decision and returns the callback
// URL of the 303 the gateway answers with.
func (b *browser) decide(consent *page, decision string) *url.URL {
	b.t.Helper()
	p := b.submit(consent, url.Values{"decision": {decision}})
	// Allow → 303 to redirect_uri?code=…&state=… (README "What partners
	// get", POST /oauth/authorize; docs/architecture.md §2.3).
	if p.status != http.StatusSeeOther {
		b.t.Fatalf("consent %s: want 303 See Other:\n%s", decision, p)
	}
	loc, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		b.t.Fatalf("consent %s: Location: %v\n%s", decision, err, p)
	}
	target := *loc
	target.RawQuery = ""
	if target.String() != redirectURI {
		b.t.Fatalf("consent %s: redirected to %q, want the registered %q:\n%s", decision, loc, redirectURI, p)
	}
	return loc
}

// authorize drives a full browser round trip (sign-in when needed, allow)
// and returns the authorization code, after checking the state came back
// unchanged.
func (b *browser) authorize(a *authRequest) string {
	b.t.Helper()
	loc := b.decide(b.consentPage(a.url), "allow")
	q := loc.Query()
	if got := q.Get("state"); got != a.state {
		b.t.Fatalf("callback state = %q, want %q (Location %s)", got, a.state, loc)
	}
	code := q.Get("code")
	if code == "" || q.Has("error") {
		b.t.Fatalf("callback without a code: %s", loc)
	}
	return code
}

// obtainTokens runs the whole flow with a new browser and exchanges the
// code with golang.org/x/oauth2.
func obtainTokens(t *testing.T, gw *gateway, scopes ...string) (*oauth2.Token, *oauth2.Config) {
	t.Helper()
	conf := gw.oauthConfig(oauth2.AuthStyleInParams, scopes...)
	a := newAuthRequest(conf)
	code := newBrowser(t, gw).authorize(a)
	tok, err := conf.Exchange(clientCtx(t), code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("exchanging the code: %v", err)
	}
	return tok, conf
}

// refresh uses golang.org/x/oauth2's refresh path: a token source holding
// an expired token asks the token endpoint for a new one.
func refresh(t *testing.T, conf *oauth2.Config, refreshToken string) (*oauth2.Token, error) {
	t.Helper()
	old := &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Now().Add(-time.Hour)}
	return conf.TokenSource(clientCtx(t), old).Token()
}

// wantRetrieveError checks err is the RFC 6749 §5.2 error code.
func wantRetrieveError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("want error %q, got %v", code, err)
	}
	if re.ErrorCode != code {
		t.Fatalf("want error %q, got %q (HTTP %d, body %s)", code, re.ErrorCode, re.Response.StatusCode, re.Body)
	}
}

// response is a raw HTTP exchange with the gateway.
type response struct {
	req    string
	status int
	header http.Header
	body   []byte
}

func (r *response) String() string {
	return fmt.Sprintf("%s\n→ %d\n%s\n%s", r.req, r.status, headerString(r.header), r.body)
}

func headerString(h http.Header) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(&sb, "%s: %s\n", k, v)
		}
	}
	return sb.String()
}

// json decodes the body into a map, failing the test when it is not one
// JSON object.
func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object (%v):\n%s", err, r)
	}
	return m
}

var httpClient = &http.Client{
	Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func send(t *testing.T, req *http.Request, desc string) *response {
	t.Helper()
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", desc, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading body: %v", desc, err)
	}
	return &response{req: desc, status: resp.StatusCode, header: resp.Header, body: body}
}

// clientAuth is how a raw request authenticates the client.
type clientAuth int

const (
	authPost  clientAuth = iota // client_secret_post: id and secret in the body
	authBasic                   // client_secret_basic: HTTP Basic
	authNone                    // no client credentials at all
)

// postForm posts form to path, adding client credentials the way auth says.
func (gw *gateway) postForm(t *testing.T, path string, form url.Values, auth clientAuth, id, secret string) *response {
	t.Helper()
	req, sent := gw.formRequest(t, path, form, auth, id, secret)
	return send(t, req, describeForm(req, sent))
}

// formRequest builds the request postForm sends and returns the form as
// sent (with client credentials when auth is authPost).
func (gw *gateway) formRequest(t *testing.T, path string, form url.Values, auth clientAuth, id, secret string) (*http.Request, url.Values) {
	t.Helper()
	f := url.Values{}
	for k, vs := range form {
		f[k] = vs
	}
	if auth == authPost {
		f.Set("client_id", id)
		f.Set("client_secret", secret)
	}
	req, err := http.NewRequest(http.MethodPost, gw.base+path, strings.NewReader(f.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth == authBasic {
		// RFC 6749 §2.3.1: both parts form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return req, f
}

func describeForm(req *http.Request, form url.Values) string {
	d := "POST " + req.URL.Path + " " + form.Encode()
	if user, _, ok := req.BasicAuth(); ok {
		d += " (Authorization: Basic " + user + ":…)"
	}
	return d
}

// exchange posts an authorization_code grant with client_secret_post.
func (gw *gateway) exchange(t *testing.T, code, verifier, redirect string) *response {
	t.Helper()
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}}
	if redirect != "" {
		f.Set("redirect_uri", redirect)
	}
	if verifier != "" {
		f.Set("code_verifier", verifier)
	}
	return gw.token(t, f)
}

// refreshRaw posts a refresh_token grant with client_secret_post; scope ""
// leaves the scope parameter out.
func (gw *gateway) refreshRaw(t *testing.T, refreshToken, scope string) *response {
	t.Helper()
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return gw.token(t, f)
}

// token posts to /oauth/token with client_secret_post.
func (gw *gateway) token(t *testing.T, form url.Values) *response {
	t.Helper()
	return gw.postForm(t, "/oauth/token", form, authPost, clientID, clientSecret)
}

// revoke posts to /oauth/revoke with client_secret_post.
func (gw *gateway) revoke(t *testing.T, token string) *response {
	t.Helper()
	return gw.postForm(t, "/oauth/revoke", url.Values{"token": {token}}, authPost, clientID, clientSecret)
}

// userinfo calls GET /oauth/userinfo with the given Authorization header
// ("" for none).
func (gw *gateway) userinfo(t *testing.T, authorization string) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, gw.base+"/oauth/userinfo", nil)
	if err != nil {
		t.Fatal(err)
	}
	desc := "GET /oauth/userinfo"
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
		desc += " (Authorization: " + strings.SplitN(authorization, " ", 2)[0] + " …)"
	}
	return send(t, req, desc)
}

// wantOAuthError checks an RFC 6749 §5.2 error response: the status, a
// JSON body {"error": code, "error_description": …}.
func wantOAuthError(t *testing.T, r *response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want HTTP %d error %q:\n%s", status, code, r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error response Content-Type = %q, want application/json (RFC 6749 §5.2):\n%s", ct, r)
	}
	m := r.json(t)
	if m["error"] != code {
		t.Fatalf("error = %v, want %q:\n%s", m["error"], code, r)
	}
	// OAuth errors are {"error": "...", "error_description": "..."}
	// (docs/partners.md D52; RFC 6749 §5.2).
	if d, ok := m["error_description"].(string); !ok || d == "" {
		t.Fatalf("error response has no error_description (docs/partners.md D52: the shape is {error, error_description}):\n%s", r)
	}
}

// wantUserinfoOK checks a 200 userinfo response carrying alice's profile.
func wantUserinfoOK(t *testing.T, r *response) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("userinfo: want 200:\n%s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("userinfo Content-Type = %q, want application/json:\n%s", ct, r)
	}
	got := r.json(t)
	want := map[string]any{
		"sub":     username,
		"name":    "Alice Mariner",
		"role":    "Chief Officer",
		"country": "GB",
		"picture": "https://example.com/avatars/alice.png",
	}
	if len(got) != len(want) {
		t.Errorf("userinfo fields = %v, want exactly %v", keys(got), keys(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("userinfo %s = %#v, want %#v", k, got[k], v)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// wantBearerError checks an RFC 6750 §3 challenge with an RFC 9457 body.
// code "" means a request without credentials: no error attribute.
func wantBearerError(t *testing.T, r *response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want HTTP %d (%s):\n%s", status, code, r)
	}
	ch := r.header.Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `realm="`) {
		t.Fatalf(`WWW-Authenticate = %q, want Bearer realm="…" (RFC 6750 §3):%s`, ch, "\n"+r.String())
	}
	if code == "" {
		// RFC 6750 §3.1: no error code when the request had no token.
		if strings.Contains(ch, "error=") {
			t.Fatalf("WWW-Authenticate = %q: a request without a token gets no error attribute (RFC 6750 §3.1)", ch)
		}
	} else if !strings.Contains(ch, `error="`+code+`"`) {
		t.Fatalf(`WWW-Authenticate = %q, want error="%s" (RFC 6750 §3.1):%s`, ch, code, "\n"+r.String())
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("Content-Type = %q, want application/problem+json (RFC 9457):\n%s", ct, r)
	}
	m := r.json(t)
	if s, ok := m["status"].(float64); !ok || int(s) != status {
		t.Fatalf("problem status = %v, want %d (RFC 9457 §3.1.3):\n%s", m["status"], status, r)
	}
	if s, ok := m["title"].(string); !ok || s == "" {
		t.Fatalf("problem has no title (RFC 9457 §3.1.4):\n%s", r)
	}
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// scopeSet splits a scope string into a sorted list for comparison.
func scopeSet(s string) string {
	f := strings.Fields(s)
	sort.Strings(f)
	return strings.Join(f, " ")
}

func bearer(tok string) string { return "Bearer " + tok }
