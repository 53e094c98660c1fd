package cputime

import (
	"runtime"
	"testing"
	"time"
)

// TestProcessCounts spins until the process's CPU time has grown by 10 ms, which must
// happen long before 10 s of spinning even on a busy machine.
func TestProcessCounts(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("Process returns 0 here")
	}
	before := Process()
	start := time.Now()
	for Process()-before < 10*time.Millisecond {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("10 s of spinning added %v of CPU time", Process()-before)
		}
	}
}
