package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// Subjects end up in legacy URL paths through rewrite; anything that could
// change the path's meaning is refused.
func TestSafeSubject(t *testing.T) {
	for s, want := range map[string]bool{
		"alice":                   true,
		"alice@example.com":       true,
		"3f2a-99_x.y+z":           true,
		"":                        false,
		".":                       false,
		"..":                      false,
		"../admin":                false,
		"a/b":                     false,
		"a?b":                     false,
		"a#b":                     false,
		"a%2Fb":                   false,
		"a b":                     false,
		"ali\u00e7e":              false,
		string(make([]byte, 257)): false,
	} {
		if got := safeSubject(s); got != want {
			t.Errorf("safeSubject(%q) = %v, want %v", s, got, want)
		}
	}
}

// `users caddy_auth`: the user was already signed in by a preceding Caddy
// auth handler (README "Configuration reference"; docs/partners.md D7), so
// the subject and profile are read from the placeholders that handler set.
func TestCaddyAuthUsersReadsThePrecedingHandlersUser(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vars    map[string]any
		subject string
	}{
		{"signed in with profile", map[string]any{"http.auth.user.id": "alice", "http.auth.user.name": "Alice Mariner", "http.auth.user.country": "GB"}, "alice"},
		{"nobody signed in", map[string]any{}, ""},
		{"a subject that would break a legacy path is refused", map[string]any{"http.auth.user.id": "../bob"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repl := caddy.NewReplacer()
			for k, v := range tc.vars {
				repl.Set(k, v)
			}
			r := httptest.NewRequest(http.MethodGet, "/oauth/authorize", nil)
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
			sub, profile := CaddyAuthUsers{}.Identify(r)
			if sub != tc.subject {
				t.Fatalf("subject %q, want %q", sub, tc.subject)
			}
			if sub != "" && (profile["name"] != "Alice Mariner" || profile["country"] != "GB" || profile["role"] != "") {
				t.Fatalf("profile %v", profile)
			}
		})
	}
}

func TestStaticUsersLogin(t *testing.T) {
	s := &StaticUsers{Users: []StaticUser{{
		Username: "alice",
		// bcrypt of alice-password, cost 4 to keep the test fast.
		Password: "$2a$04$NSLTbz.nzjk3k9RqYO2uDuMuhUGcgPOQGXuhu1ZtiqfTeNzkLxg2C",
		Name:     "Alice Mariner",
	}}}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if sub, ok := s.Login("alice", "alice-password"); !ok || sub != "alice" {
		t.Fatalf("right password refused")
	}
	for _, bad := range [][2]string{{"alice", "wrong"}, {"alice", ""}, {"bob", "alice-password"}, {"", ""}} {
		if _, ok := s.Login(bad[0], bad[1]); ok {
			t.Errorf("Login(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if s.Profile("alice")["name"] != "Alice Mariner" || s.Profile("bob") != nil {
		t.Fatal("profile lookup wrong")
	}
}

func TestStaticUsersRefuseBadConfig(t *testing.T) {
	for name, users := range map[string][]StaticUser{
		"plaintext password": {{Username: "alice", Password: "alice-password"}},
		"unsafe username":    {{Username: "a/b", Password: "$2a$04$NSLTbz.nzjk3k9RqYO2uDuMuhUGcgPOQGXuhu1ZtiqfTeNzkLxg2C"}},
		"duplicate":          {{Username: "a", Password: "$2a$04$NSLTbz.nzjk3k9RqYO2uDuMuhUGcgPOQGXuhu1ZtiqfTeNzkLxg2C"}, {Username: "a", Password: "$2a$04$NSLTbz.nzjk3k9RqYO2uDuMuhUGcgPOQGXuhu1ZtiqfTeNzkLxg2C"}},
	} {
		if err := (&StaticUsers{Users: users}).Provision(caddy.Context{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
