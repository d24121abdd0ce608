package integration

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// The bad-input catalogue: every class of malformed request against every
// endpoint of Caddyfile.example, sent as raw bytes over TCP so that the
// malformations net/http would refuse to send (CR/LF or NUL in a header,
// invalid methods, raw bytes in the path) reach the gateway too.
//
// What a partner and a user rely on, whatever the input:
//   - never a 5xx: malformed input is the client's error (RFC 9110 §15.5);
//   - OAuth endpoints answer 4xx with the RFC 6749 §5.2 JSON error;
//   - the authorize and connections pages answer a 4xx HTML error page, or
//     redirect only to the registered redirect URI (RFC 6749 §4.1.2.1,
//     RFC 9700 §4.11: no open redirector);
//   - API routes answer RFC 9457 application/problem+json, with the RFC
//     6750 §3 challenge where the refusal is about the token, and a
//     refused request never reaches the upstream;
//   - no Location header carries CR or LF or leaves for another origin;
//   - malformed HTTP framing is refused by the server itself (4xx);
//   - the process keeps serving: a full flow works at the end.

// expect is the answer format a row requires.
type expect int

const (
	wantOAuthJSON   expect = iota // 4xx, RFC 6749 §5.2 JSON {"error": …}
	wantPage                      // 4xx HTML error page, or a redirect to the registered redirect URI
	wantProblemJSON               // 4xx application/problem+json (RFC 9457)
	wantChallenged                // wantProblemJSON plus WWW-Authenticate: Bearer (RFC 6750 §3)
	wantWire                      // the HTTP server's own 4xx for malformed framing
	wantNotRouted                 // 4xx of the site's catch-all: the encoded path matches no endpoint
	wantRevokeNoop                // 200 with an empty body: RFC 7009 §2.2, an invalid token is not an error
)

func (e expect) String() string {
	return [...]string{"RFC 6749 §5.2 JSON 4xx", "HTML error page 4xx or redirect to the registered URI", "problem+json 4xx", "problem+json 4xx with Bearer challenge", "server 4xx for malformed HTTP", "catch-all 4xx", "RFC 7009 §2.2 200 no-op"}[e]
}

// badRow is one malformed request and what it must get.
type badRow struct {
	class string // the class of malformation
	name  string // the endpoint and the variant
	// req builds the raw request: method, target, extra header lines
	// (each without CRLF) and body; the Host, Content-Length and
	// Connection: close lines are added unless the row sets them.
	req  func(c *badCtx) rawReq
	want expect
	// status, when non-zero, is the exact status required.
	status int
	// code, when set, is the error code required (OAuth JSON "error",
	// or the challenge's error attribute on API routes).
	code string
	// upstreamUntouched: the upstream must receive nothing.
	upstreamUntouched bool
	// check, when set, asserts more of the answer.
	check func(t *testing.T, c *badCtx, r *rawResp)
}

type rawReq struct {
	method, target string
	headers        []string
	body           string
	// noLength leaves Content-Length out (the row frames the body itself).
	noLength bool
}

// badCtx is what rows build their requests from.
type badCtx struct {
	gw     *gateway
	up     *upstream
	access string // a valid access token with every scope
}

func (c *badCtx) host() string { return fmt.Sprintf("localhost:%d", c.gw.port) }

// rawResp is one answer as read off the wire.
type rawResp struct {
	desc   string
	status int
	header http.Header
	body   []byte
}

func (r *rawResp) String() string {
	b := r.body
	if len(b) > 1500 {
		b = append(b[:1500:1500], "…"...)
	}
	return fmt.Sprintf("%s\n→ %d\n%s\n%s", r.desc, r.status, headerString(r.header), b)
}

// validAuthorizeQuery is a correct authorization request of the demo
// client, with the given parameters replaced (an empty value keeps the
// parameter with an empty value; delete with del).
func validAuthorizeQuery(set map[string]string, del ...string) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {"profile:read"},
		"state":                 {"st4te-value"},
		"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		"code_challenge_method": {"S256"},
	}
	for k, v := range set {
		q.Set(k, v)
	}
	for _, k := range del {
		q.Del(k)
	}
	return q.Encode()
}

func get(target string, headers ...string) func(*badCtx) rawReq {
	return func(*badCtx) rawReq { return rawReq{method: "GET", target: target, headers: headers} }
}

func post(target, contentType, body string, headers ...string) func(*badCtx) rawReq {
	return func(*badCtx) rawReq {
		h := append([]string(nil), headers...)
		if contentType != "" {
			h = append(h, "Content-Type: "+contentType)
		}
		return rawReq{method: "POST", target: target, headers: h, body: body}
	}
}

// withToken is req with the valid access token in the Authorization header.
func withToken(method, target string, headers []string, body string) func(*badCtx) rawReq {
	return func(c *badCtx) rawReq {
		h := append([]string{"Authorization: Bearer " + c.access}, headers...)
		return rawReq{method: method, target: target, headers: h, body: body}
	}
}

const formCT = "application/x-www-form-urlencoded"

var (
	clientCreds = "client_id=" + clientID + "&client_secret=" + clientSecret
	basicHeader = "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(clientID+":"+clientSecret))
	// bigBody is far beyond the OAuth endpoints' 64 KiB body limit and
	// the API routes' 1 MiB form limit.
	bigBody = "grant_type=" + strings.Repeat("a", 3<<20) // bigHeader is large but under the server's header limit (Caddy's
	// default max_header_size, 16 KiB, well under Go's 1 MB default);
	// hugeHeader is beyond both.
	bigHeader  = "X-Padding: " + strings.Repeat("p", 12<<10)
	hugeHeader = "X-Padding: " + strings.Repeat("p", 1200<<10)
)

// formActionIs checks that an HTML page's forms post back to the
// endpoint's own clean path: a form action taken from a raw, un-cleaned
// request path ("//evil.example/..") would send the user's password to
// another origin.
func formActionIs(path string) func(t *testing.T, c *badCtx, r *rawResp) {
	return func(t *testing.T, c *badCtx, r *rawResp) {
		t.Helper()
		for _, a := range formActions(r.body) {
			if a != path {
				t.Errorf("a form posts to %q, want the endpoint's clean path %q:\n%s", a, path, r)
			}
		}
	}
}

func formActions(body []byte) []string {
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	var out []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.DataAtom == atom.Form {
			out = append(out, attr(n, "action"))
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch)
		}
	}
	walk(doc)
	return out
}

// identityForwarded checks that a request the gateway forwarded carried
// X-Legacy-User: alice, set by the gateway (README tollgate_protect: the
// upstream is told who the user is).
func identityForwarded(t *testing.T, c *badCtx, r *rawResp) {
	t.Helper()
	if r.status >= 400 {
		return
	}
	for _, u := range c.up.since(0) {
		if strings.Contains(u.String(), "X-Badinput-Marker") {
			if v := u.Header.Values("X-Legacy-User"); len(v) != 1 || v[0] != username {
				t.Errorf("answered %d and the upstream got X-Legacy-User %q, want [%q]: a client's Connection header removed the identity the gateway set\n%s", r.status, v, username, u)
			}
		}
	}
}

// servedOrRefused lets a row be answered by the route the cleaned path
// names (200, with the upstream paths checked for every row) as well as
// refused; only a 5xx or another status fails it.
func servedOrRefused(t *testing.T, c *badCtx, r *rawResp) {
	t.Helper()
	if r.status != http.StatusOK && (r.status < 400 || r.status > 499) {
		t.Errorf("want 200 from the named route or a 4xx:\n%s", r)
	}
}

func badInputRows() []badRow {
	authz := "/oauth/authorize?"
	var rows []badRow
	add := func(r ...badRow) { rows = append(rows, r...) }

	// --- /oauth/authorize GET: pages until client and redirect URI are
	// trusted, then redirects to the registered URI only.
	add(
		badRow{class: "repeated parameter", name: "authorize client_id twice", req: get(authz + validAuthorizeQuery(nil) + "&client_id=" + clientID), want: wantPage, status: 400},
		badRow{class: "repeated parameter", name: "authorize redirect_uri twice, second evil", req: get(authz + validAuthorizeQuery(nil) + "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"), want: wantPage, status: 400},
		badRow{class: "repeated parameter", name: "authorize state twice", req: get(authz + validAuthorizeQuery(nil) + "&state=other"), want: wantPage, code: "invalid_request"},
		badRow{class: "repeated parameter", name: "authorize scope twice", req: get(authz + validAuthorizeQuery(nil) + "&scope=seatime%3Aread"), want: wantPage, code: "invalid_request"},
		badRow{class: "empty value", name: "authorize empty client_id", req: get(authz + validAuthorizeQuery(map[string]string{"client_id": ""})), want: wantPage, status: 400},
		badRow{class: "empty value", name: "authorize every parameter empty", req: get(authz + "response_type=&client_id=&redirect_uri=&scope=&state=&code_challenge=&code_challenge_method="), want: wantPage, status: 400},
		badRow{class: "empty value", name: "authorize empty code_challenge", req: get(authz + validAuthorizeQuery(map[string]string{"code_challenge": ""})), want: wantPage, code: "invalid_request"},
		badRow{class: "invalid UTF-8", name: "authorize client_id %ff", req: get(authz + validAuthorizeQuery(map[string]string{"client_id": "\xff" + clientID})), want: wantPage, status: 400},
		badRow{class: "invalid UTF-8", name: "authorize scope %ff", req: get(authz + validAuthorizeQuery(map[string]string{"scope": "profile:read \xff"})), want: wantPage, code: "invalid_scope"},
		badRow{class: "NUL byte", name: "authorize client_id %00", req: get(authz + validAuthorizeQuery(map[string]string{"client_id": clientID + "\x00"})), want: wantPage, status: 400},
		badRow{class: "NUL byte", name: "authorize redirect_uri %00", req: get(authz + validAuthorizeQuery(map[string]string{"redirect_uri": redirectURI + "\x00"})), want: wantPage, status: 400},
		badRow{class: "malformed escape", name: "authorize query with %zz", req: get(authz + "client_id=%zz&redirect_uri=" + url.QueryEscape(redirectURI)), want: wantPage, status: 400},
		badRow{class: "CRLF to Location", name: "authorize CRLF in state of a redirected error", req: get(authz + validAuthorizeQuery(map[string]string{"state": "x\r\nSet-Cookie: injected=1", "response_type": "token"})), want: wantPage, code: "unsupported_response_type",
			check: func(t *testing.T, c *badCtx, r *rawResp) {
				loc, _ := url.Parse(r.header.Get("Location"))
				if loc == nil || loc.Query().Get("state") != "x\r\nSet-Cookie: injected=1" {
					t.Errorf("state must come back percent-encoded and intact (RFC 6749 §4.1.2.1):\n%s", r)
				}
			}},
		badRow{class: "CRLF to Location", name: "authorize CRLF in redirect_uri", req: get(authz + validAuthorizeQuery(map[string]string{"redirect_uri": redirectURI + "\r\nLocation: https://evil.example/"})), want: wantPage, status: 400},
		badRow{class: "CRLF to Location", name: "authorize CRLF in error path (missing challenge)", req: get(authz + validAuthorizeQuery(map[string]string{"state": "\r\n\r\n<html>"}, "code_challenge")), want: wantPage, code: "invalid_request"},
		badRow{class: "open redirect", name: "authorize unregistered redirect_uri with a bad scope", req: get(authz + validAuthorizeQuery(map[string]string{"redirect_uri": "https://evil.example/cb", "scope": "admin"})), want: wantPage, status: 400},
		badRow{class: "oversized query", name: "authorize 10 KB client_id", req: get(authz + "client_id=" + strings.Repeat("c", 10<<10)), want: wantPage, status: 414},
		badRow{class: "oversized query", name: "authorize 900 KB client_id", req: get(authz + "client_id=" + strings.Repeat("c", 900<<10)), want: wantWire, status: 431},
		badRow{class: "oversized header", name: "authorize with a 12 KB header", req: get(authz+validAuthorizeQuery(map[string]string{"client_id": "nope"}), bigHeader), want: wantPage, status: 400},
		badRow{class: "oversized header", name: "authorize with a header beyond 1 MB", req: get(authz+validAuthorizeQuery(nil), hugeHeader), want: wantWire, status: 431},
		badRow{class: "encoded path", name: "authorize at /oauth%2Fauthorize", req: get("/oauth%2Fauthorize?" + validAuthorizeQuery(nil)), want: wantPage, check: formActionIs("/oauth/authorize")},
		badRow{class: "encoded path", name: "authorize at /%2Fevil.example%2F..%2Foauth/authorize", req: get("/%2Fevil.example%2F..%2Foauth/authorize?" + validAuthorizeQuery(nil)), want: wantPage, check: formActionIs("/oauth/authorize")},
		badRow{class: "encoded path", name: "authorize at /oauth/%2e%2e/oauth/authorize", req: get("/oauth/%2e%2e/oauth/authorize?" + validAuthorizeQuery(nil)), want: wantPage, check: formActionIs("/oauth/authorize")},
		badRow{class: "encoded path", name: "authorize at //oauth/authorize", req: get("//oauth/authorize?" + validAuthorizeQuery(nil)), want: wantPage, check: formActionIs("/oauth/authorize")},
		badRow{class: "encoded path", name: "authorize at /oauth//authorize", req: get("/oauth//authorize?" + validAuthorizeQuery(nil)), want: wantPage, check: formActionIs("/oauth/authorize")},
		badRow{class: "unknown method", name: "authorize PROPFIND", req: func(*badCtx) rawReq { return rawReq{method: "PROPFIND", target: authz + validAuthorizeQuery(nil)} }, want: wantPage, status: 405},
		badRow{class: "unknown method", name: "authorize DELETE", req: func(*badCtx) rawReq { return rawReq{method: "DELETE", target: authz + validAuthorizeQuery(nil)} }, want: wantPage, status: 405},
		badRow{class: "invalid method", name: "authorize method with a NUL", req: func(*badCtx) rawReq { return rawReq{method: "G\x00T", target: authz} }, want: wantWire, status: 400},
		badRow{class: "NUL byte", name: "authorize raw NUL in the path", req: get("/oauth/authorize\x00?" + validAuthorizeQuery(nil)), want: wantWire, status: 400},
		badRow{class: "CRLF in header", name: "authorize bare CR inside a header value", req: get(authz+validAuthorizeQuery(nil), "X-Test: a\rInjected: 1"), want: wantWire, status: 400},
		badRow{class: "CRLF in header", name: "authorize header line without a colon", req: get(authz+validAuthorizeQuery(nil), "Injected 1"), want: wantWire, status: 400},
	)

	// --- /oauth/authorize POST: the sign-in and consent forms.
	add(
		badRow{class: "wrong content type", name: "authorize POST text/plain", req: post("/oauth/authorize", "text/plain", "tx=a&csrf=b&username=alice&password=x"), want: wantPage, status: 400},
		badRow{class: "wrong content type", name: "authorize POST no content type", req: post("/oauth/authorize", "", "tx=a&csrf=b"), want: wantPage, status: 400},
		badRow{class: "wrong content type", name: "authorize POST multipart without boundary", req: post("/oauth/authorize", "multipart/form-data", "--x\r\n"), want: wantPage, status: 400},
		badRow{class: "repeated parameter", name: "authorize POST tx twice", req: post("/oauth/authorize", formCT, "tx=a&tx=b&csrf=c&decision=allow"), want: wantPage, status: 400},
		badRow{class: "empty value", name: "authorize POST every field empty", req: post("/oauth/authorize", formCT, "tx=&csrf=&decision=&username=&password="), want: wantPage, status: 400},
		badRow{class: "malformed escape", name: "authorize POST body with %zz", req: post("/oauth/authorize", formCT, "tx=%zz&decision=allow"), want: wantPage, status: 400},
		badRow{class: "invalid UTF-8", name: "authorize POST raw invalid UTF-8 and NUL", req: post("/oauth/authorize", formCT, "tx=\xff\xfe\x00&username=\xc3"), want: wantPage, status: 400},
		badRow{class: "oversized body", name: "authorize POST 3 MB form", req: post("/oauth/authorize", formCT, bigBody), want: wantPage},
		badRow{class: "CRLF to Location", name: "authorize POST decision with CRLF", req: post("/oauth/authorize", formCT, "tx=a&csrf=b&decision=deny%0d%0aLocation:%20https://evil.example/"), want: wantPage, status: 400},
	)

	// --- /oauth/token and /oauth/revoke: RFC 6749 §5.2 JSON.
	for _, ep := range []string{"/oauth/token", "/oauth/revoke"} {
		add(
			badRow{class: "unknown method", name: ep + " GET", req: get(ep), want: wantOAuthJSON, status: 405},
			badRow{class: "unknown method", name: ep + " PUT", req: func(*badCtx) rawReq {
				return rawReq{method: "PUT", target: ep, headers: []string{"Content-Type: " + formCT}, body: clientCreds}
			}, want: wantOAuthJSON, status: 405},
			badRow{class: "unknown method", name: ep + " BREW", req: func(*badCtx) rawReq { return rawReq{method: "BREW", target: ep} }, want: wantOAuthJSON, status: 405},
			badRow{class: "wrong content type", name: ep + " text/plain", req: post(ep, "text/plain", clientCreds+"&token=x&grant_type=refresh_token"), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			badRow{class: "wrong content type", name: ep + " no content type", req: post(ep, "", clientCreds), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			badRow{class: "wrong content type", name: ep + " malformed media type", req: post(ep, "application/x-www-form-urlencoded; ;;=", clientCreds), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			badRow{class: "wrong content type", name: ep + " JSON for a form-only client", req: post(ep, "application/json", `{"client_id":"`+clientID+`","client_secret":"`+clientSecret+`","grant_type":"refresh_token","refresh_token":"x","token":"x"}`), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			badRow{class: "wrong content type", name: ep + " JSON that is not an object", req: post(ep, "application/json", `["client_id"]`), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			badRow{class: "repeated parameter", name: ep + " client_id twice", req: post(ep, formCT, clientCreds+"&client_id="+clientID+"&token=x&grant_type=refresh_token&refresh_token=x"), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			badRow{class: "repeated parameter", name: ep + " JSON key twice", req: post(ep, "application/json", `{"client_id":"a","client_id":"`+clientID+`"}`), want: wantOAuthJSON},
			badRow{class: "empty value", name: ep + " every parameter empty", req: post(ep, formCT, "grant_type=&code=&client_id=&client_secret=&token="), want: wantOAuthJSON, status: 401, code: "invalid_client"},
			badRow{class: "malformed escape", name: ep + " body with %zz", req: post(ep, formCT, clientCreds+"&token=%zz&grant_type=%zz"), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			badRow{class: "invalid UTF-8", name: ep + " raw invalid UTF-8 and NUL values", req: post(ep, formCT, clientCreds+"&grant_type=refresh_token&refresh_token=\xff\x00&token=\xff\x00"), want: map[bool]expect{true: wantRevokeNoop, false: wantOAuthJSON}[ep == "/oauth/revoke"]},
			badRow{class: "oversized body", name: ep + " 3 MB form", req: post(ep, formCT, bigBody+"&"+clientCreds), want: wantOAuthJSON, code: "invalid_request"},
			badRow{class: "oversized body", name: ep + " 3 MB JSON", req: post(ep, "application/json", `{"client_id":"`+strings.Repeat("a", 3<<20)+`"}`), want: wantOAuthJSON, code: "invalid_request"},
			badRow{class: "oversized header", name: ep + " with a 12 KB header", req: post(ep, formCT, clientCreds+"&grant_type=refresh_token&refresh_token=x&token=x", bigHeader), want: map[bool]expect{true: wantRevokeNoop, false: wantOAuthJSON}[ep == "/oauth/revoke"]},
			badRow{class: "oversized header", name: ep + " with a header beyond 1 MB", req: post(ep, formCT, clientCreds, hugeHeader), want: wantWire, status: 431},
			badRow{class: "client credentials", name: ep + " Basic that is not base64", req: post(ep, formCT, "grant_type=refresh_token&refresh_token=x&token=x", "Authorization: Basic !!!not base64"), want: wantOAuthJSON, status: 401, code: "invalid_client"},
			badRow{class: "client credentials", name: ep + " Basic with a bad percent-escape", req: post(ep, formCT, "grant_type=refresh_token&refresh_token=x&token=x", "Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte(clientID+":%zz"))), want: wantOAuthJSON, status: 401, code: "invalid_client",
				check: func(t *testing.T, c *badCtx, r *rawResp) {
					if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
						t.Errorf("invalid_client after Basic needs WWW-Authenticate: Basic (RFC 6749 §5.2):\n%s", r)
					}
				}},
			badRow{class: "client credentials", name: ep + " Basic and client_secret together", req: post(ep, formCT, "client_secret="+clientSecret+"&grant_type=refresh_token&refresh_token=x&token=x", basicHeader), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			// RFC 9110 §11.6.2: Authorization carries one credential, not a
			// list; two are ambiguous client authentication (RFC 6749 §2.3).
			badRow{class: "client credentials", name: ep + " two Authorization headers", req: post(ep, formCT, "grant_type=refresh_token&refresh_token=x&token=x", basicHeader, basicHeader), want: wantOAuthJSON, status: 400, code: "invalid_request"},
			badRow{class: "encoded path", name: ep + " with %2F", req: post(strings.Replace(ep, "/oauth/", "/oauth%2F", 1), formCT, clientCreds+"&grant_type=%zz&token=%zz"), want: wantOAuthJSON, status: 400}, // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length;
			// the (empty) chunked body is read and refused.
			badRow{class: "framing", name: ep + " both Content-Length and chunked", req: func(*badCtx) rawReq {
				return rawReq{method: "POST", target: ep, noLength: true, headers: []string{"Content-Type: " + formCT, "Content-Length: 5", "Transfer-Encoding: chunked"}, body: "0\r\n\r\n"}
			}, want: wantOAuthJSON, status: 401, code: "invalid_client"},
		)
	}
	add(
		badRow{class: "invalid token format", name: "/oauth/token code with NUL and invalid UTF-8", req: post("/oauth/token", formCT, clientCreds+"&grant_type=authorization_code&code=tgc_%00%ff&code_verifier="+strings.Repeat("v", 43)+"&redirect_uri="+url.QueryEscape(redirectURI)), want: wantOAuthJSON, status: 400, code: "invalid_grant"},
		badRow{class: "invalid token format", name: "/oauth/token code_verifier with CRLF", req: post("/oauth/token", formCT, clientCreds+"&grant_type=authorization_code&code=tgc_x&code_verifier=%0d%0a"+strings.Repeat("v", 43)), want: wantOAuthJSON, status: 400, code: "invalid_request"},
		badRow{class: "unsupported value", name: "/oauth/token unknown grant_type", req: post("/oauth/token", formCT, clientCreds+"&grant_type=password%00"), want: wantOAuthJSON, status: 400, code: "unsupported_grant_type"},
	)

	// --- /oauth/userinfo: a Bearer-protected resource (problem+json).
	ui := "/oauth/userinfo"
	add(
		badRow{class: "unknown method", name: "userinfo DELETE", req: func(*badCtx) rawReq { return rawReq{method: "DELETE", target: ui} }, want: wantProblemJSON, status: 405},
		badRow{class: "unknown method", name: "userinfo BREW with a token", req: withToken("BREW", ui, nil, ""), want: wantProblemJSON, status: 405},
		badRow{class: "missing token", name: "userinfo without a token", req: get(ui), want: wantChallenged, status: 401},
		badRow{class: "repeated parameter", name: "userinfo two Authorization headers", req: withToken("GET", ui, []string{"Authorization: Bearer x"}, ""), want: wantChallenged, status: 400, code: "invalid_request"},
		badRow{class: "invalid token format", name: "userinfo Bearer with inner space", req: get(ui, "Authorization: Bearer tga_a b"), want: wantChallenged},
		badRow{class: "empty value", name: "userinfo Bearer without token", req: get(ui, "Authorization: Bearer "), want: wantChallenged, status: 400},
		badRow{class: "invalid UTF-8", name: "userinfo Bearer with invalid UTF-8", req: get(ui, "Authorization: Bearer tga_\xff\xfe"), want: wantChallenged, status: 401, code: "invalid_token"},
		badRow{class: "NUL byte", name: "userinfo raw NUL in the Authorization header", req: get(ui, "Authorization: Bearer tga_\x00"), want: wantWire, status: 400},
		badRow{class: "oversized header", name: "userinfo 12 KB Authorization header", req: get(ui, "Authorization: Bearer "+strings.Repeat("A", 12<<10)), want: wantChallenged, status: 401, code: "invalid_token"},
		badRow{class: "oversized header", name: "userinfo header beyond 1 MB", req: get(ui, hugeHeader), want: wantWire, status: 431},
		badRow{class: "token elsewhere", name: "userinfo token in the query only", req: get(ui + "?access_token=tga_x"), want: wantChallenged},
	)

	// --- /oauth/connections: the signed-in user's page (HTML).
	cn := "/oauth/connections"
	add(
		badRow{class: "unknown method", name: "connections PUT", req: func(*badCtx) rawReq { return rawReq{method: "PUT", target: cn} }, want: wantPage, status: 405},
		badRow{class: "unknown method", name: "connections BREW", req: func(*badCtx) rawReq { return rawReq{method: "BREW", target: cn} }, want: wantPage, status: 405},
		badRow{class: "wrong content type", name: "connections POST text/plain", req: post(cn, "text/plain", "csrf=x&client_id="+clientID), want: wantPage},
		badRow{class: "repeated parameter", name: "connections POST client_id twice", req: post(cn, formCT, "csrf=x&client_id="+clientID+"&client_id=other"), want: wantPage},
		badRow{class: "malformed escape", name: "connections POST with %zz", req: post(cn, formCT, "csrf=%zz&client_id="+clientID), want: wantPage},
		badRow{class: "oversized body", name: "connections POST 3 MB form", req: post(cn, formCT, bigBody), want: wantPage},
		badRow{class: "invalid UTF-8", name: "connections POST raw invalid UTF-8 and NUL", req: post(cn, formCT, "csrf=\xff\x00&client_id=\xc3"), want: wantPage},
		badRow{class: "encoded path", name: "connections at /%2Fevil.example%2F..%2Foauth/connections", req: get("/%2Fevil.example%2F..%2Foauth/connections"), want: wantPage, check: formActionIs("/oauth/connections")},
		badRow{class: "encoded path", name: "connections at //oauth/connections", req: get("//oauth/connections"), want: wantPage, check: formActionIs("/oauth/connections")},
	)

	// --- API routes (tollgate_protect): problem+json, upstream untouched.
	for _, rt := range apiRoutes {
		p := rt.path
		add(
			badRow{class: "missing token", name: p + " without a token", req: get(p), want: wantChallenged, status: 401, upstreamUntouched: true},
			badRow{class: "invalid token format", name: p + " Bearer with inner space", req: get(p, "Authorization: Bearer tga_a b"), want: wantChallenged, upstreamUntouched: true},
			badRow{class: "repeated parameter", name: p + " two Authorization headers", req: withToken("GET", p, []string{"Authorization: Bearer x"}, ""), want: wantChallenged, status: 400, code: "invalid_request", upstreamUntouched: true},
			badRow{class: "token elsewhere", name: p + " token also in access_token query", req: withToken("GET", p+"?access_token=x", nil, ""), want: wantChallenged, status: 400, code: "invalid_request", upstreamUntouched: true},
			badRow{class: "token elsewhere", name: p + " token also in access%5Ftoken query", req: withToken("GET", p+"?access%5Ftoken=x", nil, ""), want: wantChallenged, status: 400, code: "invalid_request", upstreamUntouched: true},
			badRow{class: "token elsewhere", name: p + " token also in a form body with %zz", req: withToken("POST", p, []string{"Content-Type: " + formCT}, "access_token=x&x=%zz"), want: wantProblemJSON, upstreamUntouched: true},
			badRow{class: "unknown method", name: p + " DELETE with a good token", req: withToken("DELETE", p, nil, ""), want: wantProblemJSON, status: 405, upstreamUntouched: true},
			badRow{class: "unknown method", name: p + " PUT with a good token", req: withToken("PUT", p, []string{"Content-Type: application/json"}, `{"role":"captain"}`), want: wantProblemJSON, status: 405, upstreamUntouched: true},
			badRow{class: "unknown method", name: p + " BREW with a good token", req: withToken("BREW", p, nil, ""), want: wantProblemJSON, status: 405, upstreamUntouched: true},
			badRow{class: "oversized body", name: p + " 3 MB form body with a good token", req: withToken("POST", p, []string{"Content-Type: " + formCT}, bigBody), want: wantProblemJSON, upstreamUntouched: true},
			badRow{class: "oversized header", name: p + " header beyond 1 MB", req: withToken("GET", p, []string{hugeHeader}, ""), want: wantWire, status: 431, upstreamUntouched: true},
			badRow{class: "hop-by-hop header", name: p + " Connection: X-Legacy-User", req: withToken("GET", p, []string{"Connection: X-Legacy-User", "X-Badinput-Marker: 1"}, ""), want: wantProblemJSON, check: identityForwarded},
			badRow{class: "encoded path", name: p + " with %2F", req: withToken("GET", strings.Replace(p, "/me", "%2Fme", 1), nil, ""), want: wantProblemJSON, check: servedOrRefused},
			badRow{class: "encoded path", name: p + " with %2e%2e", req: withToken("GET", "/v1/x/%2e%2e"+strings.TrimPrefix(p, "/v1"), nil, ""), want: wantProblemJSON, check: servedOrRefused},
			badRow{class: "NUL byte", name: p + " raw NUL in the path", req: withToken("GET", p+"\x00", nil, ""), want: wantWire, status: 400, upstreamUntouched: true},
			badRow{class: "invalid UTF-8", name: p + " raw invalid UTF-8 in the path", req: withToken("GET", p+"\xff", nil, ""), want: wantNotRouted, upstreamUntouched: true},
		)
	}
	return rows
}

// TestBadInputCatalogue runs every row against the real binary on both
// stores, then checks a full flow still works on the same process.
func TestBadInputCatalogue(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		c := &badCtx{gw: gw, up: up, access: tok.AccessToken}
		for _, row := range badInputRows() {
			t.Run(row.class+"/"+row.name, func(t *testing.T) {
				n := up.count()
				r := sendRaw(t, c, row.req(c))
				checkBadAnswer(t, c, row, r)
				if row.upstreamUntouched {
					if got := up.since(n); len(got) != 0 {
						t.Errorf("answered %d but the upstream received %s %s: a refused request must not reach it\n%s", r.status, got[0].Method, got[0].Path, r)
					}
				}
				for _, u := range up.since(n) {
					if !legacyPath.MatchString(u.Path) || legacyPath.FindStringSubmatch(u.Path)[1] != username {
						t.Errorf("upstream received %s %s, outside the rewritten /legacy/users/%s/… paths", u.Method, u.Path, username)
					}
				}
				if row.check != nil {
					row.check(t, c, r)
				}
			})
		}
		// Still serving: a whole new authorization, token and API call.
		t.Run("full flow afterwards", func(t *testing.T) {
			tok, _ := obtainTokens(t, gw, "profile:read")
			r := gw.call(t, "/v1/me", bearer(tok.AccessToken), nil)
			if r.status != http.StatusOK {
				t.Fatalf("after the catalogue: want 200 from /v1/me:\n%s", r)
			}
		})
	})
}

// sendRaw writes the request bytes on a new connection and reads one
// answer. The body is written concurrently: a server refusing an oversized
// body may answer before reading it all.
func sendRaw(t *testing.T, c *badCtx, rq rawReq) *rawResp {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", rq.method, rq.target, c.host())
	for _, h := range rq.headers {
		b.WriteString(h + "\r\n")
	}
	if !rq.noLength && (rq.body != "" || rq.method == "POST" || rq.method == "PUT") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(rq.body))
	}
	b.WriteString("\r\n")
	b.WriteString(rq.body)
	desc := describeRaw(rq)

	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.gw.port), 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", desc, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() { _, _ = io.WriteString(conn, b.String()) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: no HTTP answer: %v", desc, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return &rawResp{desc: desc, status: resp.StatusCode, header: resp.Header, body: body}
}

// describeRaw names a request for failure messages, shortened and with
// any bearer token or long value elided.
func describeRaw(rq rawReq) string {
	short := func(s string) string {
		if len(s) > 200 {
			return fmt.Sprintf("%s…(%d bytes)", s[:200], len(s))
		}
		return s
	}
	d := fmt.Sprintf("%q %q", rq.method, short(rq.target))
	for _, h := range rq.headers {
		if strings.HasPrefix(h, "Authorization: Bearer tga_") && len(h) > 40 {
			h = "Authorization: Bearer tga_…"
		}
		d += fmt.Sprintf(" [%q]", short(h))
	}
	if rq.body != "" {
		d += fmt.Sprintf(" body %q", short(rq.body))
	}
	return d
}

// checkBadAnswer asserts the universal properties and the row's format.
func checkBadAnswer(t *testing.T, c *badCtx, row badRow, r *rawResp) {
	t.Helper()
	if r.status >= 500 {
		t.Fatalf("want %s, got a server error:\n%s", row.want, r)
	}
	for _, loc := range r.header.Values("Location") {
		if strings.ContainsAny(loc, "\r\n") {
			t.Fatalf("Location carries CR/LF:\n%s", r)
		}
	}
	if len(r.header.Values("Set-Cookie")) > 0 {
		for _, sc := range r.header.Values("Set-Cookie") {
			if strings.Contains(sc, "injected") {
				t.Fatalf("a header was injected:\n%s", r)
			}
		}
	}
	if row.status != 0 && r.status != row.status && !(row.want == wantPage && isRegisteredRedirect(r)) {
		t.Errorf("want HTTP %d (%s):\n%s", row.status, row.want, r)
	}
	ct := r.header.Get("Content-Type")
	switch row.want {
	case wantOAuthJSON:
		if r.status < 400 || r.status > 499 {
			t.Fatalf("want a 4xx RFC 6749 §5.2 error:\n%s", r)
		}
		if !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("Content-Type %q, want application/json (RFC 6749 §5.2):\n%s", ct, r)
		}
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil || m["error"] == nil || m["error"] == "" {
			t.Fatalf("body is not {\"error\": …} (RFC 6749 §5.2):\n%s", r)
		}
		if row.code != "" && m["error"] != row.code {
			t.Errorf("error = %v, want %q:\n%s", m["error"], row.code, r)
		}
	case wantPage:
		if isRegisteredRedirect(r) {
			loc, _ := url.Parse(r.header.Get("Location"))
			if row.code != "" && loc.Query().Get("error") != row.code {
				t.Errorf("redirected with error=%q, want %q:\n%s", loc.Query().Get("error"), row.code, r)
			}
			return
		}
		if loc := r.header.Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err != nil || u.Host != "" || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, "/\\") {
				t.Fatalf("redirected to %q: neither the registered redirect URI nor this origin:\n%s", loc, r)
			}
		}
		if row.code != "" {
			t.Errorf("want a redirect to the registered URI with error=%s (RFC 6749 §4.1.2.1):\n%s", row.code, r)
		}
		if r.status < 400 || r.status > 499 {
			if row.check == nil {
				t.Errorf("want a 4xx error page or a redirect to the registered URI:\n%s", r)
			}
			return
		}
		if !strings.HasPrefix(ct, "text/html") {
			t.Errorf("Content-Type %q, want an HTML error page:\n%s", ct, r)
		}
	case wantProblemJSON, wantChallenged:
		if r.status < 400 || r.status > 499 {
			if row.check == nil {
				t.Fatalf("want a 4xx problem document:\n%s", r)
			}
			return
		}
		if !strings.HasPrefix(ct, "application/problem+json") {
			t.Fatalf("Content-Type %q, want application/problem+json (RFC 9457):\n%s", ct, r)
		}
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("problem body is not JSON (RFC 9457 §3):\n%s", r)
		}
		if s, _ := m["status"].(float64); int(s) != r.status {
			t.Errorf("problem status %v, want %d (RFC 9457 §3.1.3):\n%s", m["status"], r.status, r)
		}
		ch := r.header.Get("WWW-Authenticate")
		if row.want == wantChallenged || r.status == 401 {
			if !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `realm="`) {
				t.Errorf("WWW-Authenticate %q, want a Bearer challenge (RFC 6750 §3):\n%s", ch, r)
			}
		}
		if row.code != "" && !strings.Contains(ch, `error="`+row.code+`"`) {
			t.Errorf("WWW-Authenticate %q, want error=%q (RFC 6750 §3.1):\n%s", ch, row.code, r)
		}
		if r.status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
			t.Errorf("405 without Allow (RFC 9110 §15.5.6):\n%s", r)
		}
	case wantRevokeNoop:
		if r.status != http.StatusOK || len(bytes.TrimSpace(r.body)) != 0 {
			t.Errorf("want 200 with an empty body (RFC 7009 §2.2):\n%s", r)
		}
	case wantWire, wantNotRouted:
		if r.status < 400 || r.status > 499 {
			t.Fatalf("want a 4xx (%s):\n%s", row.want, r)
		}
	}
}

// isRegisteredRedirect reports whether r redirects to the registered
// redirect URI of the demo client, exactly (scheme, host and path).
func isRegisteredRedirect(r *rawResp) bool {
	if r.status < 300 || r.status > 399 {
		return false
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		return false
	}
	target := *loc
	target.RawQuery = ""
	return target.String() == redirectURI
}
