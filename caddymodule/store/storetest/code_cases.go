package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func codeCases() []testCase {
	return []testCase{
		{"saving a code needs a live grant", func(t *testing.T, e *env) {
			c := store.Code{ClientID: "app", ExpiresAt: e.clk.Now().Add(codeTTL)}
			wantErr(t, "SaveCode", e.s.SaveCode(e.ctx, e.grantID, Random(), c), store.ErrNotFound)
		}},
		{"a code is consumed once", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, want := e.code(t)
			got, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			if got.ClientID != want.ClientID || got.Subject != want.Subject ||
				got.RedirectURI != want.RedirectURI || got.Challenge != want.Challenge ||
				!slices.Equal(got.Scopes, want.Scopes) || !got.ExpiresAt.Equal(want.ExpiresAt) {
				t.Fatalf("code = %+v, want %+v", got, want)
			}
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode again", err, store.ErrCodeReplayed)
		}},
		{"an unknown code is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, Random())
			wantErr(t, "ConsumeCode", err, store.ErrNotFound)
		}},
		{"an expired code is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, _ := e.code(t)
			e.clk.Advance(codeTTL)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, store.ErrNotFound)
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode again", err, store.ErrNotFound)
		}},
		{"a code of another grant is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, _ := e.code(t)
			other := &env{s: e.s, clk: e.clk, ctx: e.ctx, grantID: "g" + Random()}
			other.grant(t, "read")
			_, err := e.s.ConsumeCode(e.ctx, other.grantID, d)
			wantErr(t, "ConsumeCode", err, store.ErrNotFound)
		}},
		{"a code keeps its grant alive", func(t *testing.T, e *env) {
			g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice"}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, time.Second), nil)
			d, _ := e.code(t)
			e.clk.Advance(codeTTL - time.Second)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
		}},
		{"code replay after issue revokes the grant", func(t *testing.T, e *env) {
			e.grant(t, "read")
			earlier := e.issue(t, true)
			d, _ := e.code(t)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			p := e.pair(true)
			wantErr(t, "IssueTokens", e.s.IssueTokens(e.ctx, e.grantID, d, p), nil)
			if !e.alive(t, p.Access.Digest) {
				t.Fatalf("issued access token does not authenticate")
			}
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode replay", err, store.ErrCodeReplayed)
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, store.ErrNotFound)
			for _, a := range []string{p.Access.Digest, earlier.Access.Digest} {
				if e.alive(t, a) {
					t.Errorf("access token survived the replay")
				}
			}
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, p.Refresh.Digest, e.pair(true)), store.ErrNotFound)
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode third time", err, store.ErrCodeReplayed)
		}},
		{"code replay before issue makes issue fail and revoke the grant", func(t *testing.T, e *env) {
			e.grant(t, "read")
			earlier := e.issue(t, true)
			d, _ := e.code(t)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode replay", err, store.ErrCodeReplayed)
			if !e.alive(t, earlier.Access.Digest) {
				t.Fatalf("a replay before any token was issued from the code revoked the grant early")
			}
			p := e.pair(true)
			wantErr(t, "IssueTokens", e.s.IssueTokens(e.ctx, e.grantID, d, p), store.ErrCodeReplayed)
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, store.ErrNotFound)
			for _, a := range []string{p.Access.Digest, earlier.Access.Digest} {
				if e.alive(t, a) {
					t.Errorf("access token survived the replay")
				}
			}
		}},
		{"a code replayed after its grant was revoked is still a replay", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, _ := e.code(t)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			_, err = e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode replay", err, store.ErrCodeReplayed)
		}},
		{"issuing tokens twice for one code revokes the grant", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, _ := e.code(t)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			p := e.pair(true)
			wantErr(t, "IssueTokens", e.s.IssueTokens(e.ctx, e.grantID, d, p), nil)
			wantErr(t, "IssueTokens again", e.s.IssueTokens(e.ctx, e.grantID, d, e.pair(true)), store.ErrCodeReplayed)
			if e.alive(t, p.Access.Digest) {
				t.Errorf("access token survived")
			}
		}},
		{"issuing tokens for a code never consumed is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, _ := e.code(t)
			p := e.pair(true)
			wantErr(t, "IssueTokens", e.s.IssueTokens(e.ctx, e.grantID, d, p), store.ErrNotFound)
			if e.alive(t, p.Access.Digest) {
				t.Errorf("token stored without a consumed code")
			}
		}},
		{"issuing tokens for a revoked grant is not found", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, _ := e.code(t)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			_, err = e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			p := e.pair(true)
			wantErr(t, "IssueTokens", e.s.IssueTokens(e.ctx, e.grantID, d, p), store.ErrNotFound)
			if e.alive(t, p.Access.Digest) {
				t.Errorf("token stored for a revoked grant")
			}
		}},
		{"a replay marker is forgotten after a day", func(t *testing.T, e *env) {
			g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice"}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, 48*time.Hour), nil)
			d, _ := e.code(t)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			e.clk.Advance(24 * time.Hour)
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode a day later", err, store.ErrNotFound)
			wantErr(t, "IssueTokens a day later", e.s.IssueTokens(e.ctx, e.grantID, d, e.pair(false)), store.ErrNotFound)
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, nil)
		}},
	}
}
