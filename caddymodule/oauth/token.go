package oauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
)

// Token prefixes. A short, fixed type prefix lets secret scanners and
// humans recognise a leaked Tollgate credential (docs/architecture.md
// §6.2) and lets the token endpoint tell the kinds apart without a store
// lookup.
const (
	AccessPrefix  = "tga_"
	RefreshPrefix = "tgr_"
	CodePrefix    = "tgc_"
)

const (
	prefixLen  = 4
	grantIDLen = 22 // base64url of 16 bytes
	secretLen  = 43 // base64url of 32 bytes: 256 bits of entropy
	tokenLen   = prefixLen + grantIDLen + secretLen
)

// GrantID derives the id of the grant of subject to clientID. It is stable,
// so that a user's consents to one client are one grant (one budget, one
// disconnect), and it travels inside every token so that the gateway can
// address the grant's Redis slot without a lookup. It is not a secret: it
// reveals nothing without the token's random part.
func GrantID(clientID, subject string) string {
	h := sha256.New()
	h.Write([]byte("tollgate grant\x00"))
	h.Write([]byte(clientID))
	h.Write([]byte{0})
	h.Write([]byte(subject))
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])[:16])
}

// NewToken returns prefix + grantID + 256 random bits, all URL-safe.
func NewToken(rand io.Reader, prefix, grantID string) (string, error) {
	if len(prefix) != prefixLen || len(grantID) != grantIDLen {
		return "", fmt.Errorf("malformed token prefix %q or grant id %q", prefix, grantID)
	}
	var secret [32]byte
	if _, err := io.ReadFull(rand, secret[:]); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	buf := make([]byte, 0, tokenLen)
	buf = append(buf, prefix...)
	buf = append(buf, grantID...)
	buf = base64.RawURLEncoding.AppendEncode(buf, secret[:])
	return string(buf), nil
}

// ParseToken splits a token into its prefix and grant id. ok is false for
// anything that is not the exact shape NewToken makes; such a token cannot
// exist in the store and is refused without a round trip.
func ParseToken(tok string) (prefix, grantID string, ok bool) {
	if len(tok) != tokenLen || !unreserved(tok) {
		return "", "", false
	}
	return tok[:prefixLen], tok[prefixLen : prefixLen+grantIDLen], true
}

// Digest is what the store keeps of a token, code or client secret: the hex
// SHA-256. Tokens carry 256 random bits, so a fast hash is enough to make a
// dump of the store useless; no salt is needed.
func Digest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// RandomString returns n random bytes, base64url-encoded.
func RandomString(rand io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
