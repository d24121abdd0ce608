package oauth

import (
	"slices"
	"strings"
)

// smallScope is the token count up to which ParseScope removes duplicates
// by scanning what it kept: no allocation, and faster than a map for the
// handful of scopes a real request carries.
const smallScope = 16

// ParseScope splits a scope parameter (RFC 6749 §3.3: space-delimited,
// order irrelevant) into its distinct tokens, in order of first appearance.
// The parameter comes from the client (a query string or a token request
// body of up to 64 KiB), so a long one costs linear time, not quadratic.
func ParseScope(s string) []string {
	fields := strings.Fields(s)
	out := fields[:0]
	if len(fields) <= smallScope {
		for _, f := range fields {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
		return out
	}
	seen := make(map[string]struct{}, len(fields))
	for _, f := range fields {
		if _, dup := seen[f]; !dup {
			seen[f] = struct{}{}
			out = append(out, f)
		}
	}
	return out
}

// FormatScope joins scopes into a scope parameter.
func FormatScope(scopes []string) string { return strings.Join(scopes, " ") }

// Missing returns the first of want that have does not hold, or "".
func Missing(have, want []string) string {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return w
		}
	}
	return ""
}
