package oauth

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// A scope parameter is outside input: an authorize query close to the
// 1 MB header limit holds ~200k distinct tokens. Parsing it must take
// linear time; the quadratic de-duplication it replaced spent minutes of
// CPU on one such request (found by FuzzParseScope stalling).
func TestParseScopeHugeParameterIsLinear(t *testing.T) {
	var b strings.Builder
	n := 0
	for ; b.Len() < 1<<20; n++ {
		b.WriteString(strconv.FormatInt(int64(n), 36))
		b.WriteString(" - ")
	}
	start := time.Now()
	got := ParseScope(b.String())
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("ParseScope of %d distinct tokens took %s", n, took)
	}
	if len(got) != n+1 { // the n numbers and one "-"
		t.Fatalf("ParseScope kept %d tokens, want %d distinct", len(got), n+1)
	}
}
