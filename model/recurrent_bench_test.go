package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// benchRecurrent times one training forward and backward pass of a recurrent layer on a batch
// of 32 MNIST-shaped sequences (28 steps of 28 features) with 128 units, without dL/dx as for
// a first layer.
func benchRecurrent(b *testing.B, kind string) {
	const n, steps, in, units = 32, 28, 28, 128
	l, err := newRecurrent(kind, []int{steps, in}, units, "tanh", false, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	x := make([]float32, n*steps*in)
	for i := range x {
		x[i] = rng.Float32()
	}
	dy := make([]float32, n*units)
	for i := range dy {
		dy[i] = rng.Float32() - 0.5
	}
	var grads [][]float32
	for _, p := range l.params() {
		grads = append(grads, make([]float32, len(p.Data)))
	}
	s := l.newState(env{})
	b.ReportAllocs()
	for b.Loop() {
		s.forward(x, n, true)
		s.backward(dy, grads, false)
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "samples/s")
}

func BenchmarkSimpleRNNForwardBackward(b *testing.B) { benchRecurrent(b, "simple_rnn") }
func BenchmarkLSTMForwardBackward(b *testing.B)      { benchRecurrent(b, "lstm") }
func BenchmarkGRUForwardBackward(b *testing.B)       { benchRecurrent(b, "gru") }

// BenchmarkRecurrentTrainStep times a whole Trainer.Step (forward, loss, backward, Adam) of the
// catalogue's rnn, lstm and gru architectures on MNIST-shaped sequences at batch 32; 60,000
// divided by samples/s estimates the seconds of one MNIST epoch.
func BenchmarkRecurrentTrainStep(b *testing.B) {
	for _, name := range []string{"rnn", "lstm", "gru"} {
		b.Run(name, func(b *testing.B) {
			const n = 32
			spec, err := Architecture(name, []int{28, 28}, 10)
			if err != nil {
				b.Fatal(err)
			}
			m, err := Build(spec, 1)
			if err != nil {
				b.Fatal(err)
			}
			tr, err := NewTrainer(m, DefaultTrainConfig())
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 3))
			x := make([]float32, n*28*28)
			for i := range x {
				x[i] = rng.Float32()
			}
			y := make([]float32, n)
			for i := range y {
				y[i] = float32(rng.IntN(10))
			}
			b.ReportAllocs()
			for b.Loop() {
				tr.Step(x, y, n)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

func BenchmarkFastTanh(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i)/512 - 4
	}
	var sink float32
	b.Run("tanhf", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				sink += tanhf(v)
			}
		}
	})
	b.Run("math.Tanh", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				sink += float32(math.Tanh(float64(v)))
			}
		}
	})
	b.Run("sigmoidf", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				sink += sigmoidf(v)
			}
		}
	})
	b.Run("sigmoid", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				sink += sigmoid(v)
			}
		}
	})
	_ = sink
}
