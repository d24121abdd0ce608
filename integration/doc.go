// Package integration holds Tollgate's end-to-end tests. They build the real
// binary (cmd/tollgate), run it with Caddyfile.example against both stores
// (the embedded memory store and a throwaway redis-server) and drive it the
// way a partner and a crew member's browser would: golang.org/x/oauth2 for
// the client side, a cookie-jar HTTP client that reads the HTML forms for
// sign-in and consent, and plain net/http for everything a library would
// hide (status codes, headers, exact JSON bodies).
//
// Each test names the behaviour it checks and cites where that behaviour is
// required: the partner requirement it proves (docs/partners.md, rows D1–D64
// for DSS, H1–H14 for Dash, T1–T16 for Trans), the section of
// docs/architecture.md or the README that describes it, or the RFC section.
//
// Run with
//
//	go test ./integration/ -count=1
//
// redis-server must be on PATH for the "redis" subtests.
package integration
