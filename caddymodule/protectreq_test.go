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
