package model

import (
	"fmt"
	"math/rand/v2"

	"github.com/medfed/medfed/internal/gemm"
)

// conv2d is a 2-D convolution over NHWC images with a [kh, kw, cin, filters] kernel, computed
// as im2col followed by one matrix product per batch.
type conv2d struct {
	h, w, cin, filters int
	kh, kw, sh, sw     int
	padTop, padLeft    int
	oh, ow             int
	kernel, bias       Param
}

func newConv2D(in []int, filters int, k, stride [2]int, same bool, rng *rand.Rand) (*conv2d, error) {
	c := &conv2d{h: in[0], w: in[1], cin: in[2], filters: filters, kh: k[0], kw: k[1], sh: stride[0], sw: stride[1]}
	if same {
		c.oh, c.padTop = samePadding(c.h, c.kh, c.sh)
		c.ow, c.padLeft = samePadding(c.w, c.kw, c.sw)
	} else {
		if c.h < c.kh || c.w < c.kw {
			return nil, fmt.Errorf("kernel %v larger than input %v with valid padding", k, in)
		}
		c.oh = (c.h-c.kh)/c.sh + 1
		c.ow = (c.w-c.kw)/c.sw + 1
	}
	fanIn := c.kh * c.kw * c.cin
	c.kernel = Param{Name: "kernel", Shape: []int{c.kh, c.kw, c.cin, filters}}
	c.bias = Param{Name: "bias", Shape: []int{filters}}
	if rng != nil {
		c.kernel.Data = make([]float32, fanIn*filters)
		c.bias.Data = make([]float32, filters)
		glorotUniform(rng, c.kernel.Data, fanIn, c.kh*c.kw*filters)
	}
	return c, nil
}

// samePadding returns the output size and the leading padding for TensorFlow's "same"
// padding: out = ceil(in/stride), and an odd total padding puts the extra row at the end.
func samePadding(in, k, stride int) (out, lead int) {
	out = (in + stride - 1) / stride
	total := max((out-1)*stride+k-in, 0)
	return out, total / 2
}

func (c *conv2d) kind() string              { return "conv2d" }
func (c *conv2d) outShape() []int           { return []int{c.oh, c.ow, c.filters} }
func (c *conv2d) params() []*Param          { return []*Param{&c.kernel, &c.bias} }
func (c *conv2d) newState(*rand.Rand) state { return &conv2dState{c: c} }

type conv2dState struct {
	c         *conv2d
	n         int
	cols      []float32 // [n*oh*ow, kh*kw*cin]
	y         []float32
	dcols, dx []float32
}

func (s *conv2dState) forward(x []float32, n int, _ bool) []float32 {
	c := s.c
	rows, k := n*c.oh*c.ow, c.kh*c.kw*c.cin
	s.n = n
	s.cols = grow(s.cols, rows*k)
	inSize, colSize := c.h*c.w*c.cin, c.oh*c.ow*k
	parallelFor(n, colSize, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			c.im2col(s.cols[i*colSize:(i+1)*colSize], x[i*inSize:(i+1)*inSize])
		}
	})
	s.y = grow(s.y, rows*c.filters)
	for r := 0; r < rows; r++ {
		copy(s.y[r*c.filters:(r+1)*c.filters], c.bias.Data)
	}
	gemm.Sgemm(false, false, rows, c.filters, k, 1, s.cols, k, c.kernel.Data, c.filters, 1, s.y, c.filters)
	return s.y
}

func (s *conv2dState) backward(dy []float32, grads [][]float32, needDX bool) []float32 {
	c, n := s.c, s.n
	rows, k := n*c.oh*c.ow, c.kh*c.kw*c.cin
	gemm.Sgemm(true, false, k, c.filters, rows, 1, s.cols, k, dy, c.filters, 1, grads[0], c.filters)
	gb := grads[1]
	for r := 0; r < rows; r++ {
		for j, v := range dy[r*c.filters : (r+1)*c.filters] {
			gb[j] += v
		}
	}
	if !needDX {
		return nil
	}
	s.dcols = grow(s.dcols, rows*k)
	gemm.Sgemm(false, true, rows, k, c.filters, 1, dy, c.filters, c.kernel.Data, c.filters, 0, s.dcols, k)
	inSize, colSize := c.h*c.w*c.cin, c.oh*c.ow*k
	s.dx = grow(s.dx, n*inSize)
	parallelFor(n, colSize, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			c.col2im(s.dx[i*inSize:(i+1)*inSize], s.dcols[i*colSize:(i+1)*colSize])
		}
	})
	return s.dx
}

// im2col writes one sample's patches: row (oy*ow+ox) holds the kh×kw×cin window, zero where
// it falls in the padding.
func (c *conv2d) im2col(cols, x []float32) {
	p := 0
	seg := c.kw * c.cin // one kernel row of a patch
	for oy := 0; oy < c.oh; oy++ {
		for ox := 0; ox < c.ow; ox++ {
			ix0 := ox*c.sw - c.padLeft
			inside := ix0 >= 0 && ix0+c.kw <= c.w
			for ky := 0; ky < c.kh; ky++ {
				iy := oy*c.sh + ky - c.padTop
				dst := cols[p : p+seg]
				p += seg
				switch {
				case iy < 0 || iy >= c.h:
					clear(dst)
				case inside:
					src := x[(iy*c.w+ix0)*c.cin:]
					for j := range dst {
						dst[j] = src[j]
					}
				default:
					for kx := 0; kx < c.kw; kx++ {
						d := dst[kx*c.cin : (kx+1)*c.cin]
						if ix := ix0 + kx; ix >= 0 && ix < c.w {
							copy(d, x[(iy*c.w+ix)*c.cin:])
						} else {
							clear(d)
						}
					}
				}
			}
		}
	}
}

// col2im is the adjoint of im2col: it sums patch gradients back into dx (overwriting dx).
func (c *conv2d) col2im(dx, cols []float32) {
	clear(dx)
	p := 0
	for oy := 0; oy < c.oh; oy++ {
		for ox := 0; ox < c.ow; ox++ {
			for ky := 0; ky < c.kh; ky++ {
				iy := oy*c.sh + ky - c.padTop
				for kx := 0; kx < c.kw; kx++ {
					ix := ox*c.sw + kx - c.padLeft
					src := cols[p : p+c.cin]
					p += c.cin
					if iy < 0 || iy >= c.h || ix < 0 || ix >= c.w {
						continue
					}
					d := dx[(iy*c.w+ix)*c.cin:]
					for ch, v := range src {
						d[ch] += v
					}
				}
			}
		}
	}
}
