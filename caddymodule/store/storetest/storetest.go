// Package storetest is the contract every store.Store must honour, written
// once and run against each implementation, so the embedded store and Redis
// cannot drift apart. It also starts real Redis servers for tests.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Epoch is where every fake clock starts: a whole hour, so that windows of a
// second, a minute or an hour all begin exactly there.
func Epoch() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }

// Clock is a fake clock that only moves when told to.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at Epoch.
func NewClock() *Clock { return &Clock{t: Epoch()} }

// Now is the clock to inject into a store.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testCase is one behaviour of the contract, named for it.
type testCase struct {
	name string
	run  func(t *testing.T, e *env)
}

// Run runs the contract suite. newStore must return a fresh store reading
// the given clock; Run closes it when the subtest ends. Subtests run in
// parallel and use random grant ids and blob keys, so stores may share one
// Redis; but stores over one Redis share its webhook queue, so newStore
// must give each store a queue of its own.
func Run(t *testing.T, newStore func(t *testing.T, now func() time.Time) store.Store) {
	var cases []testCase
	cases = append(cases, grantCases()...)
	cases = append(cases, codeCases()...)
	cases = append(cases, tokenCases()...)
	cases = append(cases, reuseCases()...)
	cases = append(cases, ringCases()...)
	cases = append(cases, indexCases()...)
	cases = append(cases, authenticateCases()...)
	cases = append(cases, rateLimitCases()...)
	cases = append(cases, blobCases()...)
	cases = append(cases, failureCases()...)
	cases = append(cases, eventCases()...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clk := NewClock()
			s := newStore(t, clk.Now)
			t.Cleanup(func() { _ = s.Close() })
			c.run(t, &env{s: s, clk: clk, ctx: t.Context(), grantID: "g" + Random()})
		})
	}
}

// Random returns 32 random hex digits: unique ids, keys and digests.
func Random() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// env is one subtest's store, clock and grant.
type env struct {
	s       store.Store
	clk     *Clock
	ctx     context.Context
	grantID string
}

const (
	grantTTL   = 30 * 24 * time.Hour
	codeTTL    = time.Minute
	accessTTL  = time.Hour
	refreshTTL = 7 * 24 * time.Hour
)

// grant saves the subtest's grant for client "app" and subject "alice".
func (e *env) grant(t *testing.T, scopes ...string) store.Grant {
	t.Helper()
	g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice", Scopes: scopes}
	if err := e.s.SaveGrant(e.ctx, g, grantTTL); err != nil {
		t.Fatalf("SaveGrant: %v", err)
	}
	return g
}

// code saves a fresh code of the grant and returns its digest.
func (e *env) code(t *testing.T) (string, store.Code) {
	t.Helper()
	d := Random()
	c := store.Code{
		ClientID:    "app",
		Subject:     "alice",
		RedirectURI: "https://app.example/cb",
		Challenge:   "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Scopes:      []string{"read"},
		ExpiresAt:   e.clk.Now().Add(codeTTL),
	}
	if err := e.s.SaveCode(e.ctx, e.grantID, d, c); err != nil {
		t.Fatalf("SaveCode: %v", err)
	}
	return d, c
}

// pair returns a new token pair (no refresh token when refresh is false),
// not yet stored.
func (e *env) pair(refresh bool) store.Pair {
	now := e.clk.Now()
	p := store.Pair{Access: store.Token{
		Digest: Random(), ClientID: "app", Subject: "alice",
		Scopes: []string{"read", "write"}, ExpiresAt: now.Add(accessTTL),
	}}
	if refresh {
		p.Refresh = p.Access
		p.Refresh.Digest = Random()
		p.Refresh.ExpiresAt = now.Add(refreshTTL)
	}
	return p
}

// issue runs the whole code flow on the grant (which must exist) and
// returns the stored pair.
func (e *env) issue(t *testing.T, refresh bool) store.Pair {
	t.Helper()
	return e.issueWith(t, func(p *store.Pair) {
		if !refresh {
			p.Refresh = store.Token{}
		}
	})
}

// issueWith is issue with a pair (with refresh token) changed by edit.
func (e *env) issueWith(t *testing.T, edit func(*store.Pair)) store.Pair {
	t.Helper()
	d, _ := e.code(t)
	if _, err := e.s.ConsumeCode(e.ctx, e.grantID, d); err != nil {
		t.Fatalf("ConsumeCode: %v", err)
	}
	p := e.pair(true)
	edit(&p)
	if err := e.s.IssueTokens(e.ctx, e.grantID, d, p); err != nil {
		t.Fatalf("IssueTokens: %v", err)
	}
	return p
}

// wantErr fails unless err is target (nil for success).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	switch {
	case target == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case target != nil && !errors.Is(err, target):
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

// wantStoreError fails unless err is a non-sentinel error: something the
// handlers would answer with 503.
func wantStoreError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrCodeReplayed) {
		t.Fatalf("%s: error %v, want a non-sentinel store error", what, err)
	}
}

// alive reports whether the access token authenticates.
func (e *env) alive(t *testing.T, access string) bool {
	t.Helper()
	_, _, err := e.s.Authenticate(e.ctx, e.grantID, access, store.Limit{})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Authenticate: %v", err)
	}
	return err == nil
}

// sameToken compares what a store gives back with what was stored; the
// store fills in Pair itself, so it is compared separately.
func sameToken(t *testing.T, got, want store.Token) {
	t.Helper()
	if got.Digest != want.Digest || got.ClientID != want.ClientID || got.Subject != want.Subject ||
		!slices.Equal(got.Scopes, want.Scopes) || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Limit != want.Limit {
		t.Fatalf("token = %+v, want %+v", got, want)
	}
}
