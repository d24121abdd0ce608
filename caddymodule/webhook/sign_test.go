package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks reference vector (its libraries' signing test).
const (
	refSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	refID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	refTimestamp = 1614265330
	refPayload   = `{"test": 2432232314}`
	refSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignReferenceVector(t *testing.T) {
	secret, err := ParseSecret(refSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(secret, refID, time.Unix(refTimestamp, 0), []byte(refPayload)); got != refSignature {
		t.Errorf("Sign = %s, want %s", got, refSignature)
	}
}

func TestParseSecret(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantLen  int
	}{
		{"the reference secret", refSecret, 24},
		{"64 bytes", "whsec_" + strings.Repeat("AAAA", 21) + "AA==", 64},
		{"no prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 0},
		{"not base64", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS!", 0},
		{"too short", "whsec_c2hvcnQ=", 0},
		{"too long", "whsec_" + strings.Repeat("AAAA", 22), 0},
		{"empty", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSecret(tc.in)
			if tc.wantLen == 0 {
				if err == nil {
					t.Fatalf("ParseSecret accepted %q", tc.in)
				}
				if b64 := strings.TrimPrefix(tc.in, "whsec_"); b64 != "" && strings.Contains(err.Error(), b64) {
					t.Errorf("error quotes the secret: %v", err)
				}
				return
			}
			if err != nil || len(got) != tc.wantLen {
				t.Fatalf("ParseSecret = %d bytes, %v; want %d", len(got), err, tc.wantLen)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	secret, _ := ParseSecret(refSecret)
	now := time.Unix(refTimestamp, 0)
	headers := func(edit func(h http.Header)) http.Header {
		h := http.Header{}
		h.Set(HeaderID, refID)
		h.Set(HeaderTimestamp, strconv.Itoa(refTimestamp))
		h.Set(HeaderSignature, refSignature)
		if edit != nil {
			edit(h)
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		h      http.Header
		body   string
		secret []byte
		now    time.Time
		want   error
	}{
		{name: "the reference webhook verifies", h: headers(nil)},
		{name: "within the tolerance", h: headers(nil), now: now.Add(Tolerance)},
		{name: "one of several signatures", h: headers(func(h http.Header) {
			h.Set(HeaderSignature, "v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "+refSignature+" v2,x")
		})},
		{name: "a changed body", h: headers(nil), body: `{"test": 2432232315}`, want: ErrSignature},
		{name: "another secret", h: headers(nil), secret: []byte("0123456789abcdef01234567"), want: ErrSignature},
		{name: "another id", h: headers(func(h http.Header) { h.Set(HeaderID, refID+"x") }), want: ErrSignature},
		{name: "a changed timestamp", h: headers(func(h http.Header) { h.Set(HeaderTimestamp, strconv.Itoa(refTimestamp+1)) }), want: ErrSignature},
		{name: "only a v1a signature", h: headers(func(h http.Header) {
			h.Set(HeaderSignature, "v1a"+strings.TrimPrefix(refSignature, "v1"))
		}), want: ErrSignature},
		{name: "a signature that is not base64", h: headers(func(h http.Header) { h.Set(HeaderSignature, "v1,!!!") }), want: ErrSignature},
		{name: "too old", h: headers(nil), now: now.Add(Tolerance + time.Second), want: ErrTimestamp},
		{name: "too far ahead", h: headers(nil), now: now.Add(-Tolerance - time.Second), want: ErrTimestamp},
		{name: "a timestamp that is not a number", h: headers(func(h http.Header) { h.Set(HeaderTimestamp, "soon") }), want: ErrTimestamp},
		{name: "no id", h: headers(func(h http.Header) { h.Del(HeaderID) }), want: ErrMissingHeaders},
		{name: "no timestamp", h: headers(func(h http.Header) { h.Del(HeaderTimestamp) }), want: ErrMissingHeaders},
		{name: "no signature", h: headers(func(h http.Header) { h.Del(HeaderSignature) }), want: ErrMissingHeaders},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, key, at := tc.body, tc.secret, tc.now
			if body == "" {
				body = refPayload
			}
			if key == nil {
				key = secret
			}
			if at.IsZero() {
				at = now
			}
			if err := Verify(key, tc.h, []byte(body), at); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}
