package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// flowResult is one throughput run of the token side: full code + PKCE
// flows, or refreshes, by concurrent workers for a fixed time.
type flowResult struct {
	Kind    string  `json:"kind"` // "flows" or "refreshes"
	Workers int     `json:"workers"`
	Done    int64   `json:"done"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_second"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	// CPUUs is the CPU each process spent per flow or refresh, in µs.
	CPUUs map[string]float64 `json:"cpu_us_each"`
	// Busy is how busy the gateway's CPU and the other one were, in
	// cores, when pinning: which side limited the rate.
	BusyGW    float64 `json:"cpu_gw_busy,omitempty"`
	BusySide  float64 `json:"cpu_side_busy,omitempty"`
	FirstErr  string  `json:"first_error,omitempty"`
	latencies []time.Duration
}

// tokenSide is the token-side figures of one Tollgate store.
type tokenSide struct {
	Variant   string      `json:"variant"`
	Store     string      `json:"store"`
	Flows     *flowResult `json:"flows,omitempty"`
	Refreshes *flowResult `json:"refreshes,omitempty"`
	// Bytes: the Redis footprint of one grant after its first token
	// exchange and one refresh, and after 1,000 refreshes (Redis stores).
	BytesAfter1    *grantBytes `json:"grant_bytes_after_1_refresh,omitempty"`
	BytesAfterMany *grantBytes `json:"grant_bytes_after_many_refreshes,omitempty"`
	ManyRefreshes  int         `json:"many_refreshes,omitempty"`
}

// measureTokenSide measures, on one minimal Tollgate gateway, full flows
// per second and refreshes per second with signed-in users, then (on the
// Redis stores) what one grant costs in Redis.
func (e *env) measureTokenSide(ctx context.Context, g *gateway) (tokenSide, error) {
	ts := tokenSide{Variant: g.variant, Store: storeName(g.variant)}
	n := e.cfg.flowWorkers
	// Each worker signs in once, through the real form flow, as its own
	// user, and keeps its session cookie; that first flow is not timed.
	// One after the other: concurrent bcrypt checks on the gateway's one
	// CPU would hold its store calls past store_timeout.
	browsers := make([]*browser, n)
	pairs := make([]tokenPair, n)
	for i := range n {
		b, err := newBrowser(g.base)
		if err != nil {
			return ts, err
		}
		browsers[i] = b
		if pairs[i], err = b.flow(ctx, workerUser(i)); err != nil {
			return ts, fmt.Errorf("%s: signing flow worker %d in: %w", g.variant, i, err)
		}
	}

	d := e.cfg.flowDuration
	if err := waitQuiet(ctx, e.cfg.quietWait); err != nil {
		return ts, err
	}
	fr, err := e.runWorkers(ctx, g, "flows", d, func(ctx context.Context, i int) error {
		p, err := browsers[i].flow(ctx, "")
		pairs[i] = p
		return err
	})
	if err != nil {
		return ts, err
	}
	ts.Flows = &fr
	printFlow(g.variant, fr)

	if err := waitQuiet(ctx, e.cfg.quietWait); err != nil {
		return ts, err
	}
	rr, err := e.runWorkers(ctx, g, "refreshes", d, func(ctx context.Context, i int) error {
		p, err := browsers[i].refresh(ctx, pairs[i].Refresh)
		if err == nil {
			pairs[i] = p
		}
		return err
	})
	if err != nil {
		return ts, err
	}
	ts.Refreshes = &rr
	printFlow(g.variant, rr)

	if nodes := e.redisNodes(g.variant); len(nodes) > 0 {
		if err := e.measureBytes(ctx, g, nodes, &ts); err != nil {
			return ts, fmt.Errorf("%s: grant bytes: %w", g.variant, err)
		}
	}
	return ts, nil
}

// measureBytes signs bytesUser in, exchanges a code, refreshes once and
// measures the grant's keys; then refreshes up to e.cfg.manyRefreshes and
// measures again.
func (e *env) measureBytes(ctx context.Context, g *gateway, nodes []string, ts *tokenSide) error {
	b, err := newBrowser(g.base)
	if err != nil {
		return err
	}
	p, err := b.flow(ctx, bytesUser)
	if err != nil {
		return err
	}
	_, grantID, ok := oauth.ParseToken(p.Access)
	if !ok {
		return fmt.Errorf("the access token %.8s… is not of Tollgate's format", p.Access)
	}
	cluster := usesRedis(g.variant) == "cluster"
	// measure calls the API once with the current access token first, as
	// a partner would, so that the grant's rate-limit counter is there.
	measure := func() (*grantBytes, error) {
		status, _, body, err := get(ctx, g.base+apiPath, p.Access)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("GET %s with the refreshed token: status %d: %.300s", apiPath, status, body)
		}
		gb, err := measureGrantBytes(ctx, nodes, cluster, grantID, bytesUser)
		return &gb, err
	}
	for done := 1; done <= e.cfg.manyRefreshes; done++ {
		if p, err = b.refresh(ctx, p.Refresh); err != nil {
			return fmt.Errorf("refresh %d: %w", done, err)
		}
		switch done {
		case 1:
			ts.BytesAfter1, err = measure()
		case e.cfg.manyRefreshes:
			ts.BytesAfterMany, err = measure()
		}
		if err != nil {
			return err
		}
	}
	ts.ManyRefreshes = e.cfg.manyRefreshes
	// The last pair must still be good: the footprint of a grant that
	// refreshes broke would mean nothing.
	if _, err := b.refresh(ctx, p.Refresh); err != nil {
		return fmt.Errorf("refresh after the measurements: %w", err)
	}
	fmt.Printf("  %-22s one grant in Redis: %s after 1 refresh, %s after %d (subject index %d B)\n",
		g.variant, ts.BytesAfter1, ts.BytesAfterMany, ts.ManyRefreshes, ts.BytesAfterMany.SubjectBytes)
	return nil
}

// runWorkers runs step in e.cfg.flowWorkers goroutines for d and counts
// the steps that succeeded, with the CPU every process of the gateway used
// meanwhile. A failed step is counted and its worker stops: its session or
// token is no longer trustworthy.
func (e *env) runWorkers(ctx context.Context, g *gateway, kind string, d time.Duration, step func(context.Context, int) error) (flowResult, error) {
	n := e.cfg.flowWorkers
	r := flowResult{Kind: kind, Workers: n}
	ps := g.procs()
	before, err := sampleCPU(ps)
	if err != nil {
		return r, err
	}
	m0, _ := cpuBusyTicks()
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	lat := make([][]time.Duration, n)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			for wctx.Err() == nil {
				t0 := time.Now()
				err := step(ctx, i)
				if err != nil {
					mu.Lock()
					r.Errors++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	m1, _ := cpuBusyTicks()
	if e.pin.on {
		r.BusyGW = float64(m1[e.pin.gateway]-m0[e.pin.gateway]) / clockTicks / wall
		r.BusySide = float64(m1[e.pin.side]-m0[e.pin.side]) / clockTicks / wall
	}
	after, err := sampleCPU(ps)
	if err != nil {
		return r, err
	}
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	r.Done = int64(len(r.latencies))
	r.Seconds = wall
	r.PerSec = float64(r.Done) / wall
	slices.Sort(r.latencies)
	r.P50Ms = percentileMs(r.latencies, 50)
	r.P99Ms = percentileMs(r.latencies, 99)
	r.CPUUs = map[string]float64{}
	if r.Done > 0 {
		for k, t := range after {
			r.CPUUs[k] = float64(t-before[k]) / clockTicks / float64(r.Done) * 1e6
		}
	}
	if firstErr != nil {
		r.FirstErr = firstErr.Error()
	}
	return r, nil
}

func percentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(float64(len(sorted))*p/100))
	return float64(sorted[i]) / float64(time.Millisecond)
}

func printFlow(variant string, r flowResult) {
	note := ""
	if r.Errors > 0 {
		note = fmt.Sprintf("  !! %d failed, first: %.200s", r.Errors, r.FirstErr)
	}
	busy := ""
	if r.BusyGW > 0 {
		busy = fmt.Sprintf(", CPUs busy: gateway's %.2f, other %.2f", r.BusyGW, r.BusySide)
	}
	fmt.Printf("  %-22s %-9s %8.1f /s  (%d workers)  p50 %s  p99 %s  gateway %.0f µs each%s%s\n",
		variant, r.Kind, r.PerSec, r.Workers, ms(r.P50Ms), ms(r.P99Ms), r.CPUUs["gateway"], busy, note)
}

// storeName is the Tollgate store of a variant, for the tables.
func storeName(v string) string {
	switch usesRedis(v) {
	case "redis":
		return "Redis"
	case "cluster":
		return "Redis Cluster (3 primaries)"
	}
	return "memory"
}
