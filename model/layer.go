package model

import (
	"math/rand/v2"

	"github.com/medfed/medfed/internal/gemm"
)

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
	newState(e env) state
}

// env is what a layer state takes from its caller: the random source of dropout masks, and
// whether to keep all work on the calling goroutine (serial), which the trainer asks for when
// it already runs one shard of the batch on every core.
type env struct {
	rng    *rand.Rand
	serial bool
}

// sgemm is gemm.Sgemm, or gemm.SgemmSerial in a serial env.
func (e env) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if e.serial {
		gemm.SgemmSerial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	gemm.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// parallelFor is the package's parallelFor, or a plain call in a serial env.
func (e env) parallelFor(n, cost int, fn func(lo, hi int)) {
	if e.serial {
		fn(0, n)
		return
	}
	parallelFor(n, cost, fn)
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
