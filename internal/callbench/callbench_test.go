package callbench

import (
	"sync/atomic"
	"testing"
)

func BenchmarkRun(b *testing.B) {
	var calls atomic.Int64
	Run(b, 4, 2, func() error { calls.Add(1); return nil })
	if got := calls.Load(); got != int64(b.N) {
		b.Fatalf("%d calls for b.N = %d", got, b.N)
	}
}
