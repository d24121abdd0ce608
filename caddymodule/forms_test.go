package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
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
