package caddymodule

import (
	"net/http"
	"strings"
)

// connectionNames returns the first of names that the Connection fields
// list, or "" when they list none. A Connection field is a comma-separated
// list of field names, compared case-insensitively (RFC 9110 §7.6.1), and
// a proxy removes every field it names before forwarding (Caddy's
// reverse_proxy does): a client naming a header Tollgate sets would have
// the proxy delete it again after Tollgate set it. Empty names are
// ignored. It does not allocate.
func connectionNames(fields []string, names []string) string {
	for _, f := range fields {
		for f != "" {
			var tok string
			tok, f, _ = strings.Cut(f, ",")
			tok = strings.Trim(tok, " \t\r\n")
			if tok == "" {
				continue
			}
			for _, n := range names {
				if n != "" && strings.EqualFold(tok, n) {
					return n
				}
			}
		}
	}
	return ""
}

// gatewayCookiePrefix starts the name of every cookie Tollgate sets
// (sessionCookie among them). They belong to the sign-in pages and never
// reach an upstream.
const gatewayCookiePrefix = "tollgate_"

// stripGatewayCookies removes the gateway's cookies from the Cookie fields
// of h, keeping the others, and deletes the field when nothing is left.
// Without a gateway cookie it changes nothing and does not allocate.
func stripGatewayCookies(h http.Header) {
	vals := h["Cookie"]
	if len(vals) == 0 {
		return
	}
	kept := vals[:0]
	for _, v := range vals {
		if v = stripCookies(v, gatewayCookiePrefix); v != "" {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}

// stripCookies removes from one Cookie field value (cookie-pairs separated
// by ";", RFC 6265 §4.2.1) every pair whose name starts with prefix, ASCII
// case-insensitively and ignoring surrounding whitespace. A pair that also
// holds a comma-separated pair with such a name is removed whole, for
// upstreams that still split on commas (RFC 2965). The remaining pairs are
// joined by "; ". v is returned as is, without allocating, when no pair
// matches.
func stripCookies(v, prefix string) string {
	if !containsFold(v, prefix) {
		return v
	}
	var b strings.Builder
	for rest := v; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, ";")
		pair = strings.Trim(pair, " \t")
		if pair == "" || cookiePairNamed(pair, prefix) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(pair)
	}
	return b.String()
}

// cookiePairNamed reports whether pair, or one of its comma-separated
// parts, is a cookie whose name starts with prefix.
func cookiePairNamed(pair, prefix string) bool {
	for pair != "" {
		var part string
		part, pair, _ = strings.Cut(pair, ",")
		name, _, _ := strings.Cut(part, "=")
		if hasPrefixFold(strings.Trim(name, " \t"), prefix) {
			return true
		}
	}
	return false
}

// hasPrefixFold is strings.HasPrefix, ASCII case-insensitively.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && asciiEqualFold(s[:len(prefix)], prefix)
}

// containsFold reports whether s contains sub, ASCII case-insensitively,
// without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if asciiEqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// asciiEqualFold is strings.EqualFold for ASCII letters only: a byte
// outside A-Z/a-z must match exactly.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
