package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Set by TestMain.
var (
	// repoRoot is the module root: the gateway runs with it as its working
	// directory so that Caddyfile.example resolves as documented.
	repoRoot string
	// binary is the tollgate binary built for this run.
	binary string
)

// defaultParallel replaces the -test.parallel default (GOMAXPROCS). Nearly
// every test waits on a separate gateway process, not on the CPU, so with
// the default a 2-core machine would run the suite almost serially.
const defaultParallel = 16

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			explicit = true
		}
	})
	if !explicit {
		_ = flag.Set("test.parallel", fmt.Sprint(defaultParallel))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "tollgate-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "tollgate")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/tollgate")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: go build ./cmd/tollgate: %v\n%s", err, out)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("integration: built %s in %s\n", binary, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}
