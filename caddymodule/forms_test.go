package caddymodule

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store/memory"
)

func TestSealedFormsRefuseTampering(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	in := pending{ClientID: "c", RedirectURI: "https://a.example/cb", Scopes: []string{"s"}, State: "st"}
	sealed, err := sealForm(key, &in)
	if err != nil {
		t.Fatal(err)
	}
	var out pending
	if !openForm(key, sealed, &out) || out.ClientID != "c" || out.RedirectURI != in.RedirectURI || out.State != "st" {
		t.Fatalf("round trip: ok=%v %+v", openForm(key, sealed, &out), out)
	}
	payload, sig, _ := strings.Cut(strings.TrimPrefix(sealed, sealedPrefix), ".")
	other, _ := sealForm(key, &pending{ClientID: "evil"})
	otherPayload, _, _ := strings.Cut(strings.TrimPrefix(other, sealedPrefix), ".")
	for name, s := range map[string]string{
		"other key":          "",
		"payload swapped":    sealedPrefix + otherPayload + "." + sig,
		"signature dropped":  sealedPrefix + payload,
		"signature mangled":  sealedPrefix + payload + "." + strings.ToUpper(sig[:4]) + sig[4:],
		"no prefix":          payload + "." + sig,
		"empty":              "",
		"oversized":          sealedPrefix + strings.Repeat("A", maxSealedForm) + "." + sig,
		"payload not base64": sealedPrefix + "%%%." + sig,
	} {
		k := key
		if name == "other key" {
			k, s = []byte("another key of thirty-two bytes!"), sealed
		}
		if openForm(k, s, new(pending)) {
			t.Errorf("%s: opened", name)
		}
	}
}

func TestAnonymousCSRFDependsOnEveryPart(t *testing.T) {
	k1, k2 := []byte("k1"), []byte("k2")
	base := anonymousCSRF(k1, "authorize", "cookie", "")
	for name, other := range map[string]string{
		"key":     anonymousCSRF(k2, "authorize", "cookie", ""),
		"page":    anonymousCSRF(k1, "connections", "cookie", ""),
		"cookie":  anonymousCSRF(k1, "authorize", "cookie2", ""),
		"subject": anonymousCSRF(k1, "authorize", "cookie", "alice"),
		// Parts are separated: moving a byte across a boundary changes it.
		"boundary": anonymousCSRF(k1, "authorizec", "ookie", ""),
	} {
		if other == base {
			t.Errorf("changing the %s does not change the token", name)
		}
	}
}

// formAction never names another origin, whatever the raw path.
func FuzzFormAction(f *testing.F) {
	for _, p := range []string{
		"/oauth/authorize", "//evil.example/../oauth/authorize", "/\\evil.example/oauth/authorize",
		"/%2Fevil.example%2F..%2Foauth/authorize", "", "..", "/a/../../b", "/\t/evil", "/x?y#z",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := &http.Request{URL: &url.URL{Path: raw}}
		a := formAction(r)
		if !strings.HasPrefix(a, "/") || strings.HasPrefix(a, "//") || strings.HasPrefix(a, "/\\") {
			t.Fatalf("formAction(%q) = %q: not a single-slash absolute path", raw, a)
		}
		base, _ := url.Parse("https://gateway.example/start")
		u, err := base.Parse(a)
		if err != nil {
			t.Fatalf("formAction(%q) = %q does not parse: %v", raw, a, err)
		}
		if u.Host != "gateway.example" || u.Scheme != "https" {
			t.Fatalf("formAction(%q) = %q resolves to %s", raw, a, u)
		}
		if strings.ContainsAny(a, "\r\n\x00\\\"<>") {
			t.Fatalf("formAction(%q) = %q holds a character that needs escaping", raw, a)
		}
	})
}

// TestFormKeyRecheckedAgainstTheStore loses the form key from the store, as
// a Redis restarted empty does, and checks the instance puts its cached
// key back at its next recheck; then it replaces the stored key, as an
// instance started meanwhile would, and checks the instance adopts it. A
// request never waits for the recheck: formKey answers from the cache.
func TestFormKeyRecheckedAgainstTheStore(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	st := memory.New(clock)
	a := &App{blobs: st, now: clock, rand: rand.Reader, logger: zap.NewNop(),
		formKeyCache: new(atomic.Pointer[[]byte]), formKeyChecked: new(atomic.Int64)}
	ctx := context.Background()
	stored := func() []byte {
		k, err := st.GetBlob(ctx, formKeyBlob)
		if err != nil {
			return nil
		}
		return k
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen within 5 s", what)
			}
		}
	}

	k1, err := a.formKey(ctx)
	if err != nil || !bytes.Equal(stored(), k1) {
		t.Fatalf("first formKey: %v; want the key stored", err)
	}

	// The store loses it. Within the recheck interval nothing is asked.
	if err := st.DeleteBlob(ctx, formKeyBlob); err != nil {
		t.Fatal(err)
	}
	advance(formKeyRecheck / 2)
	checked := a.formKeyChecked.Load()
	if k, _ := a.formKey(ctx); !bytes.Equal(k, k1) || a.formKeyChecked.Load() != checked {
		t.Fatalf("within the recheck interval: want the cached key and no recheck")
	}
	advance(formKeyRecheck)
	if k, _ := a.formKey(ctx); !bytes.Equal(k, k1) {
		t.Fatalf("at the recheck: want the cached key served meanwhile")
	}
	eventually("putting the cached key back into the store", func() bool { return bytes.Equal(stored(), k1) })

	// Another instance's key in the store is adopted at the next recheck.
	k2 := bytes.Repeat([]byte{7}, 32)
	if err := st.DeleteBlob(ctx, formKeyBlob); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoadOrStoreBlob(ctx, formKeyBlob, k2); err != nil {
		t.Fatal(err)
	}
	advance(formKeyRecheck)
	_, _ = a.formKey(ctx)
	eventually("adopting the stored key", func() bool { k, _ := a.formKey(ctx); return bytes.Equal(k, k2) })
	if !bytes.Equal(stored(), k2) {
		t.Fatalf("the recheck replaced the stored key; want it kept")
	}
}
