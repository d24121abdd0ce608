package caddymodule

import (
	"net/http"
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
