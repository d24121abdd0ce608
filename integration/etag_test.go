package integration

import (
	"net/http"
	"regexp"
	"testing"
	"time"
)

// TestConditionalGetNotModifiedIsFree replays the ETag of /v1/me/vessels
// and /v1/me/sea-time as If-None-Match under a budget of 5 per hour: every
// 304 has no body and costs nothing, which the X-RateLimit-Remaining of the
// next 200 shows; a tag that does not match, or a record that changed,
// gets a 200 with the body.
//
// 000 What to build next: "/v1/me/sea-time … /v1/me/vessels. Each returns
// record_updated_at and supports conditional GETs"; "Cache the ETag and
// replay it on the next request as If-None-Match. A 304 costs you nothing
// against your rate limit budget". Issue 3: "first response has a strong
// ETag; replaying it as If-None-Match gets 304 with no body, and the 304
// does not count against the budget (X-RateLimit-Remaining on the next 200
// shows it); a non-matching tag gets 200." RFC 9110 §13.1.2 (weak
// comparison, "*"), §15.4.5 (304 has no content).
func TestConditionalGetNotModifiedIsFree(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{rateLimit: "5/1h"}, func(t *testing.T, gw *gateway, up *upstream) {
		const limit, window = 5, time.Hour
		tok, _ := obtainTokens(t, gw, "seatime:read", "vessels:read")
		auth := bearer(tok.AccessToken)
		clearOfWindowEnd(window, 10*time.Second)
		remaining := func(r *apiResponse, want int64) {
			t.Helper()
			if f := wantRate(t, r, limit, window); f.remaining != want {
				t.Fatalf("X-RateLimit-Remaining = %d, want %d (a 304 costs nothing):\n%s", f.remaining, want, r)
			}
		}
		inm := func(tag string) http.Header { return http.Header{"If-None-Match": {tag}} }

		r := gw.call(t, "/v1/me/vessels", auth, nil)
		if r.status != http.StatusOK {
			t.Fatalf("want 200:\n%s", r)
		}
		remaining(r, 4)
		vessels := wantStrongETag(t, r)
		wantNotModified(t, gw.call(t, "/v1/me/vessels", auth, inm(vessels)), vessels)

		r = gw.call(t, "/v1/me/sea-time", auth, nil)
		if r.status != http.StatusOK {
			t.Fatalf("want 200:\n%s", r)
		}
		remaining(r, 3) // the 304 before it was free
		seatime := wantStrongETag(t, r)
		if seatime == vessels {
			t.Fatalf("sea-time and vessels bodies differ but share the ETag %s", seatime)
		}
		for _, field := range []string{seatime, "W/" + seatime, `"no-such-tag", ` + seatime, "*"} {
			wantNotModified(t, gw.call(t, "/v1/me/sea-time", auth, inm(field)), seatime)
		}
		for i, field := range []string{`"no-such-tag"`, vessels} {
			r = gw.call(t, "/v1/me/sea-time", auth, inm(field))
			if r.status != http.StatusOK || r.json(t)["resource"] != "seatime" {
				t.Fatalf("If-None-Match %s does not match: want 200 with the record:\n%s", field, r)
			}
			if got := wantStrongETag(t, r); got != seatime {
				t.Fatalf("the same record got ETag %s, earlier %s", got, seatime)
			}
			// After five 304s, only the 200s were counted.
			remaining(r, int64(2-i))
		}

		// The record changes: its old tag no longer matches.
		up.setUpdatedAt("2026-11-02T09:30:00Z")
		r = gw.call(t, "/v1/me/sea-time", auth, inm(seatime))
		if r.status != http.StatusOK || r.json(t)["record_updated_at"] != "2026-11-02T09:30:00Z" {
			t.Fatalf("If-None-Match with the tag of a record since changed: want 200 with the new record:\n%s", r)
		}
		if got := wantStrongETag(t, r); got == seatime {
			t.Fatalf("the changed record kept the ETag %s", got)
		}
		remaining(r, 0)
	})
}

// etagPattern is a strong entity-tag (RFC 9110 §8.8.3): no W/ prefix.
var etagPattern = regexp.MustCompile(`^"[\x21\x23-\x7e\x80-\xff]*"$`)

// wantStrongETag checks a 200 carries one strong ETag and returns it.
func wantStrongETag(t *testing.T, r *apiResponse) string {
	t.Helper()
	v := r.header.Values("ETag")
	if len(v) != 1 || !etagPattern.MatchString(v[0]) {
		t.Fatalf("ETag = %q, want one strong entity-tag (issue 3: \"first response has a strong ETag\", RFC 9110 §8.8.3):\n%s", v, r)
	}
	return v[0]
}

// wantNotModified checks a 304 with no body, the same ETag and the budget
// headers.
func wantNotModified(t *testing.T, r *apiResponse, etag string) {
	t.Helper()
	if r.status != http.StatusNotModified {
		t.Fatalf("If-None-Match matching ETag %s: want 304 Not Modified:\n%s", etag, r)
	}
	if len(r.body) != 0 {
		t.Fatalf("304 with a body (RFC 9110 §15.4.5):\n%s", r)
	}
	if got := r.header.Get("ETag"); got != etag {
		t.Fatalf("304 ETag = %q, want %q, as the 200 would have sent (RFC 9110 §15.4.5):\n%s", got, etag, r)
	}
	if r.header.Get("X-RateLimit-Limit") == "" {
		t.Fatalf("304 without X-RateLimit-* (002: \"Every authenticated response carries\" them):\n%s", r)
	}
}
