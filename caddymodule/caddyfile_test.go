package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store"
)

var update = flag.Bool("update", false, "rewrite the golden adapt files")

// Golden Caddyfile→JSON tests, as Caddy's own caddyfile_adapt tests do:
// every directive and option is adapted and compared with
// testdata/adapt/<name>.json. Run with -update after a deliberate change
// and review the diff.
func TestCaddyfileAdaptGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/adapt/*.caddyfile")
	if len(files) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".caddyfile")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": in})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s", w.Message)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "\t"); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := strings.TrimSuffix(in, ".caddyfile") + ".json"
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden file (run go test -update): %v", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Fatalf("adapted JSON differs from %s:\n%s", golden, pretty.String())
			}
		})
	}
}

// Mistakes an operator makes must fail at adapt time with the offending
// token named, not at runtime.
func TestCaddyfileRejects(t *testing.T) {
	for _, tc := range []struct{ name, input, want string }{
		{"unknown option", "tollgate {\n\tbogus 1\n}", `unknown tollgate option "bogus"`},
		{"duplicate option", "tollgate {\n\tissuer a\n\tissuer b\n}", "issuer given twice"},
		{"scope without description", "tollgate {\n\tscope profile:read\n}", "scope takes a name and a quoted description"},
		{"bad duration", "tollgate {\n\tcode_lifetime soon\n}", "soon"},
		{"unknown client option", "tollgate {\n\tclient c {\n\t\tcolour blue\n\t}\n}", `unknown option "colour"`},
		{"duplicate client option", "tollgate {\n\tclient c {\n\t\tname a\n\t\tname b\n\t}\n}", "name given twice"},
		{"unknown user field", "tollgate {\n\tusers {\n\t\talice $2a$10$x {\n\t\t\tshoe 42\n\t\t}\n\t}\n}", `unknown field "shoe"`},
		{"unknown users kind", "tollgate {\n\tusers ldap\n}", "caddy_auth"},
		{"webhook without secret", "tollgate {\n\tclient c {\n\t\twebhook https://x.example/h\n\t}\n}", "webhook takes a URL and a whsec_ secret"},
		{"refresh_tokens yes", "tollgate {\n\tclient c {\n\t\trefresh_tokens yes\n\t}\n}", "refresh_tokens takes on or off"},
		{"token_header without value", "tollgate {\n\tclient c {\n\t\ttoken_header Api-key\n\t}\n}", "token_header takes a header name and a value"},
		{"secret and digest", "tollgate {\n\tclient c {\n\t\tsecret s\n\t\tsecret_sha256 00\n\t}\n}", "not both"},
		{"negative state length", "tollgate {\n\tclient c {\n\t\tstate_min_length -1\n\t}\n}", "is not a length"},
		{"protect unknown option", "tollgate\n}\n:9 {\n\ttollgate_protect a {\n\t\tbogus\n\t}\n", "unknown option"},
		{"protect methods without methods", "tollgate\n}\n:9 {\n\ttollgate_protect a {\n\t\tmethods\n\t}\n", "wrong argument count"},
		{"protect methods in lower case", "tollgate\n}\n:9 {\n\ttollgate_protect a {\n\t\tmethods get\n\t}\n", `"get" is not an upper-case method token`},
		{"protect methods twice", "tollgate\n}\n:9 {\n\ttollgate_protect a {\n\t\tmethods GET GET\n\t}\n", `"GET" given twice`},
		{"protect name without value", "tollgate\n}\n:9 {\n\ttollgate_protect a {\n\t\tname\n\t}\n", "wrong argument count"},
		{"protect methods not a token", "tollgate\n}\n:9 {\n\ttollgate_protect a {\n\t\tmethods \"GET,HEAD\"\n\t}\n", "is not an upper-case method token"},
		{"introspect argument", "tollgate\n}\n:9 {\n\ttollgate_introspect now\n", "takes no arguments"},
		{"introspect block", "tollgate\n}\n:9 {\n\ttollgate_introspect {\n\t\ttoken x\n\t}\n", "takes no block"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantAdaptError(t, tc.input, tc.want) })
	}
}

// wantAdaptError adapts a Caddyfile whose global options block holds
// global and checks the adapter refuses it, naming want.
func wantAdaptError(t *testing.T, global, want string) {
	t.Helper()
	input := "{\n" + global + "\n}\n:8080 {\n\trespond ok\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to mention %q", err, want)
	}
}

// An inline client secret or token_header value must not reach the JSON
// config, which Caddy's /config API serves and autosave.json keeps
// (README "Security"): the adapter writes its digest, and the client
// still authenticates with the secret. Placeholders are kept as written,
// to be resolved at load.
func TestCaddyfileKeepsOnlyDigestsOfInlineSecrets(t *testing.T) {
	input := `{
	tollgate {
		scope profile:read "Name"
		client inline {
			secret hunter2-client-secret
			redirect_uri https://app.example.com/cb
			scopes profile:read
			token_header Api-key hunter2-api-key
		}
		client placeholders {
			secret {env.PARTNER_SECRET}
			redirect_uri https://app.example.com/cb
			scopes profile:read
			token_header Api-key {file./run/secrets/api-key}
		}
	}
}
:8080 {
	respond ok
}
`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2-client-secret", "hunter2-api-key"} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("the adapted JSON holds the inline secret %q:\n%s", secret, out)
		}
	}
	var cfg struct {
		Apps struct {
			Tollgate App `json:"tollgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	clients := cfg.Apps.Tollgate.Clients
	if len(clients) != 2 {
		t.Fatalf("adapted %d clients, want 2:\n%s", len(clients), out)
	}
	c, err := clients[0].provision(caddy.NewReplacer(), store.Limit{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !c.Authenticate("hunter2-client-secret") || c.Authenticate("hunter2-client-secreT") {
		t.Error("the digest written for the inline secret does not authenticate exactly that secret")
	}
	if !c.CheckTokenHeader("hunter2-api-key") || c.CheckTokenHeader("hunter2-api-keY") {
		t.Error("the digest written for the inline token_header value does not match exactly that value")
	}
	p := clients[1]
	if p.Secret != "{env.PARTNER_SECRET}" || p.SecretSHA256 != "" || p.TokenHeader.Value != "{file./run/secrets/api-key}" {
		t.Errorf("placeholders must be kept as written, to be resolved at load: %+v", p)
	}
}

// FuzzCaddyfile feeds arbitrary text to the caddyfile adapter as the body
// of the tollgate global option and as a site block using the handler
// directives. Properties: the adapter never panics; when it accepts the
// text, the result is JSON whose tollgate app decodes into App with no
// unknown field (what a config load then provisions), and every
// tollgate_protect handler decodes into Protect.
func FuzzCaddyfile(f *testing.F) {
	f.Add("store memory\n\tscope profile:read \"Name\"\n\tclient c {\n\t\tsecret s\n\t\tredirect_uri https://a.example/cb\n\t\tscopes profile:read\n\t}", "tollgate_protect profile:read {\n\t\tuser_header X-User\n\t\tetag 1024\n\t}\n\ttollgate_token")
	f.Add("users {\n\t\talice $2a$10$x {\n\t\t\tname \"A\"\n\t\t}\n\t}", "tollgate_authorize")
	f.Add("users caddy_auth\n\trate_limit 5/1m\n\trate_limit_headers", "tollgate_connections\n\ttollgate_userinfo\n\ttollgate_revoke")
	f.Add("client c {\n\t\ttoken_header Api-key v\n\t\trefresh_tokens off\n\t\tstate_min_length 8\n\t}", "tollgate_protect {\n\t\tscopes\n\t}")
	f.Add("issuer {env.X}\n\tcode_lifetime -1s", "tollgate_protect a {\n\t\tetag 0\n\t}")
	f.Add("client {\n\t}\n\t}\n}\n{", "tollgate_token extra")
	f.Add("scope \"unterminated", "tollgate_protect `x")
	f.Add("import", "import x\n\ttollgate_protect {")
	f.Add("store redis {\n\t\tsentinel m\n\t\taddrs a:1,b:2\n\t\tdb 2\n\t\twait_replicas 1 100ms\n\t\ttls {\n\t\t\tca c.pem\n\t\t}\n\t}", "tollgate_token")
	adapter := caddyconfig.GetAdapter("caddyfile")
	f.Fuzz(func(t *testing.T, global, site string) {
		// import reads files; keep the fuzzer off the filesystem.
		if strings.Contains(global, "import") || strings.Contains(site, "import") {
			return
		}
		input := "{\n\ttollgate {\n\t" + global + "\n\t}\n}\n:8080 {\n\t" + site + "\n}\n"
		out, _, err := adapter.Adapt([]byte(input), nil)
		if err != nil {
			return
		}
		var cfg struct {
			Apps struct {
				Tollgate json.RawMessage `json:"tollgate"`
				HTTP     json.RawMessage `json:"http"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("adapted output is not JSON: %v\n%s", err, out)
		}
		if len(cfg.Apps.Tollgate) > 0 {
			dec := json.NewDecoder(bytes.NewReader(cfg.Apps.Tollgate))
			dec.DisallowUnknownFields()
			var app App
			if err := dec.Decode(&app); err != nil {
				t.Fatalf("the tollgate app does not decode: %v\n%s", err, cfg.Apps.Tollgate)
			}
		}
		for _, raw := range protectHandlers(cfg.Apps.HTTP) {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			var p struct {
				Protect
				Handler string `json:"handler"`
			}
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("a tollgate_protect handler does not decode: %v\n%s", err, raw)
			}
		}
	})
}

// protectHandlers finds every tollgate_protect handler in the adapted
// http app, however deeply routes nest them.
func protectHandlers(httpApp json.RawMessage) []json.RawMessage {
	var found []json.RawMessage
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "tollgate_protect" {
				raw, _ := json.Marshal(x)
				found = append(found, raw)
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var v any
	if json.Unmarshal(httpApp, &v) == nil {
		walk(v)
	}
	return found
}
