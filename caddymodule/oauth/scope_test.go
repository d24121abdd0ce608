package oauth

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ParseScope keeps each token once, in order of first appearance (RFC 6749
// §3.3: the order is irrelevant, so the first one is as good as any and
// keeps the answer stable), whatever the length of the parameter.
func TestParseScopeDropsDuplicatesInFirstSeenOrder(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a", "a"},
		{"b a b  a\tc", "b a c"},
		{"profile:read profile:read seatime:read", "profile:read seatime:read"},
	} {
		if got := FormatScope(ParseScope(tc.in)); got != tc.want {
			t.Errorf("ParseScope(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}

	// A request body of the token endpoint may carry 64 KiB of scope:
	// thousands of tokens, most of them repeated.
	const distinct, rounds = 2000, 20
	var in strings.Builder
	var want []string
	for r := range rounds {
		for i := range distinct {
			// Each round lists the tokens in another order; the first
			// round's order is the one that must come out.
			tok := "s" + strconv.Itoa((i*7+r*13)%distinct)
			if r == 0 {
				want = append(want, tok)
			}
			in.WriteString(tok)
			in.WriteByte(' ')
		}
	}
	if got := ParseScope(in.String()); !slices.Equal(got, want) {
		t.Fatalf("ParseScope of %d tokens, %d distinct: got %d tokens, want the %d distinct ones in first-seen order",
			distinct*rounds, distinct, len(got), len(want))
	}
}

// BenchmarkParseScopeLong shows the cost of a long parameter: linear in
// its length (it was quadratic in the number of distinct tokens).
func BenchmarkParseScopeLong(b *testing.B) {
	var in strings.Builder
	for i := range 8000 { // ~64 KiB, every token distinct: the worst case
		in.WriteString("s" + strconv.Itoa(i) + " ")
	}
	s := in.String()
	b.ReportAllocs()
	for b.Loop() {
		ParseScope(s)
	}
}

func BenchmarkParseScopeShort(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ParseScope("profile:read seatime:read vessels:read")
	}
}

// FuzzParseScope checks scope parsing (RFC 6749 §3.3: space-delimited,
// case-sensitive, order irrelevant): no empty entries, no duplicates, no
// entry with whitespace, every entry taken from the input, every token of
// the input kept, and FormatScope/ParseScope is a fixed point.
func FuzzParseScope(f *testing.F) {
	f.Add("profile:read seatime:read")
	f.Add("  profile:read\tprofile:read  ")
	f.Add("")
	f.Add("a\x00b a\u00a0b Profile:read profile:read")
	f.Add("\xff\xfe \r\n\v\f")
	f.Fuzz(func(t *testing.T, s string) {
		scopes := ParseScope(s)
		seen := map[string]bool{}
		for _, sc := range scopes {
			if sc == "" {
				t.Fatalf("ParseScope(%q) = %q: empty entry", s, scopes)
			}
			if seen[sc] {
				t.Fatalf("ParseScope(%q) = %q: duplicate %q", s, scopes, sc)
			}
			seen[sc] = true
			if strings.ContainsFunc(sc, isSpace) || !strings.Contains(s, sc) {
				t.Fatalf("ParseScope(%q) = %q: entry %q is not a token of the input", s, scopes, sc)
			}
		}
		for _, tok := range strings.Fields(s) {
			if !seen[tok] {
				t.Fatalf("ParseScope(%q) = %q: lost %q", s, scopes, tok)
			}
		}
		again := ParseScope(FormatScope(scopes))
		if !slices.Equal(again, scopes) {
			t.Fatalf("ParseScope(FormatScope(%q)) = %q", scopes, again)
		}
	})
}

func isSpace(r rune) bool { return strings.TrimSpace(string(r)) == "" }
