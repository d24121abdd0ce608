package caddymodule

import "testing"

// Mistakes in the store option, above all the structured Redis block,
// fail at adapt time with the offending setting named, not when the
// gateway first reaches Redis.
func TestCaddyfileStoreRejects(t *testing.T) {
	for _, tc := range []struct{ name, input, want string }{
		{"store redis without addrs", "tollgate {\n\tstore redis {\n\t\tdb 1\n\t}\n}", "store redis: addrs is required"},
		{"store redis sentinel without name", "tollgate {\n\tstore redis {\n\t\taddrs 127.0.0.1:26379\n\t\tsentinel\n\t}\n}", "wrong argument count"},
		{"store redis sentinel and cluster", "tollgate {\n\tstore redis {\n\t\taddrs a:1 b:2\n\t\tsentinel m\n\t\tcluster\n\t}\n}", "sentinel and cluster are exclusive"},
		{"store redis db with cluster", "tollgate {\n\tstore redis {\n\t\taddrs a:1 b:2 c:3\n\t\tdb 1\n\t}\n}", "db must be 0 with Redis Cluster"},
		{"store redis db with forced cluster", "tollgate {\n\tstore redis {\n\t\taddrs a:1\n\t\tcluster\n\t\tdb 3\n\t}\n}", "db must be 0 with Redis Cluster"},
		{"store redis key prefix with a space", "tollgate {\n\tstore redis {\n\t\taddrs a:1\n\t\tkey_prefix \"a b\"\n\t}\n}", "key prefix"},
		{"store redis wait with cluster", "tollgate {\n\tstore redis {\n\t\taddrs a:1 b:2\n\t\twait_replicas 1 100ms\n\t}\n}", "not Redis Cluster"},
		{"store redis wait without timeout", "tollgate {\n\tstore redis {\n\t\taddrs a:1\n\t\twait_replicas 1\n\t}\n}", "wait_replicas takes a replica count and a timeout"},
		{"store redis sentinel password without sentinel", "tollgate {\n\tstore redis {\n\t\taddrs a:1\n\t\tsentinel_password {env.P}\n\t}\n}", "need a sentinel master name"},
		{"store redis url in addrs", "tollgate {\n\tstore redis {\n\t\taddrs redis://a:1\n\t}\n}", "want host:port"},
		{"store redis unknown option", "tollgate {\n\tstore redis {\n\t\taddrs a:1\n\t\tmaster m\n\t}\n}", `unknown option "master"`},
		{"store redis tls cert without key", "tollgate {\n\tstore redis {\n\t\taddrs a:1\n\t\ttls {\n\t\t\tcert c.pem\n\t\t}\n\t}\n}", "cert and key go together"},
		{"store redis negative db", "tollgate {\n\tstore redis {\n\t\taddrs a:1\n\t\tdb -1\n\t}\n}", "not a non-negative integer"},
		{"store url with block", "tollgate {\n\tstore redis://a:1 {\n\t\tdb 1\n\t}\n}", "takes no block"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantAdaptError(t, tc.input, tc.want) })
	}
}
