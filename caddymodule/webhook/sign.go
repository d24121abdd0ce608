package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	// HeaderID carries the event id, the same on every attempt, for the
	// receiver to de-duplicate by.
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the attempt's time in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature carries space-separated "v1,<base64>" signatures.
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far a webhook-timestamp may be from the receiver's clock
// before Verify rejects it: the signature covers the timestamp, so a
// captured request cannot be replayed later than this.
const Tolerance = 5 * time.Minute

// secretPrefix marks a Standard Webhooks symmetric secret, so that one
// pasted into the wrong place is recognised for what it is.
const secretPrefix = "whsec_"

// Secret sizes from the Standard Webhooks specification: at least 24 bytes
// (192 bits), at most 64 (512 bits).
const (
	minSecret = 24
	maxSecret = 64
)

// Errors from Verify.
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp      = errors.New("webhook: timestamp outside the tolerance")
	ErrSignature      = errors.New("webhook: no valid signature")
)

// ParseSecret decodes a "whsec_<base64>" secret. Its errors never quote
// the secret.
func ParseSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, errors.New("webhook secret: must start with " + secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("webhook secret: not valid base64 after " + secretPrefix)
	}
	if len(key) < minSecret || len(key) > maxSecret {
		return nil, fmt.Errorf("webhook secret: %d bytes, want %d to %d", len(key), minSecret, maxSecret)
	}
	return key, nil
}

// Sign returns the webhook-signature of one attempt:
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>", the timestamp in Unix
// seconds.
func Sign(secret []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(secret, id, strconv.FormatInt(ts.Unix(), 10), body))
}

func mac(secret []byte, id, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a received webhook as a receiver should: the timestamp is
// within Tolerance of now and one of the v1 signatures matches, compared in
// constant time so that the comparison cannot be timed to forge a
// signature byte by byte. The signed timestamp is the header's own text.
func Verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
		return ErrTimestamp
	}
	want := mac(secret, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue // another scheme (v1a) or garbage: try the next one
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}
