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
