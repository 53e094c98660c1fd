package inference

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medfed/medfed/model"
)

// job is one caller's samples waiting for a batch.
type job struct {
	x    []float32
	n    int
	out  []float32
	err  error
	done chan struct{}
}

// batcher merges the requests of concurrent callers to one model version into batches of up
// to MaxBatch samples, runs each batch with one Predict call on one of Workers goroutines,
// and hands every caller its share of the result. It is safe for concurrent use. Its
// goroutines run until retire, which lets queued jobs finish; predict calls that arrive
// after retire run inline on the caller's goroutine, so retiring a version never fails a
// request that already holds it.
type batcher struct {
	m               *model.Sequential
	inSize, outSize int
	maxBatch        int
	maxDelay        time.Duration
	onBatch         func(samples int)
	waiting         atomic.Int64 // callers between submitting a job and receiving its result
	inputs          sync.Pool    // *[]float32: the merged inputs of a batch, reused

	mu     sync.RWMutex // held for reading while sending to in, for writing to close
	closed bool
	in     chan *job
	work   chan []*job
	quit   chan struct{}
}

func newBatcher(m *model.Sequential, cfg Config, wg *sync.WaitGroup, onBatch func(int)) *batcher {
	b := &batcher{
		m:        m,
		inSize:   prod(m.InputShape()),
		outSize:  prod(m.OutputShape()),
		maxBatch: cfg.MaxBatch,
		maxDelay: cfg.MaxDelay,
		onBatch:  onBatch,
		in:       make(chan *job, cfg.MaxBatch),
		work:     make(chan []*job),
		quit:     make(chan struct{}),
	}
	wg.Add(1 + cfg.Workers)
	go func() {
		defer wg.Done()
		defer close(b.work)
		b.collect()
	}()
	for range cfg.Workers {
		go func() {
			defer wg.Done()
			for batch := range b.work {
				b.run(batch)
			}
		}()
	}
	return b
}

// predict returns the model's outputs for the n samples in x, batched with other callers.
func (b *batcher) predict(ctx context.Context, x []float32, n int) ([]float32, error) {
	if n >= b.maxBatch {
		return b.inline(x, n)
	}
	j := &job{x: x, n: n, done: make(chan struct{})}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return b.inline(x, n)
	}
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	select {
	case b.in <- j:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return nil, ctx.Err()
	}
	select {
	case <-j.done:
		return j.out, j.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *batcher) inline(x []float32, n int) ([]float32, error) {
	j := &job{x: x, n: n, done: make(chan struct{})}
	b.run([]*job{j})
	return j.out, j.err
}

// retire stops accepting jobs; the goroutines finish the queued ones and exit.
func (b *batcher) retire() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.quit)
	}
	b.mu.Unlock()
}

// collect forms batches: after the first job it waits up to maxDelay for more, but only
// while other callers are waiting (a lone caller is not delayed), then hands the batch to a
// worker, still adding jobs while every worker is busy.
func (b *batcher) collect() {
	var carry *job // a job that did not fit the previous batch
	for {
		var batch []*job
		n := 0
		full := false
		add := func(j *job) {
			if n > 0 && n+j.n > b.maxBatch {
				carry, full = j, true
				return
			}
			batch = append(batch, j)
			n += j.n
			full = n >= b.maxBatch
		}
		if carry != nil {
			j := carry
			carry = nil
			add(j)
		} else {
			select {
			case j := <-b.in:
				add(j)
			case <-b.quit:
				b.drain()
				return
			}
		}
		if !full && b.maxDelay > 0 && int64(len(batch)) < b.waiting.Load() {
			deadline := time.NewTimer(b.maxDelay)
		fill:
			for !full && int64(len(batch)) < b.waiting.Load() {
				select {
				case j := <-b.in:
					add(j)
				case <-deadline.C:
					break fill
				case <-b.quit:
					break fill
				}
			}
			deadline.Stop()
		}
		for !full {
			select {
			case b.work <- batch:
				batch = nil
			case j := <-b.in:
				add(j)
			}
			if batch == nil {
				break
			}
		}
		if batch != nil {
			b.work <- batch
		}
	}
}

// drain runs the jobs still queued after retire. No new job can arrive: retire holds the
// lock that senders hold for reading.
func (b *batcher) drain() {
	for {
		select {
		case j := <-b.in:
			b.work <- []*job{j}
		default:
			return
		}
	}
}

// run predicts one batch and hands out the results. A panic in the model (a programmer
// error: inputs are validated before they are queued) fails the batch instead of the
// process.
func (b *batcher) run(batch []*job) {
	defer func() {
		if r := recover(); r != nil {
			for _, j := range batch {
				j.out, j.err = nil, fmt.Errorf("inference: model failed: %v", r)
				close(j.done)
			}
		}
	}()
	n := 0
	for _, j := range batch {
		n += j.n
	}
	x := batch[0].x
	if len(batch) > 1 {
		p, _ := b.inputs.Get().(*[]float32)
		if p == nil {
			p = new([]float32)
		}
		x = (*p)[:0]
		for _, j := range batch {
			x = append(x, j.x...)
		}
		defer func() { *p = x; b.inputs.Put(p) }() // Predict keeps no reference to x
	}
	y := b.m.Predict(x, n)
	if b.onBatch != nil {
		b.onBatch(n)
	}
	off := 0
	for _, j := range batch {
		j.out = y[off*b.outSize : (off+j.n)*b.outSize : (off+j.n)*b.outSize]
		off += j.n
		close(j.done)
	}
}

func prod(shape []int) int {
	p := 1
	for _, d := range shape {
		p *= d
	}
	return p
}
