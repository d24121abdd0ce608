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
	"github.com/tollgate/tollgate/caddymodule/store/redisstore"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
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
// identity header, handing on to a next handler that answers 200; on the
// memory store, and on Redis once the gateway vouches for the token and
// holds budget (docs/architecture.md §5.2), where a call should cost about
// what it costs on the memory store: no round trip. allocs/op is the
// handler's own, the request being reused.
func BenchmarkProtect(b *testing.B) {
	for _, kind := range []string{"memory", "redis"} {
		b.Run(kind, func(b *testing.B) {
			a, clk := newTestApp(b)
			if kind == "redis" {
				s, err := redisstore.New(storetest.StartRedis(b), clk.Now)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				a.useStore(deadlineStore{st: s, timeout: defaultStoreTimeout})
			}
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
			call := func() {
				r.Header["Authorization"] = auth
				clear(w.h)
				w.code = 0
				if err := p.ServeHTTP(w, r, next); err != nil || w.code != http.StatusOK {
					b.Fatalf("status %d, error %v", w.code, err)
				}
			}
			// Warm up: the token remembered, the subscription up and
			// answering, a lease held.
			for range 3 {
				call()
				time.Sleep(300 * time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				call()
			}
		})
	}
}
