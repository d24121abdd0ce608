package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinning places the processes on CPUs: the system under test (gateway and
// upstream) on one, everything that serves or loads it (Redis, wrk, the
// introspection service, and this driver, which runs the flow workers) on
// another, so that the load generator and Redis no longer take CPU from the
// gateway at random moments. Off, every process shares every CPU.
type pinning struct {
	on       bool
	gateway  int    // CPU of the gateway and the upstream
	side     int    // CPU of Redis, wrk, the introspection service, the driver
	taskset  string // path of taskset (util-linux)
	describe string
}

// newPinning picks the first two CPUs this process may run on and pins the
// driver itself to the second. Children are started under taskset, which
// sets their affinity before exec, so that every thread they ever start
// (Go's, Redis's background threads) inherits it.
func newPinning(on bool) (pinning, error) {
	if !on {
		return pinning{describe: "off: every process shares every CPU (-pin=false)"}, nil
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return pinning{}, fmt.Errorf("-pin: reading this process's CPU affinity: %w", err)
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < 2; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return pinning{}, errors.New("-pin needs two CPUs and this process may use one; run with -pin=false")
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return pinning{}, errors.New("-pin needs taskset (apt-get install util-linux), or run with -pin=false")
	}
	p := pinning{on: true, gateway: cpus[0], side: cpus[1], taskset: ts}
	if err := pinSelf(p.side); err != nil {
		return pinning{}, err
	}
	p.describe = fmt.Sprintf("CPU %d: gateway and upstream (the gateway's Go runtime sees one CPU: GOMAXPROCS 1); CPU %d: Redis (every redis-server), wrk, the introspection service and the benchmark driver (the flow workers)", p.gateway, p.side)
	return p, nil
}

// command returns bin and args to run a child on cpu: under taskset when
// pinning, unchanged otherwise.
func (p pinning) command(cpu int, bin string, args ...string) (string, []string) {
	if !p.on {
		return bin, args
	}
	return p.taskset, append([]string{"--cpu-list", strconv.Itoa(cpu), bin}, args...)
}

// pinSelf pins every thread of this process to cpu. sched_setaffinity is
// per thread; threads the Go runtime starts later inherit the mask of the
// thread that starts them, which is then already pinned.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	// A second pass catches a thread started by one not yet pinned.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("-pin: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("-pin: pinning thread %d of the driver to CPU %d: %w", tid, cpu, err)
			}
		}
	}
	return nil
}

// check confirms that every thread of every child runs where it was put:
// the gateways and the upstream on the gateway's CPU, the rest on the
// other one.
func (e *env) checkPinning() error {
	if !e.pin.on {
		return nil
	}
	for _, p := range e.ps.list {
		want := e.pin.side
		if p == e.upstream || strings.HasSuffix(p.name, " gateway") {
			want = e.pin.gateway
		}
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid))
		if err != nil {
			return p.failure("threads unreadable", err)
		}
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", p.cmd.Process.Pid, t.Name()))
			if err != nil {
				continue // the thread ended
			}
			for line := range strings.Lines(string(b)) {
				if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok && strings.TrimSpace(v) != strconv.Itoa(want) {
					return fmt.Errorf("-pin: thread %s of %s may run on CPUs %s, want %d", t.Name(), p.name, strings.TrimSpace(v), want)
				}
			}
		}
	}
	return nil
}
