package redisstore

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestSubjectIndex(t *testing.T) {
	url := storetest.StartRedis(t)

	t.Run("the index is a hash of grant id to nonce in the subject's own slot, without TTL", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		key := defaultKeys.subject("alice")
		if want := "tg:u:{2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90}:grants"; key != want {
			t.Errorf("subject key = %q, want %q", key, want)
		}
		nonce, err := f.c.HGet(ctx, defaultKeys.grant(f.id), "n").Result()
		if err != nil {
			t.Fatal(err)
		}
		if v, err := f.c.HGet(ctx, key, f.id).Result(); err != nil || v != nonce {
			t.Errorf("index entry = %q (%v), want the grant's nonce %q", v, err, nonce)
		}
		if ttl, err := f.c.PTTL(ctx, key).Result(); err != nil || ttl != -1 {
			t.Errorf("index TTL = %v (%v), want none", ttl, err)
		}
		if _, err := f.s.RevokeGrant(ctx, f.id); err != nil {
			t.Fatal(err)
		}
		if n, err := f.c.HExists(ctx, key, f.id).Result(); err != nil || n {
			t.Errorf("index entry after RevokeGrant: %v (%v), want gone", n, err)
		}
	})

	t.Run("listing is one read of the index and one pipeline", func(t *testing.T) {
		f := newFixture(t, url)
		subject := "s-" + storetest.Random()
		for _, id := range []string{f.id, "g" + storetest.Random(), "g" + storetest.Random()} {
			if err := f.s.SaveGrant(t.Context(), store.Grant{ID: id + "x", ClientID: "app", Subject: subject}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		// A first listing warms the pool, whose new connections would
		// log their handshake.
		if _, err := f.s.ListGrants(t.Context(), subject); err != nil {
			t.Fatal(err)
		}
		f.log.take()
		gs, err := f.s.ListGrants(t.Context(), subject)
		if err != nil || len(gs) != 3 {
			t.Fatalf("ListGrants = %d grants, %v", len(gs), err)
		}
		if cmds := f.log.take(); strings.Join(cmds, " ") != "hgetall pipeline" {
			t.Errorf("commands %q, want hgetall, pipeline", cmds)
		}
	})

	t.Run("listing prunes entries of expired grants", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		subject := "s-" + storetest.Random()
		short, long := "g"+storetest.Random(), "g"+storetest.Random()
		for id, ttl := range map[string]time.Duration{short: time.Minute, long: time.Hour} {
			if err := f.s.SaveGrant(ctx, store.Grant{ID: id, ClientID: "app", Subject: subject}, ttl); err != nil {
				t.Fatal(err)
			}
		}
		f.clk.Advance(time.Minute)
		if gs, err := f.s.ListGrants(ctx, subject); err != nil || len(gs) != 1 || gs[0].ID != long {
			t.Fatalf("ListGrants = %+v, %v", gs, err)
		}
		got, err := f.c.HKeys(ctx, defaultKeys.subject(subject)).Result()
		if err != nil || len(got) != 1 || got[0] != long {
			t.Errorf("index = %q (%v), want only %s", got, err, long)
		}
	})

	t.Run("removing an entry spares a newer incarnation of the grant", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		old, err := f.c.HGet(ctx, defaultKeys.grant(f.id), "n").Result()
		if err != nil {
			t.Fatal(err)
		}
		// A revocation whose index removal is delayed past a new consent.
		if _, err := f.s.scripts.revokeGrant.Run(ctx, f.c, []string{defaultKeys.grant(f.id), defaultKeys.counter(f.id)}, f.clk.Now().UnixMilli()).Result(); err != nil {
			t.Fatal(err)
		}
		if err := f.s.SaveGrant(ctx, store.Grant{ID: f.id, ClientID: "app", Subject: "alice"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		f.s.unindex(ctx, "alice", f.id, old)
		if n, err := f.c.HExists(ctx, defaultKeys.subject("alice"), f.id).Result(); err != nil || !n {
			t.Errorf("the new consent's index entry was removed (%v)", err)
		}
	})
}
