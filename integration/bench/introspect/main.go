// Command introspect is the token-introspection service of the gateway
// benchmark's forward_auth variant (go run ./integration/bench starts it; it
// is not meant to be run by hand). It stands for what teams build without
// Tollgate: Caddy's forward_auth asks it about every request, and it answers
// from Redis.
//
// GET /introspect?scope=<s> with "Authorization: Bearer <token>" costs one
// Redis GET of introspect:token:<hex SHA-256 of the token>, whose value is a
// JSON record {"sub","client_id","scope","exp"} seeded by the benchmark. The
// answer is 200 with X-User-Id and X-Client-Id when the record exists, has
// not expired and carries the scope; 401 when not (403 for a missing scope);
// 503 when Redis fails. It does no rate limiting: it does strictly less work
// per request than Tollgate's check, which also counts the call against the
// grant's budget.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix is the Redis key prefix of token records; the benchmark seeds
// KeyPrefix + hex(SHA-256(token)).
const KeyPrefix = "introspect:token:"

type record struct {
	Subject  string `json:"sub"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Expires  int64  `json:"exp"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	// go-redis's own default is 10 per GOMAXPROCS; the benchmark passes the
	// same figure it gives Tollgate's store, so both sides get one pool size.
	pool := flag.Int("pool", 10*runtime.GOMAXPROCS(0), "Redis connection pool size")
	flag.Parse()

	rdb := redis.NewClient(&redis.Options{
		Addr:         *redisAddr,
		PoolSize:     *pool,
		MinIdleConns: min(*pool, 8),
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	})
	defer rdb.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := rdb.Ping(r.Context()).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		introspect(w, r, rdb)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	log.Fatal(srv.Serve(ln))
}

func introspect(w http.ResponseWriter, r *http.Request, rdb *redis.Client) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		deny(w, http.StatusUnauthorized, "")
		return
	}
	sum := sha256.Sum256([]byte(tok))
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	raw, err := rdb.Get(ctx, KeyPrefix+hex.EncodeToString(sum[:])).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		deny(w, http.StatusUnauthorized, "invalid_token")
		return
	case err != nil:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "token store unavailable", http.StatusServiceUnavailable)
		return
	}
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Expires <= time.Now().Unix() {
		deny(w, http.StatusUnauthorized, "invalid_token")
		return
	}
	if need := r.URL.Query().Get("scope"); need != "" && !hasScope(rec.Scope, need) {
		deny(w, http.StatusForbidden, "insufficient_scope")
		return
	}
	h := w.Header()
	h.Set("X-User-Id", rec.Subject)
	h.Set("X-Client-Id", rec.ClientID)
	w.WriteHeader(http.StatusOK)
}

func hasScope(have, need string) bool {
	for _, s := range strings.Fields(have) {
		if s == need {
			return true
		}
	}
	return false
}

func deny(w http.ResponseWriter, status int, code string) {
	challenge := `Bearer realm="introspect"`
	if code != "" {
		challenge += `, error="` + code + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	w.WriteHeader(status)
}
