package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrkReport is written by wrk's done() hook: the exact figures (latencies
// in microseconds) rather than the rounded ones of its --latency table.
//
// With TGBENCH_DELAY_MS set, each connection also waits that long between
// a response and its next request (wrk's delay() hook): a paced load well
// below capacity, where latency is the service's own rather than time
// spent queueing behind the other connections.
const wrkReport = `local pause = tonumber(os.getenv("TGBENCH_DELAY_MS") or "0")
if pause > 0 then
  delay = function() return pause end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "TGBENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d mean_us=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
`

// wrkResult is one wrk run.
type wrkResult struct {
	Requests  int64   `json:"requests"`
	Seconds   float64 `json:"seconds"`
	RPS       float64 `json:"rps"`
	MeanMs    float64 `json:"mean_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	MaxMs     float64 `json:"max_ms"`
	Non2xx    int64   `json:"non_2xx_3xx"`
	SockErr   int64   `json:"socket_errors"`
	CPUTicks  int64   `json:"-"` // wrk's own user+system time
	RawOutput string  `json:"-"`
}

type wrkRunner struct {
	bin     string
	script  string // path of the done() hook
	threads int
	conns   int
	pin     pinning // wrk runs on the side CPU when pinning
}

// checkWrk finds wrk or explains how to get it.
func checkWrk() (string, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return "", errors.New("wrk is not installed; it is the load generator of this benchmark: apt-get install wrk")
	}
	return bin, nil
}

// wrkVersion returns the first line wrk prints about itself.
func wrkVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	line, _, _ = strings.Cut(line, " Copyright")
	return strings.TrimSpace(line)
}

var tgbenchLine = regexp.MustCompile(`(?m)^TGBENCH (.*)$`)

// run drives url for d with the token (if any) and parses the outcome.
// delayMs > 0 paces each connection (see wrkReport).
func (w *wrkRunner) run(ctx context.Context, url, token string, d time.Duration, delayMs int) (wrkResult, error) {
	args := []string{
		"-t" + strconv.Itoa(w.threads),
		"-c" + strconv.Itoa(w.conns),
		"-d" + strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s",
		"--latency",
		"--timeout", "10s",
		"-s", w.script,
	}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	args = append(args, url)
	bin, pargs := w.pin.command(w.pin.side, w.bin, args...)
	cmd := exec.CommandContext(ctx, bin, pargs...)
	cmd.Env = append(os.Environ(), "TGBENCH_DELAY_MS="+strconv.Itoa(delayMs))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group: a Ctrl-C reaches the benchmark, which
	// cancels ctx and so kills wrk.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	r := wrkResult{RawOutput: out.String()}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	if err != nil {
		return r, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(pargs, " "), err, out.String())
	}
	if ps := cmd.ProcessState; ps != nil {
		r.CPUTicks = int64((ps.UserTime() + ps.SystemTime()).Seconds() * clockTicks)
	}
	m := tgbenchLine.FindStringSubmatch(out.String())
	if m == nil {
		return r, fmt.Errorf("wrk printed no TGBENCH line (is it built with Lua?):\n%s", out.String())
	}
	f := map[string]float64{}
	for _, kv := range strings.Fields(m[1]) {
		k, v, _ := strings.Cut(kv, "=")
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return r, fmt.Errorf("wrk: parsing %q: %v", kv, err)
		}
		f[k] = x
	}
	r.Requests = int64(f["requests"])
	r.Seconds = f["duration_us"] / 1e6
	if r.Seconds > 0 {
		r.RPS = float64(r.Requests) / r.Seconds
	}
	r.MeanMs = f["mean_us"] / 1e3
	r.P50Ms = f["p50_us"] / 1e3
	r.P90Ms = f["p90_us"] / 1e3
	r.P99Ms = f["p99_us"] / 1e3
	r.P999Ms = f["p999_us"] / 1e3
	r.MaxMs = f["max_us"] / 1e3
	r.Non2xx = int64(f["status"])
	r.SockErr = int64(f["connect"] + f["read"] + f["write"] + f["timeout"])
	return r, nil
}

// writeWrkScript writes the done() hook into dir.
func writeWrkScript(dir string) (string, error) {
	path := dir + "/report.lua"
	return path, os.WriteFile(path, []byte(wrkReport), 0o644)
}
