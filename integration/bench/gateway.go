package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// gateway is one variant's Caddy process.
type gateway struct {
	variant   string
	proc      *proc
	port      int
	adminPort int
	base      string // http://127.0.0.1:<port>
	token     string // bearer token sent on every request
	// side lists the other processes whose CPU this variant's requests
	// use, by the name shown in the CPU table (the Redis Cluster's three
	// servers are one entry).
	side map[string][]*proc
}

// procs returns the gateway and its side processes by table name.
func (g *gateway) procs() map[string][]*proc {
	ps := map[string][]*proc{"gateway": {g.proc}}
	for k, p := range g.side {
		ps[k] = p
	}
	return ps
}

// startBackends starts the Redis servers the variants need, the upstream
// and (for forward_auth) the introspection service.
func (e *env) startBackends(ctx context.Context, redisBin string) error {
	needs := func(kind string) bool {
		return slices.ContainsFunc(e.cfg.variants, func(v string) bool { return usesRedis(v) == kind })
	}
	if needs("redis") {
		if err := e.startRedis(ctx, redisBin); err != nil {
			return err
		}
	}
	if needs("cluster") {
		if err := e.startCluster(ctx, redisBin); err != nil {
			return err
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	upAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	bin, args := e.pin.command(e.pin.gateway, filepath.Join(e.binDir, "upstream"), "-addr", upAddr)
	e.upstream, err = e.ps.start(e.work, "upstream", nil, bin, args...)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, e.upstream, 15*time.Second, httpReady("http://"+upAddr+"/healthz")); err != nil {
		return err
	}

	if !slices.Contains(e.cfg.variants, varForwardAuth) {
		return nil
	}
	inAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	bin, args = e.pin.command(e.pin.side, filepath.Join(e.binDir, "introspect"),
		"-addr", inAddr, "-redis", e.redisAddr, "-pool", strconv.Itoa(e.cfg.redisPool))
	e.introspect, err = e.ps.start(e.work, "introspect", nil, bin, args...)
	if err != nil {
		return err
	}
	return waitReady(ctx, e.introspect, 15*time.Second, httpReady("http://"+inAddr+"/healthz"))
}

// introspectKeyPrefix is introspect.KeyPrefix (package main, not
// importable): token records live at prefix + hex(SHA-256(token)).
const introspectKeyPrefix = "introspect:token:"

// seedIntrospectToken stores a token record for the introspection service,
// as a login service would have when it issued the token.
func (e *env) seedIntrospectToken(ctx context.Context) (string, error) {
	tok := "fa_" + randomString(32)
	rec := fmt.Sprintf(`{"sub":%q,"client_id":%q,"scope":%q,"exp":%d}`,
		username, clientID, scope, time.Now().Add(24*time.Hour).Unix())
	rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	defer rdb.Close()
	if err := rdb.Set(ctx, introspectKeyPrefix+sha256Hex(tok), rec, 24*time.Hour).Err(); err != nil {
		return "", fmt.Errorf("seeding the introspection token: %w", err)
	}
	return tok, nil
}

// storeDirective is the tollgate store of a variant, as a Caddyfile
// directive.
func (e *env) storeDirective(v string) string {
	switch usesRedis(v) {
	case "redis":
		// A database of its own for each Tollgate variant on the single
		// Redis: the same user and client make the same grant id, and a
		// second gateway's token in the same grant would sit in its second
		// pair slot, which the hot path reaches with two more HMGETs.
		db := 0
		if v == varExampleRedis {
			db = 1
		}
		return fmt.Sprintf("store redis://%s/%d?pool_size=%d", e.redisAddr, db, e.cfg.redisPool)
	case "cluster":
		// README "Redis topologies": several addrs make a Cluster client.
		return fmt.Sprintf("store redis {\n\taddrs %s\n\tpool_size %d\n}", strings.Join(e.clusterAddrs, " "), e.cfg.redisPool)
	}
	return "store memory"
}

// startGateway writes the variant's Caddyfile, runs the binary on it and,
// for Tollgate, obtains a token through the real flow.
func (e *env) startGateway(ctx context.Context, variant string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	g := &gateway{
		variant: variant, port: ports[0], adminPort: ports[1],
		base: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		side: map[string][]*proc{"upstream": {e.upstream}},
	}
	p := caddyfileParams{
		variant:   variant,
		port:      g.port,
		adminPort: g.adminPort,
		upstream:  e.upstreamAddr(),
		store:     e.storeDirective(variant),
		workers:   e.cfg.flowWorkers,
	}
	switch usesRedis(variant) {
	case "redis":
		g.side["redis"] = []*proc{e.redis}
	case "cluster":
		g.side["redis"] = e.cluster
	}
	if variant == varForwardAuth {
		p.introspect = e.introspectAddr()
		g.side["introspect"] = []*proc{e.introspect}
	}
	dir := filepath.Join(e.work, variant)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Caddy's data and config directories go to the work directory.
	penv := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	var text string
	if isExample(variant) {
		if text, err = exampleCaddyfile(e.root, variant); err != nil {
			return err
		}
		penv = append(penv, exampleEnv(p, ports[2])...)
	} else {
		text = caddyfile(p)
	}
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		return err
	}
	bin, args := e.pin.command(e.pin.gateway, e.tollgate, "run", "--config", cfgPath, "--adapter", "caddyfile")
	g.proc, err = e.ps.start(dir, "gateway", penv, bin, args...)
	if err != nil {
		return err
	}
	g.proc.name = variant + " gateway"
	if err := waitReady(ctx, g.proc, 30*time.Second, httpReady(g.base+"/")); err != nil {
		return err
	}
	switch {
	case isTollgate(variant):
		if g.token, err = obtainToken(ctx, g.base); err != nil {
			return g.proc.failure("token flow failed", err)
		}
	case variant == varForwardAuth:
		if g.token, err = e.seedIntrospectToken(ctx); err != nil {
			return err
		}
	default:
		// Sent anyway, so that every variant gets the same request bytes.
		g.token = "tga_plain-" + randomString(32)
	}
	e.gateways[variant] = g
	return nil
}

func (e *env) upstreamAddr() string   { return argAfter(e.upstream, "-addr") }
func (e *env) introspectAddr() string { return argAfter(e.introspect, "-addr") }

func argAfter(p *proc, flag string) string {
	if p == nil {
		return ""
	}
	args := p.cmd.Args
	for i := range len(args) - 1 {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// verify checks that g answers as configured: 200 from the upstream, with
// the user the gateway vouched for (none for the variants without auth);
// and for Tollgate and forward_auth a refusal without a token and with a
// wrong one.
func (e *env) verify(ctx context.Context, g *gateway) error {
	url := g.base + apiPath
	status, hdr, body, err := get(ctx, url, g.token)
	if err != nil {
		return g.proc.failure("unreachable", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s with the token: status %d, want 200: %.300s", apiPath, status, body)
	}
	authenticated := isTollgate(g.variant) || g.variant == varForwardAuth
	wantUser := `"user_id":"` + username + `"`
	if !authenticated {
		wantUser = `"user_id":"anonymous"`
	}
	if !strings.Contains(string(body), wantUser) {
		return fmt.Errorf("GET %s with the token: the upstream's answer %.300s lacks %s", apiPath, body, wantUser)
	}
	if isTollgate(g.variant) && hdr.Get("X-RateLimit-Remaining") == "" {
		return fmt.Errorf("GET %s with the token: no X-RateLimit-Remaining, so the budget is not being counted (response headers: %v)", apiPath, hdr)
	}
	if !authenticated {
		return nil
	}
	for _, tc := range []struct{ what, token string }{
		{"without a token", ""},
		{"with a wrong token", g.token[:len(g.token)-4] + "AAAA"},
	} {
		status, _, body, err := get(ctx, url, tc.token)
		if err != nil {
			return err
		}
		if status != http.StatusUnauthorized {
			return fmt.Errorf("GET %s %s: status %d, want 401: %.300s", apiPath, tc.what, status, body)
		}
	}
	return nil
}

func get(ctx context.Context, url, token string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, b, err
}
