package storetest

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// grace is the reuse grace window the cases use.
const grace = 30 * time.Second

func reuseCases() []testCase {
	return []testCase{
		{"reusing a rotated-out refresh token after the grace window revokes the grant", func(t *testing.T, e *env) {
			subject := "alice-" + Random()
			e.grantOf(t, e.grantID, "app", subject, grantTTL, "read")
			old := e.issue(t, true)
			p := e.pair(true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), nil)
			e.clk.Advance(grace + time.Millisecond)
			_, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, old.Refresh.Digest)
			wantErr(t, "GetToken old refresh", err, store.ErrNotFound)
			g, err := e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse", err, store.ErrRefreshReused)
			if g.ID != e.grantID || g.ClientID != "app" || g.Subject != subject || !slices.Equal(g.Scopes, []string{"read"}) {
				t.Errorf("revoked grant = %+v", g)
			}
			if e.alive(t, p.Access.Digest) {
				t.Errorf("the rotated pair's access token survived the reuse")
			}
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken rotated refresh", err, store.ErrNotFound)
			wantErr(t, "Rotate the rotated refresh", e.s.Rotate(e.ctx, e.grantID, p.Refresh.Digest, e.pair(true)), store.ErrNotFound)
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, store.ErrNotFound)
			if gs := e.list(t, subject); len(gs) != 0 {
				t.Errorf("ListGrants = %v, want the revoked grant gone", ids(gs))
			}
		}},
		{"reusing a rotated-out refresh token again after the revocation revokes nothing more", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, e.pair(true)), nil)
			e.clk.Advance(time.Hour)
			_, err := e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse", err, store.ErrRefreshReused)
			_, err = e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse again", err, store.ErrNotFound)
			// The user consents again: the grant id is the same (one per
			// client and subject), the old token must not touch it.
			e.grant(t, "read")
			fresh := e.issue(t, true)
			_, err = e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse after re-consent", err, store.ErrNotFound)
			wantErr(t, "Rotate the old refresh", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, e.pair(true)), store.ErrNotFound)
			if !e.alive(t, fresh.Access.Digest) {
				t.Errorf("the re-consented grant's token does not authenticate")
			}
		}},
		{"reusing a rotated-out refresh token inside the grace window revokes nothing", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			p := e.pair(true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), nil)
			for _, d := range []time.Duration{0, grace / 2, grace / 2} { // ends exactly at grace
				e.clk.Advance(d)
				_, err := e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
				wantErr(t, "CheckReuse", err, store.ErrNotFound)
			}
			if !e.alive(t, p.Access.Digest) {
				t.Errorf("the rotated pair's access token does not authenticate")
			}
			_, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken rotated refresh", err, nil)
			e.clk.Advance(time.Millisecond)
			_, err = e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse just after the window", err, store.ErrRefreshReused)
		}},
		{"concurrent rotations: the loser's reuse check inside the window keeps the winner's pair", func(t *testing.T, e *env) {
			e.grant(t, "read")
			for i := range 20 {
				old := e.issue(t, true)
				pairs := [2]store.Pair{e.pair(true), e.pair(true)}
				won := rotateConcurrently(t, e, i, old.Refresh.Digest, pairs, func() error {
					// What the token endpoint does with a refresh token
					// that GetToken or Rotate did not find.
					_, err := e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
					if err == nil {
						t.Errorf("round %d: CheckReuse returned no error", i)
					}
					return err
				})
				w := pairs[won]
				if !e.alive(t, w.Access.Digest) {
					t.Fatalf("round %d: the winner's access token does not authenticate", i)
				}
				if _, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, w.Refresh.Digest); err != nil {
					t.Fatalf("round %d: GetToken winner's refresh: %v", i, err)
				}
			}
		}},
		{"a refresh token never rotated out is not a reuse", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			e.clk.Advance(time.Hour)
			for _, d := range []string{Random(), p.Refresh.Digest, p.Access.Digest} {
				_, err := e.s.CheckReuse(e.ctx, e.grantID, d, grace)
				wantErr(t, "CheckReuse", err, store.ErrNotFound)
			}
			_, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, nil)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken refresh", err, nil)
		}},
		{"an access token rotated out is not a reuse", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			p := e.pair(true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), nil)
			e.clk.Advance(time.Hour)
			_, err := e.s.CheckReuse(e.ctx, e.grantID, old.Access.Digest, grace)
			wantErr(t, "CheckReuse", err, store.ErrNotFound)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken rotated refresh", err, nil)
		}},
		{"a rotated-out refresh token past its own expiry is not a reuse", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			e.clk.Advance(time.Hour)
			p := e.pair(true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), nil)
			// The mark is kept until the old token would have expired, not
			// after: presenting it then is plain expiry.
			e.clk.Advance(refreshTTL - time.Hour)
			_, err := e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse at the old token's expiry", err, store.ErrNotFound)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken rotated refresh", err, nil)
		}},
		{"a rotated-out refresh token is a reuse until its own expiry", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			e.clk.Advance(time.Hour)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, e.pair(true)), nil)
			e.clk.Advance(refreshTTL - time.Hour - time.Millisecond)
			_, err := e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse just before the old token's expiry", err, store.ErrRefreshReused)
		}},
		{"reusing a refresh token of a revoked grant is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, e.pair(true)), nil)
			_, err := e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			e.clk.Advance(time.Hour)
			_, err = e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse", err, store.ErrNotFound)
			e.grant(t, "read")
			_, err = e.s.CheckReuse(e.ctx, e.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse after re-consent", err, store.ErrNotFound)
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant after re-consent", err, nil)
		}},
		{"a reuse check names the grant it revokes", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, e.pair(true)), nil)
			other := &env{s: e.s, clk: e.clk, ctx: e.ctx, grantID: "g" + Random()}
			other.grant(t, "read")
			e.clk.Advance(time.Hour)
			_, err := e.s.CheckReuse(e.ctx, other.grantID, old.Refresh.Digest, grace)
			wantErr(t, "CheckReuse under another grant", err, store.ErrNotFound)
			_, err = e.s.GetGrant(e.ctx, other.grantID)
			wantErr(t, "GetGrant other", err, nil)
			for _, id := range []string{"", "}" + e.grantID} {
				_, err = e.s.CheckReuse(e.ctx, id, old.Refresh.Digest, grace)
				wantErr(t, "CheckReuse with a bad grant id", err, store.ErrNotFound)
			}
		}},
	}
}

// ringCases are the reuse behaviours of a grant refreshed many times: it
// remembers its last store.RotatedRemembered rotated-out refresh tokens,
// however many rotations came before.
func ringCases() []testCase {
	// rotateMany rotates the grant's pair n times, a minute apart, and
	// returns every refresh digest rotated out, oldest first, and the
	// current pair.
	rotateMany := func(t *testing.T, e *env, n int) ([]string, store.Pair) {
		t.Helper()
		p := e.issue(t, true)
		out := make([]string, 0, n)
		for range n {
			e.clk.Advance(time.Minute)
			next := e.pair(true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, p.Refresh.Digest, next), nil)
			out = append(out, p.Refresh.Digest)
			p = next
		}
		return out, p
	}
	return []testCase{
		{"after 1,000 rotations each of the last rotated-out refresh tokens is a reuse", func(t *testing.T, e *env) {
			for back := 1; back <= store.RotatedRemembered; back++ {
				e := &env{s: e.s, clk: e.clk, ctx: e.ctx, grantID: "g" + Random()}
				e.grant(t, "read")
				old, p := rotateMany(t, e, 1000)
				e.clk.Advance(grace + time.Millisecond)
				_, err := e.s.CheckReuse(e.ctx, e.grantID, old[len(old)-back], grace)
				wantErr(t, "CheckReuse of the token rotated out "+strconv.Itoa(back)+" rotations back", err, store.ErrRefreshReused)
				if e.alive(t, p.Access.Digest) {
					t.Errorf("%d back: the current access token survived the reuse", back)
				}
				wantErr(t, "Rotate the current refresh token", e.s.Rotate(e.ctx, e.grantID, p.Refresh.Digest, e.pair(true)), store.ErrNotFound)
			}
		}},
		{"after many rotations the grace window still spares a racing refresh", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old, p := rotateMany(t, e, 100)
			// The loser of a race presents the token the winner just
			// rotated out, within grace.
			_, err := e.s.CheckReuse(e.ctx, e.grantID, old[len(old)-1], grace)
			wantErr(t, "CheckReuse inside grace", err, store.ErrNotFound)
			if !e.alive(t, p.Access.Digest) {
				t.Errorf("the current access token does not authenticate")
			}
		}},
		{"a refresh token rotated out longer ago than the ring reaches is only not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old, p := rotateMany(t, e, store.RotatedRemembered+1)
			e.clk.Advance(time.Hour)
			_, err := e.s.CheckReuse(e.ctx, e.grantID, old[0], grace)
			wantErr(t, "CheckReuse of a token past the ring", err, store.ErrNotFound)
			wantErr(t, "Rotate it", e.s.Rotate(e.ctx, e.grantID, old[0], e.pair(true)), store.ErrNotFound)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken the current refresh token", err, nil)
		}},
		{"a grant holds several pairs, each rotating on its own, and a reuse of any revokes them all", func(t *testing.T, e *env) {
			e.grant(t, "read")
			var pairs []store.Pair
			for range store.PairsPerGrant {
				pairs = append(pairs, e.issue(t, true))
			}
			next := e.pair(true)
			wantErr(t, "Rotate the second pair", e.s.Rotate(e.ctx, e.grantID, pairs[1].Refresh.Digest, next), nil)
			old := pairs[1].Refresh.Digest
			pairs[1] = next
			for i, p := range pairs {
				if !e.alive(t, p.Access.Digest) {
					t.Errorf("pair %d's access token does not authenticate", i)
				}
				r, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
				wantErr(t, "GetToken refresh of pair "+strconv.Itoa(i), err, nil)
				if r.Pair != p.Access.Digest {
					t.Errorf("pair %d's refresh token names %q as its pair, want %q", i, r.Pair, p.Access.Digest)
				}
			}
			e.clk.Advance(grace + time.Millisecond)
			_, err := e.s.CheckReuse(e.ctx, e.grantID, old, grace)
			wantErr(t, "CheckReuse", err, store.ErrRefreshReused)
			for i, p := range pairs {
				if e.alive(t, p.Access.Digest) {
					t.Errorf("pair %d's access token survived the reuse", i)
				}
			}
		}},
		{"a pair beyond what a grant holds replaces the one that would expire first, which is no reuse", func(t *testing.T, e *env) {
			e.grant(t, "read")
			var pairs []store.Pair
			for range store.PairsPerGrant {
				pairs = append(pairs, e.issue(t, true))
				e.clk.Advance(time.Minute)
			}
			newest := e.issue(t, true)
			first := pairs[0]
			if e.alive(t, first.Access.Digest) {
				t.Errorf("the replaced access token still authenticates")
			}
			wantErr(t, "Rotate the replaced refresh token", e.s.Rotate(e.ctx, e.grantID, first.Refresh.Digest, e.pair(true)), store.ErrNotFound)
			for i, p := range append(pairs[1:], newest) {
				if !e.alive(t, p.Access.Digest) {
					t.Errorf("pair %d's access token does not authenticate", i+1)
				}
			}
			e.clk.Advance(time.Minute)
			_, err := e.s.CheckReuse(e.ctx, e.grantID, first.Refresh.Digest, grace)
			wantErr(t, "CheckReuse of the replaced refresh token", err, store.ErrNotFound)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, newest.Refresh.Digest)
			wantErr(t, "GetToken the newest refresh token", err, nil)
		}},
	}
}
