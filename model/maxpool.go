package model

import (
	"fmt"
)

// maxPool2D takes the maximum over pool windows of NHWC images (valid padding).
type maxPool2D struct {
	h, w, c, ph, pw, sh, sw, oh, ow int
}

func newMaxPool2D(in []int, pool, stride [2]int) (*maxPool2D, error) {
	m := &maxPool2D{h: in[0], w: in[1], c: in[2], ph: pool[0], pw: pool[1], sh: stride[0], sw: stride[1]}
	if m.h < m.ph || m.w < m.pw {
		return nil, fmt.Errorf("pool %v larger than input %v", pool, in)
	}
	m.oh = (m.h-m.ph)/m.sh + 1
	m.ow = (m.w-m.pw)/m.sw + 1
	return m, nil
}

func (m *maxPool2D) kind() string         { return "maxpool2d" }
func (m *maxPool2D) outShape() []int      { return []int{m.oh, m.ow, m.c} }
func (m *maxPool2D) params() []*Param     { return nil }
func (m *maxPool2D) newState(e env) state { return &maxPoolState{m: m, env: e} }

type maxPoolState struct {
	env
	m      *maxPool2D
	n      int
	argmax []int32 // position in its window of each output's maximum
	y, dx  []float32
}

func (s *maxPoolState) forward(x []float32, n int, _ bool) []float32 {
	m := s.m
	s.n = n
	inSize, outSize := m.h*m.w*m.c, m.oh*m.ow*m.c
	s.y = grow(s.y, n*outSize)
	if cap(s.argmax) < n*outSize {
		s.argmax = make([]int32, n*outSize)
	}
	s.argmax = s.argmax[:n*outSize]
	s.parallelFor(n, outSize*m.ph*m.pw, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			m.forwardSample(x[i*inSize:(i+1)*inSize], s.y[i*outSize:(i+1)*outSize], s.argmax[i*outSize:(i+1)*outSize])
		}
	})
	return s.y
}

func (s *maxPoolState) backward(dy []float32, _ [][]float32, needDX bool) []float32 {
	if !needDX {
		return nil
	}
	m := s.m
	inSize, outSize := m.h*m.w*m.c, m.oh*m.ow*m.c
	s.dx = grow(s.dx, s.n*inSize)
	s.parallelFor(s.n, inSize, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			m.backwardSample(s.dx[i*inSize:(i+1)*inSize], dy[i*outSize:(i+1)*outSize], s.argmax[i*outSize:(i+1)*outSize])
		}
	})
	return s.dx
}

// forwardSample pools one NHWC sample. For each output pixel it folds the window's rows of c
// contiguous channel values into the output with maxStep, which records in arg the position
// in the window (py·pw + px) of each maximum, the first one on ties.
func (m *maxPool2D) forwardSample(x, y []float32, arg []int32) {
	c := m.c
	o := 0
	for oy := 0; oy < m.oh; oy++ {
		for ox := 0; ox < m.ow; ox++ {
			base := (oy*m.sh*m.w + ox*m.sw) * c
			yo, ao := y[o:o+c], arg[o:o+c]
			copy(yo, x[base:base+c])
			clear(ao)
			for py := 0; py < m.ph; py++ {
				for px := 0; px < m.pw; px++ {
					if py == 0 && px == 0 {
						continue
					}
					at := base + (py*m.w+px)*c
					maxStep(yo, ao, x[at:at+c], int32(py*m.pw+px))
				}
			}
			o += c
		}
	}
}

// backwardSample routes each output gradient to the input that was the window's maximum.
func (m *maxPool2D) backwardSample(dx, dy []float32, arg []int32) {
	clear(dx)
	c := m.c
	var offsets [64]int // window position -> offset from the window's first value
	if m.ph*m.pw > len(offsets) {
		m.backwardSampleSlow(dx, dy, arg)
		return
	}
	for k := 0; k < m.ph*m.pw; k++ {
		offsets[k] = ((k/m.pw)*m.w + k%m.pw) * c
	}
	o := 0
	for oy := 0; oy < m.oh; oy++ {
		for ox := 0; ox < m.ow; ox++ {
			base := (oy*m.sh*m.w + ox*m.sw) * c
			for ch, k := range arg[o : o+c] {
				dx[base+offsets[k&63]+ch] += dy[o+ch]
			}
			o += c
		}
	}
}

// backwardSampleSlow is backwardSample for windows of more than 64 positions.
func (m *maxPool2D) backwardSampleSlow(dx, dy []float32, arg []int32) {
	c := m.c
	o := 0
	for oy := 0; oy < m.oh; oy++ {
		for ox := 0; ox < m.ow; ox++ {
			base := (oy*m.sh*m.w + ox*m.sw) * c
			for ch, k := range arg[o : o+c] {
				py, px := int(k)/m.pw, int(k)%m.pw
				dx[base+(py*m.w+px)*c+ch] += dy[o+ch]
			}
			o += c
		}
	}
}
