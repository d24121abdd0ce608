// Command bench is Tollgate's gateway benchmark. From the module root:
//
//	go run ./integration/bench -duration 10s -rounds 3 -out integration/bench-results/bench.md
//
// (make bench), or a quick look: go run ./integration/bench -duration 3s
// -rounds 1 -warmup 1s. It needs wrk (apt-get install wrk), redis-server
// (apt-get install redis-server) and, for -pin, taskset (util-linux) on
// PATH. It is a benchmark, not a timed test: it measures and prints, and
// exits non-zero only when something failed to run (or a variant answered
// errors under load, which makes its figures invalid). make test does not
// run it.
//
// In one run it measures GET /v1/me through these gateways, all the same
// tollgate binary (built once with go build ./cmd/tollgate; it is a full
// Caddy, so it also serves the non-Tollgate variants), every one proxying
// to the same upstream:
//
//   - plain: a minimal site, Caddy reverse_proxy to the upstream with a
//     tuned keep-alive transport, nothing else (the limit);
//   - plain-default: the same with Caddy's default transport;
//   - example-noauth: the repository's Caddyfile.example with every
//     tollgate_protect removed: its sites, its /v1/me route (rewrite to the
//     legacy path, reverse_proxy with the default transport): what the
//     example's routing costs without auth;
//   - tollgate-memory, tollgate-redis, tollgate-cluster: the minimal site
//     with tollgate_protect (token, scope and rate-limit budget checked in
//     the store) before the tuned reverse_proxy, on the embedded store, a
//     single Redis and a 3-primary Redis Cluster (started here, formed as
//     the store's tests form theirs);
//   - example-memory, example-redis: Caddyfile.example as shipped, through
//     its environment variables, on each store;
//   - forward_auth: Caddy forward_auth to a token-introspection service
//     (./introspect: one Redis GET of the token's SHA-256 digest in the
//     same Redis) then the tuned reverse_proxy: what users do without
//     Tollgate.
//
// The upstream (./upstream) is a separate small Go HTTP server answering
// ~200 B of JSON naming the user it was given. The Tollgate variants get
// their token through the real flow over HTTP (authorize with PKCE,
// sign-in, consent, code exchange). Before and after measuring, each
// variant must answer 200 with the token (the upstream seeing the user the
// gateway vouched for), and Tollgate and forward_auth 401 without one, so
// that a broken configuration is never measured as fast.
//
// With -pin (the default), the gateway and the upstream run on one CPU
// and everything else (Redis, wrk, the introspection service, this driver)
// on another, so that the figures are those of the gateway's CPU; -pin=false
// lets every process share every CPU. wrk runs with one thread (-t1).
// Variants alternate within each round so that drift affects all alike, and
// the median of the rounds is printed: requests/s, p50/p90/p99 latency, the
// ratio to plain and the p99 added over plain, the CPU per request of the
// gateway and of Redis (each process's CPU time from /proc over the
// requests wrk counted) and Redis's time per command (INFO commandstats,
// reset before each measured run); then the ratios the work is judged by
// (example-redis against example-noauth, the target being 0.95× with at
// most 1 ms of p99 added; example-noauth and tollgate-redis against plain)
// and the goals, as PASS/MISS, for information only.
//
// Then, on tollgate-memory, tollgate-redis and tollgate-cluster, the token
// side: -flow-workers users sign in once each through the form and keep
// their session cookie; for -flow-duration they run full flows (authorize
// with PKCE, consent, code, token exchange), then for as long they rotate
// refresh tokens: flows/s and refreshes/s, with the gateway's CPU each.
// On the Redis stores, one more user's grant is measured in Redis (MEMORY
// USAGE summed over every key of its hash tag, plus its subject's index)
// after its first token exchange and one refresh, and after 1,000
// refreshes (-refreshes).
//
// The results go to stdout and, with -out FILE, to FILE (JSON if it ends
// in .json, else markdown) and a PNG bar chart of req/s and p99 per variant
// beside it (-plot to put it elsewhere).
//
// Other flags: -connections (32), -warmup (3s), -paced-rps N (also measure
// latency at a paced load of about N req/s, where it is not dominated by
// queueing), -profile VARIANT (then a CPU profile of that gateway under
// load, through Caddy's admin endpoint, and its top entries), -quiet-wait
// (how long to wait for other programs to leave the CPUs idle before each
// run), -flows=false, -binary, -keep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type config struct {
	duration      time.Duration
	warmup        time.Duration
	connections   int
	rounds        int
	out           string
	plot          string
	variants      []string
	binary        string
	redisPool     int
	pacedRPS      int
	quietWait     time.Duration
	profile       string
	profileSecs   int
	profileOut    string
	keep          bool
	pin           bool
	flows         bool
	flowDuration  time.Duration
	flowWorkers   int
	manyRefreshes int
}

func main() {
	var c config
	var variants string
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each measured run (whole seconds)")
	flag.DurationVar(&c.warmup, "warmup", 3*time.Second, "unmeasured load before each measured run (0 for none)")
	flag.IntVar(&c.connections, "connections", 32, "concurrent keep-alive connections of the load generator")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds; each runs every variant once, and the median is reported")
	flag.StringVar(&c.out, "out", "", "also write the results to this file: JSON if it ends in .json, else markdown")
	flag.StringVar(&c.plot, "plot", "", "write the PNG chart here (default: beside -out, with the extension .png; none without -out)")
	flag.StringVar(&variants, "variants", strings.Join(allVariants, ","), "variants to run, comma-separated")
	flag.StringVar(&c.binary, "binary", "", "use this tollgate binary instead of building ./cmd/tollgate")
	flag.IntVar(&c.redisPool, "redis-pool", 10*runtime.NumCPU(), "Redis pool size of Tollgate's store (per node) and of the introspection service (go-redis's default is 10 per CPU)")
	flag.IntVar(&c.pacedRPS, "paced-rps", 0, "also measure latency at a paced load of about this many req/s (each connection waits connections/rate between requests), below every variant's capacity; 0 for none")
	flag.DurationVar(&c.quietWait, "quiet-wait", 2*time.Minute, "before each run, wait up to this long for other programs to leave the CPUs idle (0: do not wait)")
	flag.StringVar(&c.profile, "profile", "", "after the rounds, take a CPU profile of this variant's gateway under load (via Caddy's admin /debug/pprof) and print its top entries")
	flag.IntVar(&c.profileSecs, "profile-seconds", 10, "length of the CPU profile")
	flag.StringVar(&c.profileOut, "profile-out", "", "where to keep the CPU profile (default integration/bench-results/<variant>.cpu.prof)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (Caddyfiles, process logs)")
	flag.BoolVar(&c.pin, "pin", true, "pin the gateway and the upstream to one CPU, Redis, wrk, the introspection service and the flow workers to another")
	flag.BoolVar(&c.flows, "flows", true, "measure flows/s, refreshes/s and a grant's Redis bytes on the tollgate-* variants run")
	flag.DurationVar(&c.flowDuration, "flow-duration", 0, "length of each flows/s and refreshes/s run (default -duration)")
	flag.IntVar(&c.flowWorkers, "flow-workers", 8, "concurrent signed-in users running flows, then refreshes")
	flag.IntVar(&c.manyRefreshes, "refreshes", 1000, "refreshes after which a grant's Redis bytes are measured again")
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
	if c.flowDuration == 0 {
		c.flowDuration = c.duration
	}
	// Every worker signs in from 127.0.0.1: stay below the default
	// sign_in_address_limit (100 per 15 minutes).
	if c.flowWorkers < 1 || c.flowWorkers > 64 || c.manyRefreshes < 2 {
		fatalf("need 1 ≤ -flow-workers ≤ 64 and -refreshes ≥ 2")
	}
	if c.plot == "" && c.out != "" {
		c.plot = strings.TrimSuffix(c.out, filepath.Ext(c.out)) + ".png"
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

// env is everything run sets up.
type env struct {
	cfg          config
	root         string
	work         string
	binDir       string
	tollgate     string
	ps           procs
	pin          pinning
	redis        *proc
	redisAddr    string
	cluster      []*proc
	clusterAddrs []string
	upstream     *proc
	introspect   *proc
	wrk          *wrkRunner
	gateways     map[string]*gateway
	info         machineInfo
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
	// After the build, which should have every CPU.
	if e.pin, err = newPinning(c.pin); err != nil {
		return err
	}
	script, err := writeWrkScript(work)
	if err != nil {
		return err
	}
	e.wrk = &wrkRunner{bin: wrkBin, script: script, threads: 1, conns: c.connections, pin: e.pin}
	e.info = gatherInfo(wrkBin, redisBin)
	e.info.Pinning = e.pin.describe

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
	if err := e.checkPinning(); err != nil {
		return err
	}
	fmt.Println("all variants verified: 200 with the token; Tollgate and forward_auth 401 without it or with a wrong one")
	fmt.Printf("pinning: %s\n\n", e.pin.describe)

	res, paced, err := e.measure(ctx)
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
	var sides []tokenSide
	if c.flows {
		if sides, err = e.measureTokenSides(ctx); err != nil {
			return err
		}
	}
	report := buildReport(c, e.info, res, paced, sides)
	report.Plot = c.plot
	fmt.Print(report.text())
	if c.out != "" {
		if err := report.write(c.out); err != nil {
			return err
		}
		fmt.Printf("\nresults written to %s\n", c.out)
	}
	if c.plot != "" {
		if err := report.plot(c.plot); err != nil {
			return err
		}
		fmt.Printf("chart written to %s\n", c.plot)
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

// measureTokenSides runs the token-side measurements on every minimal
// Tollgate variant run, one store after the other.
func (e *env) measureTokenSides(ctx context.Context) ([]tokenSide, error) {
	var out []tokenSide
	first := true
	for _, v := range []string{varMemory, varRedis, varCluster} {
		g := e.gateways[v]
		if g == nil {
			continue
		}
		if first {
			fmt.Printf("token side: %d signed-in users, each running full flows for %s, then refreshes for %s\n",
				e.cfg.flowWorkers, e.cfg.flowDuration, e.cfg.flowDuration)
			first = false
		}
		ts, err := e.measureTokenSide(ctx, g)
		if err != nil {
			return nil, err
		}
		out = append(out, ts)
	}
	if !first {
		fmt.Println()
	}
	return out, nil
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
