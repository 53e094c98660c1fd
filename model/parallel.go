package model

import (
	"runtime"
	"sync"
)

// parallelFor runs fn over [0, n) split into contiguous chunks, one per worker, when the work
// (n items of cost units each) is large enough to pay for the goroutines. The split depends
// only on n and GOMAXPROCS, so results are reproducible.
func parallelFor(n, cost int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	if workers <= 1 || n*cost < 1<<15 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
