package memory

import (
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// maxGrantBytes is what one live grant may cost in process memory, its
// access and refresh token, code replay marker and rate-limit counter
// included, however often it has been refreshed (README.md "Refresh
// tokens, reuse and disconnect").
const maxGrantBytes = 1024

func heapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestGrantMemoryBound measures the heap over 10,000 grants driven as the
// gateway drives them, at rest after issue and after enough rotations to
// fill every ring, then 10,000 rotations of one grant.
func TestGrantMemoryBound(t *testing.T) {
	const grants = 10_000
	clk := storetest.NewClock()
	s := New(clk.Now)
	defer s.Close()
	ctx := t.Context()
	scopes := []string{"profile:read", "seatime:read", "vessels:read"}
	budget := store.Limit{Count: 5000, Window: time.Hour}
	digest := func() string { return storetest.Random() + storetest.Random() }
	pair := func(id string) store.Pair {
		now := clk.Now()
		return store.Pair{
			Access: store.Token{Digest: digest(), ClientID: "ywc_a1b2c3d4", Subject: "u_" + id[:10], Scopes: scopes,
				ExpiresAt: now.Add(time.Hour), Limit: budget},
			Refresh: store.Token{Digest: digest(), ClientID: "ywc_a1b2c3d4", Subject: "u_" + id[:10], Scopes: scopes,
				ExpiresAt: now.Add(90 * 24 * time.Hour)},
		}
	}
	ids := make([]string, grants)
	refresh := make([]string, grants)
	before := heapBytes()
	for i := range ids {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id := base64.RawURLEncoding.EncodeToString(b[:])
		ids[i] = id
		g := store.Grant{ID: id, ClientID: "ywc_a1b2c3d4", Subject: "u_" + id[:10], Scopes: scopes,
			Profile: map[string]string{"name": "Alice Martin", "country": "FR"}}
		if err := s.SaveGrant(ctx, g, 90*24*time.Hour); err != nil {
			t.Fatal(err)
		}
		code := digest()
		if err := s.SaveCode(ctx, id, code, store.Code{ClientID: g.ClientID, Subject: g.Subject,
			RedirectURI: "https://partner.example/oauth/callback", Scopes: scopes, ExpiresAt: clk.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsumeCode(ctx, id, code); err != nil {
			t.Fatal(err)
		}
		p := pair(id)
		if err := s.IssueTokens(ctx, id, code, p); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Authenticate(ctx, id, p.Access.Digest, store.Limit{}); err != nil {
			t.Fatal(err)
		}
		refresh[i] = p.Refresh.Digest
	}
	// ids and refresh are the test's, not the store's: 16 bytes of slice
	// each, and the refresh digests' bytes are the store's too.
	perGrant := func() int64 {
		return (int64(heapBytes()) - int64(before) - 2*16*grants) / grants
	}
	atRest := perGrant()
	t.Logf("memory store, at rest after issue: %d bytes per grant over %d grants", atRest, grants)
	if atRest > maxGrantBytes {
		t.Errorf("a fresh grant costs %d bytes, want at most %d", atRest, maxGrantBytes)
	}

	for range 2 * ringSize {
		clk.Advance(time.Hour)
		for i, id := range ids {
			p := pair(id)
			if err := s.Rotate(ctx, id, refresh[i], p); err != nil {
				t.Fatal(err)
			}
			refresh[i] = p.Refresh.Digest
		}
	}
	rotated := perGrant()
	t.Logf("memory store, after %d rotations of each: %d bytes per grant", 2*ringSize, rotated)
	if rotated > maxGrantBytes {
		t.Errorf("a rotated grant costs %d bytes, want at most %d", rotated, maxGrantBytes)
	}

	// One grant rotated 10,000 times costs what it cost after a few.
	mid := heapBytes()
	for range 10_000 {
		clk.Advance(time.Minute)
		p := pair(ids[0])
		if err := s.Rotate(ctx, ids[0], refresh[0], p); err != nil {
			t.Fatal(err)
		}
		refresh[0] = p.Refresh.Digest
	}
	if grown := int64(heapBytes()) - int64(mid); grown > 1024 {
		t.Errorf("10,000 rotations of one grant grew the heap by %d bytes", grown)
	}
	runtime.KeepAlive(s)
}
