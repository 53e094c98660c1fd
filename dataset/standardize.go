package dataset

import (
	"fmt"
	"math"
)

// Standardizer scales each feature to zero mean and unit variance using statistics fitted
// on a training set. It is a plain value, safe for concurrent use once fitted.
type Standardizer struct {
	Mean, Std []float32
}

// FitStandardizer computes each feature's mean and (population) standard deviation over
// the samples of train; a feature is a position within a sample, so width is train.Size().
// A constant feature gets Std 1, so Apply maps it to 0.
func FitStandardizer(train *Set) Standardizer {
	width := train.Size()
	n := train.Len()
	sum := make([]float64, width)
	lo := make([]float32, width)
	hi := make([]float32, width)
	for i := range n {
		row := train.X[i*width : (i+1)*width]
		for j, v := range row {
			sum[j] += float64(v)
			if i == 0 || v < lo[j] {
				lo[j] = v
			}
			if i == 0 || v > hi[j] {
				hi[j] = v
			}
		}
	}
	z := Standardizer{Mean: make([]float32, width), Std: make([]float32, width)}
	sq := make([]float64, width)
	mean := make([]float64, width)
	for j := range width {
		if n > 0 {
			mean[j] = sum[j] / float64(n)
		}
	}
	for i := range n {
		row := train.X[i*width : (i+1)*width]
		for j, v := range row {
			d := float64(v) - mean[j]
			sq[j] += d * d
		}
	}
	for j := range width {
		z.Mean[j] = float32(mean[j])
		z.Std[j] = 1
		if n > 0 && lo[j] != hi[j] {
			z.Std[j] = float32(math.Sqrt(sq[j] / float64(n)))
		}
		if lo[j] == hi[j] {
			z.Mean[j] = lo[j] // exact, so Apply gives exactly 0
		}
	}
	return z
}

// Apply standardizes s in place: x = (x - Mean) / Std per feature. It returns an error
// wrapping ErrShape if the widths differ.
func (z Standardizer) Apply(s *Set) error {
	width := s.Size()
	if len(z.Mean) != width || len(z.Std) != width {
		return fmt.Errorf("standardize %q: %w: %d values per sample, want %d (mean) and %d (std) as fitted", s.Name, ErrShape, width, len(z.Mean), len(z.Std))
	}
	if width == 0 {
		return nil
	}
	inv := make([]float32, width)
	for j, sd := range z.Std {
		inv[j] = 1 / sd
	}
	for i := 0; i+width <= len(s.X); i += width {
		row := s.X[i : i+width]
		for j := range row {
			row[j] = (row[j] - z.Mean[j]) * inv[j]
		}
	}
	return nil
}
