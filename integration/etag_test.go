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
// /v1/me/sea-time and /v1/me/vessels each return record_updated_at and
// support conditional GETs: the partner caches the ETag and sends it back
// as If-None-Match, and a 304 costs nothing against the rate-limit budget
// (docs/partners.md D12, D49, D50). So the first response has a strong
// ETag; replaying it as If-None-Match gets 304 with no body, and the 304
// does not count against the budget (X-RateLimit-Remaining on the next 200
// shows it; README "Rate limits"); a non-matching tag gets 200. RFC 9110
// §13.1.2 (weak comparison, "*"), §15.4.5 (304 has no content).
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
		// ("*" matches too, but is not free: TestConditionalGetStarIsNotRefunded.)
		for _, field := range []string{seatime, "W/" + seatime, `"no-such-tag", ` + seatime, seatime} {
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
		t.Fatalf("ETag = %q, want one strong entity-tag (docs/architecture.md §5.4; RFC 9110 §8.8.3):\n%s", v, r)
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
		t.Fatalf("304 without X-RateLimit-* (docs/partners.md D48: every authenticated response carries them):\n%s", r)
	}
}

// TestConditionalGetStarIsNotRefunded sends 200 conditional GETs with
// If-None-Match: * under a budget of 20 per hour. "*" matches whatever the
// upstream answers, so each is a 304, and each had the upstream serve the
// request: if they were free the upstream would be called without bound.
// The budget must fall with each one until 429, and the upstream be called
// at most 20 times.
//
// README, Rate limits: a 304 answered to If-None-Match: * is not refunded.
func TestConditionalGetStarIsNotRefunded(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{rateLimit: "20/1h"}, func(t *testing.T, gw *gateway, up *upstream) {
		const limit, window = 20, time.Hour
		tok, _ := obtainTokens(t, gw, "seatime:read")
		clearOfWindowEnd(window, 30*time.Second)
		n := up.count()
		var notModified, tooMany int
		for i := range 200 {
			field := "*"
			if i%2 == 1 {
				field = `"no-such-tag", *`
			}
			r := gw.call(t, "/v1/me/sea-time", bearer(tok.AccessToken), http.Header{"If-None-Match": {field}})
			switch r.status {
			case http.StatusNotModified:
				notModified++
				if f := wantRate(t, r, limit, window); f.remaining != int64(limit-notModified) {
					t.Fatalf("304 number %d to If-None-Match: %s: X-RateLimit-Remaining = %d, want %d (not refunded):\n%s", notModified, field, f.remaining, limit-notModified, r)
				}
			case http.StatusTooManyRequests:
				tooMany++
			default:
				t.Fatalf("want 304 or 429:\n%s", r)
			}
		}
		if notModified != limit || tooMany != 200-limit {
			t.Fatalf("%d 304s and %d 429s, want %d and %d: a 304 to If-None-Match: * spends the budget", notModified, tooMany, limit, 200-limit)
		}
		if calls := len(up.since(n)); calls > limit {
			t.Fatalf("the upstream was called %d times for 200 requests under a budget of %d", calls, limit)
		}
	})
}

// TestConditionalGetRefundsAreCapped replays a valid ETag under a budget
// of 5 per hour until the gateway answers 429. Each 304 had the upstream
// serve the request, so refunds stop after 5 in the window: the grant gets
// 10 answers in all (the upstream serves at most twice the budget), the
// first five 304s are free and the next ones spend the budget, as their
// X-RateLimit-Remaining shows.
//
// README, Rate limits: refunds per grant per window are capped at the
// budget.
func TestConditionalGetRefundsAreCapped(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{rateLimit: "5/1h"}, func(t *testing.T, gw *gateway, up *upstream) {
		const limit, window = 5, time.Hour
		tok, _ := obtainTokens(t, gw, "vessels:read")
		clearOfWindowEnd(window, 30*time.Second)
		n := up.count()
		r := gw.call(t, "/v1/me/vessels", bearer(tok.AccessToken), nil)
		if r.status != http.StatusOK {
			t.Fatalf("want 200:\n%s", r)
		}
		etag := wantStrongETag(t, r)
		// 5 refunded 304s show 4 left, the next 4 spend it: 3, 2, 1, 0.
		want := []int64{4, 4, 4, 4, 4, 3, 2, 1, 0}
		for i, rem := range want {
			r := gw.call(t, "/v1/me/vessels", bearer(tok.AccessToken), http.Header{"If-None-Match": {etag}})
			wantNotModified(t, r, etag)
			if f := wantRate(t, r, limit, window); f.remaining != rem {
				t.Fatalf("304 number %d: X-RateLimit-Remaining = %d, want %d (refunds stop after %d per window):\n%s", i+1, f.remaining, rem, limit, r)
			}
		}
		r = gw.call(t, "/v1/me/vessels", bearer(tok.AccessToken), http.Header{"If-None-Match": {etag}})
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("after a 200 and 9 304s under a budget of 5, want 429:\n%s", r)
		}
		if calls := len(up.since(n)); calls != 2*limit {
			t.Fatalf("the upstream was called %d times, want %d: twice the budget, no more", calls, 2*limit)
		}
	})
}
