package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// redisArgs are the arguments of every redis-server of the benchmark:
// loopback, no persistence, files in dir.
func redisArgs(port int, dir string) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir}
}

// startRedis starts the single Redis server (on the side CPU when pinning).
func (e *env) startRedis(ctx context.Context, redisBin string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	e.redisAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	bin, args := e.pin.command(e.pin.side, redisBin, redisArgs(ports[0], e.work)...)
	e.redis, err = e.ps.start(e.work, "redis", nil, bin, args...)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	defer rdb.Close()
	return waitReady(ctx, e.redis, 15*time.Second, func(ctx context.Context) error {
		return rdb.Ping(ctx).Err()
	})
}

// startCluster starts three redis-servers as cluster nodes (all on the
// side CPU when pinning) and forms the cluster as the store's tests do
// (storetest.FormCluster): three primaries, no replicas.
func (e *env) startCluster(ctx context.Context, redisBin string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	for i, port := range ports {
		dir := filepath.Join(e.work, fmt.Sprintf("cluster-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		bin, args := e.pin.command(e.pin.side, redisBin, append(redisArgs(port, dir), storetest.ClusterNodeArgs()...)...)
		p, err := e.ps.start(dir, "redis", nil, bin, args...)
		if err != nil {
			return err
		}
		p.name = fmt.Sprintf("cluster node %d", i)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		err = waitReady(ctx, p, 15*time.Second, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
		rdb.Close()
		if err != nil {
			return err
		}
		e.cluster = append(e.cluster, p)
		e.clusterAddrs = append(e.clusterAddrs, addr)
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := storetest.FormCluster(fctx, e.clusterAddrs); err != nil {
		return fmt.Errorf("forming the Redis Cluster: %w", err)
	}
	return nil
}

// redisNodes returns the addresses of the Redis servers variant v's
// requests reach.
func (e *env) redisNodes(v string) []string {
	switch usesRedis(v) {
	case "redis":
		return []string{e.redisAddr}
	case "cluster":
		return e.clusterAddrs
	}
	return nil
}

// resetRedisStats zeroes the per-command statistics of nodes, so that they
// cover the measured run that follows only.
func resetRedisStats(ctx context.Context, nodes []string) error {
	for _, a := range nodes {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		err := rdb.ConfigResetStat(ctx).Err()
		rdb.Close()
		if err != nil {
			return fmt.Errorf("redis CONFIG RESETSTAT on %s: %w", a, err)
		}
	}
	return nil
}

// cmdStat is one command's share of Redis's time (INFO commandstats).
type cmdStat struct {
	Calls int64   `json:"calls"`
	Usec  float64 `json:"usec"`
}

// redisCommandStats sums INFO commandstats over nodes: Redis's own time in
// each command (Lua included for EVALSHA, whose inner calls are listed too),
// as opposed to reading and writing the socket.
func redisCommandStats(ctx context.Context, nodes []string) (map[string]cmdStat, error) {
	out := map[string]cmdStat{}
	for _, a := range nodes {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		info, err := rdb.Info(ctx, "commandstats").Result()
		rdb.Close()
		if err != nil {
			return nil, fmt.Errorf("redis INFO commandstats on %s: %w", a, err)
		}
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || !strings.HasPrefix(name, "cmdstat_") {
				continue
			}
			f := map[string]string{}
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				f[k] = v
			}
			calls, _ := strconv.ParseInt(f["calls"], 10, 64)
			usec, _ := strconv.ParseFloat(f["usec"], 64)
			name = strings.TrimPrefix(name, "cmdstat_")
			s := out[name]
			s.Calls += calls
			s.Usec += usec
			out[name] = s
		}
	}
	return out, nil
}

// grantBytes is one grant's footprint in Redis.
type grantBytes struct {
	Bytes        int64 `json:"bytes"`         // MEMORY USAGE summed over the grant's keys
	Keys         int   `json:"keys"`          // how many keys carry its hash tag
	SubjectBytes int64 `json:"subject_bytes"` // its subject's index of grants (one entry: this grant)
	// Kinds names its keys by what follows the hash tag (grant, rl,
	// code, cu), with how many of each.
	Kinds map[string]int `json:"kinds"`
}

func (gb *grantBytes) String() string {
	kinds := make([]string, 0, len(gb.Kinds))
	for k, n := range gb.Kinds {
		if n > 1 {
			k = fmt.Sprintf("%d×%s", n, k)
		}
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return fmt.Sprintf("%d B in %d keys (%s)", gb.Bytes, gb.Keys, strings.Join(kinds, ", "))
}

// keyPrefix is the store's default key prefix, and subjectKey the name of a
// subject's index of grants: the key layout of docs/architecture.md, as the
// store writes it (README "What a grant costs").
const keyPrefix = "tg:"

func subjectKey(subject string) string {
	return keyPrefix + "u:{" + sha256Hex(subject) + "}:grants"
}

// measureGrantBytes sums MEMORY USAGE over every key of the grant (SCAN
// MATCH on its hash tag, on the node that serves its slot) and its
// subject's index. nodes is one address for a single server, the seeds of
// a cluster otherwise.
func measureGrantBytes(ctx context.Context, nodes []string, cluster bool, grantID, subject string) (grantBytes, error) {
	gb := grantBytes{Kinds: map[string]int{}}
	tag := keyPrefix + "{" + grantID + "}"
	node := func(key string) (redis.Cmdable, func(), error) {
		if !cluster {
			c := redis.NewClient(&redis.Options{Addr: nodes[0]})
			return c, func() { c.Close() }, nil
		}
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes})
		n, err := cc.MasterForKey(ctx, key)
		if err != nil {
			cc.Close()
			return nil, nil, err
		}
		return n, func() { cc.Close() }, nil
	}
	c, done, err := node(tag + ":grant")
	if err != nil {
		return gb, err
	}
	defer done()
	iter := c.Scan(ctx, 0, tag+"*", 1000).Iterator()
	for iter.Next(ctx) {
		n, err := c.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			return gb, fmt.Errorf("MEMORY USAGE %s: %w", iter.Val(), err)
		}
		gb.Bytes += n
		gb.Keys++
		kind, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(iter.Val(), tag), ":"), ":")
		gb.Kinds[kind]++
	}
	if err := iter.Err(); err != nil {
		return gb, fmt.Errorf("SCAN %s*: %w", tag, err)
	}
	if gb.Keys == 0 {
		return gb, fmt.Errorf("no key matches %s*: the grant is not where the key layout says", tag)
	}
	sc, sdone, err := node(subjectKey(subject))
	if err != nil {
		return gb, err
	}
	defer sdone()
	n, err := sc.MemoryUsage(ctx, subjectKey(subject), 0).Result()
	switch {
	case err == redis.Nil:
	case err != nil:
		return gb, fmt.Errorf("MEMORY USAGE %s: %w", subjectKey(subject), err)
	default:
		gb.SubjectBytes = n
	}
	return gb, nil
}
