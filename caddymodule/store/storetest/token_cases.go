package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func tokenCases() []testCase {
	return []testCase{
		{"issued tokens read back with their pair", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			a, err := e.s.GetToken(e.ctx, e.grantID, store.Access, p.Access.Digest)
			wantErr(t, "GetToken access", err, nil)
			sameToken(t, a, p.Access)
			r, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken refresh", err, nil)
			sameToken(t, r, p.Refresh)
			if a.Pair != p.Refresh.Digest || r.Pair != p.Access.Digest {
				t.Errorf("pairs = %q, %q; want each naming the other", a.Pair, r.Pair)
			}
		}},
		{"an access token may come without a refresh token", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			a, err := e.s.GetToken(e.ctx, e.grantID, store.Access, p.Access.Digest)
			wantErr(t, "GetToken", err, nil)
			if a.Pair != "" {
				t.Errorf("pair = %q, want none", a.Pair)
			}
		}},
		{"a token is only found under its own kind", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			_, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Access.Digest)
			wantErr(t, "GetToken access as refresh", err, store.ErrNotFound)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Access, p.Refresh.Digest)
			wantErr(t, "GetToken refresh as access", err, store.ErrNotFound)
			_, _, err = e.s.Authenticate(e.ctx, e.grantID, p.Refresh.Digest, store.Limit{})
			wantErr(t, "Authenticate with a refresh token", err, store.ErrNotFound)
		}},
		{"tokens expire", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			e.clk.Advance(accessTTL - time.Millisecond)
			_, err := e.s.GetToken(e.ctx, e.grantID, store.Access, p.Access.Digest)
			wantErr(t, "GetToken access just before", err, nil)
			e.clk.Advance(time.Millisecond)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Access, p.Access.Digest)
			wantErr(t, "GetToken access at expiry", err, store.ErrNotFound)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken refresh", err, nil)
			e.clk.Advance(refreshTTL - accessTTL)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken refresh at expiry", err, store.ErrNotFound)
		}},
		{"a revocation finds a current token past its expiry, never a rotated-out one", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			e.clk.Advance(accessTTL) // the access token has expired
			got, err := e.s.RevocableToken(e.ctx, e.grantID, store.Access, old.Access.Digest)
			wantErr(t, "RevocableToken expired access", err, nil)
			sameToken(t, got, old.Access)
			_, err = e.s.RevocableToken(e.ctx, e.grantID, store.Refresh, old.Access.Digest)
			wantErr(t, "RevocableToken under the other kind", err, store.ErrNotFound)
			_, err = e.s.RevocableToken(e.ctx, e.grantID, store.Access, Random())
			wantErr(t, "RevocableToken unknown", err, store.ErrNotFound)
			// Rotated out, the old pair is no longer the grant's.
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, e.pair(true)), nil)
			_, err = e.s.RevocableToken(e.ctx, e.grantID, store.Access, old.Access.Digest)
			wantErr(t, "RevocableToken rotated-out access", err, store.ErrNotFound)
			_, err = e.s.RevocableToken(e.ctx, e.grantID, store.Refresh, old.Refresh.Digest)
			wantErr(t, "RevocableToken rotated-out refresh", err, store.ErrNotFound)
		}},
		{"a revocation finds nothing of a revoked grant", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			if _, err := e.s.RevokeGrant(e.ctx, e.grantID); err != nil {
				t.Fatalf("RevokeGrant: %v", err)
			}
			_, err := e.s.RevocableToken(e.ctx, e.grantID, store.Access, p.Access.Digest)
			wantErr(t, "RevocableToken after revocation", err, store.ErrNotFound)
		}},
		{"unknown token is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			_, err := e.s.GetToken(e.ctx, e.grantID, store.Access, Random())
			wantErr(t, "GetToken", err, store.ErrNotFound)
		}},
		{"rotate replaces the pair", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			e.clk.Advance(accessTTL) // the usual case: the access token has expired
			p := e.pair(true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), nil)
			_, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, old.Refresh.Digest)
			wantErr(t, "GetToken old refresh", err, store.ErrNotFound)
			a, err := e.s.GetToken(e.ctx, e.grantID, store.Access, p.Access.Digest)
			wantErr(t, "GetToken new access", err, nil)
			sameToken(t, a, p.Access)
			r, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken new refresh", err, nil)
			sameToken(t, r, p.Refresh)
			if r.Pair != p.Access.Digest {
				t.Errorf("new refresh pair = %q, want %q", r.Pair, p.Access.Digest)
			}
			wantErr(t, "Rotate the old token again", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, e.pair(true)), store.ErrNotFound)
		}},
		{"rotate deletes the old access token", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, e.pair(true)), nil)
			if e.alive(t, old.Access.Digest) {
				t.Errorf("old access token still authenticates")
			}
		}},
		{"rotate may drop the refresh token", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			p := e.pair(false)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), nil)
			if !e.alive(t, p.Access.Digest) {
				t.Errorf("new access token does not authenticate")
			}
		}},
		{"rotate keeps the grant alive", func(t *testing.T, e *env) {
			g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice"}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, time.Hour), nil)
			old := e.issue(t, true)
			e.clk.Advance(refreshTTL - time.Minute)
			p := e.pair(true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), nil)
			e.clk.Advance(refreshTTL - time.Minute)
			if _, err := e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest); err != nil {
				t.Fatalf("GetToken new refresh: %v", err)
			}
		}},
		{"rotate with an expired refresh token is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			e.clk.Advance(refreshTTL) // the grant (grantTTL) is still live
			p := e.pair(true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), store.ErrNotFound)
			if e.alive(t, p.Access.Digest) {
				t.Errorf("new pair stored by a failed rotation")
			}
		}},
		{"rotate with an unknown refresh token is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			e.issue(t, true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, Random(), e.pair(true)), store.ErrNotFound)
		}},
		{"rotate with an access token is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			old := e.issue(t, true)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Access.Digest, e.pair(true)), store.ErrNotFound)
		}},
		{"concurrent rotations of one refresh token: exactly one wins", func(t *testing.T, e *env) {
			e.grant(t, "read")
			for i := range 50 {
				old := e.issue(t, true)
				pairs := [2]store.Pair{e.pair(true), e.pair(true)}
				won := rotateConcurrently(t, e, i, old.Refresh.Digest, pairs, nil)
				if !e.alive(t, pairs[won].Access.Digest) || e.alive(t, pairs[1-won].Access.Digest) {
					t.Fatalf("round %d: the winner's pair is not the one stored", i)
				}
			}
		}},
	}
}

// rotateConcurrently rotates oldRefresh into both pairs at once and returns
// the index of the rotation that won, failing unless exactly one did and
// the other got ErrNotFound. afterLoss, when set, runs in the losing
// goroutine (as the token endpoint's next step would) and its error must be
// ErrNotFound too.
func rotateConcurrently(t *testing.T, e *env, round int, oldRefresh string, pairs [2]store.Pair, afterLoss func() error) int {
	t.Helper()
	var errs [2]error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for j := range pairs {
		wg.Go(func() {
			<-start
			errs[j] = e.s.Rotate(e.ctx, e.grantID, oldRefresh, pairs[j])
			if afterLoss != nil && errors.Is(errs[j], store.ErrNotFound) {
				errs[j] = afterLoss()
			}
		})
	}
	close(start)
	wg.Wait()
	won := -1
	for j, err := range errs {
		switch {
		case err == nil && won < 0:
			won = j
		case err == nil:
			t.Fatalf("round %d: both rotations succeeded", round)
		case !errors.Is(err, store.ErrNotFound):
			t.Fatalf("round %d: the loser got %v, want ErrNotFound", round, err)
		}
	}
	if won < 0 {
		t.Fatalf("round %d: both rotations failed", round)
	}
	return won
}
