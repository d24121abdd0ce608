package storetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the Sentinels of StartRedisSentinel
// watch.
const SentinelMaster = "tollgate"

// Sentinel is a throwaway Redis Sentinel deployment: one primary, its
// replicas and three Sentinels, each its own redis-server on a free
// loopback port with its own directory.
type Sentinel struct {
	Primary   string   // host:port of the primary as started
	Replicas  []string // host:port of the replicas as started
	Sentinels []string // host:port of the Sentinels
}

// StartRedisSentinel starts the deployment and waits until every Sentinel
// knows the primary, its replicas and the two other Sentinels, so that a
// failover can be agreed. dataExtra are extra redis-server arguments of
// every data node, primary and replicas alike, since any replica may
// become the primary (e.g. "--min-replicas-to-write", "1"). The Sentinels
// judge a node down after 1s and give a failover 5s
// (https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/#configuring-sentinel),
// so a test can kill the primary and see a new one within seconds.
func StartRedisSentinel(t testing.TB, replicas int, dataExtra ...string) *Sentinel {
	t.Helper()
	d := &Sentinel{Primary: startServer(t, dataExtra...)}
	host, port, _ := net.SplitHostPort(d.Primary)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range replicas {
		addr := startServer(t, append([]string{"--replicaof", host, port}, dataExtra...)...)
		d.Replicas = append(d.Replicas, addr)
		replica := redis.NewClient(&redis.Options{Addr: addr})
		err := waitInfo(ctx, replica, "replication", "master_link_status:up")
		replica.Close()
		if err != nil {
			t.Fatalf("a replica did not sync with the primary: %v", err)
		}
	}

	for range 3 {
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s 2\n"+
			"sentinel down-after-milliseconds %[1]s 2000\n"+
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
			return m["num-slaves"] == strconv.Itoa(replicas) && m["num-other-sentinels"] == "2" && m["flags"] == "master"
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

// WaitFailover waits until every Sentinel names one of the replicas as
// the primary, that node has taken the role and the other replicas
// follow it, and returns its address.
func (d *Sentinel) WaitFailover(t testing.TB, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	clients := make([]*redis.SentinelClient, len(d.Sentinels))
	for i, a := range d.Sentinels {
		clients[i] = redis.NewSentinelClient(&redis.Options{Addr: a})
		defer clients[i].Close()
	}
	// Every Sentinel must name the same new primary in one poll: on a
	// loaded machine a second failover can follow the first, so a primary
	// one Sentinel named earlier may no longer be the one all agree on.
	var primary string
	var last []map[string]string
	for {
		primary, last = "", last[:0]
		agreed := true
		for _, s := range clients {
			m, err := s.Master(ctx, SentinelMaster).Result()
			last = append(last, m)
			addr := ""
			if err == nil && m["flags"] == "master" {
				addr = net.JoinHostPort(m["ip"], m["port"])
			}
			if addr == "" || addr == d.Primary || (primary != "" && addr != primary) {
				agreed = false
				break
			}
			primary = addr
		}
		if agreed {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the Sentinels did not agree on a new primary: %v (last answers %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
	c := redis.NewClient(&redis.Options{Addr: primary})
	defer c.Close()
	if err := waitInfo(ctx, c, "replication", "role:master"); err != nil {
		t.Fatalf("the replica did not become the primary: %v", err)
	}
	want := fmt.Sprintf("connected_slaves:%d", len(d.Replicas)-1)
	if err := waitInfo(ctx, c, "replication", want); err != nil {
		t.Fatalf("the other replicas did not follow the new primary: %v", err)
	}
	return primary
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
