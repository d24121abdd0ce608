package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// headerWriter is a ResponseWriter that keeps the status and headers and
// drops the body, so that the benchmark measures the handler, not a
// recorder.
type headerWriter struct {
	h    http.Header
	code int
}

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *headerWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkProtect is the API hot path in process, as the example's
// /v1/me route runs it: a GET with a bearer token on a route that needs a
// scope, with a budget (so the rate-limit headers are written) and an
// identity header, on the memory store, handing on to a next handler that
// answers 200. allocs/op is the handler's own, the request being reused.
func BenchmarkProtect(b *testing.B) {
	a, _ := newTestApp(b)
	a.clients["partner"].limit = store.Limit{Count: 1 << 40, Window: time.Hour}
	tr := issue(b, a, "partner", testSecret, "profile:read")
	p := newProtect(b, a, Protect{Scopes: []string{"profile:read"}, UserHeader: "X-Legacy-User", Methods: []string{"GET", "HEAD"}})

	auth := []string{"Bearer " + tr.AccessToken}
	r := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := &headerWriter{h: http.Header{}}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	b.ReportAllocs()
	for b.Loop() {
		r.Header["Authorization"] = auth
		clear(w.h)
		w.code = 0
		if err := p.ServeHTTP(w, r, next); err != nil || w.code != http.StatusOK {
			b.Fatalf("status %d, error %v", w.code, err)
		}
	}
}
