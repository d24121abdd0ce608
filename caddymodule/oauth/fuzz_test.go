package oauth

import (
	"bytes"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// Fuzz targets for every parser of outside input in this package. Each
// asserts the property callers rely on, not only the absence of a panic.
// Seeds are the f.Add calls plus the files under testdata/fuzz/<Target>/;
// `go test -fuzz` adds every failing input there as a regression case.

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
				if k != "error" && k != "error_description" && k != "state" && !equalStrings(gq[k], vs) {
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

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
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

// FuzzParseToken checks the token format: ParseToken accepts exactly what
// NewToken makes (prefix, 22-character grant id, 43 characters of 256
// random bits, all unreserved URL characters) and round-trips it.
func FuzzParseToken(f *testing.F) {
	gid := GrantID("ywc_a1b2c3d4", "alice")
	f.Add("tga_"+gid+strings.Repeat("A", 43), []byte("0123456789abcdef0123456789abcdef"), "alice")
	f.Add("tgr_"+gid+strings.Repeat("_", 42)+" ", []byte{}, "")
	f.Add("tgc_short", []byte{0xff}, "bob\x00")
	f.Add(strings.Repeat("é", 35), []byte("x"), "x")
	f.Fuzz(func(t *testing.T, tok string, random []byte, subject string) {
		prefix, grantID, ok := ParseToken(tok)
		if ok {
			if len(tok) != tokenLen || !unreserved(tok) || prefix+grantID != tok[:prefixLen+grantIDLen] {
				t.Fatalf("ParseToken(%q) accepted a token NewToken cannot make", tok)
			}
		} else if prefix != "" || grantID != "" {
			t.Fatalf("ParseToken(%q) refused but returned %q %q", tok, prefix, grantID)
		}
		// Round trip: every prefix, the grant id of any subject, any
		// randomness (padded to the 32 bytes NewToken reads).
		gid := GrantID("ywc_a1b2c3d4", subject)
		rnd := append(append([]byte(nil), random...), make([]byte, 32)...)
		for _, p := range []string{AccessPrefix, RefreshPrefix, CodePrefix} {
			made, err := NewToken(bytes.NewReader(rnd), p, gid)
			if err != nil {
				t.Fatal(err)
			}
			gp, gg, ok := ParseToken(made)
			if !ok || gp != p || gg != gid {
				t.Fatalf("ParseToken(NewToken(%q, %q)) = %q %q %v", p, gid, gp, gg, ok)
			}
		}
	})
}

// FuzzParseScope checks scope parsing (RFC 6749 §3.3: space-delimited,
// case-sensitive, order irrelevant): no empty entries, no duplicates, no
// entry with whitespace, every entry taken from the input, every token of
// the input kept, and FormatScope/ParseScope is a fixed point.
func FuzzParseScope(f *testing.F) {
	f.Add("profile:read seatime:read")
	f.Add("  profile:read\tprofile:read  ")
	f.Add("")
	f.Add("a\x00b a\u00a0b Profile:read profile:read")
	f.Add("\xff\xfe \r\n\v\f")
	f.Fuzz(func(t *testing.T, s string) {
		scopes := ParseScope(s)
		seen := map[string]bool{}
		for _, sc := range scopes {
			if sc == "" {
				t.Fatalf("ParseScope(%q) = %q: empty entry", s, scopes)
			}
			if seen[sc] {
				t.Fatalf("ParseScope(%q) = %q: duplicate %q", s, scopes, sc)
			}
			seen[sc] = true
			if strings.ContainsFunc(sc, isSpace) || !strings.Contains(s, sc) {
				t.Fatalf("ParseScope(%q) = %q: entry %q is not a token of the input", s, scopes, sc)
			}
		}
		for _, tok := range strings.Fields(s) {
			if !seen[tok] {
				t.Fatalf("ParseScope(%q) = %q: lost %q", s, scopes, tok)
			}
		}
		again := ParseScope(FormatScope(scopes))
		if !equalStrings(again, scopes) {
			t.Fatalf("ParseScope(FormatScope(%q)) = %q", scopes, again)
		}
	})
}

func isSpace(r rune) bool { return strings.TrimSpace(string(r)) == "" }

// FuzzPKCE checks the RFC 7636 §4.1 and §4.2 rules: a valid verifier's
// S256 challenge is always a valid challenge, ValidVerifier is exactly
// 43-128 unreserved characters, and a valid challenge decodes to 32 bytes.
func FuzzPKCE(f *testing.F) {
	f.Add("dBjftJeZ4CVP-mJ92K1Fb6Sx1dKbDyyhomeQkT8wTlI")
	f.Add(testChallenge)
	f.Add(strings.Repeat("~", 129))
	f.Add("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN")
	f.Fuzz(func(t *testing.T, v string) {
		if ValidVerifier(v) != (len(v) >= 43 && len(v) <= 128 && unreserved(v)) {
			t.Fatalf("ValidVerifier(%q) disagrees with RFC 7636 §4.1", v)
		}
		if ch := S256(v); !ValidChallenge(ch) {
			t.Fatalf("S256(%q) = %q is not a valid challenge", v, ch)
		}
		if ValidChallenge(v) && (len(v) != 43 || !unreserved(v)) {
			t.Fatalf("ValidChallenge(%q) accepted a non-base64url string", v)
		}
	})
}
