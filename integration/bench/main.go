// Command bench is Tollgate's gateway benchmark. From the module root:
//
//	go run ./integration/bench -duration 10s -rounds 3
//
// It needs wrk (apt-get install wrk) and redis-server (apt-get install
// redis-server) on PATH. It is a benchmark, not a timed test: it measures and
// prints, and exits non-zero only when something failed to run (or a
// variant answered errors under load, which makes its figures invalid).
//
// In one run on this machine it measures GET /v1/me through four gateways,
// all the same tollgate binary (built once with go build ./cmd/tollgate; it is
// a full Caddy, so it also serves the non-Tollgate variants):
//
//   - plain: Caddy reverse_proxy to the upstream, nothing else (the limit);
//   - tollgate-memory: tollgate_protect (token, scope and rate-limit budget
//     checked in the embedded store) then the same reverse_proxy;
//   - tollgate-redis: the same on the Redis store (one EVALSHA per request);
//   - forward_auth: Caddy forward_auth to a token-introspection service
//     (./introspect: one Redis GET of the token's SHA-256 digest in the same
//     Redis) then the same reverse_proxy: what users do without Tollgate.
//
// The upstream (./upstream) is a separate small Go HTTP server answering
// ~200 B of JSON, and every reverse_proxy, forward_auth's included, has the
// same keep-alive transport. The Tollgate variants get their token through
// the real flow over HTTP (authorize with PKCE, sign-in, consent, code
// exchange). Before and after measuring, each variant must answer 200 with
// the token (the upstream seeing the user the gateway vouched for), and
// Tollgate and forward_auth 401 without one, so that a broken configuration
// is never measured as fast.
//
// wrk runs with one thread (-t1): on a 2-core machine the load generator
// competes for the CPUs with everything it measures. Variants alternate
// within each round (plain, memory, redis, forward_auth, plain, ...) so that
// drift affects all alike, and the median of the rounds is printed:
// requests/s, p50/p90/p99 latency, the ratio to plain and the p99 added over
// plain; the CPU each process used (from /proc); and the goals of the issue
// (Tollgate on Redis ≥ 0.9× plain, ≥ 2× forward_auth, p99 added ≤ 1 ms)
// as PASS/MISS, for information only.
//
// Other flags: -connections (32), -warmup (3s), -out FILE (.json, else
// markdown), -paced-rps N (also measure latency at a paced load of about N
// req/s, where it is not dominated by queueing), -profile VARIANT (then a
// CPU profile of that gateway under load, through Caddy's admin endpoint,
// and its top entries), -quiet-wait (how long to wait for other programs to
// leave the CPUs idle before each run), -variants, -binary, -keep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

type config struct {
	duration    time.Duration
	warmup      time.Duration
	connections int
	rounds      int
	out         string
	variants    []string
	binary      string
	redisPool   int
	pacedRPS    int
	quietWait   time.Duration
	profile     string
	profileSecs int
	profileOut  string
	keep        bool
}

func main() {
	var c config
	var variants string
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each measured run (whole seconds)")
	flag.DurationVar(&c.warmup, "warmup", 3*time.Second, "unmeasured load before each measured run (0 for none)")
	flag.IntVar(&c.connections, "connections", 32, "concurrent keep-alive connections of the load generator")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds; each runs every variant once, and the median is reported")
	flag.StringVar(&c.out, "out", "", "also write the results to this file: JSON if it ends in .json, else markdown")
	flag.StringVar(&variants, "variants", strings.Join(allVariants, ","), "variants to run, comma-separated")
	flag.StringVar(&c.binary, "binary", "", "use this tollgate binary instead of building ./cmd/tollgate")
	flag.IntVar(&c.redisPool, "redis-pool", 10*runtime.NumCPU(), "Redis pool size of both Tollgate's store and the introspection service (go-redis's default is 10 per CPU)")
	flag.IntVar(&c.pacedRPS, "paced-rps", 0, "also measure latency at a paced load of about this many req/s (each connection waits connections/rate between requests), below every variant's capacity; 0 for none")
	flag.DurationVar(&c.quietWait, "quiet-wait", 2*time.Minute, "before each run, wait up to this long for other programs to leave the CPUs idle (0: do not wait)")
	flag.StringVar(&c.profile, "profile", "", "after the rounds, take a CPU profile of this variant's gateway under load (via Caddy's admin /debug/pprof) and print its top entries")
	flag.IntVar(&c.profileSecs, "profile-seconds", 10, "length of the CPU profile")
	flag.StringVar(&c.profileOut, "profile-out", "", "where to keep the CPU profile (default integration/bench-results/<variant>.cpu.prof)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (Caddyfiles, process logs)")
	flag.Parse()

	c.variants = strings.Split(variants, ",")
	for _, v := range c.variants {
		if !slices.Contains(allVariants, v) {
			fatalf("unknown variant %q; the variants are %s", v, strings.Join(allVariants, ", "))
		}
	}
	if c.profile != "" && !slices.Contains(c.variants, c.profile) {
		fatalf("-profile %s: not among the variants run", c.profile)
	}
	if c.duration < time.Second || c.rounds < 1 || c.connections < 1 {
		fatalf("need -duration ≥ 1s, -rounds ≥ 1 and -connections ≥ 1")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "bench: interrupted; every process it started has been stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}

// gateway is one variant's Caddy process.
type gateway struct {
	variant   string
	proc      *proc
	port      int
	adminPort int
	base      string // http://127.0.0.1:<port>
	token     string // bearer token sent on every request
	// side lists the other processes whose CPU this variant's requests
	// use, by the name shown in the CPU table.
	side map[string]*proc
}

// env is everything run sets up.
type env struct {
	cfg        config
	root       string
	work       string
	binDir     string
	tollgate   string
	ps         procs
	redis      *proc
	redisAddr  string
	upstream   *proc
	introspect *proc
	wrk        *wrkRunner
	gateways   map[string]*gateway
	info       machineInfo
}

func run(ctx context.Context, c config) (err error) {
	wrkBin, err := checkWrk()
	if err != nil {
		return err
	}
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("redis-server is not installed; the Redis variants need it: apt-get install redis-server")
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tollgate-bench-")
	if err != nil {
		return err
	}
	e := &env{cfg: c, root: root, work: work, binDir: filepath.Join(work, "bin"), gateways: map[string]*gateway{}}
	defer func() {
		e.ps.stopAll()
		if c.keep {
			fmt.Printf("work directory kept: %s\n", work)
		} else {
			os.RemoveAll(work)
		}
	}()

	if err := e.build(ctx); err != nil {
		return err
	}
	script, err := writeWrkScript(work)
	if err != nil {
		return err
	}
	e.wrk = &wrkRunner{bin: wrkBin, script: script, threads: 1, conns: c.connections}
	e.info = gatherInfo(wrkBin, redisBin)

	if err := e.startBackends(ctx, redisBin); err != nil {
		return err
	}
	for _, v := range c.variants {
		if err := e.startGateway(ctx, v); err != nil {
			return err
		}
	}
	for _, v := range c.variants {
		if err := e.verify(ctx, e.gateways[v]); err != nil {
			return fmt.Errorf("%s is not answering as configured, so it is not measured: %w", v, err)
		}
	}
	fmt.Println("all variants verified: 200 with the token; Tollgate and forward_auth 401 without it or with a wrong one")
	fmt.Println()

	if err := e.resetRedisStats(ctx); err != nil {
		return err
	}
	res, paced, err := e.measure(ctx)
	if err != nil {
		return err
	}
	rstats, err := e.redisCommandStats(ctx)
	if err != nil {
		return err
	}
	// The same checks after the load: a variant that broke under load
	// would otherwise have its errors counted as fast answers.
	for _, v := range c.variants {
		if err := e.verify(ctx, e.gateways[v]); err != nil {
			return fmt.Errorf("%s stopped answering as configured during the run: %w", v, err)
		}
	}
	report := buildReport(c, e.info, res, paced)
	report.RedisNote = rstats
	fmt.Print(report.text())
	if c.out != "" {
		if err := report.write(c.out); err != nil {
			return err
		}
		fmt.Printf("\nresults written to %s\n", c.out)
	}
	if c.profile != "" {
		if err := e.profileGateway(ctx, e.gateways[c.profile]); err != nil {
			return err
		}
	}
	if bad := report.failedRuns(); bad != "" {
		return errors.New(bad)
	}
	return nil
}

// moduleRoot is the directory of the go.mod of the current directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run this from inside the tollgate module: go run ./integration/bench")
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "tollgate")); err != nil {
		return "", fmt.Errorf("%s has no cmd/tollgate; run this from the tollgate module", root)
	}
	return root, nil
}

// build compiles the gateway, the upstream and the introspection service
// in one go build.
func (e *env) build(ctx context.Context) error {
	pkgs := []string{"./integration/bench/upstream", "./integration/bench/introspect"}
	if e.cfg.binary == "" {
		pkgs = append([]string{"./cmd/tollgate"}, pkgs...)
	}
	if err := os.MkdirAll(e.binDir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", e.binDir + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = e.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	e.tollgate = filepath.Join(e.binDir, "tollgate")
	if e.cfg.binary != "" {
		abs, err := filepath.Abs(e.cfg.binary)
		if err != nil {
			return err
		}
		e.tollgate = abs
	}
	fmt.Printf("built %s in %s\n", strings.Join(pkgs, " "), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// startBackends starts Redis, the upstream and (for forward_auth) the
// introspection service, and seeds its token.
func (e *env) startBackends(ctx context.Context, redisBin string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	e.redisAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	e.redis, err = e.ps.start(e.work, "redis", nil, redisBin,
		"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", e.work)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	defer rdb.Close()
	if err := waitReady(ctx, e.redis, 15*time.Second, func(ctx context.Context) error {
		return rdb.Ping(ctx).Err()
	}); err != nil {
		return err
	}

	upAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	e.upstream, err = e.ps.start(e.work, "upstream", nil, filepath.Join(e.binDir, "upstream"), "-addr", upAddr)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, e.upstream, 15*time.Second, httpReady("http://"+upAddr+"/healthz")); err != nil {
		return err
	}

	if !slices.Contains(e.cfg.variants, varForwardAuth) {
		return nil
	}
	inAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	e.introspect, err = e.ps.start(e.work, "introspect", nil, filepath.Join(e.binDir, "introspect"),
		"-addr", inAddr, "-redis", e.redisAddr, "-pool", strconv.Itoa(e.cfg.redisPool))
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

// startGateway writes the variant's Caddyfile, runs the binary on it and,
// for Tollgate, obtains a token through the real flow.
func (e *env) startGateway(ctx context.Context, variant string) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	g := &gateway{
		variant: variant, port: ports[0], adminPort: ports[1],
		base: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		side: map[string]*proc{"upstream": e.upstream},
	}
	p := caddyfileParams{
		variant:   variant,
		port:      g.port,
		adminPort: g.adminPort,
		upstream:  e.upstreamAddr(),
		store:     "memory",
	}
	switch variant {
	case varRedis:
		p.store = fmt.Sprintf("redis://%s/0?pool_size=%d", e.redisAddr, e.cfg.redisPool)
		g.side["redis"] = e.redis
	case varForwardAuth:
		p.introspect = e.introspectAddr()
		g.side["redis"] = e.redis
		g.side["introspect"] = e.introspect
	}
	dir := filepath.Join(e.work, variant)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile(p)), 0o644); err != nil {
		return err
	}
	// Caddy's data and config directories go to the work directory.
	penv := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	g.proc, err = e.ps.start(dir, "gateway", penv, e.tollgate, "run", "--config", cfgPath, "--adapter", "caddyfile")
	if err != nil {
		return err
	}
	g.proc.name = variant + " gateway"
	if err := waitReady(ctx, g.proc, 30*time.Second, httpReady(g.base+"/")); err != nil {
		return err
	}
	switch variant {
	case varMemory, varRedis:
		if g.token, err = obtainToken(ctx, g.base); err != nil {
			return g.proc.failure("token flow failed", err)
		}
	case varForwardAuth:
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
// the user the gateway vouched for; and for Tollgate and forward_auth a
// refusal without a token and with a wrong one.
func (e *env) verify(ctx context.Context, g *gateway) error {
	url := g.base + apiPath
	status, hdr, body, err := get(ctx, url, g.token)
	if err != nil {
		return g.proc.failure("unreachable", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s with the token: status %d, want 200: %.300s", apiPath, status, body)
	}
	wantUser := `"user_id":"` + username + `"`
	if g.variant == varPlain {
		wantUser = `"user_id":"anonymous"`
	}
	if !strings.Contains(string(body), wantUser) {
		return fmt.Errorf("GET %s with the token: the upstream's answer %.300s lacks %s", apiPath, body, wantUser)
	}
	if g.variant == varMemory || g.variant == varRedis {
		if hdr.Get("X-RateLimit-Remaining") == "" {
			return fmt.Errorf("GET %s with the token: no X-RateLimit-Remaining, so the budget is not being counted (response headers: %v)", apiPath, hdr)
		}
	}
	if g.variant == varPlain {
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

// run is one measured wrk run of one variant, with the CPU every process
// used during it.
type runResult struct {
	wrkResult
	// CPU is the cores each process kept busy on average during the run
	// (CPU seconds / wall seconds), by name: gateway, upstream, redis,
	// introspect, wrk, other (the machine's busy time not accounted for
	// by those) and machine (all CPUs, from /proc/stat).
	CPU map[string]float64 `json:"cpu_cores"`
}

// measure runs the rounds: every variant once per round, in order, so
// that slow drift (thermal, noisy neighbours, Redis memory) spreads over
// all of them.
//
// With -paced-rps, each variant's saturating run is followed by a paced
// one (already warm, so without a warm-up).
func (e *env) measure(ctx context.Context) (full, paced map[string][]runResult, err error) {
	c := e.cfg
	fmt.Printf("measuring: %d round(s) × %d variant(s), %s warm-up + %s measured each, wrk -t1 -c%d\n",
		c.rounds, len(c.variants), c.warmup, c.duration, c.connections)
	delay := 0
	if c.pacedRPS > 0 {
		delay = max(1, int(float64(c.connections)*1000/float64(c.pacedRPS)+0.5))
		fmt.Printf("           then %s paced: each connection waits %d ms between requests (≈ %d req/s at most)\n",
			c.duration, delay, c.connections*1000/delay)
	}
	full, paced = map[string][]runResult{}, map[string][]runResult{}
	for round := 1; round <= c.rounds; round++ {
		for _, v := range c.variants {
			g := e.gateways[v]
			r, err := e.measureOnce(ctx, g, c.duration, c.warmup, 0)
			if err != nil {
				return nil, nil, fmt.Errorf("round %d, %s: %w", round, v, err)
			}
			full[v] = append(full[v], r)
			printRun(round, c.rounds, v, "", r)
			if delay == 0 {
				continue
			}
			r, err = e.measureOnce(ctx, g, c.duration, 0, delay)
			if err != nil {
				return nil, nil, fmt.Errorf("round %d, %s paced: %w", round, v, err)
			}
			paced[v] = append(paced[v], r)
			printRun(round, c.rounds, v, " paced", r)
		}
	}
	fmt.Println()
	return full, paced, nil
}

func printRun(round, rounds int, variant, kind string, r runResult) {
	note := ""
	if r.Non2xx > 0 || r.SockErr > 0 {
		note = fmt.Sprintf("  !! %d non-2xx, %d socket errors", r.Non2xx, r.SockErr)
	}
	fmt.Printf("  round %d/%d  %-22s %8.0f req/s  p50 %s  p99 %s  CPU: gateway %.2f, other programs %.2f cores%s\n",
		round, rounds, variant+kind, r.RPS, ms(r.P50Ms), ms(r.P99Ms), r.CPU["gateway"], r.CPU["other"], note)
}

func (e *env) measureOnce(ctx context.Context, g *gateway, d, warmup time.Duration, delayMs int) (runResult, error) {
	url := g.base + apiPath
	if err := waitQuiet(ctx, e.cfg.quietWait); err != nil {
		return runResult{}, err
	}
	if warmup >= time.Second {
		if _, err := e.wrk.run(ctx, url, g.token, warmup, 0); err != nil {
			return runResult{}, err
		}
	}
	procs := map[string]*proc{"gateway": g.proc}
	for k, p := range g.side {
		procs[k] = p
	}
	before := map[string]int64{}
	for k, p := range procs {
		t, err := cpuTicks(p.cmd.Process.Pid)
		if err != nil {
			return runResult{}, p.failure("CPU time unreadable", err)
		}
		before[k] = t
	}
	mBusy0, _, _ := machineTicks()
	start := time.Now()
	w, err := e.wrk.run(ctx, url, g.token, d, delayMs)
	wall := time.Since(start).Seconds()
	if err != nil {
		return runResult{}, err
	}
	mBusy1, _, _ := machineTicks()
	r := runResult{wrkResult: w, CPU: map[string]float64{}}
	for k, p := range procs {
		t, err := cpuTicks(p.cmd.Process.Pid)
		if err != nil {
			return runResult{}, p.failure("CPU time unreadable", err)
		}
		r.CPU[k] = float64(t-before[k]) / clockTicks / wall
	}
	r.CPU["wrk"] = float64(w.CPUTicks) / clockTicks / wall
	r.CPU["machine"] = float64(mBusy1-mBusy0) / clockTicks / wall
	// What the machine did besides the processes of this benchmark: other
	// programs (and kernel work not charged to a process) that disturbed
	// the run.
	other := r.CPU["machine"]
	for k, v := range r.CPU {
		if k != "machine" {
			other -= v
		}
	}
	r.CPU["other"] = max(other, 0)
	return r, nil
}

// profileGateway takes a CPU profile of g's process under the same load
// through Caddy's admin endpoint and prints its top entries.
func (e *env) profileGateway(ctx context.Context, g *gateway) error {
	out := e.cfg.profileOut
	if out == "" {
		out = filepath.Join(e.root, "integration", "bench-results", g.variant+".cpu.prof")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	secs := e.cfg.profileSecs
	fmt.Printf("\nCPU profile of the %s gateway: %d s under the same load (wrk -t1 -c%d)\n", g.variant, secs, e.cfg.connections)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wrkDone := make(chan error, 1)
	go func() {
		_, err := e.wrk.run(wctx, g.base+apiPath, g.token, time.Duration(secs+3)*time.Second, 0)
		wrkDone <- err
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(1500 * time.Millisecond):
	}
	purl := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", g.adminPort, secs)
	pctx, pcancel := context.WithTimeout(ctx, time.Duration(secs+30)*time.Second)
	defer pcancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, purl, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching the profile: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("fetching the profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching the profile: %s: %.300s", resp.Status, body)
	}
	if err := os.WriteFile(out, body, 0o644); err != nil {
		return err
	}
	if err := <-wrkDone; err != nil {
		return err
	}
	fmt.Printf("profile written to %s (go tool pprof -http=: %s)\n\n", out, out)
	for _, args := range [][]string{
		{"tool", "pprof", "-top", "-nodecount=25", out},
		{"tool", "pprof", "-top", "-cum", "-nodecount=40", out},
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
		fmt.Println()
	}
	return nil
}

// quietBusy is how busy the machine may be, in cores, with the benchmark's
// own processes idle, for a run to start.
const quietBusy = 0.25

// waitQuiet waits, up to limit, until the CPUs have been nearly idle for a
// second: on a shared 2-core machine a compile or a test suite running
// alongside would otherwise be measured as the gateway's slowness. It
// carries on (with a note) when the machine does not calm down.
func waitQuiet(ctx context.Context, limit time.Duration) error {
	if limit <= 0 {
		return nil
	}
	deadline := time.Now().Add(limit)
	noted := false
	for {
		b0, _, err := machineTicks()
		if err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		b1, _, err := machineTicks()
		if err != nil {
			return nil
		}
		busy := float64(b1-b0) / clockTicks
		if busy < quietBusy {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Printf("           (the machine stayed busy, %.2f cores, for %s; measuring anyway)\n", busy, limit)
			return nil
		}
		if !noted {
			fmt.Printf("           (other programs keep %.2f cores busy; waiting up to %s for quiet)\n", busy, limit)
			noted = true
		}
	}
}

// resetRedisStats zeroes Redis's per-command statistics, so that they
// cover the measured runs only.
func (e *env) resetRedisStats(ctx context.Context) error {
	rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	defer rdb.Close()
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		return fmt.Errorf("redis CONFIG RESETSTAT: %w", err)
	}
	return nil
}

// redisCommandStats describes Redis's time per command since the reset:
// how much of its CPU per request is the command itself (Lua included)
// rather than reading and writing the socket. "" when no command ran
// often enough to matter.
func (e *env) redisCommandStats(ctx context.Context) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return "", fmt.Errorf("redis INFO commandstats: %w", err)
	}
	var lines []string
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		calls, _ := strconv.ParseInt(f["calls"], 10, 64)
		if calls < 1000 {
			continue
		}
		lines = append(lines, fmt.Sprintf("  %-10s %9d calls  %6s µs/call", strings.TrimPrefix(name, "cmdstat_"), calls, f["usec_per_call"]))
	}
	if len(lines) == 0 {
		return "", nil
	}
	slices.Sort(lines)
	return "Redis command time during the runs (INFO commandstats; EVALSHA's includes the calls its script makes, also listed):\n" +
		strings.Join(lines, "\n"), nil
}
