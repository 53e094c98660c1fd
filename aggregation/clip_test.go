package aggregation_test

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

func TestL2Norm(t *testing.T) {
	tests := []struct {
		name string
		v    []float32
		want float64
	}{
		{"empty", nil, 0},
		{"3-4-5", []float32{3, -4}, 5},
		{"odd length", []float32{1, 2, 2, 4, 4, 0, 0, 0, 0}, math.Sqrt(41)},
		// Squares of float32's largest values overflow float32 but not float64.
		{"no overflow", []float32{3e38, 4e38 / 2, 0, 0, 0}, math.Sqrt(9e76 + 4e76)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aggregation.L2Norm(tt.v); math.Abs(got-tt.want) > 1e-6*tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClipNorm(t *testing.T) {
	tests := []struct {
		name      string
		delta     []float32
		maxNorm   float64
		wantScale float64
		want      []float32
	}{
		{"clipped", []float32{3, -4}, 1, 0.2, []float32{0.6, -0.8}},
		{"clipped to 2.5", []float32{0, 6, 8, 0}, 2.5, 0.25, []float32{0, 1.5, 2, 0}},
		{"below", []float32{0.3, 0.4}, 1, 1, []float32{0.3, 0.4}},
		{"exactly at", []float32{3, 4}, 5, 1, []float32{3, 4}},
		{"zero disables", []float32{30, 40}, 0, 1, []float32{30, 40}},
		{"negative disables", []float32{30, 40}, -1, 1, []float32{30, 40}},
		{"infinite disables", []float32{30, 40}, math.Inf(1), 1, []float32{30, 40}},
		{"zero vector", []float32{0, 0}, 1, 1, []float32{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := slices.Clone(tt.delta)
			scale, err := aggregation.ClipNorm(d, tt.maxNorm)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(scale-tt.wantScale) > 1e-12 {
				t.Errorf("scale %v, want %v", scale, tt.wantScale)
			}
			checkVec(t, d, tt.want)
			if tt.wantScale < 1 {
				if n := aggregation.L2Norm(d); math.Abs(n-tt.maxNorm) > 1e-6*tt.maxNorm {
					t.Errorf("norm after clipping %v, want %v", n, tt.maxNorm)
				}
			}
		})
	}
}

func TestClipNormLarge(t *testing.T) {
	// The norm of sin(i) over 347146 values is about 417.
	for _, maxNorm := range []float64{1e-3, 0.5, 10, 400} {
		d := make([]float32, 347146)
		for i := range d {
			d[i] = float32(math.Sin(float64(i)))
		}
		if _, err := aggregation.ClipNorm(d, maxNorm); err != nil {
			t.Fatal(err)
		}
		if n := aggregation.L2Norm(d); math.Abs(n-maxNorm) > 1e-6*maxNorm {
			t.Errorf("maxNorm %v: norm after clipping %v", maxNorm, n)
		}
	}
}

func TestClipNormErrors(t *testing.T) {
	tests := []struct {
		name    string
		delta   []float32
		maxNorm float64
		want    error
	}{
		{"NaN value", []float32{1, float32(math.NaN())}, 1, aggregation.ErrNonFinite},
		{"Inf value", []float32{float32(math.Inf(1)), 1}, 1, aggregation.ErrNonFinite},
		{"Inf value, no clipping", []float32{float32(math.Inf(1))}, 0, aggregation.ErrNonFinite},
		{"NaN maxNorm", []float32{1}, math.NaN(), aggregation.ErrParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := slices.Clone(tt.delta)
			scale, err := aggregation.ClipNorm(d, tt.maxNorm)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got (%v, %v), want error %v", scale, err, tt.want)
			}
			if !slices.EqualFunc(d, tt.delta, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
				t.Errorf("delta changed to %v", d)
			}
		})
	}
}
