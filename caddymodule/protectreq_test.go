package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
)

var guardedForTest = []string{"Authorization", "X-Legacy-User", "", "X-Scope"}

func TestConnectionNames(t *testing.T) {
	for _, tc := range []struct {
		fields []string
		want   string
	}{
		{nil, ""},
		{[]string{"close"}, ""},
		{[]string{"keep-alive, Upgrade"}, ""},
		{[]string{"X-Legacy-User"}, "X-Legacy-User"},
		{[]string{"x-legacy-user"}, "X-Legacy-User"},
		{[]string{"keep-alive,\t X-LEGACY-USER "}, "X-Legacy-User"},
		{[]string{"close", "authorization"}, "Authorization"},
		{[]string{",,x-scope,"}, "X-Scope"},
		{[]string{"X-Legacy-User-Id"}, ""},
		{[]string{""}, ""},
	} {
		if got := connectionNames(tc.fields, guardedForTest); got != tc.want {
			t.Errorf("connectionNames(%q) = %q, want %q", tc.fields, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { connectionNames([]string{"keep-alive, Upgrade"}, guardedForTest) }); n != 0 {
		t.Errorf("connectionNames allocates %v times", n)
	}
}

// FuzzConnectionNames checks the property the refusal relies on: when
// connectionNames finds nothing, a proxy removing the fields a Connection
// header names (as Caddy's reverse_proxy does, RFC 9110 §7.6.1) leaves
// every guarded header in place.
func FuzzConnectionNames(f *testing.F) {
	for _, s := range []string{"", "close", "X-Legacy-User", "keep-alive, x-legacy-user", " Authorization ,", "x-scope\t", "X-Legacy-User-Id, Upgrade"} {
		f.Add(s, "")
		f.Add("keep-alive", s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		fields := []string{a, b}
		got := connectionNames(fields, guardedForTest)
		h := http.Header{}
		for _, n := range guardedForTest {
			if n != "" {
				h.Set(n, "v")
			}
		}
		for _, f := range fields {
			for _, sf := range strings.Split(f, ",") {
				if sf = textproto.TrimString(sf); sf != "" {
					h.Del(sf)
				}
			}
		}
		for _, n := range guardedForTest {
			if n != "" && h.Get(n) == "" && got == "" {
				t.Fatalf("Connection %q removes %s, but connectionNames found nothing", fields, n)
			}
		}
		if got != "" {
			found := false
			for _, n := range guardedForTest {
				found = found || (n != "" && n == got)
			}
			if !found {
				t.Fatalf("connectionNames returned %q, not a guarded name", got)
			}
		}
	})
}

func TestStripGatewayCookies(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"a=1; b=2"}, []string{"a=1; b=2"}},
		{[]string{"tollgate_session=s3cr3t"}, nil},
		{[]string{"a=1; tollgate_session=s3cr3t; b=2"}, []string{"a=1; b=2"}},
		{[]string{"a=1;tollgate_session=x;tollgate_csrf=y"}, []string{"a=1"}},
		{[]string{" Tollgate_Session =x ; a=1"}, []string{"a=1"}},
		{[]string{"a=1, tollgate_session=x; b=2"}, []string{"b=2"}},
		{[]string{"tollgate_session=x", "a=1"}, []string{"a=1"}},
		{[]string{"a=1", "tollgate_other=x"}, []string{"a=1"}},
		{[]string{"x=tollgate_session"}, []string{"x=tollgate_session"}},
		{[]string{"mytollgate_x=1"}, []string{"mytollgate_x=1"}},
	} {
		h := http.Header{}
		if tc.in != nil {
			h["Cookie"] = append([]string(nil), tc.in...)
		}
		stripGatewayCookies(h)
		got, ok := h["Cookie"]
		if tc.want == nil {
			if ok {
				t.Errorf("Cookie %q → %q, want the field deleted", tc.in, got)
			}
			continue
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("Cookie %q → %q, want %q", tc.in, got, tc.want)
		}
	}
	h := http.Header{"Cookie": {"a=1; theme=dark"}}
	if n := testing.AllocsPerRun(100, func() { stripGatewayCookies(h) }); n != 0 {
		t.Errorf("stripGatewayCookies allocates %v times without a gateway cookie", n)
	}
	if n := testing.AllocsPerRun(100, func() { stripGatewayCookies(http.Header{}) }); n != 0 {
		t.Errorf("stripGatewayCookies allocates %v times without a Cookie field", n)
	}
}

// FuzzStripCookies checks that no cookie whose name starts with tollgate_
// survives, as Go's own cookie parser reads the result, and that every
// other cookie Go's parser reads from the input is kept.
func FuzzStripCookies(f *testing.F) {
	for _, s := range []string{"", "a=1", "tollgate_session=x", "a=1; tollgate_session=x; b=2", "TOLLGATE_X=1;a=2", "a=1, tollgate_s=2", `a="q;r"; tollgate_s=1`, " ; ;tollgate_=;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := stripCookies(in, gatewayCookiePrefix)
		after := parseCookies(out)
		for _, c := range after {
			if hasPrefixFold(strings.TrimSpace(c.Name), gatewayCookiePrefix) {
				t.Fatalf("stripCookies(%q) = %q keeps the gateway cookie %q", in, out, c.Name)
			}
		}
		if !containsFold(in, gatewayCookiePrefix) && out != in {
			t.Fatalf("stripCookies(%q) = %q changed a field without gateway cookies", in, out)
		}
		kept := map[string]bool{}
		for _, c := range after {
			kept[c.Name+"="+c.Value] = true
		}
		for _, c := range parseCookies(in) {
			if !containsFold(c.Name+"="+c.Value, gatewayCookiePrefix) && !kept[c.Name+"="+c.Value] {
				t.Fatalf("stripCookies(%q) = %q lost the cookie %s=%s", in, out, c.Name, c.Value)
			}
		}
	})
}

func parseCookies(v string) []*http.Cookie {
	r := http.Request{Header: http.Header{"Cookie": {v}}}
	return r.Cookies()
}

// RFC 6750 §3.1: a request using "more than one method" to send the token
// is invalid_request; the names are judged after decoding, and what does
// not decode is refused, not passed unchecked.
func TestTokenElsewhere(t *testing.T) {
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, target, ctype, body string
		want                      string // "" ok, else the detail's start
	}{
		{"no query", "/v1/me", "", "", ""},
		{"ordinary query", "/v1/me?page=2&sort=asc", "", "", ""},
		{"access_token", "/v1/me?access_token=t", "", "", "send the access token"},
		{"percent-encoded name", "/v1/me?access%5Ftoken=t", "", "", "send the access token"},
		{"fully encoded name", "/v1/me?%61%63%63%65%73%73%5f%74%6f%6b%65%6e=t", "", "", "send the access token"},
		{"other case", "/v1/me?Access_Token=t", "", "", "send the access token"},
		{"repeated", "/v1/me?x=1&access_token=a&access_token=b", "", "", "send the access token"},
		{"padded name", "/v1/me?access_token%20=t", "", "", "send the access token"},
		{"bad escape in query", "/v1/me?access_token=t&x=%zz", "", "", "the query cannot be parsed"},
		{"semicolon in query", "/v1/me?x=1;access_token=t", "", "", "the query cannot be parsed"},
		{"other access name", "/v1/me?access_level=2", "", "", ""},
		{"form body", "/v1/me", form, "access_token=t", "send the access token"},
		{"form body with a bad escape", "/v1/me", form, "access_token=t&x=%zz", "the form body cannot be parsed"},
		{"encoded name in form body", "/v1/me", form, "access%5ftoken=t", "send the access token"},
		{"form body, malformed content type", "/v1/me", form + "; charset", "access_token=t", "send the access token"},
		{"form body, upper-case content type", "/v1/me", "Application/X-WWW-Form-Urlencoded", "ACCESS_TOKEN=t", "send the access token"},
		{"ordinary form body", "/v1/me", form, "a=1&b=2", ""},
		{"json body", "/v1/me", "application/json", `{"access_token":"t"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *http.Request
			if tc.body == "" {
				r = httptest.NewRequest(http.MethodGet, tc.target, nil)
			} else {
				r = httptest.NewRequest(http.MethodPost, tc.target, strings.NewReader(tc.body))
				r.Header.Set("Content-Type", tc.ctype)
			}
			got := tokenElsewhere(r)
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("refused: %+v", got)
			case tc.want != "" && (got == nil || got.Status != http.StatusBadRequest || got.Code != "invalid_request" || !strings.HasPrefix(got.Detail, tc.want)):
				t.Fatalf("got %+v, want 400 invalid_request %q…", got, tc.want)
			}
			if tc.body != "" {
				if b, _ := io.ReadAll(r.Body); string(b) != tc.body {
					t.Fatalf("body left for the proxy = %q, want %q", b, tc.body)
				}
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/me?page=2&sort=asc", nil)
	if n := testing.AllocsPerRun(100, func() { tokenElsewhere(r) }); n != 0 {
		t.Errorf("tokenElsewhere allocates %v times for an ordinary query", n)
	}
}

// Methods are compared with r.Method byte for byte, so a lower-case or
// malformed one would lock every partner out: it fails the load.
func TestCheckMethods(t *testing.T) {
	for _, ok := range [][]string{nil, {"GET"}, {"GET", "HEAD"}, {"PROPFIND", "M-SEARCH"}} {
		if err := checkMethods(ok); err != nil {
			t.Errorf("checkMethods(%q) = %v", ok, err)
		}
	}
	for _, bad := range [][]string{{""}, {"get"}, {"Get"}, {"GET", "GET"}, {"GET,HEAD"}, {"GET HEAD"}, {"GÉT"}} {
		if err := checkMethods(bad); err == nil {
			t.Errorf("checkMethods(%q) accepted", bad)
		}
	}
}
