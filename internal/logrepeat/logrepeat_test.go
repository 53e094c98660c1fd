package logrepeat

import (
	"fmt"
	"testing"
	"time"
)

// TestAllow: a key is allowed once per period, the next allowed occurrence counts the
// ones left out, keys do not share a period, and quiet keys are forgotten once many are
// remembered.
func TestAllow(t *testing.T) {
	l := New(30 * time.Second)
	now := time.Unix(1_000_000, 0)
	l.Now = func() time.Time { return now }
	check := func(key string, wantSkipped int, wantOK bool) {
		t.Helper()
		if n, ok := l.Allow(key); n != wantSkipped || ok != wantOK {
			t.Fatalf("Allow(%q) at %v = %d, %v; want %d, %v", key, now.Unix()-1_000_000, n, ok, wantSkipped, wantOK)
		}
	}
	check("a", 0, true)
	check("a", 0, false)
	check("b", 0, true)
	now = now.Add(30*time.Second - time.Millisecond)
	check("a", 0, false)
	now = now.Add(time.Millisecond)
	check("a", 2, true)
	check("a", 0, false)
	check("b", 0, true) // b's one occurrence was written, none left out

	for i := range maxKeys {
		l.Allow(fmt.Sprint("k", i))
	}
	now = now.Add(time.Minute)
	l.Allow("new") // over maxKeys: the quiet ones go
	if len(l.seen) != 1 {
		t.Errorf("%d keys remembered after all went quiet, want 1", len(l.seen))
	}
}
