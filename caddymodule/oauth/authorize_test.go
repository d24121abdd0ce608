package oauth

import (
	"net/url"
	"slices"
	"strings"
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

// The per-client settings (docs/partners.md §1) on the authorization
// request: each partner style is a configuration, not a fork of the rules.
func TestParseAuthorizeHonoursClientPolicy(t *testing.T) {
	dash := &Client{
		ID:           "dash",
		RedirectURIs: []string{"https://client.example.com/cb", "https://client.example.com/other"},
		Scopes:       []string{"profile:read"},
		Policy:       Policy{PKCEOptional: true, StateOptional: true, RedirectURIOptional: true},
	}
	trans := &Client{
		ID:           "trans",
		RedirectURIs: []string{"https://app.example.com/trans/callback"},
		Scopes:       []string{"seatime:read"},
		Policy:       Policy{PKCEOptional: true, StateMinLength: 8, DefaultScopes: []string{"seatime:read"}},
	}
	cat := catalogue{"dash": dash, "trans": trans}
	for _, tc := range []struct {
		name     string
		q        url.Values
		code     string
		redirect string
		scopes   int
	}{
		{"dash: no PKCE, no state, no redirect_uri goes to the primary URI",
			url.Values{"response_type": {"code"}, "client_id": {"dash"}, "scope": {"profile:read"}}, "", "https://client.example.com/cb", 1},
		{"dash: an explicit registered redirect_uri is used",
			url.Values{"response_type": {"code"}, "client_id": {"dash"}, "scope": {"profile:read"}, "redirect_uri": {"https://client.example.com/other"}}, "", "https://client.example.com/other", 1},
		{"dash: an unregistered redirect_uri is still refused on a page",
			url.Values{"response_type": {"code"}, "client_id": {"dash"}, "scope": {"profile:read"}, "redirect_uri": {"https://evil.example/cb"}}, InvalidRequest, "", 0},
		{"dash: a challenge that is sent must still be S256",
			url.Values{"response_type": {"code"}, "client_id": {"dash"}, "scope": {"profile:read"}, "code_challenge": {testChallenge}, "code_challenge_method": {"plain"}}, InvalidRequest, "", 0},
		{"dash: a method without a challenge is refused",
			url.Values{"response_type": {"code"}, "client_id": {"dash"}, "scope": {"profile:read"}, "code_challenge_method": {"S256"}}, InvalidRequest, "", 0},
		{"trans: no scope gets the default scope",
			url.Values{"response_type": {"code"}, "client_id": {"trans"}, "state": {"12345678"}, "redirect_uri": {"https://app.example.com/trans/callback"}}, "", "https://app.example.com/trans/callback", 1},
		{"trans: a 7-character state is too short",
			url.Values{"response_type": {"code"}, "client_id": {"trans"}, "state": {"1234567"}, "redirect_uri": {"https://app.example.com/trans/callback"}}, InvalidRequest, "", 0},
		{"trans: state is still required",
			url.Values{"response_type": {"code"}, "client_id": {"trans"}, "redirect_uri": {"https://app.example.com/trans/callback"}}, InvalidRequest, "", 0},
		{"trans: redirect_uri is still required",
			url.Values{"response_type": {"code"}, "client_id": {"trans"}, "state": {"12345678"}}, InvalidRequest, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseAuthorize(tc.q, cat)
			if tc.code != "" {
				if err == nil || err.Code != tc.code {
					t.Fatalf("got %v, want %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if req.RedirectURI != tc.redirect || len(req.Scopes) != tc.scopes {
				t.Fatalf("redirect %q scopes %v", req.RedirectURI, req.Scopes)
			}
		})
	}
}

// fuzzCatalogue has one client of each policy style: the DSS defaults
// (PKCE and state required) and a permissive one (the Dash and Trans
// styles: everything optional, a default scope, a state minimum length).
func fuzzCatalogue() catalogue {
	return catalogue{
		"ywc_a1b2c3d4": {
			ID:           "ywc_a1b2c3d4",
			RedirectURIs: []string{"https://app.example.com/cb", "http://localhost:9999/callback"},
			Scopes:       []string{"profile:read", "seatime:read"},
		},
		"dash": {
			ID:           "dash",
			RedirectURIs: []string{"https://client.example.com/cb?keep=1"},
			Scopes:       []string{"profile:read", "vessels:read"},
			Policy: Policy{
				PKCEOptional: true, StateOptional: true, StateMinLength: 8,
				RedirectURIOptional: true, DefaultScopes: []string{"vessels:read"},
			},
		},
	}
}

// FuzzParseAuthorize feeds raw authorization query strings (RFC 6749
// §4.1.1) to ParseAuthorize, parsed the way the handler parses them
// (r.URL.Query(), which drops malformed pairs). Properties:
//   - a redirect target, whether of a success or of a redirected error, is
//     always one of the URIs registered for the client (RFC 6749 §3.1.2.2,
//     RFC 9700 §4.1.3: no open redirector);
//   - an error that is not redirected is shown on the gateway's page;
//   - the error redirect keeps the registered scheme, host and path, and
//     has no CR or LF (it goes into a Location header);
//   - an accepted request carries distinct scopes the client may ask for,
//     the one state that was sent, and a valid S256 challenge when one was
//     required.
func FuzzParseAuthorize(f *testing.F) {
	f.Add("response_type=code&client_id=ywc_a1b2c3d4&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&scope=profile%3Aread+seatime%3Aread&state=xyz&code_challenge=" + testChallenge + "&code_challenge_method=S256")
	f.Add("response_type=code&client_id=dash")
	f.Add("response_type=code&client_id=dash&state=short")
	f.Add("client_id=ywc_a1b2c3d4&redirect_uri=https://app.example.com/cb&state=a%0d%0aSet-Cookie:x=1")
	f.Add("client_id=ywc_a1b2c3d4&client_id=dash&redirect_uri=https://app.example.com/cb")
	f.Add("client_id=ywc_a1b2c3d4&redirect_uri=https://app.example.com/cb/&state=x")
	f.Add("client_id=ywc_a1b2c3d4&redirect_uri=https://app.example.com/cb&redirect_uri=&state=x&state=&response_type=token")
	f.Add("client_id=dash&redirect_uri=https://evil.example/cb")
	f.Add("client_id=%zz&redirect_uri=https://app.example.com/cb")
	f.Add("client_id=ywc_a1b2c3d4;redirect_uri=https://app.example.com/cb")
	f.Add("client_id=ywc_a1b2c3d4&redirect_uri=http://localhost:9999/callback&response_type=code&scope=+profile:read++profile:read+&state=%00&code_challenge=" + testChallenge + "&code_challenge_method=S256")
	cat := fuzzCatalogue()
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, _ := url.ParseQuery(rawQuery)
		req, aerr := ParseAuthorize(q, cat)
		if (req == nil) == (aerr == nil) {
			t.Fatalf("want exactly one of a request and an error, got %+v and %+v", req, aerr)
		}
		if aerr != nil {
			if aerr.Error == nil || aerr.Code == "" {
				t.Fatalf("error without a code: %+v", aerr)
			}
			if !aerr.Redirect {
				if aerr.RedirectURI != "" {
					t.Fatalf("page error carries a redirect URI %q", aerr.RedirectURI)
				}
				return
			}
			client := cat.Client(firstNonEmpty(q["client_id"]))
			if client == nil || !client.HasRedirectURI(aerr.RedirectURI) {
				t.Fatalf("error redirected to %q, not registered for client_id %q", aerr.RedirectURI, q["client_id"])
			}
			loc := ErrorRedirect(aerr)
			if strings.ContainsAny(loc, "\r\n") {
				t.Fatalf("error redirect has CR/LF: %q", loc)
			}
			got, err := url.Parse(loc)
			if err != nil {
				t.Fatalf("error redirect %q does not parse: %v", loc, err)
			}
			reg, _ := url.Parse(aerr.RedirectURI)
			if got.Scheme != reg.Scheme || got.Host != reg.Host || got.Path != reg.Path {
				t.Fatalf("error redirect %q leaves the registered %q", loc, aerr.RedirectURI)
			}
			gq := got.Query()
			if gq.Get("error") != aerr.Code {
				t.Fatalf("error redirect %q: error = %q, want %q", loc, gq.Get("error"), aerr.Code)
			}
			if gq.Get("state") != aerr.State {
				t.Fatalf("error redirect %q: state = %q, want %q", loc, gq.Get("state"), aerr.State)
			}
			for k, vs := range reg.Query() {
				if k != "error" && k != "error_description" && k != "state" && !slices.Equal(gq[k], vs) {
					t.Fatalf("error redirect %q lost the registered query %s=%q", loc, k, vs)
				}
			}
			return
		}
		c := req.Client
		if c == nil || cat.Client(c.ID) != c {
			t.Fatalf("accepted request without a registered client: %+v", req)
		}
		if !c.HasRedirectURI(req.RedirectURI) {
			t.Fatalf("accepted redirect_uri %q is not registered for %s", req.RedirectURI, c.ID)
		}
		if len(req.Scopes) == 0 {
			t.Fatal("accepted request with no scope")
		}
		seen := map[string]bool{}
		for _, s := range req.Scopes {
			if seen[s] || !slices.Contains(c.Scopes, s) || !cat.HasScope(s) {
				t.Fatalf("accepted scopes %q: duplicate or not allowed for %s", req.Scopes, c.ID)
			}
			seen[s] = true
		}
		if st, dup := Single(q["state"]); dup || st != req.State {
			t.Fatalf("state = %q, sent %q", req.State, q["state"])
		}
		if req.State == "" && !c.StateOptional {
			t.Fatal("accepted a request without state for a client that requires it")
		}
		if req.State != "" && len(req.State) < c.StateMinLength {
			t.Fatalf("accepted state %q shorter than %d", req.State, c.StateMinLength)
		}
		if req.Challenge != "" && !ValidChallenge(req.Challenge) {
			t.Fatalf("accepted malformed challenge %q", req.Challenge)
		}
		if req.Challenge == "" && !c.PKCEOptional {
			t.Fatal("accepted a request without PKCE for a client that requires it")
		}
	})
}

func firstNonEmpty(vs []string) string {
	v, _ := Single(vs)
	return v
}
