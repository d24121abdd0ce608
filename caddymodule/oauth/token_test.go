package oauth

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func TestTokenCarriesItsGrantAndPrefix(t *testing.T) {
	g := GrantID("ywc_a1b2c3d4", "alice")
	tok, err := NewToken(rand.Reader, AccessPrefix, g)
	if err != nil {
		t.Fatal(err)
	}
	prefix, grant, ok := ParseToken(tok)
	if !ok || prefix != AccessPrefix || grant != g {
		t.Fatalf("ParseToken(%q) = %q, %q, %v", tok, prefix, grant, ok)
	}
	// Tokens go in headers, forms and URLs unescaped.
	if strings.ContainsAny(tok, "+/=% ") {
		t.Fatalf("token %q is not URL-safe", tok)
	}
}

// docs/architecture.md §6.2: tokens are random, at least 256 bits.
func TestTokensDifferAndUseAllTheirRandomness(t *testing.T) {
	g := GrantID("c", "s")
	a, _ := NewToken(rand.Reader, RefreshPrefix, g)
	b, _ := NewToken(rand.Reader, RefreshPrefix, g)
	if a == b {
		t.Fatal("two tokens are equal")
	}
	// A reader of zeros gives a fixed token: the random part is all read.
	z1, _ := NewToken(bytes.NewReader(make([]byte, 32)), RefreshPrefix, g)
	if !strings.HasSuffix(z1, strings.Repeat("A", 42)+"A") {
		t.Fatalf("random part not taken from the reader: %q", z1)
	}
	if _, err := NewToken(bytes.NewReader(make([]byte, 31)), RefreshPrefix, g); err == nil {
		t.Fatal("a short read must fail, not yield a weak token")
	}
}

func TestGrantIDIsStablePerClientAndSubject(t *testing.T) {
	if GrantID("a", "b") != GrantID("a", "b") {
		t.Fatal("unstable")
	}
	// The separator keeps ("ab","c") and ("a","bc") apart.
	if GrantID("ab", "c") == GrantID("a", "bc") {
		t.Fatal("ambiguous concatenation")
	}
}

func TestParseTokenRefusesOtherShapes(t *testing.T) {
	good, _ := NewToken(rand.Reader, AccessPrefix, GrantID("c", "s"))
	for _, tok := range []string{"", "Aq3redacted", good[:len(good)-1], good + "x", strings.Replace(good, "_", " ", 1)} {
		if _, _, ok := ParseToken(tok); ok {
			t.Errorf("ParseToken(%q) accepted", tok)
		}
	}
}

func TestDigestIsHexSHA256(t *testing.T) {
	// sha256("abc") from FIPS 180-2.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := Digest("abc"); got != want {
		t.Fatalf("Digest = %s", got)
	}
}
