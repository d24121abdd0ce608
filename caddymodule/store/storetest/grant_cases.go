package storetest

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func grantCases() []testCase {
	return []testCase{
		{"saved grant reads back", func(t *testing.T, e *env) {
			in := store.Grant{
				ID: e.grantID, ClientID: "app", Subject: "alice",
				Scopes:  []string{"read", "write", "read"},
				Profile: map[string]string{"name": "Alice", "country": "FR"},
			}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, in, grantTTL), nil)
			g, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, nil)
			if g.ID != in.ID || g.ClientID != "app" || g.Subject != "alice" {
				t.Fatalf("grant = %+v", g)
			}
			if !slices.Equal(g.Scopes, []string{"read", "write"}) {
				t.Errorf("scopes = %q, want duplicates dropped", g.Scopes)
			}
			if !maps.Equal(g.Profile, in.Profile) {
				t.Errorf("profile = %v, want %v", g.Profile, in.Profile)
			}
			if !g.CreatedAt.Equal(Epoch()) || !g.LastUsedAt.Equal(Epoch()) {
				t.Errorf("created %v, last used %v, want both %v", g.CreatedAt, g.LastUsedAt, Epoch())
			}
		}},
		{"saved grant keeps given timestamps", func(t *testing.T, e *env) {
			created, used := Epoch().Add(-48*time.Hour), Epoch().Add(-time.Hour)
			in := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice", CreatedAt: created, LastUsedAt: used}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, in, grantTTL), nil)
			g, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, nil)
			if !g.CreatedAt.Equal(created) || !g.LastUsedAt.Equal(used) {
				t.Errorf("created %v, last used %v, want %v, %v", g.CreatedAt, g.LastUsedAt, created, used)
			}
		}},
		{"saving a grant again merges scopes and profile", func(t *testing.T, e *env) {
			first := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice",
				Scopes: []string{"read"}, Profile: map[string]string{"name": "Alice", "role": "admin"}}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, first, grantTTL), nil)
			e.clk.Advance(time.Hour)
			second := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice",
				Scopes: []string{"write", "read"}, Profile: map[string]string{"name": "Alice B."}}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, second, grantTTL), nil)
			g, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, nil)
			if !slices.Equal(g.Scopes, []string{"read", "write"}) {
				t.Errorf("scopes = %q, want the union in consent order", g.Scopes)
			}
			if want := map[string]string{"name": "Alice B.", "role": "admin"}; !maps.Equal(g.Profile, want) {
				t.Errorf("profile = %v, want %v", g.Profile, want)
			}
			if !g.CreatedAt.Equal(Epoch()) {
				t.Errorf("created = %v, want the first save's %v", g.CreatedAt, Epoch())
			}
		}},
		{"saving a grant again never shortens it", func(t *testing.T, e *env) {
			g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice"}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, 2*time.Hour), nil)
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, time.Hour), nil)
			e.clk.Advance(90 * time.Minute)
			_, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant after 90m", err, nil)
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, time.Hour), nil)
			e.clk.Advance(59 * time.Minute)
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant after re-save extended it", err, nil)
		}},
		{"saving a grant id of another client or subject fails", func(t *testing.T, e *env) {
			e.grant(t, "read")
			for _, other := range []store.Grant{
				{ID: e.grantID, ClientID: "evil", Subject: "alice", Scopes: []string{"admin"}},
				{ID: e.grantID, ClientID: "app", Subject: "mallory", Scopes: []string{"admin"}},
			} {
				wantStoreError(t, "SaveGrant", e.s.SaveGrant(e.ctx, other, grantTTL))
			}
			g, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, nil)
			if !slices.Equal(g.Scopes, []string{"read"}) {
				t.Errorf("scopes = %q, want untouched", g.Scopes)
			}
		}},
		{"grant expires after its ttl", func(t *testing.T, e *env) {
			g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice"}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, time.Hour), nil)
			e.clk.Advance(time.Hour - time.Millisecond)
			_, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant just before", err, nil)
			e.clk.Advance(time.Millisecond)
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant at expiry", err, store.ErrNotFound)
			_, err = e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant of expired grant", err, store.ErrNotFound)
		}},
		{"expired grant is created afresh", func(t *testing.T, e *env) {
			g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice", Scopes: []string{"read"}}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, time.Hour), nil)
			e.clk.Advance(2 * time.Hour)
			g.ClientID, g.Scopes = "other", []string{"write"}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, time.Hour), nil)
			got, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, nil)
			if got.ClientID != "other" || !slices.Equal(got.Scopes, []string{"write"}) ||
				!got.CreatedAt.Equal(Epoch().Add(2*time.Hour)) {
				t.Errorf("grant = %+v, want a new one", got)
			}
		}},
		{"grant outlives the tokens issued under it", func(t *testing.T, e *env) {
			g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice"}
			wantErr(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, 10*time.Minute), nil)
			p := e.issue(t, true)
			e.clk.Advance(refreshTTL - time.Minute)
			_, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, nil)
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p.Refresh.Digest)
			wantErr(t, "GetToken refresh", err, nil)
			e.clk.Advance(time.Minute)
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant after the last token", err, store.ErrNotFound)
		}},
		{"unknown grant is not found", func(t *testing.T, e *env) {
			_, err := e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, store.ErrNotFound)
			_, err = e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, store.ErrNotFound)
		}},
		{"revoking a grant returns it once", func(t *testing.T, e *env) {
			e.grant(t, "read", "write")
			g, err := e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			if g.ID != e.grantID || g.ClientID != "app" || g.Subject != "alice" ||
				!slices.Equal(g.Scopes, []string{"read", "write"}) {
				t.Errorf("revoked grant = %+v", g)
			}
			_, err = e.s.GetGrant(e.ctx, e.grantID)
			wantErr(t, "GetGrant", err, store.ErrNotFound)
			_, err = e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant again", err, store.ErrNotFound)
		}},
		{"revoking a grant kills its tokens and codes", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p1 := e.issue(t, true)
			p2 := e.issue(t, false)
			pending, _ := e.code(t)
			_, err := e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			for _, a := range []string{p1.Access.Digest, p2.Access.Digest} {
				if e.alive(t, a) {
					t.Errorf("access token of a revoked grant authenticates")
				}
				_, err := e.s.GetToken(e.ctx, e.grantID, store.Access, a)
				wantErr(t, "GetToken access", err, store.ErrNotFound)
			}
			_, err = e.s.GetToken(e.ctx, e.grantID, store.Refresh, p1.Refresh.Digest)
			wantErr(t, "GetToken refresh", err, store.ErrNotFound)
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, p1.Refresh.Digest, e.pair(true)), store.ErrNotFound)
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, pending)
			wantErr(t, "ConsumeCode of a pending code", err, store.ErrNotFound)
		}},
		{"a grant saved again after revocation does not revive its tokens", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, true)
			pending, _ := e.code(t)
			_, err := e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			e.grant(t, "read")
			if e.alive(t, p.Access.Digest) {
				t.Errorf("old access token authenticates against the new grant")
			}
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, p.Refresh.Digest, e.pair(true)), store.ErrNotFound)
			_, err = e.s.ConsumeCode(e.ctx, e.grantID, pending)
			wantErr(t, "ConsumeCode of the old grant's code", err, store.ErrNotFound)
		}},
		{"a grant id that cannot be a hash tag is refused", func(t *testing.T, e *env) {
			for _, id := range []string{"", "}" + e.grantID} {
				g := store.Grant{ID: id, ClientID: "app", Subject: "alice"}
				wantStoreError(t, "SaveGrant", e.s.SaveGrant(e.ctx, g, grantTTL))
				_, _, err := e.s.Authenticate(e.ctx, id, Random(), store.Limit{Count: 1, Window: time.Second})
				wantErr(t, "Authenticate", err, store.ErrNotFound)
				_, err = e.s.GetGrant(e.ctx, id)
				wantErr(t, "GetGrant", err, store.ErrNotFound)
			}
		}},
		{"zero or negative ttl is an error", func(t *testing.T, e *env) {
			g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice"}
			wantStoreError(t, "SaveGrant ttl 0", e.s.SaveGrant(e.ctx, g, 0))
			wantStoreError(t, "SetBlob ttl -1s", e.s.SetBlob(e.ctx, Random(), []byte("x"), -time.Second))
		}},
		{"ping answers", func(t *testing.T, e *env) {
			wantErr(t, "Ping", e.s.Ping(e.ctx), nil)
		}},
	}
}
