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

// FuzzParseToken checks the token format: ParseToken accepts exactly what
// NewToken makes (prefix, 22-character grant id, 43 characters of 256
// random bits, all unreserved URL characters) and round-trips it.
func FuzzParseToken(f *testing.F) {
	gid := GrantID("ywc_a1b2c3d4", "alice")
	f.Add("tga_"+gid+strings.Repeat("A", 43), []byte("0123456789abcdef0123456789abcdef"), "alice")
	f.Add("tgr_"+gid+strings.Repeat("_", 42)+" ", []byte{}, "")
	f.Add("tgc_short", []byte{0xff}, "bob\x00")
	f.Add(strings.Repeat("é", 35), []byte("x"), "x")
	f.Fuzz(func(t *testing.T, tok string, random []byte, subject string) {
		prefix, grantID, ok := ParseToken(tok)
		if ok {
			if len(tok) != tokenLen || !unreserved(tok) || prefix+grantID != tok[:prefixLen+grantIDLen] {
				t.Fatalf("ParseToken(%q) accepted a token NewToken cannot make", tok)
			}
		} else if prefix != "" || grantID != "" {
			t.Fatalf("ParseToken(%q) refused but returned %q %q", tok, prefix, grantID)
		}
		// Round trip: every prefix, the grant id of any subject, any
		// randomness (padded to the 32 bytes NewToken reads).
		gid := GrantID("ywc_a1b2c3d4", subject)
		rnd := append(append([]byte(nil), random...), make([]byte, 32)...)
		for _, p := range []string{AccessPrefix, RefreshPrefix, CodePrefix} {
			made, err := NewToken(bytes.NewReader(rnd), p, gid)
			if err != nil {
				t.Fatal(err)
			}
			gp, gg, ok := ParseToken(made)
			if !ok || gp != p || gg != gid {
				t.Fatalf("ParseToken(NewToken(%q, %q)) = %q %q %v", p, gid, gp, gg, ok)
			}
		}
	})
}
