package oauth

import (
	"strings"
	"testing"
)

// RFC 7636 Appendix B: the worked example of the S256 method. DSS requires
// verification to match RFC 7636's reference vectors (docs/partners.md D20).
func TestS256MatchesRFC7636AppendixB(t *testing.T) {
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if got := S256(verifier); got != challenge {
		t.Fatalf("S256(%q) = %q, want %q", verifier, got, challenge)
	}
	if !ValidVerifier(verifier) || !ValidChallenge(challenge) {
		t.Fatal("the RFC's own verifier and challenge must be accepted")
	}
}

// RFC 7636 §4.1: 43 to 128 characters of the unreserved set.
func TestValidVerifier(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    string
		want bool
	}{
		{"43 characters is the minimum", strings.Repeat("a", 43), true},
		{"42 characters is too short", strings.Repeat("a", 42), false},
		{"128 characters is the maximum", strings.Repeat("Z", 128), true},
		{"129 characters is too long", strings.Repeat("Z", 129), false},
		{"all unreserved punctuation", strings.Repeat("-._~", 11), true},
		{"plus is not unreserved", strings.Repeat("a", 42) + "+", false},
		{"slash is not unreserved", strings.Repeat("a", 42) + "/", false},
		{"space is not unreserved", strings.Repeat("a", 42) + " ", false},
		{"non-ASCII is refused", strings.Repeat("a", 42) + "é", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidVerifier(tc.v); got != tc.want {
				t.Fatalf("ValidVerifier = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidChallengeRefusesWhatS256CannotProduce(t *testing.T) {
	for _, c := range []string{"", "short", strings.Repeat("a", 44), strings.Repeat("+", 43)} {
		if ValidChallenge(c) {
			t.Errorf("ValidChallenge(%q) = true", c)
		}
	}
}

// FuzzPKCE checks the RFC 7636 §4.1 and §4.2 rules: a valid verifier's
// S256 challenge is always a valid challenge, ValidVerifier is exactly
// 43-128 unreserved characters, and a valid challenge decodes to 32 bytes.
func FuzzPKCE(f *testing.F) {
	f.Add("dBjftJeZ4CVP-mJ92K1Fb6Sx1dKbDyyhomeQkT8wTlI")
	f.Add(testChallenge)
	f.Add(strings.Repeat("~", 129))
	f.Add("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN")
	f.Fuzz(func(t *testing.T, v string) {
		if ValidVerifier(v) != (len(v) >= 43 && len(v) <= 128 && unreserved(v)) {
			t.Fatalf("ValidVerifier(%q) disagrees with RFC 7636 §4.1", v)
		}
		if ch := S256(v); !ValidChallenge(ch) {
			t.Fatalf("S256(%q) = %q is not a valid challenge", v, ch)
		}
		if ValidChallenge(v) && (len(v) != 43 || !unreserved(v)) {
			t.Fatalf("ValidChallenge(%q) accepted a non-base64url string", v)
		}
	})
}
