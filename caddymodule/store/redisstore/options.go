package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Options describes a Redis deployment in structure, for the topologies a
// single URL cannot name: a Redis Cluster from several seed addresses, or
// a primary found through Redis Sentinel. Which client is built follows
// go-redis's universal client (https://redis.uptrace.dev/guide/universal.html):
// a master name means Sentinel, otherwise several addresses or Cluster
// mean Redis Cluster, otherwise a single node.
type Options struct {
	// Addrs are host:port pairs: the node, the Cluster's seed nodes, or
	// the Sentinels.
	Addrs []string
	// Cluster forces Cluster mode with a single seed address.
	Cluster bool
	// MasterName is the Sentinel master name; Addrs are then Sentinels.
	MasterName string
	// SentinelUsername and SentinelPassword authenticate to the Sentinels
	// (Redis ACL, https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/#configuring-sentinel-instances-with-authentication).
	SentinelUsername, SentinelPassword string
	// Username and Password authenticate to the data nodes (AUTH).
	Username, Password string
	// DB is the database index; Cluster has database 0 only.
	DB int
	// TLS, when not nil, makes every connection TLS (data nodes and
	// Sentinels alike); see LoadTLS.
	TLS *tls.Config
	// PoolSize and the timeouts are go-redis's; zero keeps its default.
	PoolSize                               int
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// WaitReplicas, when positive, has the writes that hand a token out or
	// take one back wait until that many replicas acknowledged them
	// (WAIT, https://redis.io/docs/latest/commands/wait/), for at most
	// WaitTimeout. See Acked.
	WaitReplicas int
	WaitTimeout  time.Duration
	// KeyPrefix replaces "tg:" at the start of every key, so that two
	// deployments can share one Redis (keys.go); "" keeps "tg:".
	KeyPrefix string
}

// Validate reports a combination go-redis would accept but misread, in
// words that never repeat a password.
func (o Options) Validate() error {
	switch {
	case len(o.Addrs) == 0:
		return errors.New("no address given")
	case o.MasterName != "" && o.Cluster:
		return errors.New("sentinel and cluster are exclusive: a Sentinel watches one primary, a Cluster has many")
	case o.DB < 0:
		return errors.New("db must not be negative")
	case o.DB != 0 && o.isCluster():
		return errors.New("db must be 0 with Redis Cluster, which has database 0 only")
	case o.MasterName == "" && (o.SentinelUsername != "" || o.SentinelPassword != ""):
		return errors.New("sentinel_username and sentinel_password need a sentinel master name")
	case o.WaitReplicas < 0:
		return errors.New("wait_replicas must not be negative")
	case o.WaitReplicas > 0 && o.isCluster():
		// WAIT has no key, so a Cluster client would send it to any node,
		// not to the connection that wrote.
		return errors.New("wait_replicas is for a single primary or Sentinel, not Redis Cluster")
	case o.WaitReplicas > 0 && o.WaitTimeout <= 0:
		return errors.New("wait_replicas needs a positive timeout")
	case o.KeyPrefix != "" && checkKeyPrefix(o.KeyPrefix) != nil:
		return checkKeyPrefix(o.KeyPrefix)
	case o.PoolSize < 0:
		return errors.New("pool_size must not be negative")
	}
	for _, a := range o.Addrs {
		if a == "" || strings.Contains(a, "://") {
			return fmt.Errorf("address %q: want host:port", a)
		}
	}
	return nil
}

func (o Options) isCluster() bool { return o.MasterName == "" && (o.Cluster || len(o.Addrs) > 1) }

// Topology names the kind of client o builds: "single", "cluster" or
// "sentinel".
func (o Options) Topology() string {
	switch {
	case o.MasterName != "":
		return "sentinel"
	case o.isCluster():
		return "cluster"
	}
	return "single"
}

// universal turns o into go-redis options.
func (o Options) universal() *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:            o.Addrs,
		IsClusterMode:    o.Cluster,
		MasterName:       o.MasterName,
		SentinelUsername: o.SentinelUsername,
		SentinelPassword: o.SentinelPassword,
		Username:         o.Username,
		Password:         o.Password,
		DB:               o.DB,
		TLSConfig:        o.TLS,
		PoolSize:         o.PoolSize,
		DialTimeout:      o.DialTimeout,
		ReadTimeout:      o.ReadTimeout,
		WriteTimeout:     o.WriteTimeout,
		// As for a URL (parseURL): a request's deadline bounds its call.
		ContextTimeoutEnabled: true,
	}
}

// Open returns a Store for a structured deployment. Like New it does not
// connect; a Redis that is down fails the first request, not the load.
func Open(o Options, now func() time.Time) (*Store, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := redis.NewUniversalClient(o.universal())
	if o.WaitReplicas > 0 {
		c.AddHook(waitHook{client: c, replicas: o.WaitReplicas, timeout: o.WaitTimeout})
	}
	s := NewFromClient(c, now)
	s.owned = true
	if o.KeyPrefix != "" {
		s.keys = keyspace(o.KeyPrefix)
	}
	return s, nil
}

// LoadTLS builds the client TLS configuration: caFile, when given, is a PEM
// file of the certificates that may sign the server's (instead of the
// system's roots); certFile and keyFile, given together, are the client's
// certificate for servers that require one (tls-auth-clients); serverName
// is the name checked in the server's certificate when it is not the host
// dialled. Errors name the file, never its content.
func LoadTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca: %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			// The error of a bad key names the file only.
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case certFile != "" || keyFile != "":
		return nil, errors.New("tls: cert and key go together")
	}
	return cfg, nil
}

// ackKey marks a context whose writes must be acknowledged by replicas.
type ackKey struct{}

// withAck marks ctx; see waitHook.
func withAck(ctx context.Context) context.Context { return context.WithValue(ctx, ackKey{}, true) }

func wantsAck(ctx context.Context) bool { v, _ := ctx.Value(ackKey{}).(bool); return v }

// ErrNotReplicated is returned when a write was applied on the primary but
// fewer replicas than configured acknowledged it in time. The write may
// survive or be lost in a failover, so what it created is not handed out.
var ErrNotReplicated = errors.New("write not acknowledged by enough replicas in time")

// waitHook follows each command made with a marked context by WAIT on the
// same connection. WAIT blocks until the replicas have acknowledged the
// replication stream up to this connection's last write
// (https://redis.io/docs/latest/commands/wait/); the stream is ordered, so
// every write that completed earlier, on any connection (the grant saved
// at authorization, the code), is acknowledged with it.
//
// A single command is sent as a two-command pipeline, since go-redis gives
// a pipeline, and only a pipeline, one connection for all its commands; a
// pipeline gets WAIT appended. Unmarked commands pass untouched.
type waitHook struct {
	client   redis.UniversalClient
	replicas int
	timeout  time.Duration
}

func (h waitHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h waitHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !wantsAck(ctx) || connSetup(cmd) {
			return next(ctx, cmd)
		}
		pipe := h.client.Pipeline()
		_ = pipe.Process(ctx, cmd)
		wait := h.waitCmd(ctx)
		_ = pipe.Process(ctx, wait)
		_, _ = pipe.Exec(ctx)
		if err := cmd.Err(); err != nil {
			return err
		}
		return h.check(wait)
	}
}

func (h waitHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !wantsAck(ctx) || isWait(cmds) || allConnSetup(cmds) {
			return next(ctx, cmds)
		}
		wait := h.waitCmd(ctx)
		err := next(ctx, append(cmds, wait))
		if err != nil {
			return err
		}
		return h.check(wait)
	}
}

// connSetup reports whether cmd is one go-redis sends to set up a new
// connection (HELLO, AUTH, SELECT, CLIENT …) with the caller's context:
// waiting there would take a second connection from the pool for each new
// one, and a WAIT on a connection that wrote nothing proves nothing.
func connSetup(cmd redis.Cmder) bool {
	switch strings.ToLower(cmd.Name()) {
	case "hello", "auth", "select", "client", "readonly", "readwrite", "ping", "wait", "quit", "reset":
		return true
	}
	return false
}

func allConnSetup(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if !connSetup(c) {
			return false
		}
	}
	return true
}

// isWait reports whether cmds already end with WAIT (ProcessHook's own
// pipeline coming through ProcessPipelineHook).
func isWait(cmds []redis.Cmder) bool {
	return len(cmds) > 0 && strings.EqualFold(cmds[len(cmds)-1].Name(), "wait")
}

func (h waitHook) waitCmd(ctx context.Context) *redis.IntCmd {
	return redis.NewIntCmd(ctx, "wait", h.replicas, h.timeout.Milliseconds())
}

func (h waitHook) check(wait *redis.IntCmd) error {
	n, err := wait.Result()
	if err != nil {
		return fmt.Errorf("redis wait: %w", err)
	}
	if n < int64(h.replicas) {
		return fmt.Errorf("redis wait: %w (%d of %d)", ErrNotReplicated, n, h.replicas)
	}
	return nil
}

// Acked is a Store whose token-issuing and revoking writes are acknowledged
// by replicas (Options.WaitReplicas) before they return, so that a token
// handed to a client, or a revocation confirmed to one, survives the
// primary's loss and a Sentinel failover (README "Redis topologies"). The
// other writes (sessions, codes, rate-limit counters) are not waited for:
// losing one in a failover costs a user a sign-in or a client a retry, not
// a valid token answered 401 or a revoked one answered 200. Without
// WaitReplicas the marks are no-ops.
//
// min-replicas-to-write on the primary is not enough by itself
// (https://redis.io/docs/latest/operate/oss_and_stack/management/replication/#allow-writes-only-with-n-attached-replicas):
// it refuses writes while no replica has answered for min-replicas-max-lag
// seconds, but a write it accepts is still sent to the replica after the
// client was answered, so the last one before a crash can be lost. WAIT
// cannot undo a write either: one not acknowledged in time stays applied
// on the primary though the caller got an error. The two together are
// what README "Redis topologies" recommends: min-replicas-to-write makes a
// primary without replicas refuse before applying, WAIT covers the window.
//
// ConsumeCode is among them because a code presented twice revokes its
// grant there (RFC 6749 §4.1.2), and that revocation must survive a
// failover as much as RevokeGrant's; a first consumption is covered by
// the IssueTokens that follows it anyway (WAIT waits for the replication
// offset, which is ordered). Acked wraps only these writes, of the
// store.Tokens, store.Grants and store.Codes roles; every other method is
// the embedded Store's.
type Acked struct{ *Store }

var _ store.Store = Acked{}

// IssueTokens is Store.IssueTokens, acknowledged.
func (a Acked) IssueTokens(ctx context.Context, grantID, codeDigest string, p store.Pair) error {
	return a.Store.IssueTokens(withAck(ctx), grantID, codeDigest, p)
}

// Rotate is Store.Rotate, acknowledged.
func (a Acked) Rotate(ctx context.Context, grantID, oldRefresh string, p store.Pair) error {
	return a.Store.Rotate(withAck(ctx), grantID, oldRefresh, p)
}

// ConsumeCode is Store.ConsumeCode, acknowledged: a replay revokes the
// grant.
func (a Acked) ConsumeCode(ctx context.Context, grantID, digest string) (store.Code, error) {
	return a.Store.ConsumeCode(withAck(ctx), grantID, digest)
}

// RevokeGrant is Store.RevokeGrant, acknowledged.
func (a Acked) RevokeGrant(ctx context.Context, grantID string) (store.Grant, error) {
	return a.Store.RevokeGrant(withAck(ctx), grantID)
}

// CheckReuse is Store.CheckReuse, acknowledged: it may revoke the grant.
func (a Acked) CheckReuse(ctx context.Context, grantID, refreshDigest string, grace time.Duration) (store.Grant, error) {
	return a.Store.CheckReuse(withAck(ctx), grantID, refreshDigest, grace)
}
