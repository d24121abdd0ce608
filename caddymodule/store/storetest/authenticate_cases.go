package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func authenticateCases() []testCase {
	return []testCase{
		{"authenticate returns the access token", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			tok, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{})
			wantErr(t, "Authenticate", err, nil)
			sameToken(t, tok, p.Access)
			if tok.Pair != p.Refresh.Digest {
				t.Errorf("pair = %q, want %q", tok.Pair, p.Refresh.Digest)
			}
			if st != (store.RateStatus{Allowed: true}) {
				t.Errorf("status = %+v, want allowed and nothing counted", st)
			}
		}},
		{"authenticate with an expired access token is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			e.clk.Advance(accessTTL)
			_, _, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{Count: 10, Window: time.Minute})
			wantErr(t, "Authenticate", err, store.ErrNotFound)
		}},
		{"authenticate with an unknown token is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			e.issue(t, true)
			_, _, err := e.s.Authenticate(e.ctx, e.grantID, Random(), store.Limit{Count: 10, Window: time.Minute})
			wantErr(t, "Authenticate", err, store.ErrNotFound)
		}},
		{"authenticate under the wrong grant is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			other := &env{s: e.s, clk: e.clk, ctx: e.ctx, grantID: "g" + Random()}
			other.grant(t, "read")
			_, _, err := e.s.Authenticate(e.ctx, other.grantID, p.Access.Digest, store.Limit{})
			wantErr(t, "Authenticate", err, store.ErrNotFound)
		}},
		{"authenticate with a token of a revoked grant is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			_, err := e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			_, _, err = e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{Count: 10, Window: time.Minute})
			wantErr(t, "Authenticate", err, store.ErrNotFound)
		}},
		{"authenticate records the grant as used at most once a minute", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			lastUsed := func() time.Time {
				g, err := e.s.GetGrant(e.ctx, e.grantID)
				wantErr(t, "GetGrant", err, nil)
				return g.LastUsedAt
			}
			e.clk.Advance(30 * time.Second)
			e.alive(t, p.Access.Digest)
			if got := lastUsed(); !got.Equal(Epoch()) {
				t.Errorf("last used = %v after 30s, want unchanged %v", got, Epoch())
			}
			e.clk.Advance(31 * time.Second)
			e.alive(t, p.Access.Digest)
			if got, want := lastUsed(), Epoch().Add(61*time.Second); !got.Equal(want) {
				t.Errorf("last used = %v, want %v", got, want)
			}
		}},
		{"a token keeps its scopes", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, _ := e.code(t)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			p := e.pair(false)
			p.Access.Scopes = []string{"profile", "orders:read", "ünïcode"}
			wantErr(t, "IssueTokens", e.s.IssueTokens(e.ctx, e.grantID, d, p), nil)
			tok, _, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{})
			wantErr(t, "Authenticate", err, nil)
			if !slices.Equal(tok.Scopes, p.Access.Scopes) {
				t.Errorf("scopes = %q, want %q", tok.Scopes, p.Access.Scopes)
			}
		}},
		{"an invalid limit is a store error", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			for _, l := range []store.Limit{{Count: -1, Window: time.Minute}, {Count: 5}} {
				_, _, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
				wantStoreError(t, "Authenticate", err)
			}
		}},
	}
}
