package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// run is one measured wrk run of one variant, with the CPU every process
// used during it.
type runResult struct {
	wrkResult
	// CPU is the cores each process kept busy on average during the run
	// (CPU seconds / wall seconds), by name: gateway, upstream, redis,
	// introspect, wrk, other (the machine's busy time not accounted for
	// by those), machine (all CPUs, from /proc/stat) and, when pinning,
	// cpu-gw and cpu-side (how busy the gateway's CPU and the other one
	// were, whoever used them).
	CPU map[string]float64 `json:"cpu_cores"`
	// Redis is INFO commandstats over the run, for the variants whose
	// requests reach Redis.
	Redis map[string]cmdStat `json:"redis_commandstats,omitempty"`
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
	nodes := e.redisNodes(g.variant)
	if err := resetRedisStats(ctx, nodes); err != nil {
		return runResult{}, err
	}
	ps := g.procs()
	before, err := sampleCPU(ps)
	if err != nil {
		return runResult{}, err
	}
	m0, _ := cpuBusyTicks()
	start := time.Now()
	w, err := e.wrk.run(ctx, url, g.token, d, delayMs)
	wall := time.Since(start).Seconds()
	if err != nil {
		return runResult{}, err
	}
	m1, _ := cpuBusyTicks()
	after, err := sampleCPU(ps)
	if err != nil {
		return runResult{}, err
	}
	r := runResult{wrkResult: w, CPU: map[string]float64{}}
	for k, t := range after {
		r.CPU[k] = float64(t-before[k]) / clockTicks / wall
	}
	r.CPU["wrk"] = float64(w.CPUTicks) / clockTicks / wall
	// What the machine did besides the processes of this benchmark: other
	// programs (and kernel work not charged to a process) that disturbed
	// the run.
	machine := float64(m1[-1]-m0[-1]) / clockTicks / wall
	other := machine
	for _, v := range r.CPU {
		other -= v
	}
	r.CPU["machine"] = machine
	r.CPU["other"] = max(other, 0)
	if e.pin.on {
		r.CPU["cpu-gw"] = float64(m1[e.pin.gateway]-m0[e.pin.gateway]) / clockTicks / wall
		r.CPU["cpu-side"] = float64(m1[e.pin.side]-m0[e.pin.side]) / clockTicks / wall
	}
	if len(nodes) > 0 {
		if r.Redis, err = redisCommandStats(ctx, nodes); err != nil {
			return runResult{}, err
		}
	}
	return r, nil
}

// sampleCPU returns the CPU time (user+system clock ticks) each named
// group of processes has used so far.
func sampleCPU(ps map[string][]*proc) (map[string]int64, error) {
	out := map[string]int64{}
	for k, list := range ps {
		for _, p := range list {
			t, err := cpuTicks(p.cmd.Process.Pid)
			if err != nil {
				return nil, p.failure("CPU time unreadable", err)
			}
			out[k] += t
		}
	}
	return out, nil
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
		b0, err := cpuBusyTicks()
		if err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		b1, err := cpuBusyTicks()
		if err != nil {
			return nil
		}
		busy := float64(b1[-1]-b0[-1]) / clockTicks
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
