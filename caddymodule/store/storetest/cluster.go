package storetest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

// ClusterNodeArgs are the redis-server arguments that make a node of the
// clusters FormCluster forms (its nodes.conf goes to the server's --dir).
func ClusterNodeArgs() []string {
	return []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"}
}

// StartRedisCluster starts a three-master Redis Cluster (no replicas) of
// throwaway servers, waits until every node reports it healthy, and returns
// the nodes' addresses. It exists to prove that every script declares keys
// of one slot only: on a single server a cross-slot script still works.
func StartRedisCluster(t testing.TB) []string {
	t.Helper()
	addrs := make([]string, 3)
	for i := range addrs {
		addrs[i] = startServer(t, ClusterNodeArgs()...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := FormCluster(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	return addrs
}

// FormCluster makes one Redis Cluster of empty nodes started with
// --cluster-enabled yes, no replicas: it splits the hash slots evenly
// among them, introduces them to each other and waits until every node
// reports the cluster healthy with all of them. It takes no testing.TB, so
// that the gateway benchmark (integration/bench) forms its cluster the same
// way.
func FormCluster(ctx context.Context, addrs []string) error {
	nodes := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		nodes[i] = redis.NewClient(&redis.Options{Addr: a})
		defer nodes[i].Close()
		// ADDSLOTS rather than ADDSLOTSRANGE (Redis 7.0) so that older
		// distribution packages work too.
		args := []any{"CLUSTER", "ADDSLOTS"}
		for s := i * clusterSlots / len(addrs); s < (i+1)*clusterSlots/len(addrs); s++ {
			args = append(args, s)
		}
		if err := nodes[i].Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("CLUSTER ADDSLOTS on %s: %w", a, err)
		}
	}
	for _, a := range addrs[1:] {
		host, port, _ := net.SplitHostPort(a)
		if err := nodes[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			return fmt.Errorf("CLUSTER MEET %s: %w", a, err)
		}
	}
	for _, n := range nodes {
		if err := waitClusterOK(ctx, n, len(addrs)); err != nil {
			return fmt.Errorf("redis cluster did not form: %w", err)
		}
	}
	return nil
}

// waitClusterOK waits until the node sees the cluster healthy with all its
// masters.
func waitClusterOK(ctx context.Context, n *redis.Client, masters int) error {
	want := "cluster_known_nodes:" + strconv.Itoa(masters)
	for {
		info, err := n.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %v (last CLUSTER INFO error: %v)", n.Options().Addr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
