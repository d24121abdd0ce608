package caddymodule

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

// The token and revocation endpoints authenticate the client by
// client_secret_basic or client_secret_post (RFC 6749 §2.3.1). A failure is
// 401 invalid_client, with WWW-Authenticate: Basic when the client tried
// Basic (RFC 6749 §5.2); an ambiguous request is 400 invalid_request.
// Either way nothing happens to the token the request named.
func TestTokenAndRevokeRefuseBadClientAuthentication(t *testing.T) {
	const challenge = `Basic realm="tollgate", charset="UTF-8"`
	for _, tc := range []struct {
		name      string
		form      url.Values
		query     string
		basic     string // "id:secret", form-urlencoded into Basic
		header    http.Header
		status    int
		code      string
		challenge string
	}{
		{"a wrong secret (post)", url.Values{"client_id": {"partner"}, "client_secret": {"wrong"}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"a wrong secret (Basic)", nil, "", "partner:wrong", nil, 401, oauth.InvalidClient, challenge},
		{"another client's secret", url.Values{"client_id": {"partner"}, "client_secret": {otherSecret}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"an unknown client (post)", url.Values{"client_id": {"nobody"}, "client_secret": {testSecret}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"an unknown client (Basic)", nil, "", "nobody:" + testSecret, nil, 401, oauth.InvalidClient, challenge},
		{"an empty secret", url.Values{"client_id": {"partner"}, "client_secret": {""}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"no credentials", url.Values{"client_id": {"partner"}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"the secret in the query", url.Values{"client_id": {"partner"}}, "client_secret=" + testSecret, "", nil, 401, oauth.InvalidClient, ""},
		{"Basic and client_secret at once", url.Values{"client_secret": {testSecret}}, "", "partner:" + testSecret, nil, 400, oauth.InvalidRequest, ""},
		{"a body client_id other than the Basic one", url.Values{"client_id": {"other"}}, "", "partner:" + testSecret, nil, 400, oauth.InvalidRequest, ""},
		{"two Authorization headers", nil, "", "partner:" + testSecret, http.Header{"Authorization": {"Basic b3RoZXI6b3RoZXItc2VjcmV0"}}, 400, oauth.InvalidRequest, ""},
		{"Basic that is not form-urlencoded", nil, "", "", http.Header{"Authorization": {"Basic cGFydG5lciU6eA=="}}, 401, oauth.InvalidClient, challenge},
	} {
		for _, ep := range []struct {
			name string
			h    func(a *App) handler
			form func(tr tokenResponse) url.Values
		}{
			{"token", func(a *App) handler { return &Token{appRef{a}} }, func(tr tokenResponse) url.Values {
				return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}
			}},
			{"revoke", func(a *App) handler { return &Revoke{appRef{a}} }, func(tr tokenResponse) url.Values {
				return url.Values{"token": {tr.RefreshToken}}
			}},
		} {
			t.Run(ep.name+"/"+tc.name, func(t *testing.T) {
				a, _ := newTestApp(t)
				tr := issue(t, a, "partner", testSecret, "profile:read")
				form := override(ep.form(tr), tc.form)
				r := httptest.NewRequest(http.MethodPost, "/oauth/"+ep.name+"?"+tc.query, strings.NewReader(form.Encode()))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if tc.basic != "" {
					id, secret, _ := strings.Cut(tc.basic, ":")
					r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
				}
				for k, vs := range tc.header {
					for _, v := range vs {
						r.Header.Add(k, v)
					}
				}
				w := httptest.NewRecorder()
				if err := ep.h(a).ServeHTTP(w, r, nil); err != nil {
					t.Fatal(err)
				}
				wantOAuthError(t, w, tc.status, tc.code)
				if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
				}
				if !active(t, a, "partner", testSecret, tr.RefreshToken) {
					t.Fatal("a request whose client was not authenticated changed the token")
				}
			})
		}
	}
}

// A client registered with a token_header (the Trans style) must send that
// header with the right value to the token and revocation endpoints, on top
// of its secret (README, Partner styles).
func TestTokenRequiresTheClientsTokenHeader(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	requireAPIKey(t, a)
	refreshWith := func(apiKey string) *httptest.ResponseRecorder {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("partner", testSecret)
		if apiKey != "" {
			r.Header.Set("Api-key", apiKey)
		}
		w := httptest.NewRecorder()
		if err := (&Token{appRef{a}}).ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		return w
	}
	for _, bad := range []string{"", "wrong-key", "partner-api-key "} {
		w := refreshWith(bad)
		wantOAuthError(t, w, http.StatusUnauthorized, oauth.InvalidClient)
		if !strings.Contains(strings.ToLower(w.Body.String()), "api-key") {
			t.Errorf("Api-key %q: the error does not name the header: %s", bad, w.Body)
		}
	}
	tokens(t, refreshWith("partner-api-key"))
}

// requireAPIKey registers partner again with the token_header
// Api-key: partner-api-key.
func requireAPIKey(t *testing.T, a *App) {
	t.Helper()
	c, err := (&ClientConfig{
		ClientID: "partner", Secret: testSecret, RedirectURIs: []string{"https://partner.example.com/cb"},
		Scopes: []string{"profile:read"}, TokenHeader: &HeaderRequirement{Name: "Api-key", Value: "partner-api-key"},
	}).provision(caddy.NewReplacer(), store.Limit{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	a.clients["partner"] = c
}

// wantPOSTOnly sends a GET to h, a client-authenticated endpoint, and
// checks it is refused 405 invalid_request with Allow: POST: a token or
// secret in a URL ends up in logs.
func wantPOSTOnly(t *testing.T, h handler, target string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.SetBasicAuth("partner", testSecret)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	wantOAuthError(t, w, http.StatusMethodNotAllowed, oauth.InvalidRequest)
	if allow := w.Header().Get("Allow"); allow != "POST" {
		t.Errorf("Allow %q, want POST", allow)
	}
}

// FuzzTokenRequestBody feeds arbitrary bodies with a form or JSON content
// type to readForm (RFC 6749 §3.2 and §4.1.3; JSON for token_json
// clients). Properties: a refusal is a 4xx invalid_request; an accepted
// body yields only the parameters the endpoints read, each with exactly
// the one non-empty value the body carried (RFC 6749 §3.2: "MUST NOT be
// included more than once"), as an independent parse of the body reads it.
func FuzzTokenRequestBody(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "grant_type=authorization_code&code=tgc_x&code_verifier=v&client_id=c")
	f.Add("application/x-www-form-urlencoded; charset=UTF-8", "grant_type=refresh_token&grant_type=&refresh_token=a%20b")
	f.Add("application/x-www-form-urlencoded", "code=a&code=b")
	f.Add("application/x-www-form-urlencoded", "x=%zz&code=a")
	f.Add("application/x-www-form-urlencoded", "code=a;b&scope=%00%ff")
	f.Add("application/json", `{"grant_type":"authorization_code","code":"tgc_x","client_id":"c"}`)
	f.Add("application/json", `{"code":1}`)
	f.Add("application/json", `{"code":"a","code":"b"}`)
	f.Add("application/json", `[]`)
	f.Add("application/json", `{"code":"\ud800"} trailing`)
	f.Add("text/plain", "code=a")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		form, isJSON, oerr := readForm(w, r)
		if oerr != nil {
			if oerr.Status < 400 || oerr.Status > 499 || oerr.Code != oauth.InvalidRequest {
				t.Fatalf("refusal %d %s, want a 4xx invalid_request", oerr.Status, oerr.Code)
			}
			return
		}
		// What the body says, read independently of readForm.
		var sent url.Values
		if isJSON {
			var obj map[string]string
			if err := json.NewDecoder(strings.NewReader(body)).Decode(&obj); err != nil {
				t.Fatalf("accepted JSON %q that is not an object of strings: %v", body, err)
			}
			sent = url.Values{}
			for k, v := range obj {
				sent[k] = []string{v}
			}
		} else {
			var err error
			if sent, err = url.ParseQuery(body); err != nil {
				t.Fatalf("accepted a form %q that does not parse: %v", body, err)
			}
		}
		for k, vs := range form {
			if !slices.Contains(tokenParams, k) {
				t.Fatalf("readForm returned %q, which no endpoint reads", k)
			}
			if len(vs) != 1 || vs[0] == "" {
				t.Fatalf("readForm returned %s=%q, want one non-empty value", k, vs)
			}
		}
		for _, k := range tokenParams {
			want, dup := oauth.Single(sent[k])
			if dup {
				t.Fatalf("accepted %q with %s given more than once", body, k)
			}
			if got := form.Get(k); got != want {
				t.Fatalf("readForm %s = %q, the body says %q", k, got, want)
			}
		}
	})
}

// FuzzClientBasic checks client_secret_basic (RFC 6749 §2.3.1): the
// client_id and secret are form-urlencoded, then put in HTTP Basic. Any
// id and secret, so encoded, authenticate their client, and the same with
// one byte of the secret changed does not. An arbitrary Authorization
// header never authenticates unless it decodes to the registered pair, and
// a failure is always invalid_client with the Basic challenge.
func FuzzClientBasic(f *testing.F) {
	f.Add("ywc_a1b2c3d4", "demo-client-secret", "Basic eXdjX2ExYjJjM2Q0OmRlbW8tY2xpZW50LXNlY3JldA==")
	f.Add("id:with:colons", "p@ss wörd+%/=&", "Basic aWQ6d2l0aDpjb2xvbnM6eA==")
	f.Add("a b", "+", "Basic YSUyMGI6JTJC")
	f.Add("é", "\x00\r\n", "Basic JXp6OiV6eg==")
	f.Add("x", "y", "Basic !!!")
	f.Add("x", "y", "basic eDp5")
	f.Fuzz(func(t *testing.T, id, secret, rawHeader string) {
		if id == "" || secret == "" {
			return // a registered client has both
		}
		reg := &client{Client: oauth.Client{ID: id, SecretDigest: sha256.Sum256([]byte(secret))}}
		a := &App{clients: map[string]*client{id: reg}}
		c := &reg.Client
		try := func(header string) (*oauth.Client, *oauth.Error) {
			r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
			r.Header.Set("Authorization", header)
			return a.authenticateClient(r, url.Values{}, false)
		}
		basic := func(id, secret string) string {
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
		}
		if got, oerr := try(basic(id, secret)); oerr != nil || got != c {
			t.Fatalf("Basic for id %q secret %q: %v, want the client", id, secret, oerr)
		}
		wrong := []byte(secret)
		wrong[0] ^= 1
		if got, oerr := try(basic(id, string(wrong))); got != nil || oerr == nil || oerr.Code != oauth.InvalidClient || !oerr.Basic {
			t.Fatalf("Basic with a wrong secret: %v %v, want invalid_client with the Basic challenge", got, oerr)
		}
		got, oerr := try(rawHeader)
		if got != nil {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.Header.Set("Authorization", rawHeader)
			u, p, _ := r.BasicAuth()
			u, _ = url.QueryUnescape(u)
			p, _ = url.QueryUnescape(p)
			if u != id || p != secret {
				t.Fatalf("header %q authenticated but decodes to %q:%q", rawHeader, u, p)
			}
		} else if oerr == nil || oerr.Code != oauth.InvalidClient || oerr.Status != http.StatusUnauthorized {
			t.Fatalf("header %q: %v, want 401 invalid_client", rawHeader, oerr)
		}
	})
}

type handler interface {
	ServeHTTP(http.ResponseWriter, *http.Request, caddyhttp.Handler) error
}

// post sends a form to h; basic, when not "", is "id:secret" for
// client_secret_basic.
func post(t testing.TB, h handler, path string, form url.Values, basic string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != "" {
		id, secret, _ := strings.Cut(basic, ":")
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

// wantOAuthError checks an RFC 6749 §5.2 JSON error.
func wantOAuthError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d %s: %s", w.Code, status, code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error != code || e.Description == "" {
		t.Fatalf("body %s, want {error: %q, error_description: …}", w.Body, code)
	}
}
