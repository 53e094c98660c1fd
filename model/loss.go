package model

import (
	"fmt"
	"math"
)

// Loss names, as used in TrainConfig.
const (
	SparseCategoricalCrossentropy = "sparse_categorical_crossentropy"
	BinaryCrossentropy            = "binary_crossentropy"
	MeanSquaredError              = "mse"
)

// lossFunc computes the mean loss over a batch and writes dL/d(input) into grad. fromLogits
// tells whether in holds pre-activation values (the model's final softmax or sigmoid was fused
// into the loss) or the model's outputs.
type lossFunc func(grad, in, target []float32, n int, fromLogits bool) float64

func lossByName(name string) (lossFunc, string, error) {
	switch name {
	case SparseCategoricalCrossentropy, "":
		return sparseCE, "softmax", nil
	case BinaryCrossentropy:
		return binaryCE, "sigmoid", nil
	case MeanSquaredError:
		return meanSquared, "", nil
	}
	return nil, "", fmt.Errorf("unknown loss %q, want %s, %s or %s", name, SparseCategoricalCrossentropy, BinaryCrossentropy, MeanSquaredError)
}

const probEpsilon = 1e-7 // Keras's clipping of probabilities inside log

// sparseCE is the cross-entropy of integer class targets; with fromLogits it is fused with
// softmax, whose gradient is then softmax(z) - onehot(y).
func sparseCE(grad, in, target []float32, n int, fromLogits bool) float64 {
	classes := len(in) / n
	var total float64
	inv := float32(1) / float32(n)
	for i := 0; i < n; i++ {
		row, g := in[i*classes:(i+1)*classes], grad[i*classes:(i+1)*classes]
		y := int(target[i])
		if y < 0 || y >= classes {
			panic(fmt.Sprintf("model: target %v outside [0, %d)", target[i], classes))
		}
		if fromLogits {
			softmax(g, row)
			total -= math.Log(max(float64(g[y]), 1e-30))
			for j := range g {
				g[j] *= inv
			}
			g[y] -= inv
			continue
		}
		p := min(max(float64(row[y]), probEpsilon), 1-probEpsilon)
		total -= math.Log(p)
		clear(g)
		g[y] = float32(-1 / p / float64(n))
	}
	return total / float64(n)
}

// binaryCE is the cross-entropy of targets in [0, 1] against one probability per output;
// with fromLogits it is fused with sigmoid, whose gradient is then sigmoid(z) - y.
func binaryCE(grad, in, target []float32, n int, fromLogits bool) float64 {
	if len(in) != len(target) {
		panic(fmt.Sprintf("model: binary cross-entropy of %d outputs against %d targets", len(in), len(target)))
	}
	var total float64
	inv := 1 / float64(len(in))
	for i, z := range in {
		y := float64(target[i])
		if fromLogits {
			zf := float64(z)
			total += max(zf, 0) - zf*y + math.Log1p(math.Exp(-math.Abs(zf)))
			grad[i] = float32((float64(sigmoid(z)) - y) * inv)
			continue
		}
		p := min(max(float64(z), probEpsilon), 1-probEpsilon)
		total -= y*math.Log(p) + (1-y)*math.Log(1-p)
		grad[i] = float32((p - y) / (p * (1 - p)) * inv)
	}
	return total * inv
}

// meanSquared is the mean over all outputs of (in - target)².
func meanSquared(grad, in, target []float32, n int, _ bool) float64 {
	if len(in) != len(target) {
		panic(fmt.Sprintf("model: mean squared error of %d outputs against %d targets", len(in), len(target)))
	}
	var total float64
	inv := 1 / float64(len(in))
	for i, v := range in {
		d := float64(v - target[i])
		total += d * d
		grad[i] = float32(2 * d * inv)
	}
	return total * inv
}
