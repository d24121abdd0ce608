package caddymodule

import (
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/memory"
	"github.com/tollgate/tollgate/caddymodule/store/redisstore"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// BenchmarkAuthenticateDeadline measures what the store deadline adds to
// the API hot path: "plain" is the store as before, "deadline" the same
// store behind deadlineStore. On memory the difference is the deadline's
// own cost; on Redis it is that cost beside a round trip. gw-cpu-ns/op is
// this process's CPU time per call, which a busy machine disturbs far less
// than ns/op.
func BenchmarkAuthenticateDeadline(b *testing.B) {
	for _, kind := range []string{"memory", "redis"} {
		b.Run(kind, func(b *testing.B) {
			var st store.Store
			if kind == "memory" {
				st = memory.New(nil)
			} else {
				s, err := redisstore.New(storetest.StartRedis(b), nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				st = s
			}
			for _, parallel := range []bool{false, true} {
				name := "serial"
				if parallel {
					name = "parallel"
				}
				b.Run(name+"/plain", func(b *testing.B) { benchCPU(b, st, parallel) })
				b.Run(name+"/deadline", func(b *testing.B) {
					benchCPU(b, deadlineStore{st: st, timeout: defaultStoreTimeout}, parallel)
				})
			}
		})
	}
}

// benchCPU runs storetest.BenchAuthenticate and reports gw-cpu-ns/op.
func benchCPU(b *testing.B, st store.Store, parallel bool) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	storetest.BenchAuthenticate(b, st, parallel)
	b.StopTimer()
	b.ReportMetric(float64(cpu()-start)/float64(b.N), "gw-cpu-ns/op")
}
