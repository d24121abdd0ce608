package redisstore

import (
	"context"
	"crypto/x509"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// TestContractSentinelAcked runs the store contract through Open on a
// Sentinel deployment, with every token-issuing and revoking write
// waiting for the replica: the WAIT hook changes no answer.
func TestContractSentinelAcked(t *testing.T) {
	d := storetest.StartRedisSentinel(t, 1)
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		s, err := Open(Options{Addrs: d.Sentinels, MasterName: storetest.SentinelMaster, WaitReplicas: 1, WaitTimeout: time.Second}, now)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		s.queue = storetest.Random()
		return Acked{Store: s}
	})
}

// TestWaitReplicas: a write made for WAIT returns only once the replica
// holds it, and fails with ErrNotReplicated, after the timeout, while the
// replica cannot acknowledge; an unmarked write does not wait.
func TestWaitReplicas(t *testing.T) {
	d := storetest.StartRedisSentinel(t, 1)
	s, err := Open(Options{Addrs: d.Sentinels, MasterName: storetest.SentinelMaster, WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	replica := redis.NewClient(&redis.Options{Addr: d.Replicas[0]})
	defer replica.Close()
	ctx := t.Context()

	// Many writes, each read back from the replica at once: without WAIT
	// some would be read before the replication stream delivered them.
	for i := range 50 {
		key := "acked-" + strconv.Itoa(i)
		if err := s.SetBlob(withAck(ctx), key, []byte("v"), time.Minute); err != nil {
			t.Fatalf("acknowledged write %d: %v", i, err)
		}
		if n, err := replica.Exists(ctx, defaultKeys.blob(key)).Result(); err != nil || n != 1 {
			t.Fatalf("write %d returned before the replica had it (exists=%d, %v)", i, n, err)
		}
	}

	pid := replicaPID(t, d.Replicas[0])
	resume := pauseProcess(t, pid)
	start := time.Now()
	err = s.SetBlob(withAck(ctx), "unacked", []byte("v"), time.Minute)
	took := time.Since(start)
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("write with the replica stopped = %v, want ErrNotReplicated", err)
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("the unacknowledged write took %s, want about the 200ms wait timeout", took)
	}
	start = time.Now()
	if err := s.SetBlob(ctx, "unmarked", []byte("v"), time.Minute); err != nil || time.Since(start) > 150*time.Millisecond {
		t.Errorf("an unmarked write waited for the replica or failed (%s, %v)", time.Since(start), err)
	}
	resume()
}

func replicaPID(t *testing.T, addr string) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(t.Context(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			pid, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatal("no process_id in INFO server")
	return 0
}

// TestOpenCluster: several addresses, or one seed with Cluster set, give
// a Cluster client, which follows MOVED to every slot's node.
func TestOpenCluster(t *testing.T) {
	addrs := storetest.StartRedisCluster(t)
	for _, o := range []Options{{Addrs: addrs}, {Addrs: addrs[:1], Cluster: true}} {
		if o.Topology() != "cluster" {
			t.Fatalf("%v: topology %s", o.Addrs, o.Topology())
		}
		s, err := Open(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.client.(*redis.ClusterClient); !ok {
			t.Fatalf("%v: Open built a %T", o.Addrs, s.client)
		}
		// Blob keys are their own slots: 30 of them land on every node.
		for i := range 30 {
			key := storetest.Random()
			if err := s.SetBlob(t.Context(), key, []byte(key), time.Minute); err != nil {
				t.Fatalf("SetBlob: %v", err)
			}
			if v, err := s.GetBlob(t.Context(), key); err != nil || string(v) != key {
				t.Fatalf("GetBlob %d = %q, %v", i, v, err)
			}
		}
		_ = s.Close()
	}
}

// TestOpenTLS connects over TLS to a server whose certificate a test CA
// signed and which requires a client certificate: the CA file and the
// client pair are what make it work.
func TestOpenTLS(t *testing.T) {
	if out, err := exec.Command("redis-server", "--version").CombinedOutput(); err != nil {
		t.Fatalf("redis-server --version: %v %s", err, out)
	}
	srv := storetest.StartRedisTLS(t)
	ping := func(ca, cert, key string) error {
		cfg, err := LoadTLS(ca, cert, key, "")
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(Options{Addrs: []string{srv.Addr}, TLS: cfg, DialTimeout: 2 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := s.SetBlob(ctx, "tls", []byte("ok"), time.Minute); err != nil {
			return err
		}
		v, err := s.GetBlob(ctx, "tls")
		if err == nil && string(v) != "ok" {
			t.Fatalf("GetBlob = %q", v)
		}
		return err
	}
	if err := ping(srv.CA, srv.ClientCert, srv.ClientKey); err != nil {
		t.Fatalf("with the CA and the client certificate: %v", err)
	}
	var unknown x509.UnknownAuthorityError
	if err := ping(srv.OtherCA, srv.ClientCert, srv.ClientKey); !errors.As(err, &unknown) {
		t.Errorf("trusting another CA: %v, want an unknown-authority error", err)
	}
	if err := ping(srv.CA, "", ""); err == nil {
		t.Errorf("without a client certificate the server let us in")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "no address"},
		{Options{Addrs: []string{"a:1"}, MasterName: "m", Cluster: true}, "exclusive"},
		{Options{Addrs: []string{"a:1", "b:1"}, DB: 2}, "db must be 0"},
		{Options{Addrs: []string{"a:1"}, Cluster: true, DB: 2}, "db must be 0"},
		{Options{Addrs: []string{"a:1"}, MasterName: "m", DB: 2, Password: "s3cret", WaitReplicas: 1}, "positive timeout"},
		{Options{Addrs: []string{"redis://a:1"}}, "host:port"},
	} {
		err := tc.o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%+v: %v, want %q", tc.o.Addrs, err, tc.want)
		}
	}
	if err := (Options{Addrs: []string{"a:1", "b:1"}, MasterName: "m", DB: 3}).Validate(); err != nil {
		t.Errorf("Sentinel with several Sentinels and a db: %v", err)
	}
	if _, err := LoadTLS("/nonexistent/ca.pem", "", "", ""); err == nil || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Errorf("a missing CA file: %v, want an error naming it", err)
	}
}
