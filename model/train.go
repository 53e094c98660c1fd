package model

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"
)

// TrainConfig sets up local training. Zero fields take the defaults of DefaultTrainConfig.
type TrainConfig struct {
	Epochs    int             `json:"epochs"`     // default 5
	BatchSize int             `json:"batch_size"` // default 32
	Loss      string          `json:"loss"`       // default sparse_categorical_crossentropy
	Optimizer OptimizerConfig `json:"optimizer"`  // default Adam with Keras's defaults
	Seed      uint64          `json:"seed"`       // shuffling and dropout
	// ProximalMu adds the FedProx term mu/2·||w - w0||² to the loss, where w0 is the weights
	// when the trainer was made. Zero disables it.
	ProximalMu float64 `json:"proximal_mu"`
}

// DefaultTrainConfig is the seed example's schedule: 5 epochs of Adam at batch 32 on sparse
// categorical cross-entropy.
func DefaultTrainConfig() TrainConfig {
	return TrainConfig{Epochs: 5, BatchSize: 32, Loss: SparseCategoricalCrossentropy, Optimizer: OptimizerConfig{Name: "adam"}, Seed: 1}
}

func (c TrainConfig) withDefaults() (TrainConfig, error) {
	d := DefaultTrainConfig()
	if c.Epochs == 0 {
		c.Epochs = d.Epochs
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.Loss == "" {
		c.Loss = d.Loss
	}
	var err error
	if c.Optimizer, err = c.Optimizer.withDefaults(); err != nil {
		return c, err
	}
	if _, _, err := lossByName(c.Loss); err != nil {
		return c, err
	}
	switch {
	case c.Epochs < 1 || c.Epochs > 10000:
		return c, fmt.Errorf("epochs = %d, want 1 to 10000", c.Epochs)
	case c.BatchSize < 1 || c.BatchSize > 1<<16:
		return c, fmt.Errorf("batch size = %d, want 1 to 65536", c.BatchSize)
	case !(c.ProximalMu >= 0 && c.ProximalMu < 1e6):
		return c, fmt.Errorf("proximal mu = %v, want a value in [0, 1e6)", c.ProximalMu)
	}
	return c, nil
}

// Validate reports the first invalid field.
func (c TrainConfig) Validate() error {
	_, err := c.withDefaults()
	return err
}

// Trainer trains one model with one optimizer. It is not safe for concurrent use, and the
// model must not be used elsewhere while a step runs.
//
// With GOMAXPROCS > 1 and batches of at least 2·minShard samples, a step splits the batch into
// one shard per core; each shard runs forward and backward on its own goroutine with serial
// kernels, and the shards' gradients are combined weighted by their sizes. This keeps both
// cores busy with one synchronisation per step instead of one per layer, and gives the same
// gradients as the unsplit batch up to float32 rounding (results are reproducible for a given
// GOMAXPROCS).
type Trainer struct {
	m      *Sequential
	cfg    TrainConfig
	loss   lossFunc
	fused  bool        // the model's last layer is the activation the loss fuses with
	shards []*shard    // one per core, or a single non-serial one
	flat   [][]float32 // combined gradients in Params order, for the optimizer
	opt    optimizer
	anchor [][]float32 // FedProx reference weights
	rng    *rand.Rand
	xb, yb []float32
}

// minShard is the fewest samples worth a shard of their own.
const minShard = 8

// shard is one goroutine's share of a training step: layer states and gradient buffers.
type shard struct {
	run   run
	grads [][][]float32 // per layer, per param
	flat  [][]float32   // the same buffers in Params order
	out   []float32     // dL/d(last computed output)
}

// NewTrainer prepares to train m with cfg.
func NewTrainer(m *Sequential, cfg TrainConfig) (*Trainer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	fn, fusable, _ := lossByName(cfg.Loss)
	t := &Trainer{m: m, cfg: cfg, loss: fn, rng: rand.New(rand.NewPCG(cfg.Seed, 0x747261696e))}
	t.fused = fusable != "" && m.layers[len(m.layers)-1].kind() == fusable
	workers := min(runtime.GOMAXPROCS(0), cfg.BatchSize/minShard)
	if workers <= 1 {
		t.shards = []*shard{t.newShard(env{rng: rand.New(rand.NewPCG(cfg.Seed, 0x64726f70))})}
	} else {
		for w := range workers {
			t.shards = append(t.shards, t.newShard(env{rng: rand.New(rand.NewPCG(cfg.Seed, 0x64726f70+uint64(w))), serial: true}))
		}
	}
	if len(t.shards) == 1 {
		t.flat = t.shards[0].flat
	} else {
		for _, p := range m.params {
			t.flat = append(t.flat, make([]float32, len(p.Data)))
		}
	}
	t.opt = newOptimizer(cfg.Optimizer, m.params)
	if cfg.ProximalMu > 0 {
		for _, p := range m.params {
			t.anchor = append(t.anchor, append([]float32(nil), p.Data...))
		}
	}
	return t, nil
}

func (t *Trainer) newShard(e env) *shard {
	sh := &shard{run: t.m.newRun(e)}
	for _, l := range t.m.layers {
		var g [][]float32
		for _, p := range l.params() {
			buf := make([]float32, len(p.Data))
			g = append(g, buf)
			sh.flat = append(sh.flat, buf)
		}
		sh.grads = append(sh.grads, g)
	}
	return sh
}

// Config returns the trainer's configuration with defaults filled in.
func (t *Trainer) Config() TrainConfig { return t.cfg }

// Step trains on one batch of n samples and returns its mean loss (before the update) and the
// number of correct predictions.
func (t *Trainer) Step(x, y []float32, n int) (loss float64, correct int) {
	workers := min(len(t.shards), max(1, n/minShard))
	if workers == 1 && len(t.shards) == 1 {
		for _, g := range t.flat {
			clear(g)
		}
		loss, correct = t.shardStep(t.shards[0], x, y, n)
	} else {
		in, tw := len(x)/n, len(y)/n
		losses := make([]float64, workers)
		counts := make([]int, workers)
		var wg sync.WaitGroup
		for w := range workers {
			lo, hi := w*n/workers, (w+1)*n/workers
			wg.Go(func() {
				losses[w], counts[w] = t.shardStep(t.shards[w], x[lo*in:hi*in], y[lo*tw:hi*tw], hi-lo)
			})
		}
		wg.Wait()
		for w := range workers {
			size := (w+1)*n/workers - w*n/workers
			loss += losses[w] * float64(size) / float64(n)
			correct += counts[w]
		}
		t.combine(workers, n)
	}
	if t.anchor != nil {
		loss += t.addProximal()
	}
	t.opt.step(t.m.params, t.flat)
	return loss, correct
}

// shardStep runs forward and backward for n samples on one shard, adding the gradient of the
// shard's mean loss to sh.flat, which the caller has zeroed.
func (t *Trainer) shardStep(sh *shard, x, y []float32, n int) (loss float64, correct int) {
	layers := sh.run
	if t.fused {
		layers = layers[:len(layers)-1]
	}
	h := x
	for _, s := range layers {
		h = s.forward(h, n, true)
	}
	sh.out = grow(sh.out, len(h))
	loss = t.loss(sh.out, h, y, n, t.fused)
	correct = countCorrect(t.cfg.Loss, h, y, n, t.fused)
	d := sh.out
	for i := len(layers) - 1; i >= 0; i-- {
		d = layers[i].backward(d, sh.grads[i], i > 0)
	}
	return loss, correct
}

// combine sets t.flat to the size-weighted mean of the first workers shards' gradients, the
// gradient of the mean loss over the whole batch of n samples, and zeroes the shards'
// gradients for the next step in the same pass over memory.
func (t *Trainer) combine(workers, n int) {
	weights := make([]float32, workers)
	for w := range workers {
		weights[w] = float32((w+1)*n/workers-w*n/workers) / float32(n)
	}
	for i, dst := range t.flat {
		parallelFor(len(dst)/chunk+1, chunk, func(lo, hi int) {
			lo, hi = lo*chunk, min(hi*chunk, len(dst))
			d := dst[lo:hi]
			if workers == 2 {
				combine2(d, t.shards[0].flat[i][lo:hi], t.shards[1].flat[i][lo:hi], weights[0], weights[1])
				return
			}
			g := t.shards[0].flat[i][lo:hi]
			for j, v := range g {
				d[j] = weights[0] * v
			}
			clear(g)
			for w := 1; w < workers; w++ {
				g := t.shards[w].flat[i][lo:hi]
				for j, v := range g {
					d[j] += weights[w] * v
				}
				clear(g)
			}
		})
	}
}

// addProximal adds mu·(w - w0) to the gradients and returns mu/2·||w - w0||².
func (t *Trainer) addProximal() float64 {
	mu := float32(t.cfg.ProximalMu)
	var sq float64
	for i, p := range t.m.params {
		g, a := t.flat[i], t.anchor[i]
		for j, w := range p.Data {
			d := w - a[j]
			g[j] += mu * d
			sq += float64(d * d)
		}
	}
	return float64(mu) / 2 * sq
}

// EpochStats summarises one pass over the training data.
type EpochStats struct {
	Epoch    int     `json:"epoch"`
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
	Samples  int     `json:"samples"`
	Seconds  float64 `json:"seconds"`
}

// Epoch makes one shuffled pass over n samples (x row-major, y targets) in batches. progress,
// if not nil, is called after every batch with the samples done so far. It stops early with
// ctx's error when ctx is cancelled between batches.
func (t *Trainer) Epoch(ctx context.Context, x, y []float32, progress func(done, total int)) (EpochStats, error) {
	start := time.Now()
	in := prod(t.m.spec.Input)
	if in == 0 || len(x)%in != 0 {
		return EpochStats{}, fmt.Errorf("training data has %d values, not a multiple of the sample size %d", len(x), in)
	}
	n := len(x) / in
	if n == 0 {
		return EpochStats{}, fmt.Errorf("no training samples")
	}
	tw := len(y) / n
	if tw*n != len(y) {
		return EpochStats{}, fmt.Errorf("%d targets for %d samples", len(y), n)
	}
	if err := checkTargets(t.cfg.Loss, y, n, prod(t.m.OutputShape())); err != nil {
		return EpochStats{}, err
	}
	perm := t.rng.Perm(n)
	bs := t.cfg.BatchSize
	t.xb = grow(t.xb, bs*in)
	t.yb = grow(t.yb, bs*tw)
	var lossSum float64
	correct := 0
	for lo := 0; lo < n; lo += bs {
		if err := ctx.Err(); err != nil {
			return EpochStats{}, err
		}
		hi := min(lo+bs, n)
		for j, idx := range perm[lo:hi] {
			copy(t.xb[j*in:(j+1)*in], x[idx*in:(idx+1)*in])
			copy(t.yb[j*tw:(j+1)*tw], y[idx*tw:(idx+1)*tw])
		}
		l, c := t.Step(t.xb[:(hi-lo)*in], t.yb[:(hi-lo)*tw], hi-lo)
		lossSum += l * float64(hi-lo)
		correct += c
		if progress != nil {
			progress(hi, n)
		}
	}
	return EpochStats{Loss: lossSum / float64(n), Accuracy: float64(correct) / float64(n), Samples: n, Seconds: time.Since(start).Seconds()}, nil
}
