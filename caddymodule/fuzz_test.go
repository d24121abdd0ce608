package caddymodule

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// Fuzz targets for the handlers' parsers of outside input: the token and
// revocation request body, client credentials, the bearer Authorization
// header and the Caddyfile. Seeds are the f.Add calls plus the files under
// testdata/fuzz/<Target>/.

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
			if !contains(tokenParams, k) {
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
		c := &oauth.Client{ID: id, SecretDigest: sha256.Sum256([]byte(secret))}
		a := &App{clients: map[string]*oauth.Client{id: c}}
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

// FuzzBearerToken feeds arbitrary Authorization header values to
// bearerToken (RFC 6750 §2.1). Properties: a refusal is 400 or 401 with an
// RFC 6750 §3.1 code or none; a token that is returned is non-empty,
// has no surrounding whitespace, was sent after a case-insensitive
// "Bearer " scheme; and only a token without spaces or other characters
// outside the token format can pass ParseToken and reach the store.
func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer tga_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "")
	f.Add("bearer   tok  ", "")
	f.Add("Bearer", "")
	f.Add("Bearer a b", "")
	f.Add("Basic dXNlcjpwYXNz", "")
	f.Add("Bearer x", "Bearer y")
	f.Add("Bearer\ttok", "")
	f.Add("Bearer \x00\xff", "")
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		r := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
		if v1 != "" {
			r.Header.Add("Authorization", v1)
		}
		if v2 != "" {
			r.Header.Add("Authorization", v2)
		}
		tok, aerr := bearerToken(r)
		if aerr != nil {
			if tok != "" {
				t.Fatalf("refusal with a token %q", tok)
			}
			switch {
			case aerr.Status == http.StatusUnauthorized && aerr.Code == "":
			case aerr.Status == http.StatusBadRequest && aerr.Code == "invalid_request":
			default:
				t.Fatalf("refusal %d %q, want 401 without a code or 400 invalid_request (RFC 6750 §3.1)", aerr.Status, aerr.Code)
			}
			return
		}
		if v1 == "" || v2 != "" {
			t.Fatalf("token %q accepted from %d Authorization headers", tok, len(r.Header.Values("Authorization")))
		}
		if tok == "" || strings.TrimSpace(tok) != tok {
			t.Fatalf("token %q is empty or has surrounding whitespace", tok)
		}
		if len(v1) < 7 || !strings.EqualFold(v1[:7], "Bearer ") || !strings.HasSuffix(strings.TrimSpace(v1), tok) {
			t.Fatalf("token %q does not come after a Bearer scheme in %q", tok, v1)
		}
		if _, _, ok := oauth.ParseToken(tok); ok && strings.ContainsAny(tok, " \t\r\n\x00") {
			t.Fatalf("token %q with whitespace passes ParseToken", tok)
		}
	})
}

// FuzzCaddyfile feeds arbitrary text to the caddyfile adapter as the body
// of the tollgate global option and as a site block using the handler
// directives. Properties: the adapter never panics; when it accepts the
// text, the result is JSON whose tollgate app decodes into App with no
// unknown field (what a config load then provisions), and every
// tollgate_protect handler decodes into Protect.
func FuzzCaddyfile(f *testing.F) {
	f.Add("store memory\n\tscope profile:read \"Name\"\n\tclient c {\n\t\tsecret s\n\t\tredirect_uri https://a.example/cb\n\t\tscopes profile:read\n\t}", "tollgate_protect profile:read {\n\t\tuser_header X-User\n\t\tetag 1024\n\t}\n\ttollgate_token")
	f.Add("users {\n\t\talice $2a$10$x {\n\t\t\tname \"A\"\n\t\t}\n\t}", "tollgate_authorize")
	f.Add("users caddy_auth\n\trate_limit 5/1m\n\trate_limit_headers", "tollgate_connections\n\ttollgate_userinfo\n\ttollgate_revoke")
	f.Add("client c {\n\t\ttoken_header Api-key v\n\t\trefresh_tokens off\n\t\tstate_min_length 8\n\t}", "tollgate_protect {\n\t\tscopes\n\t}")
	f.Add("issuer {env.X}\n\tcode_lifetime -1s", "tollgate_protect a {\n\t\tetag 0\n\t}")
	f.Add("client {\n\t}\n\t}\n}\n{", "tollgate_token extra")
	f.Add("scope \"unterminated", "tollgate_protect `x")
	f.Add("import", "import x\n\ttollgate_protect {")
	f.Add("store redis {\n\t\tsentinel m\n\t\taddrs a:1,b:2\n\t\tdb 2\n\t\twait_replicas 1 100ms\n\t\ttls {\n\t\t\tca c.pem\n\t\t}\n\t}", "tollgate_token")
	adapter := caddyconfig.GetAdapter("caddyfile")
	f.Fuzz(func(t *testing.T, global, site string) {
		// import reads files; keep the fuzzer off the filesystem.
		if strings.Contains(global, "import") || strings.Contains(site, "import") {
			return
		}
		input := "{\n\ttollgate {\n\t" + global + "\n\t}\n}\n:8080 {\n\t" + site + "\n}\n"
		out, _, err := adapter.Adapt([]byte(input), nil)
		if err != nil {
			return
		}
		var cfg struct {
			Apps struct {
				Tollgate json.RawMessage `json:"tollgate"`
				HTTP     json.RawMessage `json:"http"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("adapted output is not JSON: %v\n%s", err, out)
		}
		if len(cfg.Apps.Tollgate) > 0 {
			dec := json.NewDecoder(bytes.NewReader(cfg.Apps.Tollgate))
			dec.DisallowUnknownFields()
			var app App
			if err := dec.Decode(&app); err != nil {
				t.Fatalf("the tollgate app does not decode: %v\n%s", err, cfg.Apps.Tollgate)
			}
		}
		for _, raw := range protectHandlers(cfg.Apps.HTTP) {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			var p struct {
				Protect
				Handler string `json:"handler"`
			}
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("a tollgate_protect handler does not decode: %v\n%s", err, raw)
			}
		}
	})
}

// protectHandlers finds every tollgate_protect handler in the adapted
// http app, however deeply routes nest them.
func protectHandlers(httpApp json.RawMessage) []json.RawMessage {
	var found []json.RawMessage
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "tollgate_protect" {
				raw, _ := json.Marshal(x)
				found = append(found, raw)
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var v any
	if json.Unmarshal(httpApp, &v) == nil {
		walk(v)
	}
	return found
}
