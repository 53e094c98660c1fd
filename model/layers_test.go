package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// gradCheck compares a layer's backward pass with central finite differences of the scalar
// L = Σ r·y for a fixed random r, for every parameter and every input value.
func gradCheck(t *testing.T, l layer, in []int, n int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*prod(in))
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1)
	}
	outSize := n * prod(l.outShape())
	r := make([]float32, outSize)
	for i := range r {
		r[i] = float32(rng.Float64()*2 - 1)
	}
	s := l.newState(env{rng: rand.New(rand.NewPCG(seed, 2))})
	lossAt := func() float64 {
		y := s.forward(x, n, false)
		var sum float64
		for i, v := range y {
			sum += float64(r[i]) * float64(v)
		}
		return sum
	}
	params := l.params()
	grads := make([][]float32, len(params))
	for i, p := range params {
		grads[i] = make([]float32, len(p.Data))
	}
	s.forward(x, n, true)
	dx := append([]float32(nil), s.backward(append([]float32(nil), r...), grads, true)...)

	const eps = 1e-2
	check := func(what string, v []float32, analytic []float32) {
		t.Helper()
		for i := range v {
			orig := v[i]
			v[i] = orig + eps
			up := lossAt()
			v[i] = orig - eps
			down := lossAt()
			v[i] = orig
			numeric := (up - down) / (2 * eps)
			got := float64(analytic[i])
			if math.Abs(got-numeric) > 2e-3+2e-2*math.Abs(numeric) {
				t.Errorf("%s[%d]: backward %.6f, finite difference %.6f", what, i, got, numeric)
			}
		}
	}
	for i, p := range params {
		check(p.Name, p.Data, grads[i])
	}
	check("input", x, dx)
}

func TestLayerGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	conv := func(in []int, filters int, k, st [2]int, same bool) layer {
		c, err := newConv2D(in, filters, k, st, same, rng)
		if err != nil {
			t.Fatal(err)
		}
		for i := range c.bias.Data {
			c.bias.Data[i] = float32(rng.Float64() - 0.5)
		}
		return c
	}
	pool := func(in []int, p, st [2]int) layer {
		m, err := newMaxPool2D(in, p, st)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	dn := newDense(5, 4, rng)
	for i := range dn.b.Data {
		dn.b.Data[i] = float32(rng.Float64() - 0.5)
	}
	tests := []struct {
		name string
		l    layer
		in   []int
	}{
		{"dense", dn, []int{5}},
		{"conv2d valid 3x3", conv([]int{5, 6, 1}, 3, [2]int{3, 3}, [2]int{1, 1}, false), []int{5, 6, 1}},
		{"conv2d same 3x3 channels", conv([]int{5, 4, 2}, 3, [2]int{3, 3}, [2]int{1, 1}, true), []int{5, 4, 2}},
		{"conv2d same stride 2", conv([]int{6, 5, 2}, 2, [2]int{3, 2}, [2]int{2, 2}, true), []int{6, 5, 2}},
		{"conv2d valid stride 2x1", conv([]int{7, 5, 3}, 2, [2]int{2, 3}, [2]int{2, 1}, false), []int{7, 5, 3}},
		{"maxpool 2x2", pool([]int{4, 6, 2}, [2]int{2, 2}, [2]int{2, 2}), []int{4, 6, 2}},
		{"maxpool 3x2 stride 1", pool([]int{5, 4, 1}, [2]int{3, 2}, [2]int{1, 1}), []int{5, 4, 1}},
		{"relu", newActivation("relu", []int{7}), []int{7}},
		{"tanh", newActivation("tanh", []int{7}), []int{7}},
		{"sigmoid", newActivation("sigmoid", []int{7}), []int{7}},
		{"softmax", newActivation("softmax", []int{3, 4}), []int{3, 4}},
		{"flatten", &flatten{out: []int{12}}, []int{3, 4}},
		{"dropout at rate 0", &dropout{shape: []int{6}, rate: 0}, []int{6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { gradCheck(t, tt.l, tt.in, 3, 11) })
	}
}

// TestDropoutTraining checks the inverted-dropout mask: kept values are scaled by 1/(1-rate),
// the gradient flows through the same mask, and inference is the identity.
func TestDropoutTraining(t *testing.T) {
	d := &dropout{shape: []int{10000}, rate: 0.25}
	s := d.newState(env{rng: rand.New(rand.NewPCG(1, 2))})
	x := make([]float32, 10000)
	for i := range x {
		x[i] = 1
	}
	y := s.forward(x, 1, true)
	kept := 0
	for _, v := range y {
		switch v {
		case 0:
		case float32(1 / 0.75):
			kept++
		default:
			t.Fatalf("dropout output %v, want 0 or %v", v, 1/0.75)
		}
	}
	if frac := float64(kept) / 10000; math.Abs(frac-0.75) > 0.02 {
		t.Errorf("kept fraction %.3f, want about 0.75", frac)
	}
	dx := s.backward(x, nil, true)
	for i := range dx {
		if dx[i] != y[i] {
			t.Fatalf("dx[%d] = %v, want the mask value %v", i, dx[i], y[i])
		}
	}
	if got := s.forward(x, 1, false); &got[0] != &x[0] {
		t.Error("inference-time dropout copied or changed its input")
	}
}

func TestConvKnownValues(t *testing.T) {
	// A 3x3 image convolved with a 2x2 kernel of ones, valid padding, plus bias 0.5.
	c, err := newConv2D([]int{3, 3, 1}, 1, [2]int{2, 2}, [2]int{1, 1}, false, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.kernel.Data {
		c.kernel.Data[i] = 1
	}
	c.bias.Data[0] = 0.5
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	got := c.newState(env{}).forward(x, 1, false)
	want := []float32{12.5, 16.5, 24.5, 28.5}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("conv output %v, want %v", got, want)
		}
	}
	// Same padding with stride 2 on 3x3: output 2x2, padding 1 at the end (TensorFlow rule).
	c2, err := newConv2D([]int{3, 3, 1}, 1, [2]int{2, 2}, [2]int{2, 2}, true, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range c2.kernel.Data {
		c2.kernel.Data[i] = 1
	}
	got = c2.newState(env{}).forward(x, 1, false)
	want = []float32{12, 9, 15, 9}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("same-padded strided conv output %v, want %v", got, want)
		}
	}
}

func TestLossGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const n, k = 4, 5
	logits := make([]float32, n*k)
	for i := range logits {
		logits[i] = float32(rng.Float64()*4 - 2)
	}
	probs := make([]float32, n*k)
	for i := 0; i < n; i++ {
		softmax(probs[i*k:(i+1)*k], logits[i*k:(i+1)*k])
	}
	classes := []float32{0, 3, 4, 1}
	binary := make([]float32, n*k)
	sig := make([]float32, n*k)
	for i := range binary {
		binary[i] = float32(rng.IntN(2))
		sig[i] = sigmoid(logits[i])
	}
	tests := []struct {
		name       string
		fn         lossFunc
		in, target []float32
		fromLogits bool
	}{
		{"sparse CE from logits", sparseCE, logits, classes, true},
		{"sparse CE from probabilities", sparseCE, probs, classes, false},
		{"binary CE from logits", binaryCE, logits, binary, true},
		{"binary CE from probabilities", binaryCE, sig, binary, false},
		{"mse", meanSquared, logits, binary, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float32(nil), tt.in...)
			grad := make([]float32, len(in))
			scratch := make([]float32, len(in))
			tt.fn(grad, in, tt.target, n, tt.fromLogits)
			const eps = 1e-3
			for i := range in {
				orig := in[i]
				in[i] = orig + eps
				up := tt.fn(scratch, in, tt.target, n, tt.fromLogits)
				in[i] = orig - eps
				down := tt.fn(scratch, in, tt.target, n, tt.fromLogits)
				in[i] = orig
				numeric := (up - down) / (2 * eps)
				if math.Abs(float64(grad[i])-numeric) > 1e-3+1e-2*math.Abs(numeric) {
					t.Errorf("d loss/d in[%d] = %.6f, finite difference %.6f", i, grad[i], numeric)
				}
			}
		})
	}
	// Fused and unfused cross-entropy agree on the value.
	g := make([]float32, n*k)
	a, b := sparseCE(g, logits, classes, n, true), sparseCE(g, probs, classes, n, false)
	if math.Abs(a-b) > 1e-5 {
		t.Errorf("cross-entropy from logits %.7f, from probabilities %.7f", a, b)
	}
}

func TestOptimizersMatchKeras(t *testing.T) {
	// One parameter w = 1 with gradient 0.5 for three steps; expected values computed from
	// Keras's update rules by hand (see optim.go).
	tests := []struct {
		cfg  OptimizerConfig
		want []float64
	}{
		{OptimizerConfig{Name: "sgd", LearningRate: 0.1}, []float64{0.95, 0.9, 0.85}},
		{OptimizerConfig{Name: "sgd", LearningRate: 0.1, Momentum: 0.9}, []float64{0.95, 0.855, 0.7195}},
		{OptimizerConfig{Name: "sgd", LearningRate: 0.1, Momentum: 0.9, Nesterov: true}, []float64{0.905, 0.7695, 0.59755}},
		// Adam with constant gradients: each step moves by lr·(1-β1^t)/(1-β1^t)·g/(|g|+ε') ≈ lr.
		{OptimizerConfig{Name: "adam", LearningRate: 0.01}, []float64{0.99, 0.98, 0.97}},
	}
	for _, tt := range tests {
		t.Run(tt.cfg.Name, func(t *testing.T) {
			cfg, err := tt.cfg.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			p := &Param{Name: "w", Shape: []int{1}, Data: []float32{1}}
			o := newOptimizer(cfg, []*Param{p})
			for step, want := range tt.want {
				o.step([]*Param{p}, [][]float32{{0.5}})
				if math.Abs(float64(p.Data[0])-want) > 1e-5 {
					t.Fatalf("after step %d: w = %.6f, want %.6f", step+1, p.Data[0], want)
				}
			}
		})
	}
}
