package oauth

import (
	"crypto/sha256"
	"net/url"
	"testing"
)

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

func TestHTTPSOnlyRefusesLoopbackHTTP(t *testing.T) {
	if CheckRegisteredRedirectURI("http://localhost:9999/cb", true) == nil {
		t.Fatal("https_only accepted a loopback http URI")
	}
	if CheckRegisteredRedirectURI("https://app.example.com/cb", true) != nil {
		t.Fatal("https_only refused https")
	}
}

func TestCheckTokenHeader(t *testing.T) {
	c := &Client{Policy: Policy{TokenHeader: "Api-Key", TokenHeaderDigest: sha256.Sum256([]byte("example_app_api_key"))}}
	if !c.CheckTokenHeader("example_app_api_key") || c.CheckTokenHeader("") || c.CheckTokenHeader("example_app_api_kez") {
		t.Fatal("token header comparison is wrong")
	}
	if !(&Client{}).CheckTokenHeader("") {
		t.Fatal("a client without a required header must pass")
	}
}
