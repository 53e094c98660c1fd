package model

import "math/rand/v2"

// Param is one named parameter tensor of a layer, stored row-major.
type Param struct {
	Name  string // e.g. "kernel", "bias"; Sequential.Params prefixes "layers.{i}."
	Shape []int
	Data  []float32
}

// layer is one stage of a Sequential model. A layer owns its parameters, which Forward only
// reads; all per-call buffers live in a state made by newState, so one layer serves many
// concurrent inference calls.
type layer interface {
	kind() string
	outShape() []int
	params() []*Param
	newState(rng *rand.Rand) state
}

// state holds one caller's buffers for one layer.
type state interface {
	// forward returns the layer's output for a batch of n samples stored contiguously in x.
	// The result is owned by the state and valid until the next call to forward. When train
	// is true, the state keeps what backward needs and dropout is active.
	forward(x []float32, n int, train bool) []float32
	// backward takes dL/dy for the last forward call, adds dL/dθ into grads (one slice per
	// param, in params order) and returns dL/dx, or nil when needDX is false.
	backward(dy []float32, grads [][]float32, needDX bool) []float32
}

// grow returns buf resliced to n elements, reallocating only when it is too small.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

func prod(shape []int) int {
	p := 1
	for _, d := range shape {
		p *= d
	}
	return p
}

// glorotUniform fills w with U(-l, l), l = sqrt(6/(fanIn+fanOut)), Keras's default kernel
// initialiser.
func glorotUniform(rng *rand.Rand, w []float32, fanIn, fanOut int) {
	limit := sqrt64(6 / float64(fanIn+fanOut))
	for i := range w {
		w[i] = float32((rng.Float64()*2 - 1) * limit)
	}
}
