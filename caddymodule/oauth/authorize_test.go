package oauth

import (
	"net/url"
	"testing"
)

type catalogue map[string]*Client

func (c catalogue) Client(id string) *Client { return c[id] }
func (catalogue) HasScope(s string) bool {
	return s == "profile:read" || s == "seatime:read" || s == "vessels:read"
}

const testChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

func testCatalogue() catalogue {
	return catalogue{"ywc_a1b2c3d4": {
		ID:           "ywc_a1b2c3d4",
		RedirectURIs: []string{"https://app.example.com/cb"},
		Scopes:       []string{"profile:read", "seatime:read"},
	}}
}

func validQuery() url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {"ywc_a1b2c3d4"},
		"redirect_uri":          {"https://app.example.com/cb"},
		"scope":                 {"profile:read seatime:read"},
		"state":                 {"xyz"},
		"code_challenge":        {testChallenge},
		"code_challenge_method": {"S256"},
	}
}

// The DSS authorization-request parameters (docs/partners.md D14–D19) and
// RFC 6749 §4.1.2.1.
func TestParseAuthorize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		edit     func(q url.Values)
		code     string // "" = valid
		redirect bool
	}{
		{"valid request", func(url.Values) {}, "", false},
		{"unknown client gets an error page", func(q url.Values) { q.Set("client_id", "nope") }, InvalidClient, false},
		{"missing client_id gets an error page", func(q url.Values) { q.Del("client_id") }, InvalidRequest, false},
		{"empty client_id counts as absent", func(q url.Values) { q.Set("client_id", "") }, InvalidRequest, false},
		{"redirect_uri with a trailing slash is not registered", func(q url.Values) { q.Set("redirect_uri", "https://app.example.com/cb/") }, InvalidRequest, false},
		{"unregistered redirect_uri gets an error page", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }, InvalidRequest, false},
		{"missing redirect_uri gets an error page", func(q url.Values) { q.Del("redirect_uri") }, InvalidRequest, false},
		{"redirect_uri given twice gets an error page", func(q url.Values) { q.Add("redirect_uri", "https://app.example.com/cb") }, InvalidRequest, false},
		{"response_type token is unsupported", func(q url.Values) { q.Set("response_type", "token") }, UnsupportedResponseType, true},
		{"missing response_type", func(q url.Values) { q.Del("response_type") }, InvalidRequest, true},
		{"missing state", func(q url.Values) { q.Del("state") }, InvalidRequest, true},
		{"empty state counts as absent", func(q url.Values) { q.Set("state", "") }, InvalidRequest, true},
		{"scope outside the client's allowed set", func(q url.Values) { q.Set("scope", "profile:read vessels:read") }, InvalidScope, true},
		{"scope unknown to the catalogue", func(q url.Values) { q.Set("scope", "admin") }, InvalidScope, true},
		{"missing scope", func(q url.Values) { q.Del("scope") }, InvalidScope, true},
		{"missing code_challenge", func(q url.Values) { q.Del("code_challenge") }, InvalidRequest, true},
		{"plain method is refused", func(q url.Values) { q.Set("code_challenge_method", "plain") }, InvalidRequest, true},
		{"missing method means plain and is refused", func(q url.Values) { q.Del("code_challenge_method") }, InvalidRequest, true},
		{"malformed challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, InvalidRequest, true},
		{"scope given twice", func(q url.Values) { q.Add("scope", "profile:read") }, InvalidRequest, true},
		{"state given twice", func(q url.Values) { q.Add("state", "abc") }, InvalidRequest, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := validQuery()
			tc.edit(q)
			req, err := ParseAuthorize(q, testCatalogue())
			if tc.code == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if req.State != "xyz" || len(req.Scopes) != 2 || req.Challenge != testChallenge {
					t.Fatalf("request not carried through: %+v", req)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %s", tc.code)
			}
			if err.Code != tc.code || err.Redirect != tc.redirect {
				t.Fatalf("got %s redirect=%v, want %s redirect=%v (%s)", err.Code, err.Redirect, tc.code, tc.redirect, err.Description)
			}
		})
	}
}

// RFC 6749 §4.1.2.1: state is returned unchanged with the error, and the
// registered URI's own query is kept.
func TestErrorRedirectKeepsStateAndQuery(t *testing.T) {
	e := &AuthorizeError{Error: Errorf(InvalidScope, "bad"), Redirect: true,
		RedirectURI: "https://app.example.com/cb?tenant=7", State: "a b&c"}
	u, err := url.Parse(ErrorRedirect(e))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("error") != InvalidScope || q.Get("state") != "a b&c" || q.Get("tenant") != "7" || q.Get("error_description") != "bad" {
		t.Fatalf("redirect = %s", u)
	}
}

func TestCheckRegisteredRedirectURI(t *testing.T) {
	for uri, ok := range map[string]bool{
		"https://app.example.com/cb":      true,
		"http://localhost:9999/callback":  true,
		"http://127.0.0.1/cb":             true,
		"http://app.example.com/cb":       false,
		"http://localhost.evil.com/cb":    false,
		"https://app.example.com/cb#frag": false,
		"/relative":                       false,
		"javascript:alert(1)":             false,
		"https://app.example.com/cb?x=1":  true,
		// The response's own parameters cannot be told from the query's.
		"https://app.example.com/cb?state=0": false,
		"https://app.example.com/cb?code=x":  false,
		"https://app.example.com/cb?iss=x":   false,
		// A query that does not parse would lose its bad part in responses.
		"https://app.example.com/cb?a;b=1": false,
	} {
		if err := CheckRegisteredRedirectURI(uri, false); (err == nil) != ok {
			t.Errorf("CheckRegisteredRedirectURI(%q) = %v, want ok=%v", uri, err, ok)
		}
	}
}

func TestClientAuthenticate(t *testing.T) {
	good := &Client{ID: "x"}
	copy(good.SecretDigest[:], mustDigestBytes("s3cret"))
	if !good.Authenticate("s3cret") || good.Authenticate("s3cret ") || good.Authenticate("") {
		t.Fatal("secret comparison is wrong")
	}
}
