package main

import (
	"fmt"
	"strings"
)

// The variants, in the order each round runs them.
const (
	varPlain       = "plain"
	varMemory      = "tollgate-memory"
	varRedis       = "tollgate-redis"
	varForwardAuth = "forward_auth"
)

var allVariants = []string{varPlain, varMemory, varRedis, varForwardAuth}

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
)

// transport is the upstream transport of every reverse_proxy in every
// variant (forward_auth's call to the introspection service included):
// a keep-alive pool larger than the number of load connections, so that no
// variant opens a connection per request. Subdirectives as parsed by
// caddyserver/caddy modules/caddyhttp/reverseproxy/caddyfile.go
// (HTTPTransport.UnmarshalCaddyfile).
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

// caddyfileParams is what one variant's Caddyfile needs.
type caddyfileParams struct {
	variant    string
	port       int    // the gateway's HTTP port
	adminPort  int    // Caddy's admin endpoint (for /debug/pprof)
	upstream   string // host:port of the upstream
	introspect string // host:port of the introspection service
	store      string // tollgate store: "memory" or a redis:// URL
}

// caddyfile returns the configuration of one variant. Every variant runs
// the same binary with the same server settings and routing (one handle
// block on apiPath); they differ only in what precedes reverse_proxy.
// Logs: no access log, and the default logger at WARN, to stderr (the
// process log in the work directory).
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
	tollgate := p.variant == varMemory || p.variant == varRedis
	if tollgate {
		fmt.Fprintf(&b, `
	tollgate {
		store %s
		issuer http://127.0.0.1:%d
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
			%s %s
		}
	}
`, p.store, p.port, rateLimit, scope, clientID, clientSecret, redirectURI, scope, username, passwordHash)
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
	switch p.variant {
	case varMemory, varRedis:
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
	}
	fmt.Fprintf(&b, `		reverse_proxy %s {
			%s
		}
	}

	handle {
		respond "Not Found" 404
	}
}
`, p.upstream, indent(transport, 3))
	return b.String()
}
