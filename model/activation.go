package model

import (
	"math"
	"slices"
)

// activation applies an element-wise function, or softmax over the last dimension.
type activation struct {
	fn    string // relu, tanh, sigmoid, softmax, linear
	shape []int
}

func newActivation(fn string, in []int) *activation {
	return &activation{fn: fn, shape: slices.Clone(in)}
}

func (a *activation) kind() string         { return a.fn }
func (a *activation) outShape() []int      { return a.shape }
func (a *activation) params() []*Param     { return nil }
func (a *activation) newState(e env) state { return &activationState{a: a, env: e} }

type activationState struct {
	env
	a     *activation
	y, dx []float32
}

func (s *activationState) forward(x []float32, n int, train bool) []float32 {
	s.y = grow(s.y, len(x))
	y := s.y
	switch s.a.fn {
	case "relu":
		s.parallelFor(len(x)/chunk+1, chunk, func(lo, hi int) {
			lo, hi = lo*chunk, min(hi*chunk, len(x))
			relu(y[lo:hi], x[lo:hi])
		})
	case "tanh":
		for i, v := range x {
			y[i] = tanhf(v)
		}
	case "sigmoid":
		for i, v := range x {
			y[i] = sigmoidf(v)
		}
	case "softmax":
		last := s.a.shape[len(s.a.shape)-1]
		for r := 0; r < len(x); r += last {
			softmax(y[r:r+last], x[r:r+last])
		}
	default:
		copy(y, x)
	}
	return y
}

func (s *activationState) backward(dy []float32, _ [][]float32, needDX bool) []float32 {
	if !needDX {
		return nil
	}
	s.dx = grow(s.dx, len(dy))
	dx, y := s.dx, s.y
	switch s.a.fn {
	case "relu":
		s.parallelFor(len(dy)/chunk+1, chunk, func(lo, hi int) {
			lo, hi = lo*chunk, min(hi*chunk, len(dy))
			reluBackward(dx[lo:hi], dy[lo:hi], y[lo:hi])
		})
	case "tanh":
		for i, v := range dy {
			dx[i] = v * (1 - y[i]*y[i])
		}
	case "sigmoid":
		for i, v := range dy {
			dx[i] = v * y[i] * (1 - y[i])
		}
	case "softmax":
		last := s.a.shape[len(s.a.shape)-1]
		for r := 0; r < len(dy); r += last {
			var dot float32
			for j := r; j < r+last; j++ {
				dot += dy[j] * y[j]
			}
			for j := r; j < r+last; j++ {
				dx[j] = y[j] * (dy[j] - dot)
			}
		}
	default:
		copy(dx, dy)
	}
	return dx
}

func sigmoid(v float32) float32 {
	if v >= 0 {
		return float32(1 / (1 + math.Exp(-float64(v))))
	}
	e := math.Exp(float64(v))
	return float32(e / (1 + e))
}

// softmax writes the softmax of x into y (which may alias x), computed stably.
func softmax(y, x []float32) {
	m := slices.Max(x)
	var sum float64
	for i, v := range x {
		e := math.Exp(float64(v - m))
		y[i] = float32(e)
		sum += e
	}
	inv := float32(1 / sum)
	for i := range y {
		y[i] *= inv
	}
}

func sqrt64(v float64) float64 { return math.Sqrt(v) }

// chunk is the grain of parallel element-wise loops.
const chunk = 1 << 14

// reluBackward sets dx = dy where y > 0 and 0 elsewhere, without branches: ReLU outputs are
// never negative, so y > 0 exactly when y's bits are non-zero.
func reluBackward(dx, dy, y []float32) {
	dy, y = dy[:len(dx)], y[:len(dx)]
	for i := range dx {
		b := math.Float32bits(y[i])
		mask := uint32(int32(b|-b) >> 31)
		dx[i] = math.Float32frombits(math.Float32bits(dy[i]) & mask)
	}
}

// relu sets y = max(x, 0) without branches: a set sign bit makes the mask clear every bit
// (so -0 and negative values become +0; NaNs with the sign bit clear pass through).
func relu(y, x []float32) {
	x = x[:len(y)]
	for i, v := range x {
		b := math.Float32bits(v)
		y[i] = math.Float32frombits(b &^ uint32(int32(b)>>31))
	}
}
