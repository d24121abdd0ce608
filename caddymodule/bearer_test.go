package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// wantProblem checks a refusal on an API route (Protect, UserInfo): an RFC
// 9457 problem document, uncacheable, with the RFC 6750 §3 challenge a
// partner's client library reads. code is the RFC 6750 error code ("" for
// a request that sent no token, whose challenge names only the realm,
// §3.1); scope is the scope attribute the challenge must carry.
func wantProblem(t *testing.T, w *httptest.ResponseRecorder, status int, code, scope string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d %s: %s", w.Code, status, code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json (RFC 9457 §3)", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var p problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("body is not a problem document: %v: %s", err, w.Body)
	}
	if p.Type != "about:blank" || p.Title != http.StatusText(status) || p.Status != status || p.Detail == "" || p.Error != code || p.Scope != scope {
		t.Errorf("problem %+v, want about:blank, %q, status %d, a detail, error %q, scope %q", p, http.StatusText(status), status, code, scope)
	}
	challenge := w.Header().Get("WWW-Authenticate")
	switch {
	case status != http.StatusUnauthorized && status != http.StatusForbidden && status != http.StatusBadRequest:
		if challenge != "" {
			t.Errorf("a %d carries WWW-Authenticate %q", status, challenge)
		}
	case code == "":
		if challenge != `Bearer realm="tollgate"` {
			t.Errorf(`WWW-Authenticate %q, want exactly Bearer realm="tollgate" (RFC 6750 §3.1: no error for a request without a token)`, challenge)
		}
	default:
		want := `Bearer realm="tollgate", error="` + code + `", error_description=` + strconv.Quote(p.Detail)
		if scope != "" {
			want += `, scope=` + strconv.Quote(scope)
		}
		if challenge != want {
			t.Errorf("WWW-Authenticate\n%s\nwant\n%s", challenge, want)
		}
	}
	for _, prefix := range []string{oauth.AccessPrefix, oauth.RefreshPrefix} {
		if strings.Contains(w.Body.String(), prefix) || strings.Contains(challenge, prefix) {
			t.Errorf("the refusal repeats a token: %s %s", challenge, w.Body)
		}
	}
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
