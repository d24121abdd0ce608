package oauth

import "crypto/sha256"

func mustDigestBytes(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}
