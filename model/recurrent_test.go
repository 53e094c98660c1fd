package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// checkRecurrentGrad compares a layer's backward pass with central finite differences of
// L = Σ r·y for a fixed random r, for every parameter element and every input element. The
// parameters are first set to random values (biases included), so every term is exercised.
// The forward pass is float32 and the differences are taken in float64.
func checkRecurrentGrad(t *testing.T, l layer, n int, eps float64, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	uniform := func(v []float32, scale float64) {
		for i := range v {
			v[i] = float32((rng.Float64()*2 - 1) * scale)
		}
	}
	params := l.params()
	for _, p := range params {
		uniform(p.Data, 0.6)
	}
	inSize := 0
	if r, ok := l.(*recurrent); ok {
		inSize = r.steps * r.in
	}
	x := make([]float32, n*inSize)
	uniform(x, 1)
	r := make([]float32, n*prod(l.outShape()))
	uniform(r, 1)

	s := l.newState(env{})
	loss := func() float64 {
		var sum float64
		for i, v := range s.forward(x, n, false) {
			sum += float64(r[i]) * float64(v)
		}
		return sum
	}
	grads := make([][]float32, len(params))
	for i, p := range params {
		grads[i] = make([]float32, len(p.Data))
	}
	s.forward(x, n, true)
	dx := slices.Clone(s.backward(slices.Clone(r), grads, true))

	check := func(what string, v, analytic []float32) {
		t.Helper()
		bad := 0
		for i := range v {
			orig := v[i]
			v[i] = orig + float32(eps)
			up := loss()
			v[i] = orig - float32(eps)
			down := loss()
			v[i] = orig
			// The perturbation actually applied, after rounding to float32.
			h := float64(orig+float32(eps)) - float64(orig-float32(eps))
			numeric := (up - down) / h
			got := float64(analytic[i])
			if math.Abs(got-numeric) > 1e-3+1e-2*math.Max(math.Abs(got), math.Abs(numeric)) {
				if bad++; bad <= 5 {
					t.Errorf("d%s[%d]: backward %.6f, finite difference %.6f", what, i, got, numeric)
				}
			}
		}
		if bad > 5 {
			t.Errorf("d%s: %d of %d elements wrong", what, bad, len(v))
		}
	}
	for i, p := range params {
		check(p.Name, p.Data, grads[i])
	}
	check("x", x, dx)
}

func TestRecurrentGradients(t *testing.T) {
	const steps, in, units, n = 4, 3, 5, 2
	for _, kind := range []string{"simple_rnn/tanh", "simple_rnn/relu", "lstm", "gru"} {
		for _, seq := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/seq=%v", kind, seq), func(t *testing.T) {
				typ, act, _ := strings.Cut(kind, "/")
				if act == "" {
					act = "tanh"
				}
				l, err := newRecurrent(typ, []int{steps, in}, units, act, seq, rand.New(rand.NewPCG(1, 2)))
				if err != nil {
					t.Fatal(err)
				}
				eps := 1e-2
				if act == "relu" {
					eps = 2e-3 // stay clear of the kink
				}
				checkRecurrentGrad(t, l, n, eps, 3)
			})
		}
	}
}

// TestRecurrentGradientsAccumulate checks that backward adds into grads rather than
// overwriting them, as Trainer relies on when it clears grads once per step.
func TestRecurrentGradientsAccumulate(t *testing.T) {
	for _, kind := range []string{"simple_rnn", "lstm", "gru"} {
		t.Run(kind, func(t *testing.T) {
			l, err := newRecurrent(kind, []int{3, 2}, 4, "tanh", false, rand.New(rand.NewPCG(5, 6)))
			if err != nil {
				t.Fatal(err)
			}
			x := []float32{0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8, -0.9, 1, 0.2, -0.3}
			dy := []float32{1, -1, 0.5, 0.25, -0.5, 1, 2, -2}
			s := l.newState(env{})
			once := make([][]float32, 3)
			twice := make([][]float32, 3)
			for i, p := range l.params() {
				once[i] = make([]float32, len(p.Data))
				twice[i] = make([]float32, len(p.Data))
			}
			s.forward(x, 2, true)
			s.backward(dy, once, false)
			s.forward(x, 2, true)
			s.backward(dy, twice, false)
			s.backward(dy, twice, false)
			for i := range once {
				for j := range once[i] {
					if d := math.Abs(float64(twice[i][j] - 2*once[i][j])); d > 1e-5 {
						t.Fatalf("param %d[%d]: two backward calls gave %v, want 2×%v", i, j, twice[i][j], once[i][j])
					}
				}
			}
		})
	}
}

// TestSimpleRNNKnownValues runs a hand-set simple_rnn on two sequences:
//
//	W = [1 -1], U = [[0.5 0] [1 0.5]], b = [0 1], so h_t = act([x, -x+1] + [0.5a+b, 0.5b]).
func TestSimpleRNNKnownValues(t *testing.T) {
	x := []float32{1, 2, -1, 0, 0, 0} // two sequences of 3 steps, 1 feature
	th := math.Tanh
	// tanh: first sequence.
	a0, b0 := th(1), th(0)
	a1, b1 := th(2+0.5*a0+b0), th(-1+0.5*b0)
	a2, b2 := th(-1+0.5*a1+b1), th(2+0.5*b1)
	// tanh: second sequence.
	c0, d0 := th(0), th(1)
	c1, d1 := th(0.5*c0+d0), th(1+0.5*d0)
	c2, d2 := th(0.5*c1+d1), th(1+0.5*d1)
	tests := []struct {
		act  string
		seq  bool
		want []float64
	}{
		{"relu", true, []float64{1, 0, 2.5, 0, 0.25, 2, 0, 1, 1, 1.5, 2, 1.75}},
		{"relu", false, []float64{0.25, 2, 2, 1.75}},
		{"tanh", true, []float64{a0, b0, a1, b1, a2, b2, c0, d0, c1, d1, c2, d2}},
		{"tanh", false, []float64{a2, b2, c2, d2}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/seq=%v", tc.act, tc.seq), func(t *testing.T) {
			l, err := newRecurrent("simple_rnn", []int{3, 1}, 2, tc.act, tc.seq, rand.New(rand.NewPCG(1, 1)))
			if err != nil {
				t.Fatal(err)
			}
			r := l.(*recurrent)
			copy(r.kernel.Data, []float32{1, -1})
			copy(r.recurrent.Data, []float32{0.5, 0, 1, 0.5})
			copy(r.bias.Data, []float32{0, 1})
			got := l.newState(env{}).forward(x, 2, false)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d outputs, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				if math.Abs(float64(got[i])-w) > 1e-6 {
					t.Errorf("y[%d] = %v, want %v (all: %v)", i, got[i], w, got)
				}
			}
		})
	}
}

func TestRecurrentBuild(t *testing.T) {
	tests := []struct {
		layer     LayerSpec
		rnnParams int // Keras's count for the recurrent layer on 28 features
		out       []int
	}{
		{LayerSpec{Type: "simple_rnn", Units: 16}, 28*16 + 16*16 + 16, []int{16}},
		{LayerSpec{Type: "simple_rnn", Units: 16, Activation: "relu"}, 28*16 + 16*16 + 16, []int{16}},
		{LayerSpec{Type: "lstm", Units: 16}, 4 * (28*16 + 16*16 + 16), []int{16}},
		{LayerSpec{Type: "gru", Units: 16}, 3 * (28*16 + 16*16 + 2*16), []int{16}},
		{LayerSpec{Type: "gru", Units: 16, ReturnSequences: true}, 3 * (28*16 + 16*16 + 2*16), []int{28, 16}},
		{LayerSpec{Type: "lstm", Units: 16, ReturnSequences: true}, 4 * (28*16 + 16*16 + 16), []int{28, 16}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s/seq=%v", tc.layer.Type, tc.layer.Activation, tc.layer.ReturnSequences), func(t *testing.T) {
			spec := Spec{Input: []int{28, 28}, Layers: []LayerSpec{tc.layer}}
			if got, err := spec.OutputShape(); err != nil || !slices.Equal(got, tc.out) {
				t.Fatalf("OutputShape = %v, %v; want %v", got, err, tc.out)
			}
			if tc.layer.ReturnSequences {
				spec.Layers = append(spec.Layers, LayerSpec{Type: "flatten"})
			}
			spec.Layers = append(spec.Layers, LayerSpec{Type: "dense", Units: 10, Activation: "softmax"})
			m, err := Build(spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			head := prod(tc.out)*10 + 10
			if got, want := m.NumParams(), tc.rnnParams+head; got != want {
				t.Errorf("NumParams = %d, want %d", got, want)
			}
			gates := map[string]int{"simple_rnn": 1, "lstm": 4, "gru": 3}[tc.layer.Type]
			biasShape := []int{gates * 16}
			if tc.layer.Type == "gru" {
				biasShape = []int{2, 48}
			}
			wantParams := []struct {
				name  string
				shape []int
			}{
				{"layers.0.kernel", []int{28, gates * 16}},
				{"layers.0.recurrent_kernel", []int{16, gates * 16}},
				{"layers.0.bias", biasShape},
			}
			for i, w := range wantParams {
				p := m.Params()[i]
				if p.Name != w.name || !slices.Equal(p.Shape, w.shape) || len(p.Data) != prod(w.shape) {
					t.Errorf("param %d = %s %v (%d values), want %s %v", i, p.Name, p.Shape, len(p.Data), w.name, w.shape)
				}
			}
			const n = 3
			rng := rand.New(rand.NewPCG(2, 2))
			x := make([]float32, n*28*28)
			for i := range x {
				x[i] = rng.Float32()
			}
			probs := m.Predict(x, n)
			if len(probs) != n*10 {
				t.Fatalf("Predict returned %d values, want %d", len(probs), n*10)
			}
			for i := 0; i < n; i++ {
				var sum float64
				for _, p := range probs[i*10 : (i+1)*10] {
					if !(p >= 0 && p <= 1) {
						t.Errorf("sample %d: probability %v", i, p)
					}
					sum += float64(p)
				}
				if math.Abs(sum-1) > 1e-5 {
					t.Errorf("sample %d: probabilities sum to %v, want 1", i, sum)
				}
			}
		})
	}
}

func TestRecurrentArchitectures(t *testing.T) {
	for _, name := range []string{"rnn", "lstm", "gru"} {
		spec, err := Architecture(name, []int{28, 28, 1}, 10)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := Build(spec, 1); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestNewRecurrentErrors(t *testing.T) {
	tests := []struct {
		kind, act string
		in        []int
		units     int
	}{
		{"gru", "tanh", []int{28}, 4},
		{"gru", "tanh", []int{28, 0}, 4},
		{"gru", "tanh", []int{28, 28}, 0},
		{"gru", "relu", []int{28, 28}, 4},
		{"lstm", "sigmoid", []int{28, 28}, 4},
		{"simple_rnn", "sigmoid", []int{28, 28}, 4},
		{"rnn", "tanh", []int{28, 28}, 4},
	}
	for _, tc := range tests {
		if _, err := newRecurrent(tc.kind, tc.in, tc.units, tc.act, false, nil); err == nil {
			t.Errorf("newRecurrent(%q, %v, %d, %q) succeeded, want an error", tc.kind, tc.in, tc.units, tc.act)
		}
	}
	spec := Spec{Input: []int{5, 3}, Layers: []LayerSpec{{Type: "simple_rnn", Units: 4, Activation: "sigmoid"}}}
	if err := spec.Validate(); err == nil {
		t.Errorf("simple_rnn with sigmoid validated, want an error")
	}
}

func TestRecurrentInit(t *testing.T) {
	for _, kind := range []string{"simple_rnn", "lstm", "gru"} {
		t.Run(kind, func(t *testing.T) {
			const in, units = 7, 12
			shapeOnly, err := newRecurrent(kind, []int{5, in}, units, "tanh", false, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range shapeOnly.params() {
				if p.Data != nil {
					t.Errorf("nil rng: %s has %d values allocated, want none", p.Name, len(p.Data))
				}
			}
			build := func(seed uint64) *recurrent {
				l, err := newRecurrent(kind, []int{5, in}, units, "tanh", false, rand.New(rand.NewPCG(seed, 9)))
				if err != nil {
					t.Fatal(err)
				}
				return l.(*recurrent)
			}
			r := build(1)
			if again := build(1); !slices.Equal(r.kernel.Data, again.kernel.Data) || !slices.Equal(r.recurrent.Data, again.recurrent.Data) {
				t.Errorf("two layers from the same seed differ")
			}
			if other := build(2); slices.Equal(r.recurrent.Data, other.recurrent.Data) {
				t.Errorf("layers from different seeds have the same recurrent kernel")
			}
			gu := r.gates * units
			limit := float32(math.Sqrt(6 / float64(in+units))) // Glorot over one gate's [in, units]
			var peak float32
			for i, v := range r.kernel.Data {
				if v < -limit || v > limit {
					t.Fatalf("kernel[%d] = %v outside the per-gate Glorot limit %v", i, v, limit)
				}
				peak = max(peak, v, -v)
			}
			if peak < 0.9*limit {
				t.Errorf("kernel values within %v of a Glorot limit %v: drawn with the fused matrix's fans?", peak, limit)
			}
			// Each gate's [units, units] block of the recurrent kernel is orthogonal.
			U := r.recurrent.Data
			for g := range r.gates {
				for a := 0; a < units; a++ {
					for b := 0; b < units; b++ {
						var dot float64
						for j := g * units; j < (g+1)*units; j++ {
							dot += float64(U[a*gu+j]) * float64(U[b*gu+j])
						}
						want := 0.0
						if a == b {
							want = 1
						}
						if math.Abs(dot-want) > 1e-5 {
							t.Fatalf("gate %d: row %d · row %d of the recurrent block = %v, want %v", g, a, b, dot, want)
						}
					}
				}
			}
			for j, v := range r.bias.Data {
				want := float32(0)
				if kind == "lstm" && j >= units && j < 2*units {
					want = 1 // unit_forget_bias
				}
				if v != want {
					t.Fatalf("bias[%d] = %v, want %v", j, v, want)
				}
			}
		})
	}
}

// TestRecurrentStateReuse checks that one state gives the same results across batch sizes
// and between training and inference forwards.
func TestRecurrentStateReuse(t *testing.T) {
	for _, kind := range []string{"simple_rnn", "lstm", "gru"} {
		l, err := newRecurrent(kind, []int{4, 3}, 5, "tanh", true, rand.New(rand.NewPCG(3, 3)))
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(4, 4))
		x := make([]float32, 3*4*3)
		for i := range x {
			x[i] = rng.Float32()*2 - 1
		}
		want := slices.Clone(l.newState(env{}).forward(x, 3, false))
		s := l.newState(env{})
		s.forward(x, 3, true)
		s.forward(x[:2*12], 2, false)
		got := s.forward(x, 3, true)
		if !slices.Equal(got, want) {
			t.Errorf("%s: reused state gave %v, want %v", kind, got, want)
		}
		// The last sample alone matches its row in the batch.
		if one := s.forward(x[2*12:], 1, false); !slices.Equal(one, want[2*20:]) {
			t.Errorf("%s: sample alone gave %v, want %v", kind, one, want[2*20:])
		}
	}
}

func TestFastMath(t *testing.T) {
	for x := -30.0; x <= 30; x += 0.001 {
		x32 := float32(x)
		xf := float64(x32)
		if got, want := float64(tanhf(x32)), math.Tanh(xf); math.Abs(got-want) > 2e-7+4e-7*math.Abs(want) {
			t.Fatalf("tanhf(%v) = %v, want %v", x32, got, want)
		}
		want := 1 / (1 + math.Exp(-xf))
		if got := float64(sigmoidf(x32)); math.Abs(got-want) > 2e-7+4e-7*want {
			t.Fatalf("sigmoidf(%v) = %v, want %v", x32, got, want)
		}
	}
	for _, x := range []float32{1e-30, -1e-30, 1e-5, -1e-5, 0.3, -0.7} {
		if got, want := float64(tanhf(x)), math.Tanh(float64(x)); math.Abs(got-want) > 4e-7*math.Abs(want) {
			t.Errorf("tanhf(%v) = %v, want %v", x, got, want)
		}
	}
	for _, x := range []float32{-1000, -100, 100, 1000, float32(math.Inf(1)), float32(math.Inf(-1))} {
		s, th := sigmoidf(x), tanhf(x)
		if math.IsNaN(float64(s)) || s < 0 || s > 1 || math.IsNaN(float64(th)) || th < -1 || th > 1 {
			t.Errorf("at %v: sigmoidf %v, tanhf %v", x, s, th)
		}
	}
}

// TestRecurrentLearns trains small recurrent classifiers on whether a random sequence's sum
// is positive.
func TestRecurrentLearns(t *testing.T) {
	const steps, n = 8, 2048
	rng := rand.New(rand.NewPCG(11, 12))
	makeSet := func(n int) (x, y []float32) {
		x = make([]float32, n*steps)
		y = make([]float32, n)
		for i := 0; i < n; i++ {
			var sum float32
			for t := 0; t < steps; t++ {
				v := float32(rng.NormFloat64())
				x[i*steps+t] = v
				sum += v
			}
			if sum > 0 {
				y[i] = 1
			}
		}
		return x, y
	}
	x, y := makeSet(n)
	xTest, yTest := makeSet(1000)
	for _, kind := range []string{"simple_rnn", "lstm", "gru"} {
		t.Run(kind, func(t *testing.T) {
			spec := Spec{Input: []int{steps, 1}, Layers: []LayerSpec{
				{Type: kind, Units: 8},
				{Type: "dense", Units: 2, Activation: "softmax"},
			}}
			m, err := Build(spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			cfg := DefaultTrainConfig()
			cfg.Optimizer.LearningRate = 0.01
			tr, err := NewTrainer(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			const batch = 32
			for step := 0; step < 400; step++ {
				lo := (step * batch) % n
				tr.Step(x[lo*steps:(lo+batch)*steps], y[lo:lo+batch], batch)
			}
			_, acc, err := m.Evaluate(xTest, yTest, 1000, SparseCategoricalCrossentropy)
			if err != nil {
				t.Fatal(err)
			}
			if acc < 0.9 {
				t.Errorf("accuracy %.3f after 400 steps, want > 0.9", acc)
			}
			t.Logf("%s: test accuracy %.3f", kind, acc)
		})
	}
}

// refRecurrent is a direct float64 transcription of Keras's cell equations for one sequence,
// with gate g of unit j in column g*units+j of the kernels.
func refRecurrent(r *recurrent, x []float32) (seq [][]float64) {
	u, gu := r.units, r.gates*r.units
	W, U, B := r.kernel.Data, r.recurrent.Data, r.bias.Data
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	// xw is x_t·W[:, col] + b[col]; hu is h·U[:, col] (plus the recurrent bias for gru).
	xw := func(t, col int) float64 {
		v := float64(B[col])
		for f := 0; f < r.in; f++ {
			v += float64(x[t*r.in+f]) * float64(W[f*gu+col])
		}
		return v
	}
	hu := func(h []float64, col int) float64 {
		v := 0.0
		if r.cell == "gru" {
			v = float64(B[gu+col])
		}
		for k := 0; k < u; k++ {
			v += h[k] * float64(U[k*gu+col])
		}
		return v
	}
	h, c := make([]float64, u), make([]float64, u)
	for t := 0; t < r.steps; t++ {
		next := make([]float64, u)
		for j := 0; j < u; j++ {
			switch r.cell {
			case "simple_rnn":
				next[j] = math.Tanh(xw(t, j) + hu(h, j))
			case "lstm":
				i := sig(xw(t, j) + hu(h, j))
				f := sig(xw(t, u+j) + hu(h, u+j))
				g := math.Tanh(xw(t, 2*u+j) + hu(h, 2*u+j))
				o := sig(xw(t, 3*u+j) + hu(h, 3*u+j))
				c[j] = f*c[j] + i*g
				next[j] = o * math.Tanh(c[j])
			case "gru":
				z := sig(xw(t, j) + hu(h, j))
				rr := sig(xw(t, u+j) + hu(h, u+j))
				hh := math.Tanh(xw(t, 2*u+j) + rr*hu(h, 2*u+j))
				next[j] = z*h[j] + (1-z)*hh
			}
		}
		h = next
		seq = append(seq, h)
	}
	return seq
}

// TestRecurrentMatchesKerasEquations checks the forward pass, and so the gate order and bias
// layout, against refRecurrent.
func TestRecurrentMatchesKerasEquations(t *testing.T) {
	const n, steps, in, units = 3, 5, 4, 6
	for _, kind := range []string{"simple_rnn", "lstm", "gru"} {
		for _, seq := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/seq=%v", kind, seq), func(t *testing.T) {
				l, err := newRecurrent(kind, []int{steps, in}, units, "tanh", seq, rand.New(rand.NewPCG(8, 8)))
				if err != nil {
					t.Fatal(err)
				}
				r := l.(*recurrent)
				rng := rand.New(rand.NewPCG(9, 9))
				for _, p := range r.params() {
					for i := range p.Data {
						p.Data[i] = float32(rng.Float64()*1.6 - 0.8)
					}
				}
				x := make([]float32, n*steps*in)
				for i := range x {
					x[i] = float32(rng.Float64()*2 - 1)
				}
				got := l.newState(env{}).forward(x, n, false)
				for i := 0; i < n; i++ {
					want := refRecurrent(r, x[i*steps*in:(i+1)*steps*in])
					if !seq {
						want = want[steps-1:]
					}
					for t2, hw := range want {
						for j, w := range hw {
							g := got[(i*len(want)+t2)*units+j]
							if math.Abs(float64(g)-w) > 2e-6 {
								t.Errorf("sample %d step %d unit %d: got %v, want %v", i, t2, j, g, w)
							}
						}
					}
				}
			})
		}
	}
}

// TestOrthogonal checks the initialiser on its own, for square, tall and wide matrices: the
// result has orthonormal columns (tall, square) or rows (wide) to 1e-5, it is Keras's
// construction (Q of the QR decomposition of the Gaussian matrix drawn from the seed, with
// the signs making R's diagonal positive), and it depends only on the seed.
func TestOrthogonal(t *testing.T) {
	tests := []struct{ rows, cols int }{{1, 1}, {6, 6}, {128, 128}, {20, 7}, {7, 20}, {128, 384}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%d", tt.rows, tt.cols), func(t *testing.T) {
			rows, cols := tt.rows, tt.cols
			gen := func(seed uint64) []float32 {
				w := make([]float32, rows*cols)
				orthogonal(rand.New(rand.NewPCG(seed, 3)), w, rows, cols)
				return w
			}
			w := gen(1)
			if again := gen(1); !slices.Equal(w, again) {
				t.Errorf("two matrices from seed 1 differ")
			}
			if rows*cols > 1 && slices.Equal(w, gen(2)) {
				t.Errorf("seeds 1 and 2 gave the same matrix")
			}
			// q is the long×short factor: w itself when tall, its transpose when wide.
			long, short := max(rows, cols), min(rows, cols)
			q := func(i, j int) float64 {
				if rows >= cols {
					return float64(w[i*cols+j])
				}
				return float64(w[j*cols+i])
			}
			for a := range short {
				for b := range short {
					var dot float64
					for i := range long {
						dot += q(i, a) * q(i, b)
					}
					want := 0.0
					if a == b {
						want = 1
					}
					if math.Abs(dot-want) > 1e-5 {
						t.Fatalf("(QᵀQ)[%d][%d] = %v, want %v", a, b, dot, want)
					}
				}
			}
			// R = QᵀA for the long×short Gaussian A drawn row-major from the same seed is upper
			// triangular with a positive diagonal.
			rng := rand.New(rand.NewPCG(1, 3))
			a := make([]float64, long*short)
			for i := range a {
				a[i] = rng.NormFloat64()
			}
			for k := range short {
				for j := range short {
					var r float64
					for i := range long {
						r += q(i, k) * a[i*short+j]
					}
					switch {
					case k == j && r <= 0:
						t.Fatalf("R[%d][%d] = %v, want > 0 (sign correction)", k, j, r)
					case k > j && math.Abs(r) > 1e-4:
						t.Fatalf("R[%d][%d] = %v below the diagonal, want 0", k, j, r)
					}
				}
			}
		})
	}
}
