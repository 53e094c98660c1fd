package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestKernelsMatchPortable checks the assembly kernels against the portable loops for lengths
// around the vector width, ties included.
func TestKernelsMatchPortable(t *testing.T) {
	if !hasAVX2() {
		t.Skip("no AVX2 and FMA on this CPU: only the portable kernels run")
	}
	rng := rand.New(rand.NewPCG(5, 5))
	for _, n := range []int{1, 7, 8, 9, 16, 31, 32, 33, 100} {
		y := make([]float32, n)
		row := make([]float32, n)
		for i := range y {
			y[i] = float32(rng.IntN(5))
			row[i] = float32(rng.IntN(5)) // many ties: the first maximum must win
		}
		idx := make([]int32, n)
		y2, idx2 := slices.Clone(y), slices.Clone(idx)
		maxStep(y, idx, row, 3)
		maxStepGo(y2, idx2, row, 3)
		if !slices.Equal(y, y2) || !slices.Equal(idx, idx2) {
			t.Errorf("n=%d: maxStep gave %v %v, portable %v %v", n, y, idx, y2, idx2)
		}

		w, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range w {
			w[i], g[i], m[i], v[i] = rng.Float32()-0.5, rng.Float32()-0.5, rng.Float32()*0.1, rng.Float32()*0.01
		}
		d1, d2 := make([]float32, n), make([]float32, n)
		a1, b1 := slices.Clone(w), slices.Clone(g)
		combine2(d1, a1, b1, 0.25, 0.75)
		a2, b2 := slices.Clone(w), slices.Clone(g)
		combine2Go(d2, a2, b2, 0.25, 0.75)
		for i := range d1 {
			if math.Abs(float64(d1[i]-d2[i])) > 1e-7 || a1[i] != 0 || b1[i] != 0 {
				t.Fatalf("n=%d: combine2 gave %v (inputs left %v %v), portable %v", n, d1[i], a1[i], b1[i], d2[i])
			}
		}
		w2, m2, v2 := slices.Clone(w), slices.Clone(m), slices.Clone(v)
		adamUpdate(w, g, m, v, 0.9, 0.999, 0.001, 1e-7)
		adamGo(w2, g, m2, v2, 0.9, 0.999, 0.001, 1e-7)
		for i := range w {
			if d := math.Abs(float64(w[i] - w2[i])); d > 1e-7 {
				t.Fatalf("n=%d: adam weight %d is %v, portable %v", n, i, w[i], w2[i])
			}
			if math.Abs(float64(m[i]-m2[i])) > 1e-7 || math.Abs(float64(v[i]-v2[i])) > 1e-8 {
				t.Fatalf("n=%d: adam moments %v %v, portable %v %v", n, m[i], v[i], m2[i], v2[i])
			}
		}
	}
}
