package oauth

import (
	"crypto/sha256"
	"net/url"
	"strings"
	"testing"
)

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

func mustDigestBytes(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
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

// FuzzRedirectURI checks the redirect URI rules: HasRedirectURI is exact
// byte-for-byte comparison (RFC 9700 §4.1.3), CheckRegisteredRedirectURI
// accepts only absolute https URIs without fragment, or http on loopback
// (RFC 6749 §3.1.2, RFC 8252 §7.3), and AddQuery on an accepted URI keeps
// its scheme, host and path and puts no CR or LF into the Location header.
func FuzzRedirectURI(f *testing.F) {
	f.Add("https://app.example.com/cb", "https://app.example.com/cb", "xyz")
	f.Add("https://app.example.com/cb", "https://app.example.com/cb/", "")
	f.Add("https://app.example.com/cb", "HTTPS://app.example.com/cb", "")
	f.Add("http://localhost:9999/callback", "http://localhost:9999/callback", "a\r\nLocation: https://evil.example")
	f.Add("http://127.0.0.1/cb", "http://127.0.0.1./cb", "")
	f.Add("http://evil.example/cb", "http://evil.example/cb", "")
	f.Add("https://app.example.com/cb#frag", "", "")
	f.Add("https://app.example.com/cb?x=1&state=old", "https://app.example.com/cb?x=1&state=old", "new")
	f.Add("//evil.example/cb", "//evil.example/cb", "")
	f.Add("https://user@app.example.com:443/%2e%2e/cb", "https://user@app.example.com:443/../cb", "")
	f.Fuzz(func(t *testing.T, registered, sent, state string) {
		c := &Client{RedirectURIs: []string{registered}}
		if c.HasRedirectURI(sent) != (sent == registered) {
			t.Fatalf("HasRedirectURI(%q) with %q registered is not byte equality", sent, registered)
		}
		for _, httpsOnly := range []bool{false, true} {
			if CheckRegisteredRedirectURI(registered, httpsOnly) != nil {
				continue
			}
			u, err := url.Parse(registered)
			if err != nil || !u.IsAbs() || u.Host == "" || strings.Contains(registered, "#") {
				t.Fatalf("accepted %q: not an absolute URI without fragment", registered)
			}
			if u.Scheme != "https" && !(u.Scheme == "http" && !httpsOnly && isLoopbackHost(u.Hostname())) {
				t.Fatalf("accepted %q (https_only %v): not https and not loopback http", registered, httpsOnly)
			}
			loc := ErrorRedirect(&AuthorizeError{Error: Errorf(InvalidRequest, "x"), Redirect: true, RedirectURI: registered, State: state})
			if strings.ContainsAny(loc, "\r\n") {
				t.Fatalf("Location %q has CR/LF", loc)
			}
			got, err := url.Parse(loc)
			if err != nil {
				t.Fatalf("Location %q does not parse: %v", loc, err)
			}
			if got.Scheme != u.Scheme || got.Host != u.Host || got.Path != u.Path {
				t.Fatalf("Location %q leaves the registered %q", loc, registered)
			}
			if got.Query().Get("state") != state {
				t.Fatalf("Location %q: state = %q, want %q", loc, got.Query().Get("state"), state)
			}
		}
	})
}
