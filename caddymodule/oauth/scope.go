package oauth

import "strings"

// ParseScope splits a scope parameter (RFC 6749 §3.3: space-delimited,
// order irrelevant) into its distinct tokens, in order of first appearance.
// Duplicates are found with a set, not by rescanning the result: the
// parameter comes from outside (an authorize query may be close to 1 MB),
// and a quadratic scan of ~200k distinct tokens takes minutes of CPU.
func ParseScope(s string) []string {
	fields := strings.Fields(s)
	out := fields[:0]
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

// Contains reports whether scopes holds s.
func Contains(scopes []string, s string) bool {
	for _, x := range scopes {
		if x == s {
			return true
		}
	}
	return false
}

// Missing returns the first of want that have does not hold, or "".
func Missing(have, want []string) string {
	for _, w := range want {
		if !Contains(have, w) {
			return w
		}
	}
	return ""
}

// Union returns a followed by the scopes of b it does not hold.
func Union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, s := range b {
		if !Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
