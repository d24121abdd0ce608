// Command upstream is the small legacy API the gateway benchmark proxies to
// (go run ./integration/bench starts it; it is not meant to be run by hand).
//
// It answers every path with a ~200-byte JSON document naming the user the
// gateway vouched for, like the fake legacy API of Caddyfile.example: the
// X-User-Id header the minimal variants set, else the id in a path
// /legacy/users/<id>/… that Caddyfile.example's routes rewrite to, else
// "anonymous". It runs as its own process, not inside
// the benchmark driver, so that its CPU time is measured separately from the
// gateway's and the driver's, and so that it keeps its own Go scheduler and
// garbage collector, as a real upstream would.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()

	const (
		head = `{"user_id":"`
		tail = `","resource":"profile","name":"Alice Mariner","role":"Chief Officer",` +
			`"country":"GB","picture":"https://example.com/avatars/alice.png",` +
			`"record_updated_at":"2026-11-01T08:00:00Z"}`
	)
	// A bare handler rather than a ServeMux, which would redirect the
	// example-noauth variant's /legacy/users//profile (no user id: no
	// tollgate_protect set one) to a cleaned path.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		user := r.Header.Get("X-User-Id")
		if user == "" {
			if rest, ok := strings.CutPrefix(r.URL.Path, "/legacy/users/"); ok {
				user, _, _ = strings.Cut(rest, "/")
			}
		}
		if user == "" {
			user = "anonymous"
		}
		body := make([]byte, 0, len(head)+len(user)+len(tail))
		body = append(append(append(body, head...), user...), tail...)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		_, _ = w.Write(body)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Longer than the proxies' keepalive (90s), so that the proxy, not
		// the upstream, decides when an idle pooled connection closes.
		IdleTimeout: 5 * time.Minute,
	}
	log.Fatal(srv.Serve(ln))
}
