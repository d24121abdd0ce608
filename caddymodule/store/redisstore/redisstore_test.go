package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

func TestContract(t *testing.T) {
	url := storetest.StartRedis(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		s, err := New(url, now)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		s.queue = storetest.Random() // the subtests share this Redis
		return s
	})
}

// TestContractCluster runs the contract on a three-node Redis Cluster: a
// script declaring keys of two slots, or touching a key it did not
// declare in another slot, fails there and only there.
func TestContractCluster(t *testing.T) {
	addrs := storetest.StartRedisCluster(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
		t.Cleanup(func() { _ = c.Close() })
		s := NewFromClient(c, now)
		s.queue = storetest.Random()
		return s
	})
}

func TestScriptConstants(t *testing.T) {
	if !strings.Contains(luaPrelude, "MARGIN = "+strconv.Itoa(gcMargin)+" ") {
		t.Errorf("luaPrelude's MARGIN differs from gcMargin %d", gcMargin)
	}
	if want := "'" + strings.Join(append(slices.Clone(grantFields), "n"), "', '") + "'"; luaGrantFields != want {
		t.Errorf("luaGrantFields = %s, want %s", luaGrantFields, want)
	}
	if !strings.Contains(luaPrelude, "RING = "+strconv.Itoa(ringSize)+" ") {
		t.Errorf("luaPrelude's RING differs from ringSize %d", ringSize)
	}
	if lu := store.LastUsedGranularity.Milliseconds(); !strings.Contains(luaAuthenticate, ">= "+strconv.FormatInt(lu, 10)+" then") {
		t.Errorf("luaAuthenticate's last-used granularity differs from store.LastUsedGranularity, %dms", lu)
	}
}

// commandLog counts the commands a client sends.
type commandLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.mu.Lock()
		l.cmds = append(l.cmds, "pipeline")
		l.mu.Unlock()
		return next(ctx, cmds)
	}
}
func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.mu.Lock()
		l.cmds = append(l.cmds, cmd.Name())
		l.mu.Unlock()
		return next(ctx, cmd)
	}
}

// dropDel fails every DEL, as a connection lost at the wrong moment would.
type dropDel struct{}

func (dropDel) DialHook(next redis.DialHook) redis.DialHook { return next }
func (dropDel) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (dropDel) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "del" {
			cmd.SetErr(errors.New("connection lost"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

func (l *commandLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.cmds
	l.cmds = nil
	return out
}

// fixture is a grant with one issued pair on a real server, with the client
// exposed for inspecting keys.
type fixture struct {
	s      *Store
	c      *redis.Client
	log    *commandLog
	clk    *storetest.Clock
	id     string
	access store.Token
	fresh  store.Token
}

func newFixture(t *testing.T, url string) *fixture {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	f := &fixture{c: c, log: &commandLog{}, clk: storetest.NewClock(), id: "g" + storetest.Random()}
	c.AddHook(f.log)
	f.s = NewFromClient(c, f.clk.Now)
	t.Cleanup(func() { _ = f.s.Close() }) // before the client's
	// The fixture's tests look at the script path's commands; the
	// remembered-token path has its own (tokencache_test.go).
	f.s.tokens = nil
	ctx := t.Context()
	if err := f.s.SaveGrant(ctx, store.Grant{ID: f.id, ClientID: "app", Subject: "alice", Scopes: []string{"read"}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	now := f.clk.Now()
	if err := f.s.SaveCode(ctx, f.id, "code1", store.Code{ClientID: "app", ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.ConsumeCode(ctx, f.id, "code1"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.SaveCode(ctx, f.id, "code2", store.Code{ClientID: "app", ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	f.access = store.Token{Digest: "at1", ClientID: "app", Subject: "alice", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)}
	f.fresh = store.Token{Digest: "rt1", ClientID: "app", Subject: "alice", Scopes: []string{"read"}, ExpiresAt: now.Add(30 * 24 * time.Hour)}
	if err := f.s.IssueTokens(ctx, f.id, "code1", store.Pair{Access: f.access, Refresh: f.fresh}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.s.Authenticate(ctx, f.id, "at1", store.Limit{Count: 10, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	f.log.take()
	return f
}

func (f *fixture) keys(t *testing.T) []string {
	t.Helper()
	keys, err := f.c.Keys(t.Context(), "tg:{"+f.id+"}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestRedisLayout(t *testing.T) {
	url := storetest.StartRedis(t)

	t.Run("every key of a grant carries its hash tag and outlives its record", func(t *testing.T) {
		f := newFixture(t, url)
		minTTL := map[string]time.Duration{
			defaultKeys.grant(f.id):           30 * 24 * time.Hour, // extended to the refresh token
			defaultKeys.code(f.id, "code2"):   time.Minute,
			defaultKeys.marker(f.id, "code1"): 24 * time.Hour,
			defaultKeys.counter(f.id):         time.Minute,
		}
		keys := f.keys(t)
		if len(keys) != len(minTTL) {
			t.Errorf("keys = %q, want %d", keys, len(minTTL))
		}
		for _, k := range keys {
			want, ok := minTTL[k]
			if !ok {
				t.Errorf("unexpected key %q", k)
				continue
			}
			ttl, err := f.c.PTTL(t.Context(), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl < want || ttl > want+gcMargin*time.Millisecond {
				t.Errorf("%s: TTL %v, want between %v and %v more", k, ttl, want, gcMargin*time.Millisecond)
			}
		}
	})

	// What a revocation leaves: the replay marker, which must outlive the
	// grant, and the pending code, which its TTL collects and the nonce
	// kills meanwhile.
	leftAfterRevoke := func(t *testing.T, f *fixture) {
		t.Helper()
		keys := f.keys(t)
		slices.Sort(keys)
		want := []string{defaultKeys.code(f.id, "code2"), defaultKeys.marker(f.id, "code1")}
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Errorf("keys left = %q, want %q", keys, want)
		}
	}

	t.Run("revoking a grant deletes its hash and counter in the script", func(t *testing.T) {
		f := newFixture(t, url)
		if _, err := f.s.RevokeGrant(t.Context(), f.id); err != nil {
			t.Fatal(err)
		}
		// Besides the scripts: the announcement to the other gateways and
		// their acknowledgement (watch.go), and the handshake of the
		// subscription that hears it.
		for _, c := range f.log.take() {
			if c != "evalsha" && c != "eval" && c != "publish" && c != "hello" && c != "pipeline" {
				t.Errorf("command %q, want only the revoking script and the index removal", c)
			}
		}
		leftAfterRevoke(t, f)
	})

	t.Run("a replay revocation deletes the grant's keys too", func(t *testing.T) {
		f := newFixture(t, url)
		if _, err := f.s.ConsumeCode(t.Context(), f.id, "code1"); !errors.Is(err, store.ErrCodeReplayed) {
			t.Fatalf("ConsumeCode = %v", err)
		}
		leftAfterRevoke(t, f)
	})

	t.Run("a pending code left by a revocation is dead for the next consent", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		if _, err := f.s.RevokeGrant(ctx, f.id); err != nil {
			t.Fatalf("RevokeGrant: %v", err)
		}
		// A grant with the same id must not bring the old code or tokens back.
		if err := f.s.SaveGrant(ctx, store.Grant{ID: f.id, ClientID: "app", Subject: "alice"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.s.Authenticate(ctx, f.id, "at1", store.Limit{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Authenticate old access token = %v, want ErrNotFound", err)
		}
		if _, err := f.s.GetToken(ctx, f.id, store.Refresh, "rt1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetToken old refresh token = %v, want ErrNotFound", err)
		}
		if err := f.s.Rotate(ctx, f.id, "rt1", store.Pair{Access: store.Token{Digest: "x", ExpiresAt: f.clk.Now().Add(time.Hour)}}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Rotate old refresh token = %v, want ErrNotFound", err)
		}
		if _, err := f.s.ConsumeCode(ctx, f.id, "code2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ConsumeCode old code = %v, want ErrNotFound", err)
		}
	})

	t.Run("rotations write no key: the pair and the ring are fields of the grant", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		old := "rt1"
		for i := range 3 * ringSize {
			d := fmt.Sprintf("%064x", i)
			p := store.Pair{
				Access:  store.Token{Digest: fmt.Sprintf("a%063x", i), ExpiresAt: f.clk.Now().Add(time.Hour)},
				Refresh: store.Token{Digest: d, ExpiresAt: f.clk.Now().Add(30 * 24 * time.Hour)},
			}
			if err := f.s.Rotate(ctx, f.id, old, p); err != nil {
				t.Fatal(err)
			}
			old = d
		}
		if keys := f.keys(t); len(keys) != 4 {
			t.Errorf("keys = %q, want the grant, the pending code, the marker and the counter", keys)
		}
		n, err := f.c.HLen(ctx, defaultKeys.grant(f.id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		// 7 grant fields (no profile here), 5 of the pair (no budget
		// either, and the refresh token's scopes are the access token's),
		// the ring and its next slot.
		if n != 7+5+ringSize+1 {
			t.Errorf("grant hash has %d fields, want %d", n, 7+5+ringSize+1)
		}
		enc, err := f.c.ObjectEncoding(ctx, defaultKeys.grant(f.id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if enc != "listpack" && enc != "ziplist" {
			t.Errorf("grant hash encoding %q, want a listpack", enc)
		}
	})

	t.Run("a field of 256 bytes or more comes back in the long record form", func(t *testing.T) {
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		clk := storetest.NewClock()
		s := NewFromClient(c, clk.Now)
		ctx := t.Context()
		id, subject := "g"+storetest.Random(), strings.Repeat("s", 300)
		if err := s.SaveGrant(ctx, store.Grant{ID: id, ClientID: "app", Subject: subject}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCode(ctx, id, "c", store.Code{ExpiresAt: clk.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsumeCode(ctx, id, "c"); err != nil {
			t.Fatal(err)
		}
		p := store.Pair{
			Access:  store.Token{Digest: "at", Scopes: []string{"read"}, ExpiresAt: clk.Now().Add(time.Hour)},
			Refresh: store.Token{Digest: "rt", Scopes: []string{"read"}, ExpiresAt: clk.Now().Add(time.Hour)},
		}
		if err := s.IssueTokens(ctx, id, "c", p); err != nil {
			t.Fatal(err)
		}
		a, _, err := s.Authenticate(ctx, id, "at", store.Limit{})
		if err != nil || a.Subject != subject || a.Pair != "rt" {
			t.Errorf("Authenticate = %+v, %v", a, err)
		}
		r, err := s.GetToken(ctx, id, store.Refresh, "rt")
		if err != nil || r.Subject != subject || r.Pair != "at" || !slices.Equal(r.Scopes, []string{"read"}) {
			t.Errorf("GetToken = %+v, %v", r, err)
		}
	})

	t.Run("authenticate is one round trip", func(t *testing.T) {
		f := newFixture(t, url)
		for _, l := range []store.Limit{{}, {Count: 100, Window: time.Second}} {
			if _, _, err := f.s.Authenticate(t.Context(), f.id, "at1", l); err != nil {
				t.Fatal(err)
			}
			if cmds := f.log.take(); len(cmds) != 1 || cmds[0] != "evalsha" {
				t.Errorf("limit %+v: commands %q, want one evalsha", l, cmds)
			}
		}
	})

	t.Run("a failure counter is one key per window, collected after it", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		key := "login:" + storetest.Random()
		f.clk.Advance(45 * time.Second)
		for i := range 2 {
			if _, _, err := f.s.CountFailure(ctx, key, time.Minute); err != nil {
				t.Fatal(err)
			}
			// The first call may also have to load the script (EVAL).
			if cmds := f.log.take(); i > 0 && (len(cmds) != 1 || cmds[0] != "evalsha") {
				t.Errorf("CountFailure: commands %q, want one evalsha", cmds)
			}
		}
		if _, _, err := f.s.Failures(ctx, key, time.Minute); err != nil {
			t.Fatal(err)
		}
		if cmds := f.log.take(); len(cmds) != 1 || cmds[0] != "get" {
			t.Errorf("Failures: commands %q, want one get", cmds)
		}
		idx := storetest.Epoch().UnixMilli() / 60_000
		k := "tg:f:{" + key + "}:60000:" + strconv.FormatInt(idx, 10)
		if got := defaultKeys.failure(key, 60_000, idx); got != k {
			t.Fatalf("failureKey = %q, want %q", got, k)
		}
		keys, err := f.c.Keys(ctx, "tg:f:{"+key+"}:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != k {
			t.Fatalf("keys = %q, want [%q]", keys, k)
		}
		if n, err := f.c.Get(ctx, k).Int64(); err != nil || n != 2 {
			t.Errorf("%s = %d, %v; want 2", k, n, err)
		}
		// The window ends 15s after the clock; the key lives gcMargin more.
		want := 15*time.Second + gcMargin*time.Millisecond
		if ttl, err := f.c.PTTL(ctx, k).Result(); err != nil || ttl > want || ttl < want-5*time.Second {
			t.Errorf("%s: TTL %v, %v; want about %v", k, ttl, err, want)
		}
		f.clk.Advance(15 * time.Second)
		if _, _, err := f.s.CountFailure(ctx, key, time.Minute); err != nil {
			t.Fatal(err)
		}
		want = time.Minute + gcMargin*time.Millisecond
		next := defaultKeys.failure(key, 60_000, idx+1)
		if ttl, err := f.c.PTTL(ctx, next).Result(); err != nil || ttl > want || ttl < want-5*time.Second {
			t.Errorf("%s: TTL %v, %v; want about %v", next, ttl, err, want)
		}
	})

	t.Run("a script flushed from the server is loaded again", func(t *testing.T) {
		f := newFixture(t, url)
		if err := f.c.ScriptFlush(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.s.Authenticate(t.Context(), f.id, "at1", store.Limit{}); err != nil {
			t.Fatalf("Authenticate after SCRIPT FLUSH: %v", err)
		}
	})
}

func TestAuthKeys(t *testing.T) {
	got := defaultKeys.auth("g1")
	want := []string{defaultKeys.grant("g1"), defaultKeys.counter("g1")}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("authKeys = %q, want %q", got, want)
	}
	if want := "tg:{g1}:grant tg:{g1}:rc"; strings.Join(got, " ") != want {
		t.Errorf("authKeys = %q, want %q", got, want)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		url     string
		wantErr string
	}{
		{url: "redis://127.0.0.1:6379/0"},
		{url: "rediss://user:pw@redis.example:6380/2?dial_timeout=2s"},
		{url: "unix:///tmp/redis.sock", wantErr: "scheme"},
		{url: "http://redis.example", wantErr: "scheme"},
		{url: "redis://user:s3cret@host:6379/notanumber", wantErr: "database"},
		{url: "redis://user:s3cret@host:bad port/0", wantErr: "parsing redis url"},
		{url: "redis://host/0?no_such_option=1", wantErr: "unexpected option"},
	} {
		s, err := New(tc.url, nil)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("New(%q): %v", tc.url, err)
				continue
			}
			_ = s.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("New(%q) = %v, want an error about %s", tc.url, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New(%q) error leaks the password: %v", tc.url, err)
		}
	}
	s, err := New("rediss://redis.example:6380/0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if opts := s.client.(*redis.Client).Options(); opts.TLSConfig == nil || opts.TLSConfig.ServerName != "redis.example" {
		t.Errorf("rediss:// did not configure TLS for redis.example")
	}
}

// TestUnreachable: a Redis that is down is a store error (503), never
// ErrNotFound (401), and New does not need it up.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := New("redis://"+addr+"/0?dial_timeout=200ms&max_retries=-1", nil)
	if err != nil {
		t.Fatalf("New with Redis down: %v", err)
	}
	defer s.Close()
	ctx := t.Context()
	_, _, err = s.Authenticate(ctx, "g", "a", store.Limit{Count: 1, Window: time.Second})
	if err == nil || errors.Is(err, store.ErrNotFound) || !strings.HasPrefix(err.Error(), "redis authenticate: ") {
		t.Errorf("Authenticate = %v, want a wrapped connection error", err)
	}
	if _, err := s.GetBlob(ctx, "k"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBlob = %v, want a connection error", err)
	}
	if err := s.Rotate(ctx, "g", "r", store.Pair{Access: store.Token{Digest: "a"}}); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Rotate = %v, want a connection error", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Errorf("Ping succeeded")
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	url := storetest.StartRedis(b)
	for _, parallel := range []bool{false, true} {
		name := map[bool]string{false: "serial", true: "parallel"}[parallel]
		b.Run(name, func(b *testing.B) {
			s, err := New(url, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			storetest.BenchAuthenticate(b, s, parallel)
		})
	}
}
