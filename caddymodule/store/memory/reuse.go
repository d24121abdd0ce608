package memory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// ringSize is how many rotated-out refresh tokens a grant remembers, as on
// Redis (redisstore/scripts.go): the grant's size must not grow with its
// rotations. README.md ("Refresh tokens, reuse and disconnect") says what
// the ring catches and what it does not.
const ringSize = store.RotatedRemembered

// ring holds the last ringSize refresh tokens rotated out of a grant.
type ring struct {
	entries [ringSize]rotation
	next    int // the slot the next rotation writes
}

// rotation records that a refresh token was rotated out: 128 bits of its
// digest (ringForm), when, and until when the token itself would have lived
// (after that, presenting it is plain expiry, not reuse).
type rotation struct {
	digest  [16]byte
	at, exp int64 // ms; exp 0: an empty slot
}

// add records that the refresh token digest, live until exp, was rotated
// out at now, replacing the oldest entry.
func (r *ring) add(digest string, now, exp int64) {
	r.entries[r.next] = rotation{digest: ringForm(digest), at: now, exp: exp}
	r.next = (r.next + 1) % ringSize
}

// find returns the entry of digest.
func (r *ring) find(digest string) (rotation, bool) {
	if digest == "" {
		return rotation{}, false
	}
	d := ringForm(digest)
	for _, e := range r.entries {
		if e.digest == d && e.exp != 0 {
			return e, true
		}
	}
	return rotation{}, false
}

// ringForm is what the store keeps of a digest it only has to recognise (a
// rotated-out refresh token, a consumed code): 128 bits, inline. A hex
// digest (oauth.Digest's 64 hex digits) gives its first 16 bytes, as on
// Redis; anything else, which only tests pass, is hashed down to 16.
func ringForm(digest string) [16]byte {
	var b [16]byte
	if len(digest) >= 32 {
		if _, err := hex.Decode(b[:], []byte(digest[:32])); err == nil {
			return b
		}
	}
	sum := sha256.Sum256([]byte(digest))
	copy(b[:], sum[:])
	return b
}

// CheckReuse revokes the grant when refreshDigest was rotated out of it more
// than grace ago (RFC 9700 §4.14.2): the old token is in two hands, and the
// store cannot tell which is the thief's.
func (s *Store) CheckReuse(_ context.Context, grantID, refreshDigest string, grace time.Duration) (store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Grant{}, errClosed
	}
	now := s.nowMillis()
	g := s.live(grantID, now)
	if g == nil {
		return store.Grant{}, store.ErrNotFound
	}
	r, ok := g.ring.find(refreshDigest)
	if !ok || r.exp <= now || now-r.at <= grace.Milliseconds() {
		return store.Grant{}, store.ErrNotFound
	}
	out := g.snapshot()
	s.revoke(grantID)
	s.unindex(out.Subject, grantID)
	return out, store.ErrRefreshReused
}
