package caddymodule

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// Operator commands of the tollgate binary (README "Operator commands"),
// registered the way Caddy's own modules add theirs (caddy hash-password:
// https://caddyserver.com/docs/command-line#caddy-hash-password).
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "new-client",
		Usage: `--name <display name> --redirect-uri <uri> [--redirect-uri <uri>…] --scopes "<scope…>" [--prefix <prefix>] [--webhook-url <url>]`,
		Short: "Registers a partner: prints its client_id, secrets and Caddyfile client block",
		Long: `
Creates the credentials of a new partner application and prints them once:

  client_id       <prefix>_<8 hex digits>
  client_secret   256 random bits, base64url
  webhook_secret  whsec_<base64 of 32 random bytes> (with --webhook-url)

followed by a client block to paste into the tollgate global option. The
block holds only the SHA-256 digest of the client secret (secret_sha256)
and names the webhook secret as {env.<CLIENT>_WEBHOOK_SECRET}: set that
variable in the gateway's environment. Give the secrets to the partner over
a secure channel; they are not printed again, and the gateway cannot
recover the client secret from its digest.

--name          the display name the consent screen shows
--redirect-uri  a redirect URI, https (http only for localhost and
                127.0.0.1); repeat the flag for several
--scopes        the scopes the partner may request, space-separated
--prefix        the client_id's prefix (default: the name's initials, or tg)
--webhook-url   where user.consent.revoked events go
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("name", "", "display name shown on the consent screen")
			cmd.Flags().StringArray("redirect-uri", nil, "registered redirect URI (repeatable)")
			cmd.Flags().String("scopes", "", "space-separated scopes the client may request")
			cmd.Flags().String("prefix", "", "client_id prefix (default: the name's initials, or tg)")
			cmd.Flags().String("webhook-url", "", "URL that receives user.consent.revoked events")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdNewClient)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "hash-secret",
		Usage: "[--secret <secret>]",
		Short: "Prints the hex SHA-256 of a client secret, for secret_sha256",
		Long: `
Prints the hex SHA-256 digest of a client secret, the value of a client's
secret_sha256 (README "Security": the gateway keeps only this digest and
compares the digest of what the partner sends with it).

--secret  the secret; if omitted, one line is read from standard input
          (its line ending, \n or \r\n, is not part of the secret)
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("secret", "", "the client secret (default: read from stdin)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdHashSecret)
		},
	})
}

func cmdNewClient(fs caddycmd.Flags) (int, error) {
	uris, err := fs.GetStringArray("redirect-uri")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	spec := newClientSpec{
		Name:         fs.String("name"),
		RedirectURIs: uris,
		Scopes:       strings.Fields(fs.String("scopes")),
		Prefix:       fs.String("prefix"),
		WebhookURL:   fs.String("webhook-url"),
	}
	if err := spec.check(); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	creds, err := newCredentials(rand.Reader, spec)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if _, err := io.WriteString(os.Stdout, creds.render(spec)); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return 0, nil
}

func cmdHashSecret(fs caddycmd.Flags) (int, error) {
	secret := fs.String("secret")
	if !fs.Changed("secret") {
		line, err := bufio.NewReader(os.Stdin).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return caddy.ExitCodeFailedStartup, err
		}
		if trimmed, ok := bytes.CutSuffix(line, []byte("\n")); ok {
			line = bytes.TrimSuffix(trimmed, []byte("\r"))
		}
		secret = string(line)
	}
	if secret == "" {
		// The gateway refuses an empty secret too (ClientConfig.provision).
		return caddy.ExitCodeFailedStartup, errors.New("the secret is empty")
	}
	fmt.Println(sha256Hex(secret))
	return 0, nil
}

// newClientSpec is what the operator asked new-client for.
type newClientSpec struct {
	Name         string
	RedirectURIs []string
	Scopes       []string
	Prefix       string
	WebhookURL   string
}

// check refuses what the gateway would refuse at load, and what could not
// be written into a Caddyfile token as is.
func (s *newClientSpec) check() error {
	if strings.TrimSpace(s.Name) == "" {
		return errors.New("--name is required: the consent screen shows it to users")
	}
	if err := quotableName(s.Name); err != nil {
		return err
	}
	if len(s.RedirectURIs) == 0 {
		return errors.New("--redirect-uri is required (repeat it for several)")
	}
	for _, u := range s.RedirectURIs {
		if err := plainToken("--redirect-uri", u); err != nil {
			return err
		}
		if err := oauth.CheckRegisteredRedirectURI(u, false); err != nil {
			return err
		}
	}
	if len(s.Scopes) == 0 {
		return errors.New(`--scopes is required, e.g. --scopes "profile:read seatime:read"`)
	}
	for _, sc := range s.Scopes {
		if err := checkScopeToken(sc); err != nil {
			return err
		}
	}
	if s.Prefix == "" {
		s.Prefix = prefixFromName(s.Name)
	}
	if !validPrefix(s.Prefix) {
		return fmt.Errorf("--prefix %q: want 1 to 8 lowercase letters or digits, starting with a letter", s.Prefix)
	}
	if s.WebhookURL != "" {
		if err := plainToken("--webhook-url", s.WebhookURL); err != nil {
			return err
		}
		// The check the gateway makes at load (ClientConfig.provision).
		if !absoluteHTTPURL(s.WebhookURL) {
			return fmt.Errorf("--webhook-url %q: must be an absolute http(s) URL", s.WebhookURL)
		}
	}
	return nil
}

// quotableName refuses a display name that a quoted Caddyfile token would
// not carry as written: a quote or backslash (escapes), braces ({$VAR} is
// substituted by the Caddyfile parser) and control characters.
func quotableName(name string) error {
	for _, r := range name {
		if r == '"' || r == '\\' || r == '{' || r == '}' || unicode.IsControl(r) {
			return fmt.Errorf("--name %q: quotes, backslashes, braces and control characters are not allowed", name)
		}
	}
	return nil
}

// plainToken refuses a value that would not be one unquoted Caddyfile
// token written as is: spaces, quotes, backslashes, braces (placeholders)
// or control characters.
func plainToken(flag, v string) error {
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune("\"'`\\{}", r) {
			return fmt.Errorf("%s %q: spaces, quotes, backslashes, braces and control characters are not allowed", flag, v)
		}
	}
	return nil
}

// checkScopeToken applies RFC 6749 §3.3 (scope-token = 1*( %x21 / %x23-5B
// / %x5D-7E )), minus braces, which a Caddyfile reads as a placeholder.
func checkScopeToken(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' || c == '{' || c == '}' {
			return fmt.Errorf("--scopes: %q is not a scope token (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
		}
	}
	return nil
}

// prefixFromName is the client_id prefix new-client picks: the lowercase
// initials of the name's words (letters and digits only, at most 4), or
// "tg" when that gives fewer than two.
func prefixFromName(name string) string {
	var b strings.Builder
	for _, w := range strings.FieldsFunc(name, func(r rune) bool { return !isASCIIAlnum(r) }) {
		c := unicode.ToLower(rune(w[0]))
		if b.Len() == 0 && (c < 'a' || c > 'z') {
			continue // a prefix starts with a letter
		}
		b.WriteRune(c)
		if b.Len() == 4 {
			break
		}
	}
	if b.Len() < 2 {
		return "tg"
	}
	return b.String()
}

func isASCIIAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

func validPrefix(p string) bool {
	if p == "" || len(p) > 8 || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !('a' <= p[i] && p[i] <= 'z' || '0' <= p[i] && p[i] <= '9') {
			return false
		}
	}
	return true
}

// credentials are what new-client generates.
type credentials struct {
	ClientID      string
	ClientSecret  string // base64url of 256 random bits
	WebhookSecret string // whsec_<base64 of 32 random bytes>, "" without a webhook URL
}

func newCredentials(rnd io.Reader, spec newClientSpec) (credentials, error) {
	var id [4]byte
	var secret, whsec [32]byte
	for _, b := range [][]byte{id[:], secret[:], whsec[:]} {
		if _, err := io.ReadFull(rnd, b); err != nil {
			return credentials{}, fmt.Errorf("reading random bytes: %w", err)
		}
	}
	c := credentials{
		ClientID:     spec.Prefix + "_" + hex.EncodeToString(id[:]),
		ClientSecret: base64.RawURLEncoding.EncodeToString(secret[:]),
	}
	if spec.WebhookURL != "" {
		// A Standard Webhooks symmetric secret: whsec_ and the base64 of
		// the HMAC key (README "Webhooks").
		c.WebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString(whsec[:])
	}
	return c, nil
}

// webhookEnvVar is the environment variable the printed block reads the
// webhook secret from: the client_id in upper case, non-alphanumerics as _.
func webhookEnvVar(clientID string) string {
	return strings.Map(func(r rune) rune {
		if isASCIIAlnum(r) {
			return unicode.ToUpper(r)
		}
		return '_'
	}, clientID) + "_WEBHOOK_SECRET"
}

// render is new-client's output: the labelled secrets, then the client
// block, which carries no secret (README "Security").
func (c credentials) render(spec newClientSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "New Tollgate client \"%s\". Give the partner these values once, over a secure channel;\n", spec.Name)
	b.WriteString("they are not shown again, and the gateway keeps only a digest of the client secret.\n\n")
	fmt.Fprintf(&b, "client_id:      %s\n", c.ClientID)
	fmt.Fprintf(&b, "client_secret:  %s\n", c.ClientSecret)
	if c.WebhookSecret != "" {
		fmt.Fprintf(&b, "webhook_secret: %s\n", c.WebhookSecret)
	}
	b.WriteString("\nAdd this block to the tollgate { } global option of your Caddyfile:\n\n")
	fmt.Fprintf(&b, "client %s {\n", c.ClientID)
	// check refused quotes, backslashes and braces: quoted as is, the
	// Caddyfile reads the name back unchanged.
	fmt.Fprintf(&b, "\tname \"%s\"\n", spec.Name)
	b.WriteString("\t# SHA-256 of the client secret (tollgate hash-secret); the secret itself is not kept.\n")
	fmt.Fprintf(&b, "\tsecret_sha256 %s\n", sha256Hex(c.ClientSecret))
	fmt.Fprintf(&b, "\tredirect_uri %s\n", strings.Join(spec.RedirectURIs, " "))
	fmt.Fprintf(&b, "\tscopes %s\n", strings.Join(spec.Scopes, " "))
	if c.WebhookSecret != "" {
		env := webhookEnvVar(c.ClientID)
		fmt.Fprintf(&b, "\t# Set %s to the webhook_secret above in the gateway's environment.\n", env)
		fmt.Fprintf(&b, "\twebhook %s {env.%s}\n", spec.WebhookURL, env)
	}
	b.WriteString("}\n")
	return b.String()
}
