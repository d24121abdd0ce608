package integration

// A partner's webhook receiver, as DSS asks partners that register a
// webhook URL to run (docs/partners.md D2, D44): it checks every request's
// Standard Webhooks signature with the client's secret and records what it
// was sent. The check is written here from the specification
// (https://www.standardwebhooks.com) rather than imported from
// caddymodule/webhook, so that a fault shared by the gateway's signer and
// its own verifier cannot hide.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// webhookSecret is the demo client's signing secret in Caddyfile.example.
const webhookSecret = "whsec_ff7pEzFcQ9tMNXGjfqbUqtMbVTy956SG"

// webhookPath is where the receiver listens, as a partner's would.
const webhookPath = "/webhooks/dss"

// webhookTolerance is how far webhook-timestamp may be from the receiver's
// clock: the five minutes the Standard Webhooks libraries allow.
const webhookTolerance = 5 * time.Minute

// delivery is one request the receiver got.
type delivery struct {
	at       time.Time
	method   string
	path     string
	header   http.Header
	body     []byte
	sigErr   error // nil when the signature verified
	answered int   // the status the receiver answered with
}

func (d delivery) id() string { return d.header.Get("webhook-id") }

func (d delivery) String() string {
	return fmt.Sprintf("%s %s at %s → answered %d (signature: %v)\n%s%s",
		d.method, d.path, d.at.Format(time.RFC3339Nano), d.answered, d.sigErr, headerString(d.header), d.body)
}

// webhookReceiver is an HTTP server on a loopback port.
type webhookReceiver struct {
	t      *testing.T
	secret []byte
	addr   string // host:port
	url    string // the webhook URL to register

	mu     sync.Mutex
	srv    *http.Server // nil while down
	status int          // what a request with a valid signature is answered with
	got    []delivery
	signal chan struct{} // poked on every request
}

// newWebhookReceiver starts a receiver on a free loopback port, answering
// 204 to every correctly signed request (401 to the others) until setStatus
// says otherwise.
func newWebhookReceiver(t *testing.T) *webhookReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t, l.Addr().String())
	r.serveOn(l)
	return r
}

// newDownWebhookReceiver returns a receiver that is down (nothing listens
// on its port, so attempts are refused) until up. Its port is below the
// ephemeral range, so that nothing else takes it meanwhile.
func newDownWebhookReceiver(t *testing.T) *webhookReceiver {
	t.Helper()
	return newReceiver(t, fmt.Sprintf("127.0.0.1:%d", quietPort(t)))
}

func newReceiver(t *testing.T, addr string) *webhookReceiver {
	t.Helper()
	secret, err := parseWebhookSecret(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &webhookReceiver{
		t: t, secret: secret, addr: addr, url: "http://" + addr + webhookPath,
		status: http.StatusNoContent, signal: make(chan struct{}, 1),
	}
	t.Cleanup(func() {
		r.down()
		if t.Failed() {
			t.Logf("webhook receiver got %d request(s):\n%s", len(r.all()), r.describe())
		}
	})
	return r
}

// up starts listening on the receiver's port.
func (r *webhookReceiver) up() {
	r.t.Helper()
	l, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("webhook receiver: listening on %s: %v", r.addr, err)
	}
	r.serveOn(l)
}

func (r *webhookReceiver) serveOn(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// down closes the listener and every connection.
func (r *webhookReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (r *webhookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	now := time.Now()
	d := delivery{at: now, method: req.Method, path: req.URL.Path, header: req.Header.Clone(), body: body}
	d.sigErr = verifyStandardWebhook(r.secret, req.Header, body, now)
	r.mu.Lock()
	d.answered = r.status
	if d.sigErr != nil {
		d.answered = http.StatusUnauthorized
	}
	r.got = append(r.got, d)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
	w.WriteHeader(d.answered)
}

// setStatus sets the answer to correctly signed requests from now on.
func (r *webhookReceiver) setStatus(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = code
}

// all returns every request received so far.
func (r *webhookReceiver) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func (r *webhookReceiver) describe() string {
	var sb strings.Builder
	for i, d := range r.all() {
		fmt.Fprintf(&sb, "#%d %s\n", i+1, d)
	}
	return sb.String()
}

// waitFor waits up to timeout until cond holds for the requests received
// so far and returns them; it fails the test when it never does.
func (r *webhookReceiver) waitFor(timeout time.Duration, what string, cond func([]delivery) bool) []delivery {
	r.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if got := r.all(); cond(got) {
			return got
		}
		select {
		case <-r.signal:
		case <-time.After(100 * time.Millisecond):
		case <-deadline.C:
			r.t.Fatalf("webhook receiver: no %s within %s; got %d request(s):\n%s", what, timeout, len(r.all()), r.describe())
		}
	}
}

// accepted returns the requests the receiver acknowledged with a 2xx.
func accepted(ds []delivery) []delivery {
	var out []delivery
	for _, d := range ds {
		if d.answered >= 200 && d.answered < 300 {
			out = append(out, d)
		}
	}
	return out
}

// distinctIDs returns the webhook-ids of ds, each once, in order of arrival:
// the logical events a receiver that de-duplicates sees.
func distinctIDs(ds []delivery) []string {
	seen := map[string]bool{}
	var ids []string
	for _, d := range ds {
		if !seen[d.id()] {
			seen[d.id()] = true
			ids = append(ids, d.id())
		}
	}
	return ids
}

// wantAllSigned checks every request the receiver got was a POST to the
// registered path carrying a valid Standard Webhooks signature.
func (r *webhookReceiver) wantAllSigned() {
	r.t.Helper()
	for i, d := range r.all() {
		if d.sigErr != nil || d.method != http.MethodPost || d.path != webhookPath {
			r.t.Fatalf("webhook request #%d: want a POST to %s with a valid signature (README \"Webhooks\": signed per Standard Webhooks):\n%s", i+1, webhookPath, d)
		}
	}
}

// parseWebhookSecret decodes a Standard Webhooks symmetric secret:
// "whsec_" and the base64 of the key.
func parseWebhookSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New("secret does not start with whsec_")
	}
	return base64.StdEncoding.DecodeString(b64)
}

// verifyStandardWebhook is the receiver-side check of Standard Webhooks:
// webhook-id, webhook-timestamp (Unix seconds, within the tolerance of now)
// and webhook-signature, a space-separated list of "v1,<base64>" where one
// entry must be the HMAC-SHA256, keyed with the secret, of
// "<id>.<timestamp>.<body>".
func verifyStandardWebhook(secret []byte, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing header: webhook-id %q, webhook-timestamp %q, webhook-signature %q", id, ts, sigs)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > webhookTolerance || d < -webhookTolerance {
		return fmt.Errorf("webhook-timestamp %s is %s away from now", ts, d)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		if got, err := base64.StdEncoding.DecodeString(b64); err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no v1 signature in %q matches", sigs)
}

// consentRevoked is the body of a user.consent.revoked event.
type consentRevoked struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      struct {
		ClientID string   `json:"client_id"`
		Subject  string   `json:"subject"`
		Scopes   []string `json:"scopes"`
	} `json:"data"`
}

// wantConsentRevoked checks d is the user.consent.revoked event of alice's
// grant to the demo client with the given scopes, sent after notBefore,
// and carries none of the tokens in secrets; it returns the event.
//
// A user.consent.revoked event is a JSON body with type, an event id, a
// timestamp and data naming client_id, subject and scopes, never a token
// (docs/partners.md D44; docs/architecture.md §7; README "Webhooks").
func wantConsentRevoked(t *testing.T, d delivery, scopes []string, notBefore time.Time, secrets ...string) consentRevoked {
	t.Helper()
	if ct := d.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("webhook Content-Type = %q, want application/json", ct)
	}
	var ev consentRevoked
	dec := json.NewDecoder(strings.NewReader(string(d.body)))
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("webhook body is not the event JSON (%v):\n%s", err, d)
	}
	if ev.Type != "user.consent.revoked" {
		t.Errorf("type = %q, want user.consent.revoked", ev.Type)
	}
	if ev.ID == "" || ev.ID != d.id() {
		t.Errorf("body id = %q, webhook-id = %q: want one non-empty event id in both (for de-duplication)", ev.ID, d.id())
	}
	if ts, err := time.Parse(time.RFC3339Nano, ev.Timestamp); err != nil {
		t.Errorf("timestamp %q is not RFC 3339: %v", ev.Timestamp, err)
	} else if ts.Before(notBefore.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("timestamp %s is not the time of the disconnect (after %s, before now)", ts, notBefore.Format(time.RFC3339Nano))
	}
	if ev.Data.ClientID != clientID {
		t.Errorf("data.client_id = %q, want %q", ev.Data.ClientID, clientID)
	}
	if ev.Data.Subject != username {
		t.Errorf("data.subject = %q, want %q", ev.Data.Subject, username)
	}
	if got, want := scopeSet(strings.Join(ev.Data.Scopes, " ")), scopeSet(strings.Join(scopes, " ")); got != want {
		t.Errorf("data.scopes = %q, want the granted %q", ev.Data.Scopes, want)
	}

	// Never a token: not the ones the partner holds, nor anything shaped
	// like one, nor a field that could carry one.
	body := string(d.body)
	for _, s := range secrets {
		if s != "" && strings.Contains(body, s) {
			t.Errorf("webhook body contains a token the partner holds:\n%s", body)
		}
	}
	for _, prefix := range []string{"tga_", "tgr_", "tgc_"} {
		if strings.Contains(body, prefix) {
			t.Errorf("webhook body contains something shaped like a token (%s…):\n%s", prefix, body)
		}
	}
	var raw map[string]any
	_ = json.Unmarshal(d.body, &raw)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, sub := range m {
			if strings.Contains(strings.ToLower(k), "token") || strings.Contains(strings.ToLower(k), "secret") {
				t.Errorf("webhook body has a field %s%s; an event names the grant, never a credential:\n%s", path, k, body)
			}
			walk(path+k+".", sub)
		}
	}
	walk("", raw)
	if t.Failed() {
		t.FailNow()
	}
	return ev
}

// TestWebhookReceiverVerifiesStandardWebhooksVector checks the test
// receiver itself against the example of the Standard Webhooks
// specification, so that "signature valid" in the other tests means what
// the specification means.
func TestWebhookReceiverVerifiesStandardWebhooksVector(t *testing.T) {
	t.Parallel()
	secret, err := parseWebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	const (
		id   = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		ts   = "1614265330"
		body = `{"test": 2432232314}`
		sig  = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	at := time.Unix(1614265330, 0)
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,bm90IGl0 "+sig) // a rotated-out signature first
	if err := verifyStandardWebhook(secret, h, []byte(body), at); err != nil {
		t.Fatalf("the specification's example does not verify: %v", err)
	}
	if verifyStandardWebhook(secret, h, []byte(body+" "), at) == nil {
		t.Error("a changed body verified")
	}
	if verifyStandardWebhook(secret, h, []byte(body), at.Add(webhookTolerance+time.Second)) == nil {
		t.Error("a stale timestamp verified")
	}
	other, _ := parseWebhookSecret(webhookSecret)
	if verifyStandardWebhook(other, h, []byte(body), at) == nil {
		t.Error("the example verified with another secret")
	}
	h.Set("webhook-id", id+"x")
	if verifyStandardWebhook(secret, h, []byte(body), at) == nil {
		t.Error("a changed webhook-id verified")
	}
}
