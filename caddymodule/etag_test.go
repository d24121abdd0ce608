package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// serveConditional runs an upstream handler behind the conditional writer
// the way Protect does.
func serveConditional(t *testing.T, inm string, max int, upstream http.HandlerFunc) (*httptest.ResponseRecorder, bool) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/v1/me/sea-time", nil)
	if inm != "" {
		r.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	cw := newConditionalWriter(rec, r, max)
	upstream(cw, r)
	if err := cw.finish(); err != nil {
		t.Fatal(err)
	}
	return rec, cw.notModified
}

func jsonBody(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(body))
	}
}

// DSS partners cache the ETag and send it back as If-None-Match, and a 304
// costs them nothing (docs/partners.md D49, D50).
func TestConditionalGETComputesStrongETagAndAnswers304(t *testing.T) {
	body := `{"total_days":412,"record_updated_at":"2026-11-01T08:00:00Z"}`
	first, nm := serveConditional(t, "", 1<<20, jsonBody(body))
	etag := first.Header().Get("ETag")
	if first.Code != http.StatusOK || nm || first.Body.String() != body {
		t.Fatalf("first answer %d notModified=%v body %q", first.Code, nm, first.Body.String())
	}
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		t.Fatalf("ETag %q is not a strong entity-tag", etag)
	}
	again, nm := serveConditional(t, etag, 1<<20, jsonBody(body))
	if again.Code != http.StatusNotModified || !nm || again.Body.Len() != 0 {
		t.Fatalf("replayed ETag: %d notModified=%v body %q", again.Code, nm, again.Body.String())
	}
	if again.Header().Get("ETag") != etag || again.Header().Get("Content-Type") != "" {
		t.Fatalf("304 headers: %v", again.Header())
	}
	changed, nm := serveConditional(t, etag, 1<<20, jsonBody(body+" "))
	if changed.Code != http.StatusOK || nm || changed.Header().Get("ETag") == etag {
		t.Fatalf("changed body kept the old ETag or got 304")
	}
}

func TestConditionalGETUsesTheUpstreamsETag(t *testing.T) {
	up := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("ETag", `W/"v7"`)
		_, _ = w.Write([]byte("x"))
	}
	rec, nm := serveConditional(t, `"v6", "v7"`, 1<<20, up)
	if rec.Code != http.StatusNotModified || !nm {
		t.Fatalf("weak comparison of If-None-Match failed: %d", rec.Code)
	}
	rec, nm = serveConditional(t, `"v6"`, 1<<20, up)
	if rec.Code != http.StatusOK || nm || rec.Body.String() != "x" {
		t.Fatalf("non-matching tag: %d %q", rec.Code, rec.Body.String())
	}
}

func TestConditionalGETStreamsLargeBodiesWithoutETag(t *testing.T) {
	big := strings.Repeat("a", 100)
	rec, nm := serveConditional(t, "*", 10, jsonBody(big))
	if rec.Code != http.StatusOK || nm || rec.Body.String() != big || rec.Header().Get("ETag") != "" {
		t.Fatalf("large body: %d notModified=%v len %d etag %q", rec.Code, nm, rec.Body.Len(), rec.Header().Get("ETag"))
	}
}

func TestConditionalGETLeavesErrorsAlone(t *testing.T) {
	up := func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("nope"))
	}
	rec, nm := serveConditional(t, "*", 1<<20, up)
	if rec.Code != http.StatusNotFound || nm || rec.Body.String() != "nope" {
		t.Fatalf("error answer changed: %d %q", rec.Code, rec.Body.String())
	}
}
