package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// machineInfo describes where the numbers come from.
type machineInfo struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	OS       string `json:"os"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Wrk      string `json:"wrk"`
	Redis    string `json:"redis"`
	Pinning  string `json:"pinning"`
}

func gatherInfo(wrkBin, redisBin string) machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), Wrk: wrkVersion(wrkBin)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(redisBin, "--version").Output(); err == nil {
		f := strings.Fields(string(out))
		for _, s := range f {
			if strings.HasPrefix(s, "v=") {
				m.Redis = strings.TrimPrefix(s, "v=")
			}
		}
	}
	return m
}

// summary is the median of a variant's rounds.
type summary struct {
	Variant  string             `json:"variant"`
	RPS      float64            `json:"rps"`
	P50Ms    float64            `json:"p50_ms"`
	P90Ms    float64            `json:"p90_ms"`
	P99Ms    float64            `json:"p99_ms"`
	RatioRPS float64            `json:"ratio_to_plain,omitempty"`
	AddedP99 float64            `json:"added_p99_ms_vs_plain"`
	HasPlain bool               `json:"-"`
	CPU      map[string]float64 `json:"cpu_cores"`
	// CPUUs is each process's CPU per request, in µs (median of the
	// rounds' CPU time over requests).
	CPUUs   map[string]float64 `json:"cpu_us_per_request"`
	Non2xx  int64              `json:"non_2xx_3xx"`
	SockErr int64              `json:"socket_errors"`
	// Redis is INFO commandstats summed over the rounds, and Requests the
	// requests of those rounds, for the per-request figures.
	Redis    map[string]cmdStat `json:"redis_commandstats,omitempty"`
	Requests int64              `json:"requests"`
	Rounds   []runResult        `json:"rounds"`
}

// usPerRequest returns process k's CPU per request, or -1 when k did not
// take part in the variant.
func (s summary) usPerRequest(k string) float64 {
	v, ok := s.CPUUs[k]
	if !ok {
		return -1
	}
	return v
}

// ratio compares two variants: a / b in req/s, a − b in p99.
type ratio struct {
	A        string  `json:"a"`
	B        string  `json:"b"`
	Why      string  `json:"why"`
	RPS      float64 `json:"rps_ratio"`
	AddedP99 float64 `json:"added_p99_ms"`
}

type goal struct {
	Name   string  `json:"name"`
	Value  string  `json:"value"`
	Pass   bool    `json:"pass"`
	Number float64 `json:"number"`
}

type report struct {
	When        time.Time   `json:"when"`
	Command     string      `json:"command"`
	Machine     machineInfo `json:"machine"`
	Duration    string      `json:"duration"`
	Warmup      string      `json:"warmup"`
	Connections int         `json:"connections"`
	Rounds      int         `json:"rounds"`
	RedisPool   int         `json:"redis_pool"`
	Transport   string      `json:"transport"`
	Variants    []summary   `json:"variants"`
	Ratios      []ratio     `json:"ratios"`
	PacedRPS    int         `json:"paced_rps,omitempty"`
	Paced       []summary   `json:"paced,omitempty"`
	TokenSides  []tokenSide `json:"token_side,omitempty"`
	Goals       []goal      `json:"goals"`
	Plot        string      `json:"plot,omitempty"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianOf(rs []runResult, f func(runResult) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

// ratioPairs are the comparisons printed besides "× plain", with why each
// matters.
var ratioPairs = []struct{ a, b, why string }{
	{varExampleRedis, varExampleNoAuth, "what tollgate_protect on Redis costs the example's routes (target ≥ 0.95×, p99 +1 ms at most)"},
	{varExampleMemory, varExampleNoAuth, "the same on the embedded store"},
	{varExampleNoAuth, varPlain, "what the example's own routing and default transport cost"},
	{varExampleNoAuth, varPlainDefault, "what the example's own routing costs, transport alike"},
	{varPlainDefault, varPlain, "Caddy's default transport against the tuned keep-alive pool"},
	{varRedis, varPlain, "tollgate_protect on Redis, minimal site"},
	{varCluster, varRedis, "a 3-primary Cluster against one Redis"},
	{varRedis, varForwardAuth, "Tollgate on Redis against forward_auth to a Redis-backed introspection"},
}

func buildReport(c config, info machineInfo, full, paced map[string][]runResult, sides []tokenSide) report {
	rep := report{
		When: time.Now(), Machine: info,
		Command:  strings.TrimSpace("go run ./integration/bench " + strings.Join(os.Args[1:], " ")),
		Duration: c.duration.String(), Warmup: c.warmup.String(),
		Connections: c.connections, Rounds: c.rounds, RedisPool: c.redisPool,
		Transport:  strings.Join(strings.Fields(transport), " "),
		PacedRPS:   c.pacedRPS,
		TokenSides: sides,
	}
	rep.Variants = summarize(c.variants, full)
	if len(paced) > 0 {
		rep.Paced = summarize(c.variants, paced)
	}
	for _, rp := range ratioPairs {
		a, b := find(rep.Variants, rp.a), find(rep.Variants, rp.b)
		if a == nil || b == nil || b.RPS == 0 {
			continue
		}
		rep.Ratios = append(rep.Ratios, ratio{A: rp.a, B: rp.b, Why: rp.why, RPS: a.RPS / b.RPS, AddedP99: a.P99Ms - b.P99Ms})
	}
	ratioGoal := func(a, b *summary, min float64) {
		if a == nil || b == nil {
			return
		}
		x := a.RPS / b.RPS
		rep.Goals = append(rep.Goals, goal{
			Name:  fmt.Sprintf("%s ≥ %g× %s (req/s)", a.Variant, min, b.Variant),
			Value: fmt.Sprintf("%.0f / %.0f = %.2f×", a.RPS, b.RPS, x), Number: x, Pass: x >= min,
		})
	}
	p99Goal := func(a, b *summary, what string) {
		if a == nil || b == nil {
			return
		}
		d := a.P99Ms - b.P99Ms
		rep.Goals = append(rep.Goals, goal{
			Name:  fmt.Sprintf("%s p99 added ≤ 1 ms over %s%s", a.Variant, b.Variant, what),
			Value: fmt.Sprintf("%s − %s = %+.2f ms", ms(a.P99Ms), ms(b.P99Ms), d), Number: d, Pass: d <= 1,
		})
	}
	v := func(name string) *summary { return find(rep.Variants, name) }
	ratioGoal(v(varExampleRedis), v(varExampleNoAuth), 0.95)
	p99Goal(v(varExampleRedis), v(varExampleNoAuth), " (at saturation)")
	ratioGoal(v(varRedis), v(varPlain), 0.9)
	ratioGoal(v(varRedis), v(varForwardAuth), 2)
	p99Goal(v(varRedis), v(varPlain), " (at saturation)")
	p99Goal(find(rep.Paced, varRedis), find(rep.Paced, varPlain), fmt.Sprintf(" (paced, ~%d req/s)", c.pacedRPS))
	if r := v(varRedis); r != nil && r.Requests > 0 {
		x := redisCommandUs(*r)
		rep.Goals = append(rep.Goals, goal{
			Name:  "tollgate-redis: Redis command time ≤ 5 µs per request",
			Value: fmt.Sprintf("%.1f µs (INFO commandstats)", x), Number: x, Pass: x <= 5,
		})
		// The process's CPU, socket work included: what decides how many
		// requests one Redis core serves (5 µs: 200,000/s).
		y := r.usPerRequest("redis")
		rep.Goals = append(rep.Goals, goal{
			Name:  "tollgate-redis: Redis process CPU ≤ 5 µs per request",
			Value: fmt.Sprintf("%.1f µs (/proc)", y), Number: y, Pass: y <= 5,
		})
	}
	return rep
}

// redisCommandUs is Redis's command time per request of a variant. INFO
// commandstats lists the commands a Lua script calls as well as the
// EVALSHA that ran it (whose time includes theirs), so when scripts ran
// for a good share of the requests, only the script commands count;
// otherwise every command (Tollgate's HMGET and ZADD, forward_auth's GET;
// the rare script then counts twice, an upper bound). The benchmark's own
// calls are left out.
func redisCommandUs(s summary) float64 {
	scripts := func(name string) bool {
		return strings.HasPrefix(name, "eval") || strings.HasPrefix(name, "fcall")
	}
	// Scripts count only when they carry the load: Tollgate runs one on a
	// token's first use and then every 30 s, which must not hide the plain
	// commands of every other call.
	hasScript := false
	for name, st := range s.Redis {
		hasScript = hasScript || (scripts(name) && float64(st.Calls) >= float64(s.Requests)/100)
	}
	var usec float64
	for name, st := range s.Redis {
		if own(name) || (hasScript && !scripts(name)) {
			continue
		}
		usec += st.Usec
	}
	return usec / float64(s.Requests)
}

// own: a command the benchmark sends itself (statistics, checks).
func own(name string) bool {
	for _, p := range []string{"info", "config", "cluster", "ping", "hello", "client", "memory", "scan"} {
		if name == p || strings.HasPrefix(name, p+"|") {
			return true
		}
	}
	return false
}

// summarize takes the median of each variant's rounds and compares it
// with plain.
func summarize(variants []string, res map[string][]runResult) []summary {
	var out []summary
	for _, v := range variants {
		rs := res[v]
		if len(rs) == 0 {
			continue
		}
		s := summary{Variant: v, Rounds: rs, CPU: map[string]float64{}, CPUUs: map[string]float64{}}
		s.RPS = medianOf(rs, func(r runResult) float64 { return r.RPS })
		s.P50Ms = medianOf(rs, func(r runResult) float64 { return r.P50Ms })
		s.P90Ms = medianOf(rs, func(r runResult) float64 { return r.P90Ms })
		s.P99Ms = medianOf(rs, func(r runResult) float64 { return r.P99Ms })
		for _, k := range cpuColumns {
			if _, ok := rs[0].CPU[k]; ok {
				s.CPU[k] = medianOf(rs, func(r runResult) float64 { return r.CPU[k] })
				if perRequest(k) {
					s.CPUUs[k] = medianOf(rs, func(r runResult) float64 {
						if r.RPS == 0 {
							return 0
						}
						return r.CPU[k] / r.RPS * 1e6
					})
				}
			}
		}
		for _, r := range rs {
			s.Non2xx += r.Non2xx
			s.SockErr += r.SockErr
			if r.Redis == nil {
				continue
			}
			if s.Redis == nil {
				s.Redis = map[string]cmdStat{}
			}
			s.Requests += r.Requests
			for name, st := range r.Redis {
				t := s.Redis[name]
				t.Calls += st.Calls
				t.Usec += st.Usec
				s.Redis[name] = t
			}
		}
		out = append(out, s)
	}
	if p := find(out, varPlain); p != nil {
		plain := *p
		for i := range out {
			out[i].HasPlain = true
			out[i].RatioRPS = out[i].RPS / plain.RPS
			out[i].AddedP99 = out[i].P99Ms - plain.P99Ms
		}
	}
	return out
}

func find(ss []summary, variant string) *summary {
	for i := range ss {
		if ss[i].Variant == variant {
			return &ss[i]
		}
	}
	return nil
}

// cpuColumns are the columns of the CPU table, in order: processes, then
// what is not a process.
var cpuColumns = []string{"gateway", "upstream", "redis", "introspect", "wrk", "other", "machine", "cpu-gw", "cpu-side"}

// perRequest: the CPU column is a process's, so per request makes sense.
func perRequest(k string) bool {
	return slices.Contains([]string{"gateway", "upstream", "redis", "introspect", "wrk"}, k)
}

func ms(v float64) string { return fmt.Sprintf("%.2fms", v) }

// us formats a per-request CPU figure, "-" when the process took no part.
func us(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func (rep report) text() string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "Tollgate gateway benchmark, %s\n", rep.When.Format(time.RFC3339))
	fmt.Fprintf(&b, "command: %s\n", rep.Command)
	fmt.Fprintf(&b, "machine: %d CPUs (%s), %s, kernel %s; %s; %s; redis %s\n", m.CPUs, m.CPUModel, m.OS, m.Kernel, m.Go, m.Wrk, m.Redis)
	fmt.Fprintf(&b, "pinning: %s\n", m.Pinning)
	fmt.Fprintf(&b, "load:    wrk -t1 -c%d -d%s --latency, GET %s with a bearer token, after %s warm-up; %d round(s) alternating the variants, median shown\n",
		rep.Connections, rep.Duration, apiPath, rep.Warmup, rep.Rounds)
	fmt.Fprintf(&b, "proxy:   minimal variants but plain-default: %s; plain-default and example-*: Caddy's default transport\n", rep.Transport)
	fmt.Fprintf(&b, "         upstream: separate Go process, ~200 B JSON; redis-server --save \"\" --appendonly no; Redis pool %d per node (Tollgate and introspection)\n", rep.RedisPool)
	b.WriteString("\n")

	latencyTable(&b, rep.Variants)
	if len(rep.Ratios) > 0 {
		b.WriteString("\nRatios (req/s of the first over the second; p99 added):\n")
		for _, r := range rep.Ratios {
			fmt.Fprintf(&b, "  %-34s %6.2f×  %+8.2fms  %s\n", r.A+" / "+r.B, r.RPS, r.AddedP99, r.Why)
		}
	}
	if len(rep.Paced) > 0 {
		fmt.Fprintf(&b, "\nPaced at ~%d req/s (each connection waits between requests): latency without queueing\n", rep.PacedRPS)
		latencyTable(&b, rep.Paced)
	}

	fmt.Fprintf(&b, "\nCPU during the saturating runs, in cores busy (of %d); other = the machine's busy time not spent in these processes", m.CPUs)
	cols := slices.Clone(cpuColumns)
	if !strings.HasPrefix(m.Pinning, "CPU") {
		cols = slices.DeleteFunc(cols, func(k string) bool { return strings.HasPrefix(k, "cpu-") })
	} else {
		b.WriteString("; cpu-gw, cpu-side = how busy the gateway's CPU and the other one were")
	}
	b.WriteString("\n")
	columnTable(&b, rep.Variants, cols, func(s summary, k string) string {
		if v, ok := s.CPU[k]; ok {
			return fmt.Sprintf("%.2f", v)
		}
		return "-"
	})
	b.WriteString("\nCPU per request, µs (each process's CPU time over the requests wrk counted)\n")
	columnTable(&b, rep.Variants, []string{"gateway", "upstream", "redis", "introspect", "wrk"}, func(s summary, k string) string {
		return us(s.usPerRequest(k))
	})
	redisCommandTable(&b, rep.Variants)
	tokenSideTables(&b, rep.TokenSides)

	for _, s := range rep.Variants {
		if s.CPU["other"] > 0.2 {
			fmt.Fprintf(&b, "note: other programs kept %.2f cores busy during the %s runs (median): the figures are disturbed; rerun on a quiet machine\n", s.CPU["other"], s.Variant)
		}
	}
	if len(rep.Goals) > 0 {
		b.WriteString("\nGoals (informational):\n")
		for _, g := range rep.Goals {
			verdict := "MISS"
			if g.Pass {
				verdict = "PASS"
			}
			fmt.Fprintf(&b, "  %-62s %-30s %s\n", g.Name, g.Value, verdict)
		}
	}
	if bad := rep.failedRuns(); bad != "" {
		fmt.Fprintf(&b, "\n!! %s\n", bad)
	}
	return b.String()
}

// columnTable prints one line per variant and one column per key.
func columnTable(b *strings.Builder, ss []summary, cols []string, cell func(summary, string) string) {
	fmt.Fprintf(b, "%-16s", "variant")
	for _, k := range cols {
		fmt.Fprintf(b, " %10s", k)
	}
	b.WriteString("\n")
	for _, s := range ss {
		fmt.Fprintf(b, "%-16s", s.Variant)
		for _, k := range cols {
			fmt.Fprintf(b, " %10s", cell(s, k))
		}
		b.WriteString("\n")
	}
}

// latencyTable is the main table: one line per variant.
func latencyTable(b *strings.Builder, ss []summary) {
	fmt.Fprintf(b, "%-16s %9s %8s %9s %9s %9s %12s %11s %11s\n", "variant", "req/s", "× plain", "p50", "p90", "p99", "p99 − plain", "gateway µs", "Redis µs")
	for _, s := range ss {
		ratio, added := "-", "-"
		if s.HasPlain {
			ratio = fmt.Sprintf("%.2f×", s.RatioRPS)
			if s.Variant != varPlain {
				added = fmt.Sprintf("%+.2fms", s.AddedP99)
			}
		}
		fmt.Fprintf(b, "%-16s %9.0f %8s %9s %9s %9s %12s %11s %11s\n", s.Variant, s.RPS, ratio, ms(s.P50Ms), ms(s.P90Ms), ms(s.P99Ms), added,
			us(s.usPerRequest("gateway")), us(s.usPerRequest("redis")))
	}
	fmt.Fprintf(b, "(gateway µs, Redis µs: CPU per request of the gateway process and of every redis-server it uses)\n")
}

// redisCommandTable prints, per variant that reaches Redis, Redis's time
// in each command: calls per request and µs per call (INFO commandstats).
func redisCommandTable(b *strings.Builder, ss []summary) {
	first := true
	for _, s := range ss {
		if s.Requests == 0 || len(s.Redis) == 0 {
			continue
		}
		if first {
			b.WriteString("\nRedis time per command during the runs (INFO commandstats, reset before each measured run; a script's inner calls are listed as well as the EVALSHA that includes them)\n")
			fmt.Fprintf(b, "%-16s %-14s %12s %10s %10s\n", "variant", "command", "calls/req", "µs/call", "µs/req")
			first = false
		}
		names := make([]string, 0, len(s.Redis))
		for name, st := range s.Redis {
			// Leave out the benchmark's own INFO and CONFIG calls.
			if float64(st.Calls) >= float64(s.Requests)/100 {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		for _, name := range names {
			st := s.Redis[name]
			fmt.Fprintf(b, "%-16s %-14s %12.2f %10.2f %10.2f\n", s.Variant, name,
				float64(st.Calls)/float64(s.Requests), st.Usec/float64(st.Calls), st.Usec/float64(s.Requests))
		}
	}
}

// tokenSideTables prints flows/s, refreshes/s and a grant's Redis bytes.
func tokenSideTables(b *strings.Builder, sides []tokenSide) {
	if len(sides) == 0 {
		return
	}
	w := sides[0].Flows.Workers
	fmt.Fprintf(b, "\nToken side: %d signed-in users (session cookie kept), concurrently; a flow = GET authorize with PKCE → consent POST → code → token exchange\n", w)
	fmt.Fprintf(b, "%-28s %10s %9s %9s %10s %10s %12s %9s %9s %10s %10s\n",
		"store", "flows/s", "p50", "p99", "gw µs", "Redis µs", "refreshes/s", "p50", "p99", "gw µs", "Redis µs")
	for _, t := range sides {
		f, r := t.Flows, t.Refreshes
		fmt.Fprintf(b, "%-28s %10.1f %9s %9s %10s %10s %12.1f %9s %9s %10s %10s\n", t.Store,
			f.PerSec, ms(f.P50Ms), ms(f.P99Ms), cpuEach(f, "gateway"), cpuEach(f, "redis"),
			r.PerSec, ms(r.P50Ms), ms(r.P99Ms), cpuEach(r, "gateway"), cpuEach(r, "redis"))
	}
	b.WriteString("(gw µs, Redis µs: CPU per flow or refresh of the gateway and of Redis)\n")
	first := true
	for _, t := range sides {
		if t.BytesAfter1 == nil || t.BytesAfterMany == nil {
			continue
		}
		if first {
			b.WriteString("\nOne grant in Redis (MEMORY USAGE summed over every key of its {grant id} hash tag, each measured after one API call; its subject's index, one entry, apart)\n")
			fmt.Fprintf(b, "%-28s %-32s %-32s %s\n", "store", "code exchange + 1 refresh", fmt.Sprintf("after %d refreshes", t.ManyRefreshes), "subject index")
			first = false
		}
		fmt.Fprintf(b, "%-28s %-32s %-32s %d B\n", t.Store, t.BytesAfter1, t.BytesAfterMany, t.BytesAfterMany.SubjectBytes)
	}
}

func cpuEach(r *flowResult, k string) string {
	v, ok := r.CPUUs[k]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

// failedRuns names the variants whose load runs saw errors: their figures
// are not to be trusted.
func (rep report) failedRuns() string {
	var bad []string
	for i, ss := range [][]summary{rep.Variants, rep.Paced} {
		for _, s := range ss {
			if s.Non2xx > 0 || s.SockErr > 0 {
				name := s.Variant
				if i == 1 {
					name += " (paced)"
				}
				bad = append(bad, fmt.Sprintf("%s (%d non-2xx answers, %d socket errors)", name, s.Non2xx, s.SockErr))
			}
		}
	}
	for _, t := range rep.TokenSides {
		for _, r := range []*flowResult{t.Flows, t.Refreshes} {
			if r != nil && r.Errors > 0 {
				bad = append(bad, fmt.Sprintf("%s %s (%d failed; first: %.200s)", t.Variant, r.Kind, r.Errors, r.FirstErr))
			}
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return "errors under load, figures not valid: " + strings.Join(bad, "; ")
}

// write saves the report: JSON for a .json path, else markdown.
func (rep report) write(path string) error {
	var data []byte
	if strings.HasSuffix(path, ".json") {
		var err error
		if data, err = json.MarshalIndent(rep, "", "  "); err != nil {
			return err
		}
		data = append(data, '\n')
	} else {
		md := "# Tollgate gateway benchmark\n\n`" + rep.Command + "` (`make bench`)\n\n"
		if rep.Plot != "" && filepath.Dir(rep.Plot) == filepath.Dir(path) {
			md += "![req/s and p99 per variant](" + filepath.Base(rep.Plot) + ")\n\n"
		}
		data = []byte(md + "```\n" + rep.text() + "```\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
