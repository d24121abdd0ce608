package redisstore

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// BenchmarkAuthenticateParallel16 runs Authenticate from 16 goroutines per
// CPU, as a gateway under load does (many requests waiting on Redis at
// once: the case batch.go is for), with the number of round trips allowed
// in flight before calls batch: "unbatched" never batches (every call its
// own EVALSHA, as before batching), the others are limits to compare with
// the default authInFlight.
//
// Besides ns/op it reports the CPU time per call of this process
// (gw-cpu-ns/op: the gateway's share) and of redis-server
// (redis-cpu-ns/op), which a busy machine disturbs far less than wall time.
func BenchmarkAuthenticateParallel16(b *testing.B) {
	url := storetest.StartRedis(b)
	for _, limit := range []int{1 << 30, 1, 2, authInFlight, 8} {
		name := "inflight=" + strconv.Itoa(limit)
		if limit == 1<<30 {
			name = "unbatched"
		}
		b.Run(name, func(b *testing.B) {
			s, err := New(url, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			s.authBatcher().inFlight = limit
			b.SetParallelism(16)
			gw0, redis0 := processCPU(b), redisCPU(b, s)
			storetest.BenchAuthenticate(b, s, true)
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-gw0)/float64(b.N), "gw-cpu-ns/op")
			b.ReportMetric(float64(redisCPU(b, s)-redis0)/float64(b.N), "redis-cpu-ns/op")
		})
	}
}

// processCPU is the user plus system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is the user plus system CPU time redis-server has used, from
// INFO cpu.
func redisCPU(b *testing.B, s *Store) time.Duration {
	info, err := s.client.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
