package model

import (
	"math/rand/v2"
)

// dense is y = x·W + b.
type dense struct {
	in, units int
	w, b      Param
}

func newDense(in, units int, rng *rand.Rand) *dense {
	d := &dense{in: in, units: units,
		w: Param{Name: "kernel", Shape: []int{in, units}},
		b: Param{Name: "bias", Shape: []int{units}},
	}
	if rng != nil {
		d.w.Data = make([]float32, in*units)
		d.b.Data = make([]float32, units)
		glorotUniform(rng, d.w.Data, in, units)
	}
	return d
}

func (d *dense) kind() string         { return "dense" }
func (d *dense) outShape() []int      { return []int{d.units} }
func (d *dense) params() []*Param     { return []*Param{&d.w, &d.b} }
func (d *dense) newState(e env) state { return &denseState{d: d, env: e} }

type denseState struct {
	env
	d     *dense
	x     []float32 // input of the last forward
	n     int
	y, dx []float32
}

func (s *denseState) forward(x []float32, n int, _ bool) []float32 {
	d := s.d
	s.y = grow(s.y, n*d.units)
	for i := 0; i < n; i++ {
		copy(s.y[i*d.units:(i+1)*d.units], d.b.Data)
	}
	s.sgemm(false, false, n, d.units, d.in, 1, x, d.in, d.w.Data, d.units, 1, s.y, d.units)
	s.n, s.x = n, x // kept also at inference, for input gradients (explanations)
	return s.y
}

func (s *denseState) backward(dy []float32, grads [][]float32, needDX bool) []float32 {
	d, n := s.d, s.n
	s.sgemm(true, false, d.in, d.units, n, 1, s.x, d.in, dy, d.units, 1, grads[0], d.units)
	gb := grads[1]
	for i := 0; i < n; i++ {
		for j, v := range dy[i*d.units : (i+1)*d.units] {
			gb[j] += v
		}
	}
	if !needDX {
		return nil
	}
	s.dx = grow(s.dx, n*d.in)
	s.sgemm(false, true, n, d.in, d.units, 1, dy, d.units, d.w.Data, d.units, 0, s.dx, d.in)
	return s.dx
}
