package model

import "math/rand/v2"

// flatten reshapes each sample to one dimension; the data does not move.
type flatten struct{ out []int }

func (f *flatten) kind() string       { return "flatten" }
func (f *flatten) outShape() []int    { return f.out }
func (f *flatten) params() []*Param   { return nil }
func (f *flatten) newState(env) state { return flattenState{} }

type flattenState struct{}

func (flattenState) forward(x []float32, _ int, _ bool) []float32 { return x }
func (flattenState) backward(dy []float32, _ [][]float32, needDX bool) []float32 {
	if !needDX {
		return nil
	}
	return dy
}

// dropout zeroes each value with probability rate during training and scales the rest by
// 1/(1-rate) (inverted dropout, as Keras); at inference it is the identity.
type dropout struct {
	shape []int
	rate  float64
}

func (d *dropout) kind() string         { return "dropout" }
func (d *dropout) outShape() []int      { return d.shape }
func (d *dropout) params() []*Param     { return nil }
func (d *dropout) newState(e env) state { return &dropoutState{d: d, rng: e.rng} }

type dropoutState struct {
	d        *dropout
	rng      *rand.Rand
	mask, y  []float32
	dx       []float32
	training bool
}

func (s *dropoutState) forward(x []float32, _ int, train bool) []float32 {
	s.training = train && s.d.rate > 0
	if !s.training {
		return x
	}
	keep := float32(1 / (1 - s.d.rate))
	s.mask = grow(s.mask, len(x))
	s.y = grow(s.y, len(x))
	for i, v := range x {
		if s.rng.Float64() < s.d.rate {
			s.mask[i] = 0
		} else {
			s.mask[i] = keep
		}
		s.y[i] = v * s.mask[i]
	}
	return s.y
}

func (s *dropoutState) backward(dy []float32, _ [][]float32, needDX bool) []float32 {
	if !needDX {
		return nil
	}
	if !s.training {
		return dy
	}
	s.dx = grow(s.dx, len(dy))
	for i, v := range dy {
		s.dx[i] = v * s.mask[i]
	}
	return s.dx
}
