package model

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// blobs makes a 3-class problem of Gaussian clusters in 4 dimensions.
func blobs(n int, seed uint64) (x, y []float32) {
	rng := rand.New(rand.NewPCG(seed, 9))
	centres := [][]float64{{2, 0, 0, 1}, {-2, 1, 0, 0}, {0, -2, 1, -1}}
	for i := 0; i < n; i++ {
		c := rng.IntN(3)
		for _, v := range centres[c] {
			x = append(x, float32(v+rng.NormFloat64()*0.7))
		}
		y = append(y, float32(c))
	}
	return x, y
}

func mlpSpec() Spec {
	return Spec{Input: []int{4}, Layers: []LayerSpec{
		{Type: "dense", Units: 16, Activation: "relu"},
		{Type: "dropout", Rate: 0.1},
		{Type: "dense", Units: 3, Activation: "softmax"},
	}}
}

func TestTrainingLearns(t *testing.T) {
	x, y := blobs(1500, 1)
	xt, yt := blobs(500, 2)
	for _, opt := range []OptimizerConfig{{Name: "adam"}, {Name: "sgd", LearningRate: 0.05, Momentum: 0.9}} {
		t.Run(opt.Name, func(t *testing.T) {
			m, err := Build(mlpSpec(), 3)
			if err != nil {
				t.Fatal(err)
			}
			_, before, _ := m.Evaluate(xt, yt, 500, "")
			tr, err := NewTrainer(m, TrainConfig{Epochs: 1, BatchSize: 32, Optimizer: opt, Seed: 4})
			if err != nil {
				t.Fatal(err)
			}
			var last EpochStats
			for e := 0; e < 5; e++ {
				if last, err = tr.Epoch(context.Background(), x, y, nil); err != nil {
					t.Fatal(err)
				}
			}
			loss, acc, err := m.Evaluate(xt, yt, 500, "")
			if err != nil {
				t.Fatal(err)
			}
			if acc < 0.9 || acc <= before {
				t.Errorf("test accuracy %.3f after training (%.3f before, train loss %.3f, test loss %.3f), want >= 0.9", acc, before, last.Loss, loss)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	x, y := blobs(300, 5)
	train := func() []float32 {
		m, err := Build(mlpSpec(), 42)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTrainer(m, TrainConfig{BatchSize: 16, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Epoch(context.Background(), x, y, nil); err != nil {
			t.Fatal(err)
		}
		return m.Flat(nil)
	}
	a, b := train(), train()
	if !slices.Equal(a, b) {
		t.Fatal("two runs with the same seeds gave different weights")
	}
	m, _ := Build(mlpSpec(), 43)
	if slices.Equal(m.Flat(nil)[:10], a[:10]) {
		t.Fatal("a different seed gave the same initial weights")
	}
}

func TestFlatRoundTrip(t *testing.T) {
	spec, err := Architecture("cnn", []int{28, 28, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Build(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	// conv 3·3·1·32+32, dense 13·13·32·64+64, dense 64·10+10: the seed example's Keras summary.
	if got, want := m.NumParams(), 320+346176+650; got != want {
		t.Fatalf("cnn has %d parameters, want %d", got, want)
	}
	v := m.Flat(nil)
	for i := range v {
		v[i] = float32(i%97) / 97
	}
	if err := m.SetFlat(v); err != nil {
		t.Fatal(err)
	}
	if got := m.Flat(nil); !slices.Equal(got, v) {
		t.Fatal("Flat after SetFlat differs")
	}
	if err := m.SetFlat(v[1:]); err == nil {
		t.Fatal("SetFlat accepted a vector one value short")
	}
	c := m.Clone()
	v[0] = 99
	m.SetFlat(v)
	if c.Flat(nil)[0] == 99 {
		t.Fatal("Clone shares weights with the original")
	}
}

// TestPredictConcurrent runs inference from many goroutines (meaningful under -race) and
// checks every caller gets the single-threaded answer.
func TestPredictConcurrent(t *testing.T) {
	spec, _ := Architecture("cnn", []int{12, 12, 1}, 4)
	m, err := Build(spec, 2)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, 5*144)
	for i := range x {
		x[i] = rng.Float32()
	}
	want := m.Predict(x, 5)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < 20; r++ {
				if got := m.Predict(x, 5); !slices.Equal(got, want) {
					t.Error("concurrent Predict gave a different answer")
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 5; i++ {
		var sum float64
		for _, p := range want[i*4 : (i+1)*4] {
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("sample %d probabilities sum to %v, want 1", i, sum)
		}
	}
}

// TestFusedMatchesUnfused trains two copies, one with the softmax fused into the loss (the
// default) and one where the loss sees the softmax output, and checks they take the same step.
func TestFusedMatchesUnfused(t *testing.T) {
	x, y := blobs(32, 8)
	m1, _ := Build(mlpSpec(), 5)
	m2 := m1.Clone()
	t1, _ := NewTrainer(m1, TrainConfig{Optimizer: OptimizerConfig{Name: "sgd"}})
	t2, _ := NewTrainer(m2, TrainConfig{Optimizer: OptimizerConfig{Name: "sgd"}})
	t2.fused = false
	l1, _ := t1.Step(x, y, 32)
	l2, _ := t2.Step(x, y, 32)
	if math.Abs(l1-l2) > 1e-5 {
		t.Errorf("fused loss %.6f, unfused %.6f", l1, l2)
	}
	a, b := m1.Flat(nil), m2.Flat(nil)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5 {
			t.Fatalf("weight %d: fused step %.6f, unfused %.6f", i, a[i], b[i])
		}
	}
}

func TestProximalTermPullsTowardsAnchor(t *testing.T) {
	x, y := blobs(256, 3)
	dist := func(mu float64) float64 {
		m, _ := Build(mlpSpec(), 6)
		w0 := m.Flat(nil)
		tr, err := NewTrainer(m, TrainConfig{ProximalMu: mu, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		tr.Epoch(context.Background(), x, y, nil)
		var d float64
		for i, w := range m.Flat(nil) {
			d += float64((w - w0[i]) * (w - w0[i]))
		}
		return d
	}
	if free, prox := dist(0), dist(10); prox >= free {
		t.Errorf("distance moved with mu=10 is %.4g, without %.4g: want smaller", prox, free)
	}
}

func TestTrainerRejectsBadInput(t *testing.T) {
	m, _ := Build(mlpSpec(), 1)
	tr, _ := NewTrainer(m, TrainConfig{})
	ctx := context.Background()
	if _, err := tr.Epoch(ctx, make([]float32, 10), make([]float32, 2), nil); err == nil {
		t.Error("accepted 10 values for samples of 4")
	}
	if _, err := tr.Epoch(ctx, make([]float32, 8), []float32{0, 3}, nil); err == nil {
		t.Error("accepted class 3 for a 3-class model")
	}
	if _, err := tr.Epoch(ctx, make([]float32, 8), []float32{0, 0.5}, nil); err == nil {
		t.Error("accepted a fractional class index")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tr.Epoch(cancelled, make([]float32, 8), []float32{0, 1}, nil); err == nil {
		t.Error("ran an epoch with a cancelled context")
	}
	for _, bad := range []TrainConfig{{Epochs: -1}, {BatchSize: -3}, {Loss: "hinge"}, {Optimizer: OptimizerConfig{Name: "rmsprop"}}, {Optimizer: OptimizerConfig{LearningRate: -1}}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("config %+v validated", bad)
		}
	}
}

func TestInputGradients(t *testing.T) {
	spec := Spec{Input: []int{6, 6, 1}, Layers: []LayerSpec{
		{Type: "conv2d", Filters: 2, Kernel: []int{3, 3}, Padding: "same", Activation: "tanh"},
		{Type: "flatten"}, {Type: "dropout", Rate: 0.5},
		{Type: "dense", Units: 3, Activation: "softmax"},
	}}
	m, err := Build(spec, 4)
	if err != nil {
		t.Fatal(err)
	}
	x := benchInput(2, 36)
	class := []int{2, 0}
	g, err := m.InputGradients(x, 2, class)
	if err != nil {
		t.Fatal(err)
	}
	const eps = 1e-2
	for i := 0; i < 2; i++ {
		xi := append([]float32(nil), x[i*36:(i+1)*36]...)
		for j := range xi {
			orig := xi[j]
			xi[j] = orig + eps
			up := m.Predict(xi, 1)[class[i]]
			xi[j] = orig - eps
			down := m.Predict(xi, 1)[class[i]]
			xi[j] = orig
			numeric := float64(up-down) / (2 * eps)
			if got := float64(g[i*36+j]); math.Abs(got-numeric) > 1e-3+2e-2*math.Abs(numeric) {
				t.Errorf("sample %d input %d: gradient %.6f, finite difference %.6f", i, j, got, numeric)
			}
		}
	}
	if _, err := m.InputGradients(x, 2, []int{0, 3}); err == nil {
		t.Error("class 3 of a 3-class model accepted")
	}
}

// TestShardedStepMatchesSingle checks that splitting a batch across per-core shards gives
// the gradient of the whole batch: one Adam step from the same weights lands on the same
// weights (up to float32 rounding) with one shard and with three.
func TestShardedStepMatchesSingle(t *testing.T) {
	spec, _ := Architecture("cnn", []int{10, 10, 1}, 3)
	x := benchInput(40, 100)
	y := make([]float32, 40)
	for i := range y {
		y[i] = float32(i % 3)
	}
	step := func(procs int) ([]float32, float64, int) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		m, _ := Build(spec, 9)
		tr, err := NewTrainer(m, TrainConfig{BatchSize: 40, Optimizer: OptimizerConfig{Name: "sgd", LearningRate: 0.5}})
		if err != nil {
			t.Fatal(err)
		}
		if want := min(procs, 40/minShard); len(tr.shards) != want {
			t.Fatalf("GOMAXPROCS %d: %d shards, want %d", procs, len(tr.shards), want)
		}
		loss, correct := tr.Step(x, y, 40)
		return m.Flat(nil), loss, correct
	}
	w1, l1, c1 := step(1)
	w3, l3, c3 := step(3)
	if math.Abs(l1-l3) > 1e-5 || c1 != c3 {
		t.Errorf("loss %.6f and %d correct with one shard, %.6f and %d with three", l1, c1, l3, c3)
	}
	for i := range w1 {
		if math.Abs(float64(w1[i]-w3[i])) > 1e-5 {
			t.Fatalf("weight %d: %.7f with one shard, %.7f with three", i, w1[i], w3[i])
		}
	}
}
