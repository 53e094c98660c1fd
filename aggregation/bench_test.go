package aggregation_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

// seedCNNParams is the parameter count of the seed CNN (model.Architecture("cnn", ...)).
const seedCNNParams = 347146

// benchUpdates returns n random updates of the seed CNN's size.
func benchUpdates(n int) []aggregation.Update {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	u := make([]aggregation.Update, n)
	for i := range u {
		d := make([]float32, seedCNNParams)
		for j := range d {
			d[j] = float32(r.NormFloat64() * 0.01)
		}
		u[i] = aggregation.Update{Client: fmt.Sprint("h", i), Delta: d, Samples: 100 + i}
	}
	return u
}

func benchAggregator(b *testing.B, agg func([]aggregation.Update) error) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprint("n=", n), func(b *testing.B) {
			u := benchUpdates(n)
			b.SetBytes(int64(4 * n * seedCNNParams))
			b.ReportAllocs()
			for b.Loop() {
				if err := agg(u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWeightedMean(b *testing.B) {
	benchAggregator(b, func(u []aggregation.Update) error { _, err := aggregation.WeightedMean(u); return err })
}

func BenchmarkMedian(b *testing.B) {
	benchAggregator(b, func(u []aggregation.Update) error { _, err := aggregation.Median(u); return err })
}

func BenchmarkTrimmedMean(b *testing.B) {
	benchAggregator(b, func(u []aggregation.Update) error { _, err := aggregation.TrimmedMean(u, 0.1); return err })
}

func BenchmarkKrum(b *testing.B) {
	benchAggregator(b, func(u []aggregation.Update) error {
		f := (len(u) - 3) / 2 // the most Byzantine updates Krum tolerates
		_, _, err := aggregation.Krum(u, f, len(u)-f)
		return err
	})
}

func BenchmarkServerOptimizerApply(b *testing.B) {
	for _, name := range []string{"fedavg", "fedadam"} {
		b.Run(name, func(b *testing.B) {
			o, err := aggregation.NewServerOptimizer(aggregation.ServerConfig{Name: name}, seedCNNParams)
			if err != nil {
				b.Fatal(err)
			}
			x := make([]float32, seedCNNParams)
			d := benchUpdates(1)[0].Delta
			for b.Loop() {
				if err := o.Apply(x, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
