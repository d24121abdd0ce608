package oauth

import (
	"crypto/sha256"
	"encoding/base64"
)

// S256 is the code_challenge of verifier by the S256 method of RFC 7636
// §4.2: BASE64URL(SHA256(ASCII(verifier))) without padding.
func S256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ValidVerifier reports whether v is a code_verifier of RFC 7636 §4.1:
// 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
func ValidVerifier(v string) bool {
	return len(v) >= 43 && len(v) <= 128 && unreserved(v)
}

// ValidChallenge reports whether c can be an S256 code_challenge: the
// unpadded base64url form of a SHA-256 digest is exactly 43 characters. A
// malformed challenge is refused at authorize, where the user can still be
// told, rather than failing opaquely at the token endpoint.
func ValidChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(b) == sha256.Size
}

func unreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}
