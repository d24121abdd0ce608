package redisstore

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// keyspace is the prefix of every key the store writes, so that two
// deployments can share one Redis (README, "Redis topologies": key_prefix).
// It goes before the hash tag, which it therefore does not change.
type keyspace string

// defaultKeys is the prefix when none is configured.
const defaultKeys keyspace = "tg:"

// k returns the store's keyspace.
func (s *Store) k() keyspace {
	if s.keys == "" {
		return defaultKeys
	}
	return s.keys
}

// Key layout (docs/architecture.md). Everything of a grant shares the
// "{<grant>}" hash tag; the grant's hash holds its tokens too (scripts.go).
func (k keyspace) grant(grantID string) string   { return string(k) + "{" + grantID + "}:grant" }
func (k keyspace) counter(grantID string) string { return string(k) + "{" + grantID + "}:rc" }
func (k keyspace) code(grantID, digest string) string {
	return string(k) + "{" + grantID + "}:code:" + digest
}

// marker is a consumed code's replay marker, named by 128 bits of the
// code's digest (ringForm), base64url-encoded to keep the key short.
func (k keyspace) marker(grantID, digest string) string {
	return string(k) + "{" + grantID + "}:cu:" + base64.RawURLEncoding.EncodeToString([]byte(ringForm(digest)))
}

func (k keyspace) blob(key string) string { return string(k) + "b:" + key }

// channel is the invalidation channel (watch.go; inval in luaPrelude).
func (k keyspace) channel() string { return string(k) + "inval" }

// failure is a failure counter's key (failure.go). The key is its own hash
// tag; what follows the last "}:" is digits, so two different (key,
// window, index) triples never name the same Redis key.
func (k keyspace) failure(key string, wms, idx int64) string {
	return string(k) + "f:{" + key + "}:" + strconv.FormatInt(wms, 10) + ":" + strconv.FormatInt(idx, 10)
}

// subject is a subject's index of grants (index.go), under the digest of
// the subject so that a subject's characters cannot reach the hash tag.
func (k keyspace) subject(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return string(k) + "u:{" + hex.EncodeToString(sum[:]) + "}:grants"
}

// auth builds the grant and counter keys of Authenticate in one
// allocation: they are substrings of a single built string.
func (k keyspace) auth(grantID string) []string {
	const (
		grant = "}:grant"
		rl    = "}:rc"
	)
	var b strings.Builder
	b.Grow(2*(len(k)+1+len(grantID)) + len(grant) + len(rl))
	b.WriteString(string(k))
	b.WriteByte('{')
	b.WriteString(grantID)
	b.WriteString(grant)
	mid := b.Len()
	b.WriteString(string(k))
	b.WriteByte('{')
	b.WriteString(grantID)
	b.WriteString(rl)
	all := b.String()
	return []string{all[:mid], all[mid:]}
}

// SetKeyPrefix makes every key the store writes start with prefix instead
// of "tg:", the webhook queue's included. Call it before the store is
// used. A prefix is 1 to 64 characters of A-Z a-z 0-9 . _ : - (no braces,
// which would change the hash tags).
func (s *Store) SetKeyPrefix(prefix string) error {
	if err := checkKeyPrefix(prefix); err != nil {
		return err
	}
	s.keys = keyspace(prefix)
	return nil
}

func checkKeyPrefix(p string) error {
	if p == "" || len(p) > 64 {
		return errors.New("key prefix: want 1 to 64 characters")
	}
	for _, c := range []byte(p) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("._:-", c) >= 0:
		default:
			return fmt.Errorf("key prefix: %q is not allowed (A-Z a-z 0-9 . _ : - only)", c)
		}
	}
	return nil
}
