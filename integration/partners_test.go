package integration

// The partner-style configurations: integration/testdata/dash.Caddyfile
// (Dash, docs/partners.md §3), integration/testdata/trans.Caddyfile (Trans,
// docs/partners.md §4) and Caddyfile.example (DSS, docs/partners.md §2).
// Each test replays the partner's documented requests as the partner
// documents them (the Dash JSON body, the Trans form with `Api-key`, the
// DSS curl commands) against those files.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// partnerConfig is one Caddyfile under test and where its token endpoint
// is mounted (the readiness probe: a GET there answers 405, while every
// unrouted path of these configs answers 404).
type partnerConfig struct {
	caddyfile string // relative to the module root
	tokenPath string
}

var (
	dashConfig  = partnerConfig{"integration/testdata/dash.Caddyfile", "/api/auth/token"}
	transConfig = partnerConfig{"integration/testdata/trans.Caddyfile", "/ext/auth-api/accounts/token"}
	dssConfig   = partnerConfig{"Caddyfile.example", "/oauth/token"}
)

// forEachStorePartner runs fn as the parallel subtests "memory" and
// "redis", each against its own gateway process running cfg.
func forEachStorePartner(t *testing.T, cfg partnerConfig, fn func(t *testing.T, gw *gateway)) {
	t.Helper()
	t.Parallel()
	for _, s := range stores {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			fn(t, startPartnerGateway(t, s, cfg))
		})
	}
}

// startPartnerGateway runs the binary with cfg's Caddyfile on fresh ports.
// Unlike launch it knows the legacy port before the process starts, so it
// points TOLLGATE_LEGACY_UPSTREAM at the config's own fake legacy API, and
// it probes the config's token path rather than /oauth/token.
func startPartnerGateway(t *testing.T, storeKind string, cfg partnerConfig) *gateway {
	t.Helper()
	storeURL := ""
	if storeKind == "redis" {
		storeURL = storetest.StartRedis(t)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		gw, err := launchPartner(t, storeKind, storeURL, cfg)
		if err == nil {
			return gw
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("starting gateway with %s (%s store): %v", cfg.caddyfile, storeKind, lastErr)
	return nil
}

func launchPartner(t *testing.T, storeKind, storeURL string, cfg partnerConfig) (*gateway, error) {
	t.Helper()
	return launchAt(t, storeKind, storeURL, filepath.Join(repoRoot, cfg.caddyfile), cfg.tokenPath)
}

// curlRequest builds a request the way the documents' curl commands send
// it: curl's User-Agent and Accept, and a -d body sent byte for byte with
// Content-Type application/x-www-form-urlencoded (curl -d does not encode).
func curlRequest(t *testing.T, method, rawURL, body string) *http.Request {
	t.Helper()
	var req *http.Request
	var err error
	if body == "" {
		req, err = http.NewRequest(method, rawURL, nil)
	} else {
		req, err = http.NewRequest(method, rawURL, strings.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "curl/8.5.0")
	req.Header.Set("Accept", "*/*")
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req
}

// curlData joins -d arguments as curl does: in the given order, with '&',
// values as they are.
func curlData(pairs ...string) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		parts = append(parts, pairs[i]+"="+pairs[i+1])
	}
	return strings.Join(parts, "&")
}

// orderedForm form-encodes pairs in the given order (a url.Values would
// sort them).
func orderedForm(pairs ...string) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		parts = append(parts, url.QueryEscape(pairs[i])+"="+url.QueryEscape(pairs[i+1]))
	}
	return strings.Join(parts, "&")
}

// describe names a raw request for a failure message, hiding the value
// of Authorization.
func describe(req *http.Request, body string) string {
	d := req.Method + " " + req.URL.RequestURI()
	for _, k := range []string{"Content-Type", "Api-Key", "Authorization"} {
		if v := req.Header.Get(k); v != "" {
			if k == "Authorization" {
				v = strings.SplitN(v, " ", 2)[0] + " …"
			}
			d += "\n" + k + ": " + v
		}
	}
	if body != "" {
		d += "\n\n" + body
	}
	return d
}

// allowTo submits decision=allow on the consent page and checks the 303
// goes to want, the registered redirect URI the request resolved to; it
// returns the Location.
//
// 303, not the 302 of Trans's example (docs/partners.md T7): the consent
// form is a POST that may carry the user's credentials, and RFC 9700
// §4.12: "If an HTTP redirection … is used for such a request, AS SHOULD
// use HTTP status code 303 (See Other)."
func (b *browser) allowTo(consent *page, want string) *url.URL {
	b.t.Helper()
	p := b.submit(consent, url.Values{"decision": {"allow"}})
	return wantRedirectTo(b.t, p, want, http.StatusSeeOther)
}

// wantRedirectTo checks p redirects with one of statuses to want plus a
// query and returns the Location.
func wantRedirectTo(t *testing.T, p *page, want string, statuses ...int) *url.URL {
	t.Helper()
	ok := false
	for _, s := range statuses {
		ok = ok || p.status == s
	}
	if !ok {
		t.Fatalf("want %v to %s:\n%s", statuses, want, p)
	}
	loc, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		t.Fatalf("Location: %v\n%s", err, p)
	}
	target := *loc
	target.RawQuery = ""
	if target.String() != want {
		t.Fatalf("redirected to %q, want %q:\n%s", loc, want, p)
	}
	return loc
}

// wantCode checks the callback carries a code and no error, and the state
// wantState ("" for a request without state); it returns the code.
func wantCode(t *testing.T, loc *url.URL, wantState string) string {
	t.Helper()
	q := loc.Query()
	if q.Has("error") || q.Get("code") == "" {
		t.Fatalf("callback has no code: %s", loc)
	}
	if wantState == "" {
		// RFC 6749 §4.1.2: state is "REQUIRED if the "state" parameter was
		// present in the client authorization request".
		if q.Has("state") {
			t.Errorf("callback carries state %q for a request without one (RFC 6749 §4.1.2): %s", q.Get("state"), loc)
		}
	} else if q.Get("state") != wantState {
		t.Fatalf("callback state = %q, want %q unchanged: %s", q.Get("state"), wantState, loc)
	}
	return q.Get("code")
}

// wantAPIOK checks a 200 JSON answer of the config's fake legacy API for
// alice and returns it decoded.
func wantAPIOK(t *testing.T, r *response) map[string]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("API call: want 200 from the legacy API:\n%s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("API call: Content-Type = %q, want application/json:\n%s", ct, r)
	}
	m := r.json(t)
	if m["user_id"] != username {
		t.Fatalf("API call: user_id = %#v, want %q (the legacy API is told who the user is):\n%s", m["user_id"], username, r)
	}
	return m
}

// pythonPKCEPair makes a PKCE pair exactly as the python one-liners DSS
// gives partners do (docs/partners.md D20):
//
//	secrets.token_urlsafe(64)[:64]
//	base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b'=')
//
// token_urlsafe(n) is the unpadded base64url encoding of n random bytes.
func pythonPKCEPair(t *testing.T) (verifier, challenge string) {
	t.Helper()
	raw := make([]byte, 64)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	verifier = strings.TrimRight(base64.URLEncoding.EncodeToString(raw), "=")[:64]
	return verifier, pythonChallenge(verifier)
}

func pythonChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return strings.TrimRight(base64.URLEncoding.EncodeToString(sum[:]), "=")
}

// randomDigits is a random decimal number of n digits (the Trans state is
// documented as a "Random number (at least 8 characters long)").
func randomDigits(t *testing.T, n int) string {
	t.Helper()
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for i, c := range raw {
		d := c % 10
		if i == 0 {
			d = 1 + c%9
		}
		sb.WriteByte('0' + d)
	}
	return sb.String()
}
