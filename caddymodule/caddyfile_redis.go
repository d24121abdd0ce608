package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// parseStore parses the store option of the tollgate global option:
//
//	store memory | redis://… | rediss://… | {env.NAME}
//	store redis {
//		addrs             <host:port...>      one: a node; several: Cluster seeds; with sentinel: the Sentinels
//		cluster                               Cluster even with one seed
//		sentinel          <master name>
//		sentinel_username <name or {env.NAME}>
//		sentinel_password <{env.NAME}>
//		username          <name or {env.NAME}>
//		password          <{env.NAME}>
//		db                <index>
//		tls [{
//			ca          <PEM file>
//			cert        <PEM file>
//			key         <PEM file>
//			server_name <name>
//		}]
//		pool_size         <n>
//		dial_timeout      <duration>
//		read_timeout      <duration>
//		write_timeout     <duration>
//		wait_replicas     <n> <timeout>
//		key_prefix        <prefix>
//	}
func parseStore(d *caddyfile.Dispenser, app *App) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	kind := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if kind != "redis" {
		app.Store = kind
		if d.NextBlock(d.Nesting()) {
			return d.Errf("store %s takes no block; the structured form is `store redis { … }`", kind)
		}
		return nil
	}
	rc := new(RedisConfig)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("store redis: %s given twice", dir)
		}
		seen[dir] = true
		var err error
		switch dir {
		case "addrs":
			rc.Addrs = d.RemainingArgs()
			if len(rc.Addrs) == 0 {
				return d.Errf("store redis: addrs needs at least one host:port")
			}
		case "cluster":
			if d.NextArg() {
				return d.ArgErr()
			}
			rc.Cluster = true
		case "sentinel":
			err = oneArg(d, &rc.Sentinel)
		case "sentinel_username":
			err = oneArg(d, &rc.SentinelUsername)
		case "sentinel_password":
			err = oneArg(d, &rc.SentinelPassword)
		case "username":
			err = oneArg(d, &rc.Username)
		case "password":
			err = oneArg(d, &rc.Password)
		case "db":
			rc.DB, err = intArg(d, "db")
		case "pool_size":
			rc.PoolSize, err = intArg(d, "pool_size")
		case "dial_timeout":
			err = durationArg(d, &rc.DialTimeout)
		case "read_timeout":
			err = durationArg(d, &rc.ReadTimeout)
		case "write_timeout":
			err = durationArg(d, &rc.WriteTimeout)
		case "wait_replicas":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("store redis: wait_replicas takes a replica count and a timeout, e.g. wait_replicas 1 100ms")
			}
			n, convErr := strconv.Atoi(args[0])
			if convErr != nil || n < 1 {
				return d.Errf("store redis: wait_replicas: %q is not a positive count", args[0])
			}
			dur, convErr := caddy.ParseDuration(args[1])
			if convErr != nil || dur <= 0 {
				return d.Errf("store redis: wait_replicas: %q is not a positive duration", args[1])
			}
			rc.WaitReplicas, rc.WaitTimeout = n, caddy.Duration(dur)
		case "key_prefix":
			err = oneArg(d, &rc.KeyPrefix)
		case "tls":
			rc.TLS, err = parseRedisTLS(d)
		default:
			return d.Errf("store redis: unknown option %q", dir)
		}
		if err != nil {
			return err
		}
	}
	if len(rc.Addrs) == 0 {
		return d.Errf("store redis: addrs is required")
	}
	if err := rc.validate(); err != nil {
		return d.Err(err.Error())
	}
	app.Redis = rc
	return nil
}

func parseRedisTLS(d *caddyfile.Dispenser) (*RedisTLS, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	t := new(RedisTLS)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return nil, d.Errf("store redis: tls: %s given twice", dir)
		}
		seen[dir] = true
		var err error
		switch dir {
		case "ca":
			err = oneArg(d, &t.CA)
		case "cert":
			err = oneArg(d, &t.Cert)
		case "key":
			err = oneArg(d, &t.Key)
		case "server_name":
			err = oneArg(d, &t.ServerName)
		default:
			return nil, d.Errf("store redis: tls: unknown option %q", dir)
		}
		if err != nil {
			return nil, err
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, d.Errf("store redis: tls: cert and key go together")
	}
	return t, nil
}

// intArg reads one non-negative integer argument.
func intArg(d *caddyfile.Dispenser, name string) (int, error) {
	var s string
	if err := oneArg(d, &s); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("store redis: %s: %q is not a non-negative integer", name, s)
	}
	return n, nil
}
