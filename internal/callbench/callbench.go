// Package callbench runs the calls of a benchmark from many goroutines at once and reports
// their throughput and latency percentiles, for the serving benchmarks of inference and
// coordinator.
package callbench

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Run makes b.N calls spread over callers goroutines, with the timer running only while
// they do, and reports p50-ms, p99-ms and samples/s, counting samplesPerCall samples per
// call. It returns the samples per second. A failed call fails b and stops its goroutine.
func Run(b *testing.B, callers, samplesPerCall int, call func() error) float64 {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := call(); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	rate := float64(b.N*samplesPerCall) / elapsed.Seconds()
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(rate, "samples/s")
	return rate
}
