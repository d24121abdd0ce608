package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func indexCases() []testCase {
	return []testCase{
		{"a subject's grants are listed newest first", func(t *testing.T, e *env) {
			alice, bob := "alice-"+Random(), "bob-"+Random()
			a := e.grantOf(t, e.grantID, "app", alice, grantTTL, "read")
			p := e.issue(t, false)
			e.clk.Advance(10 * time.Minute)
			b := e.grantOf(t, "g"+Random(), "other", alice, grantTTL, "profile", "email")
			e.grantOf(t, "g"+Random(), "app", bob, grantTTL, "read")
			e.clk.Advance(5 * time.Minute)
			if !e.alive(t, p.Access.Digest) {
				t.Fatal("access token does not authenticate")
			}
			got := e.list(t, alice)
			if len(got) != 2 || got[0].ID != b.ID || got[1].ID != a.ID {
				t.Fatalf("ListGrants = %v, want [%s %s]", ids(got), b.ID, a.ID)
			}
			want := []struct {
				client       string
				scopes       []string
				created, use time.Time
			}{
				{"other", []string{"profile", "email"}, Epoch().Add(10 * time.Minute), Epoch().Add(10 * time.Minute)},
				{"app", []string{"read"}, Epoch(), Epoch().Add(15 * time.Minute)},
			}
			for i, w := range want {
				g := got[i]
				if g.ClientID != w.client || g.Subject != alice || !slices.Equal(g.Scopes, w.scopes) ||
					!g.CreatedAt.Equal(w.created) || !g.LastUsedAt.Equal(w.use) {
					t.Errorf("grant %d = %+v, want client %s, scopes %q, created %v, last used %v",
						i, g, w.client, w.scopes, w.created, w.use)
				}
			}
			if got := e.list(t, bob); len(got) != 1 || got[0].ClientID != "app" {
				t.Errorf("ListGrants other subject = %+v", got)
			}
		}},
		{"a subject without grants lists none", func(t *testing.T, e *env) {
			if got := e.list(t, "nobody-"+Random()); len(got) != 0 {
				t.Errorf("ListGrants = %v, want none", ids(got))
			}
		}},
		{"a revoked grant is no longer listed", func(t *testing.T, e *env) {
			alice := "alice-" + Random()
			e.grantOf(t, e.grantID, "app", alice, grantTTL, "read")
			b := e.grantOf(t, "g"+Random(), "other", alice, grantTTL, "read")
			_, err := e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			if got := e.list(t, alice); len(got) != 1 || got[0].ID != b.ID {
				t.Errorf("ListGrants = %v, want [%s]", ids(got), b.ID)
			}
		}},
		{"an expired grant is no longer listed", func(t *testing.T, e *env) {
			alice := "alice-" + Random()
			e.grantOf(t, e.grantID, "app", alice, time.Hour, "read")
			b := e.grantOf(t, "g"+Random(), "other", alice, grantTTL, "read")
			e.clk.Advance(time.Hour - time.Millisecond)
			if got := e.list(t, alice); len(got) != 2 {
				t.Errorf("ListGrants before expiry = %v, want both", ids(got))
			}
			e.clk.Advance(time.Millisecond)
			for range 2 { // the second listing reads the pruned index
				if got := e.list(t, alice); len(got) != 1 || got[0].ID != b.ID {
					t.Errorf("ListGrants = %v, want [%s]", ids(got), b.ID)
				}
			}
		}},
		{"a revoked then re-consented grant is listed once", func(t *testing.T, e *env) {
			alice := "alice-" + Random()
			e.grantOf(t, e.grantID, "app", alice, grantTTL, "read")
			_, err := e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			e.clk.Advance(time.Minute)
			e.grantOf(t, e.grantID, "app", alice, grantTTL, "write")
			e.grantOf(t, e.grantID, "app", alice, grantTTL, "read")
			got := e.list(t, alice)
			if len(got) != 1 || got[0].ID != e.grantID {
				t.Fatalf("ListGrants = %v, want [%s]", ids(got), e.grantID)
			}
			if !slices.Equal(got[0].Scopes, []string{"write", "read"}) || !got[0].CreatedAt.Equal(Epoch().Add(time.Minute)) {
				t.Errorf("grant = %+v, want the new consent's scopes and creation", got[0])
			}
		}},
		{"a grant id taken by another subject after expiry moves to its list", func(t *testing.T, e *env) {
			alice, bob := "alice-"+Random(), "bob-"+Random()
			e.grantOf(t, e.grantID, "app", alice, time.Hour, "read")
			e.clk.Advance(2 * time.Hour)
			e.grantOf(t, e.grantID, "app", bob, time.Hour, "read")
			if got := e.list(t, alice); len(got) != 0 {
				t.Errorf("ListGrants first subject = %v, want none", ids(got))
			}
			if got := e.list(t, bob); len(got) != 1 || got[0].Subject != bob {
				t.Errorf("ListGrants second subject = %+v", got)
			}
		}},
		{"a grant outliving its consent ttl through its tokens stays listed", func(t *testing.T, e *env) {
			alice := "alice-" + Random()
			e.grantOf(t, e.grantID, "app", alice, 10*time.Minute, "read")
			e.issue(t, true)
			e.clk.Advance(refreshTTL - time.Minute)
			if got := e.list(t, alice); len(got) != 1 || got[0].ID != e.grantID {
				t.Errorf("ListGrants = %v, want [%s]", ids(got), e.grantID)
			}
		}},
	}
}

// grantOf saves a grant of the given id, client and subject.
func (e *env) grantOf(t *testing.T, id, client, subject string, ttl time.Duration, scopes ...string) store.Grant {
	t.Helper()
	g := store.Grant{ID: id, ClientID: client, Subject: subject, Scopes: scopes}
	if err := e.s.SaveGrant(e.ctx, g, ttl); err != nil {
		t.Fatalf("SaveGrant: %v", err)
	}
	return g
}

// list returns the subject's grants, failing the test on an error.
func (e *env) list(t *testing.T, subject string) []store.Grant {
	t.Helper()
	gs, err := e.s.ListGrants(e.ctx, subject)
	if err != nil {
		t.Fatalf("ListGrants: %v", err)
	}
	return gs
}

// ids lists the grants' ids, for messages.
func ids(gs []store.Grant) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.ID
	}
	return out
}
