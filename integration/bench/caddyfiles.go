package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The variants, in the order each round runs them.
const (
	varPlain         = "plain"
	varPlainDefault  = "plain-default"
	varExampleNoAuth = "example-noauth"
	varMemory        = "tollgate-memory"
	varRedis         = "tollgate-redis"
	varCluster       = "tollgate-cluster"
	varExampleMemory = "example-memory"
	varExampleRedis  = "example-redis"
	varForwardAuth   = "forward_auth"
)

var allVariants = []string{
	varPlain, varPlainDefault, varExampleNoAuth,
	varMemory, varRedis, varCluster,
	varExampleMemory, varExampleRedis,
	varForwardAuth,
}

// isTollgate: the route is behind tollgate_protect, so the token comes from
// the real flow and every answer carries the budget's headers.
func isTollgate(v string) bool {
	switch v {
	case varMemory, varRedis, varCluster, varExampleMemory, varExampleRedis:
		return true
	}
	return false
}

// isExample: the gateway runs the repository's Caddyfile.example.
func isExample(v string) bool {
	return v == varExampleNoAuth || v == varExampleMemory || v == varExampleRedis
}

// usesRedis names the Redis the variant's requests reach: "redis" (the
// single server), "cluster" or "".
func usesRedis(v string) string {
	switch v {
	case varRedis, varExampleRedis, varForwardAuth:
		return "redis"
	case varCluster:
		return "cluster"
	}
	return ""
}

// Demo identities, as in Caddyfile.example.
const (
	clientID     = "ywc_a1b2c3d4"
	clientSecret = "demo-client-secret"
	redirectURI  = "http://localhost:9999/callback"
	username     = "alice"
	password     = "alice-password"
	// bcrypt of alice-password, as in Caddyfile.example.
	passwordHash = "$2a$10$wBjEvrqzBuuDFs3f1JKfKe6GO7ZdvYMnbX7FeMXzk26WIYEyrp9li"

	// scope is what the benchmarked route requires.
	scope = "profile:read"
	// apiPath is the benchmarked route, the same in every variant.
	apiPath = "/v1/me"
	// rateLimit is high enough never to trigger, so that the budget is
	// counted on every call (the real hot path) but never refuses one.
	rateLimit = "1000000000/1h"
	// storeTimeout replaces the default 250ms in every Tollgate variant:
	// on a machine where another program takes the gateway's CPU for a
	// quarter of a second, store calls would time out, answer 503 and void
	// the run; on a quiet machine no store call comes near either bound,
	// and a stall still shows, in p99.
	storeTimeout = "2s"
	// bytesUser is the user whose grant's Redis footprint is measured:
	// nobody else signs in as them, so their subject index holds that one
	// grant.
	bytesUser = "bytes"
)

// workerUser is the user flow worker i signs in as: one grant per worker,
// so that no worker's authorizations push another's pair out of a grant
// (a grant holds at most four pairs, README "Refresh tokens, reuse and
// disconnect"), and none touches alice's, whose token the load uses. They
// share alice's password.
func workerUser(i int) string { return fmt.Sprintf("worker%02d", i) }

// transport is the upstream transport of every reverse_proxy in the
// minimal variants but plain-default (forward_auth's call to the
// introspection service included): a keep-alive pool larger than the number
// of load connections, so that no variant opens a connection per request.
// Subdirectives as parsed by caddyserver/caddy
// modules/caddyhttp/reverseproxy/caddyfile.go (HTTPTransport.UnmarshalCaddyfile).
const transport = `transport http {
	keepalive 90s
	keepalive_idle_conns 256
	keepalive_idle_conns_per_host 256
}`

// indent prefixes every line of s but the first with tabs tabs, to nest a
// block in a Caddyfile without "not formatted" warnings.
func indent(s string, tabs int) string {
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat("\t", tabs))
}

// caddyfileParams is what one minimal variant's Caddyfile needs.
type caddyfileParams struct {
	variant    string
	port       int    // the gateway's HTTP port
	adminPort  int    // Caddy's admin endpoint (for /debug/pprof)
	upstream   string // host:port of the upstream
	introspect string // host:port of the introspection service
	// store is the tollgate store directive: "store memory", "store
	// redis://…" or a "store redis { … }" block.
	store   string
	workers int // flow workers, each with its own user
}

// caddyfile returns the configuration of one minimal variant. They all run
// the same binary with the same server settings and routing (one handle
// block on apiPath); they differ only in what precedes reverse_proxy, and
// plain-default in its transport. Logs: no access log, and the default
// logger at WARN, to stderr (the process log in the work directory).
func caddyfile(p caddyfileParams) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	log {
		output stderr
		level WARN
	}
`, p.adminPort)
	tollgate := isTollgate(p.variant)
	if tollgate {
		users := []string{username, bytesUser}
		for i := range p.workers {
			users = append(users, workerUser(i))
		}
		fmt.Fprintf(&b, `
	tollgate {
		%s
		issuer http://127.0.0.1:%d
		store_timeout %s
		access_token_lifetime 24h
		rate_limit %s
		scope %s "Name, role, country, photo URL"
		client %s {
			name "Benchmark client"
			secret %s
			redirect_uri %s
			scopes %s
		}
		users {
`, indent(p.store, 2), p.port, storeTimeout, rateLimit, scope, clientID, clientSecret, redirectURI, scope)
		for _, u := range users {
			fmt.Fprintf(&b, "\t\t\t%s %s\n", u, passwordHash)
		}
		b.WriteString("\t\t}\n\t}\n")
	}
	// bind: the site address alone would not keep Caddy off the other
	// interfaces.
	fmt.Fprintf(&b, "}\n\nhttp://127.0.0.1:%d {\n\tbind 127.0.0.1\n\n", p.port)
	if tollgate {
		b.WriteString(`	handle /oauth/authorize {
		tollgate_authorize
	}
	handle /oauth/token {
		tollgate_token
	}
`)
	}
	fmt.Fprintf(&b, "\thandle %s {\n", apiPath)
	tr := " {\n\t\t\t" + indent(transport, 3) + "\n\t\t}"
	switch p.variant {
	case varMemory, varRedis, varCluster:
		fmt.Fprintf(&b, `		tollgate_protect %s {
			user_header X-User-Id
		}
`, scope)
	case varForwardAuth:
		// What users do without Tollgate: ask an introspection service
		// about every request, copy the identity it answers, and (as
		// tollgate_protect does) keep the token from the upstream.
		fmt.Fprintf(&b, `		forward_auth %s {
			uri /introspect?scope=%s
			copy_headers X-User-Id
			%s
		}
		request_header -Authorization
`, p.introspect, scope, indent(transport, 3))
	case varPlainDefault:
		tr = ""
	}
	fmt.Fprintf(&b, `		reverse_proxy %s%s
	}

	handle {
		respond "Not Found" 404
	}
}
`, p.upstream, tr)
	return b.String()
}

// exampleCaddyfile returns the repository's Caddyfile.example, as shipped
// for example-memory and example-redis (configured through its environment
// variables, exampleEnv), and with every tollgate_protect directive and its
// block removed for example-noauth: the same sites, routes, rewrites and
// reverse_proxy (Caddy's default transport), so that the difference is what
// the check costs.
func exampleCaddyfile(root, variant string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "Caddyfile.example"))
	if err != nil {
		return "", err
	}
	src := string(b)
	if !strings.Contains(src, "handle "+apiPath+" {") || !strings.Contains(src, "tollgate_protect") {
		return "", fmt.Errorf("Caddyfile.example has no handle %s route behind tollgate_protect; the example variants measure that route", apiPath)
	}
	if variant != varExampleNoAuth {
		return src, nil
	}
	out, err := withoutDirective(src, "tollgate_protect")
	if err != nil {
		return "", fmt.Errorf("Caddyfile.example: %w", err)
	}
	return out, nil
}

// withoutDirective removes every line starting with directive, and the
// block it opens, from a Caddyfile.
func withoutDirective(src, directive string) (string, error) {
	var out []string
	depth := 0 // > 0: inside a removed block
	for _, line := range strings.Split(src, "\n") {
		t := strings.TrimSpace(line)
		if depth > 0 {
			depth += strings.Count(t, "{") - strings.Count(t, "}")
			continue
		}
		if t == directive || strings.HasPrefix(t, directive+" ") {
			if strings.HasSuffix(t, "{") {
				depth = 1
			}
			continue
		}
		out = append(out, line)
	}
	if depth != 0 {
		return "", errors.New("unbalanced braces after " + directive)
	}
	return strings.Join(out, "\n"), nil
}

// exampleEnv configures Caddyfile.example for one gateway through the
// environment variables it documents, every one of them given so that the
// caller's own environment cannot change the benchmark: its defaults but
// for the store, the ports, the upstream, a budget that never runs out and
// storeTimeout. The store is "" for the embedded store or a redis:// URL.
// Its fake legacy API also starts (on legacyPort), unused: the routes go to
// the benchmark's upstream, as every other variant's.
func exampleEnv(p caddyfileParams, legacyPort int) []string {
	store := ""
	if s, ok := strings.CutPrefix(p.store, "store "); ok && s != "memory" {
		store = s
	}
	return []string{
		"TOLLGATE_STORE=" + store,
		fmt.Sprintf("TOLLGATE_PORT=%d", p.port),
		"TOLLGATE_HOST=localhost",
		fmt.Sprintf("TOLLGATE_LEGACY_PORT=%d", legacyPort),
		fmt.Sprintf("TOLLGATE_ADMIN=127.0.0.1:%d", p.adminPort),
		"TOLLGATE_LEGACY_UPSTREAM=" + p.upstream,
		"TOLLGATE_RATE_LIMIT=" + rateLimit,
		"TOLLGATE_STORE_TIMEOUT=" + storeTimeout,
		"TOLLGATE_WEBHOOK_URL=http://127.0.0.1:9/webhooks",
	}
}
