package storetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the Sentinels of StartRedisSentinel
// watch.
const SentinelMaster = "tollgate"

// Sentinel is a throwaway Redis Sentinel deployment: one primary, one
// replica and three Sentinels, each its own redis-server on a free
// loopback port with its own directory.
type Sentinel struct {
	Primary, Replica string   // host:port of the data nodes as started
	Sentinels        []string // host:port of the Sentinels
}

// StartRedisSentinel starts the deployment and waits until every Sentinel
// knows the primary, its replica and the two other Sentinels, so that a
// failover can be agreed. primaryExtra are extra redis-server arguments of
// the primary only (e.g. "--min-replicas-to-write", "1"). The Sentinels
// judge a node down after 1s and give a failover 5s
// (https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/#configuring-sentinel),
// so a test can kill the primary and see a new one within seconds.
func StartRedisSentinel(t testing.TB, primaryExtra ...string) *Sentinel {
	t.Helper()
	d := &Sentinel{Primary: startServer(t, primaryExtra...)}
	host, port, _ := net.SplitHostPort(d.Primary)
	d.Replica = startServer(t, "--replicaof", host, port)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replica := redis.NewClient(&redis.Options{Addr: d.Replica})
	defer replica.Close()
	if err := waitInfo(ctx, replica, "replication", "master_link_status:up"); err != nil {
		t.Fatalf("the replica did not sync with the primary: %v", err)
	}

	for range 3 {
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", SentinelMaster, host, port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		d.Sentinels = append(d.Sentinels, startServer(t, conf, "--sentinel"))
	}
	for _, a := range d.Sentinels {
		s := redis.NewSentinelClient(&redis.Options{Addr: a})
		err := waitMaster(ctx, s, func(m map[string]string) bool {
			return m["num-slaves"] == "1" && m["num-other-sentinels"] == "2" && m["flags"] == "master"
		})
		s.Close()
		if err != nil {
			t.Fatalf("sentinel %s did not see the whole deployment: %v", a, err)
		}
	}
	return d
}

// KillPrimary kills the primary with SIGKILL: no shutdown, no last write
// flushed to the replica.
func (d *Sentinel) KillPrimary(t testing.TB) {
	t.Helper()
	pid, err := serverPID(d.Primary)
	if err != nil {
		t.Fatalf("finding the primary's pid: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the primary: %v", err)
	}
}

// WaitFailover waits until every Sentinel names the replica as the
// primary and the replica has taken the role.
func (d *Sentinel) WaitFailover(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, a := range d.Sentinels {
		s := redis.NewSentinelClient(&redis.Options{Addr: a})
		err := waitMaster(ctx, s, func(m map[string]string) bool {
			return net.JoinHostPort(m["ip"], m["port"]) == d.Replica && m["flags"] == "master"
		})
		s.Close()
		if err != nil {
			t.Fatalf("sentinel %s did not fail over to the replica: %v", a, err)
		}
	}
	replica := redis.NewClient(&redis.Options{Addr: d.Replica})
	defer replica.Close()
	if err := waitInfo(ctx, replica, "replication", "role:master"); err != nil {
		t.Fatalf("the replica did not become the primary: %v", err)
	}
}

// waitMaster polls SENTINEL MASTER until ok accepts its answer.
func waitMaster(ctx context.Context, s *redis.SentinelClient, ok func(map[string]string) bool) error {
	var last map[string]string
	var err error
	for {
		last, err = s.Master(ctx, SentinelMaster).Result()
		if err == nil && ok(last) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v (last answer %v, error %v)", ctx.Err(), last, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitInfo polls INFO section until it holds line.
func waitInfo(ctx context.Context, c *redis.Client, section, line string) error {
	var info string
	var err error
	for {
		info, err = c.Info(ctx, section).Result()
		if err == nil && strings.Contains(info, line) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no %q in INFO %s: %v (error %v)", c.Options().Addr, line, section, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
