package caddymodule

import "strings"

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
