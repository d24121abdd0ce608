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
	Variant   string             `json:"variant"`
	RPS       float64            `json:"rps"`
	P50Ms     float64            `json:"p50_ms"`
	P90Ms     float64            `json:"p90_ms"`
	P99Ms     float64            `json:"p99_ms"`
	RatioRPS  float64            `json:"ratio_to_plain,omitempty"`
	AddedP99  float64            `json:"added_p99_ms_vs_plain"`
	HasPlain  bool               `json:"-"`
	CPU       map[string]float64 `json:"cpu_cores"`
	Non2xx    int64              `json:"non_2xx_3xx"`
	SockErr   int64              `json:"socket_errors"`
	Rounds    []runResult        `json:"rounds"`
	GatewayUs float64            `json:"gateway_cpu_us_per_request"`
}

type goal struct {
	Name   string  `json:"name"`
	Value  string  `json:"value"`
	Pass   bool    `json:"pass"`
	Number float64 `json:"number"`
}

type report struct {
	When        time.Time   `json:"when"`
	Machine     machineInfo `json:"machine"`
	Duration    string      `json:"duration"`
	Warmup      string      `json:"warmup"`
	Connections int         `json:"connections"`
	Rounds      int         `json:"rounds"`
	RedisPool   int         `json:"redis_pool"`
	Transport   string      `json:"transport"`
	Variants    []summary   `json:"variants"`
	PacedRPS    int         `json:"paced_rps,omitempty"`
	Paced       []summary   `json:"paced,omitempty"`
	Goals       []goal      `json:"goals"`
	RedisNote   string      `json:"redis_commandstats,omitempty"`
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

func buildReport(c config, info machineInfo, full, paced map[string][]runResult) report {
	rep := report{
		When: time.Now(), Machine: info,
		Duration: c.duration.String(), Warmup: c.warmup.String(),
		Connections: c.connections, Rounds: c.rounds, RedisPool: c.redisPool,
		Transport: strings.Join(strings.Fields(transport), " "),
		PacedRPS:  c.pacedRPS,
	}
	rep.Variants = summarize(c.variants, full)
	if len(paced) > 0 {
		rep.Paced = summarize(c.variants, paced)
	}
	r, p, fa := find(rep.Variants, varRedis), find(rep.Variants, varPlain), find(rep.Variants, varForwardAuth)
	if r != nil && p != nil {
		x := r.RPS / p.RPS
		rep.Goals = append(rep.Goals, goal{
			Name:  "tollgate-redis ≥ 0.9× plain reverse_proxy (req/s)",
			Value: fmt.Sprintf("%.0f / %.0f = %.2f×", r.RPS, p.RPS, x), Number: x, Pass: x >= 0.9,
		})
	}
	if r != nil && fa != nil {
		x := r.RPS / fa.RPS
		rep.Goals = append(rep.Goals, goal{
			Name:  "tollgate-redis ≥ 2× forward_auth (req/s)",
			Value: fmt.Sprintf("%.0f / %.0f = %.2f×", r.RPS, fa.RPS, x), Number: x, Pass: x >= 2,
		})
	}
	if r != nil && p != nil {
		d := r.P99Ms - p.P99Ms
		rep.Goals = append(rep.Goals, goal{
			Name:  "tollgate-redis p99 added ≤ 1 ms over plain (at saturation)",
			Value: fmt.Sprintf("%s − %s = %+.2f ms", ms(r.P99Ms), ms(p.P99Ms), d), Number: d, Pass: d <= 1,
		})
	}
	if r, p := find(rep.Paced, varRedis), find(rep.Paced, varPlain); r != nil && p != nil {
		d := r.P99Ms - p.P99Ms
		rep.Goals = append(rep.Goals, goal{
			Name:  fmt.Sprintf("tollgate-redis p99 added ≤ 1 ms over plain (paced, ~%d req/s)", c.pacedRPS),
			Value: fmt.Sprintf("%s − %s = %+.2f ms", ms(r.P99Ms), ms(p.P99Ms), d), Number: d, Pass: d <= 1,
		})
	}
	return rep
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
		s := summary{Variant: v, Rounds: rs, CPU: map[string]float64{}}
		s.RPS = medianOf(rs, func(r runResult) float64 { return r.RPS })
		s.P50Ms = medianOf(rs, func(r runResult) float64 { return r.P50Ms })
		s.P90Ms = medianOf(rs, func(r runResult) float64 { return r.P90Ms })
		s.P99Ms = medianOf(rs, func(r runResult) float64 { return r.P99Ms })
		for _, k := range cpuColumns {
			if _, ok := rs[0].CPU[k]; ok {
				s.CPU[k] = medianOf(rs, func(r runResult) float64 { return r.CPU[k] })
			}
		}
		if s.RPS > 0 {
			s.GatewayUs = s.CPU["gateway"] / s.RPS * 1e6
		}
		for _, r := range rs {
			s.Non2xx += r.Non2xx
			s.SockErr += r.SockErr
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

// cpuColumns are the processes of the CPU table, in order.
var cpuColumns = []string{"gateway", "upstream", "redis", "introspect", "wrk", "other", "machine"}

func ms(v float64) string { return fmt.Sprintf("%.2fms", v) }

func (rep report) text() string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "Tollgate gateway benchmark, %s\n", rep.When.Format(time.RFC3339))
	fmt.Fprintf(&b, "machine: %d CPUs (%s), %s, kernel %s; %s; %s; redis %s\n", m.CPUs, m.CPUModel, m.OS, m.Kernel, m.Go, m.Wrk, m.Redis)
	fmt.Fprintf(&b, "load:    wrk -t1 -c%d -d%s --latency, GET %s with a bearer token, after %s warm-up; %d round(s) alternating the variants, median shown\n",
		rep.Connections, rep.Duration, apiPath, rep.Warmup, rep.Rounds)
	fmt.Fprintf(&b, "         ONE wrk thread: on this %d-CPU machine the load generator takes CPU from the system under test (its share is in the CPU table)\n", m.CPUs)
	fmt.Fprintf(&b, "proxy:   every reverse_proxy (forward_auth's too): %s\n", rep.Transport)
	fmt.Fprintf(&b, "         upstream: separate Go process, ~200 B JSON; redis-server --save \"\" --appendonly no; Redis pool %d (Tollgate and introspection)\n", rep.RedisPool)
	b.WriteString("\n")

	latencyTable(&b, rep.Variants)
	if len(rep.Paced) > 0 {
		fmt.Fprintf(&b, "\nPaced at ~%d req/s (each connection waits between requests): latency without queueing\n", rep.PacedRPS)
		latencyTable(&b, rep.Paced)
	}
	fmt.Fprintf(&b, "\nCPU during the saturating runs, in cores busy (of %d); other = the machine's busy time not spent in these processes; gateway also in µs of CPU per request\n", m.CPUs)
	fmt.Fprintf(&b, "%-16s", "variant")
	for _, k := range cpuColumns {
		fmt.Fprintf(&b, " %10s", k)
	}
	fmt.Fprintf(&b, " %12s\n", "gateway µs/req")
	for _, s := range rep.Variants {
		fmt.Fprintf(&b, "%-16s", s.Variant)
		for _, k := range cpuColumns {
			if v, ok := s.CPU[k]; ok {
				fmt.Fprintf(&b, " %10.2f", v)
			} else {
				fmt.Fprintf(&b, " %10s", "-")
			}
		}
		fmt.Fprintf(&b, " %12.0f\n", s.GatewayUs)
	}

	if rep.RedisNote != "" {
		fmt.Fprintf(&b, "\n%s\n", rep.RedisNote)
	}
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

func latencyTable(b *strings.Builder, ss []summary) {
	fmt.Fprintf(b, "%-16s %10s %8s %9s %9s %9s %12s\n", "variant", "req/s", "× plain", "p50", "p90", "p99", "p99 − plain")
	for _, s := range ss {
		ratio, added := "-", "-"
		if s.HasPlain {
			ratio = fmt.Sprintf("%.2f×", s.RatioRPS)
			if s.Variant != varPlain {
				added = fmt.Sprintf("%+.2fms", s.AddedP99)
			}
		}
		fmt.Fprintf(b, "%-16s %10.0f %8s %9s %9s %9s %12s\n", s.Variant, s.RPS, ratio, ms(s.P50Ms), ms(s.P90Ms), ms(s.P99Ms), added)
	}
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
		data = []byte("# Tollgate gateway benchmark\n\n" +
			"`go run ./integration/bench -duration " + rep.Duration + " -rounds " + fmt.Sprint(rep.Rounds) +
			" -connections " + fmt.Sprint(rep.Connections) + "`\n\n```\n" + rep.text() + "```\n")
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
