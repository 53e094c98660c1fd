package model

import (
	"math/rand/v2"
	"testing"
)

func benchInput(n, size int) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n*size)
	for i := range x {
		x[i] = rng.Float32()
	}
	return x
}

// BenchmarkSeedCNNStep is one Adam step of the seed CNN at batch 32 (1875 steps make an
// MNIST epoch).
func BenchmarkSeedCNNStep(b *testing.B) {
	spec, _ := Architecture("cnn", []int{28, 28, 1}, 10)
	m, _ := Build(spec, 1)
	tr, _ := NewTrainer(m, DefaultTrainConfig())
	x := benchInput(32, 784)
	y := make([]float32, 32)
	for i := range y {
		y[i] = float32(i % 10)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Step(x, y, 32)
	}
	b.ReportMetric(float64(b.N*32)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkSeedCNNPredict is inference at batch 256.
func BenchmarkSeedCNNPredict(b *testing.B) {
	spec, _ := Architecture("cnn", []int{28, 28, 1}, 10)
	m, _ := Build(spec, 1)
	x := benchInput(256, 784)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Predict(x, 256)
	}
	b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkLayers times one forward and backward pass of each layer at batch 32 (the
// recurrent layers are in recurrent_bench_test.go).
func BenchmarkLayers(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	conv, _ := newConv2D([]int{28, 28, 1}, 32, [2]int{3, 3}, [2]int{1, 1}, false, rng)
	conv2, _ := newConv2D([]int{13, 13, 32}, 64, [2]int{3, 3}, [2]int{1, 1}, true, rng)
	pool, _ := newMaxPool2D([]int{26, 26, 32}, [2]int{2, 2}, [2]int{2, 2})
	cases := []struct {
		name string
		l    layer
		in   []int
	}{
		{"dense5408x64", newDense(5408, 64, rng), []int{5408}},
		{"dense64x10", newDense(64, 10, rng), []int{64}},
		{"conv2d28x28x1_32_3x3", conv, []int{28, 28, 1}},
		{"conv2d13x13x32_64_3x3same", conv2, []int{13, 13, 32}},
		{"maxpool26x26x32", pool, []int{26, 26, 32}},
		{"relu26x26x32", newActivation("relu", []int{26, 26, 32}), []int{26, 26, 32}},
		{"tanh128", newActivation("tanh", []int{128}), []int{128}},
		{"sigmoid128", newActivation("sigmoid", []int{128}), []int{128}},
		{"softmax10", newActivation("softmax", []int{10}), []int{10}},
		{"flatten13x13x32", &flatten{out: []int{5408}}, []int{13, 13, 32}},
		{"dropout5408", &dropout{shape: []int{5408}, rate: 0.5}, []int{5408}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			const n = 32
			s := c.l.newState(env{rng: rand.New(rand.NewPCG(1, 1))})
			x := benchInput(n, prod(c.in))
			var grads [][]float32
			for _, p := range c.l.params() {
				grads = append(grads, make([]float32, len(p.Data)))
			}
			dy := benchInput(n, prod(c.l.outShape()))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.forward(x, n, true)
				s.backward(dy, grads, true)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
