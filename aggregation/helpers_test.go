package aggregation_test

import (
	"math"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

// approxEqual reports whether got and want have the same length and agree within tol,
// relative to max(1, |want|).
func approxEqual(got, want []float32, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > tol*math.Max(1, math.Abs(float64(want[i]))) {
			return false
		}
	}
	return true
}

func checkVec(t *testing.T, got, want []float32) {
	t.Helper()
	if !approxEqual(got, want, 1e-6) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// three is the running example: deltas (1,2), (3,4), (5,-6) from 1, 2 and 3 samples.
func three() []aggregation.Update {
	return []aggregation.Update{
		{Client: "a", Delta: []float32{1, 2}, Samples: 1},
		{Client: "b", Delta: []float32{3, 4}, Samples: 2},
		{Client: "c", Delta: []float32{5, -6}, Samples: 3},
	}
}

// vectors wraps plain vectors as updates of one sample each.
func vectors(vs ...[]float32) []aggregation.Update {
	u := make([]aggregation.Update, len(vs))
	for i, v := range vs {
		u[i] = aggregation.Update{Delta: v, Samples: 1}
	}
	return u
}

func nan() float64 { return math.NaN() }
