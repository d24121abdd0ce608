package caddymodule

import "testing"

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
