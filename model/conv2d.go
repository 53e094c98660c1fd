package model

import (
	"fmt"
	"math/rand/v2"
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

func (c *conv2d) kind() string         { return "conv2d" }
func (c *conv2d) outShape() []int      { return []int{c.oh, c.ow, c.filters} }
func (c *conv2d) params() []*Param     { return []*Param{&c.kernel, &c.bias} }
func (c *conv2d) newState(e env) state { return &conv2dState{c: c, env: e} }

type conv2dState struct {
	env
	c         *conv2d
	n         int
	cols      []float32 // [n*oh*ow, kh*kw*cin + 1]: patches and a column of ones
	wb, gwb   []float32 // [kernel; bias] and its gradient
	y         []float32
	dcols, dx []float32
}

func (s *conv2dState) forward(x []float32, n int, _ bool) []float32 {
	c := s.c
	rows, k := n*c.oh*c.ow, c.kh*c.kw*c.cin+1
	s.n = n
	s.cols = grow(s.cols, rows*k)
	inSize, colSize := c.h*c.w*c.cin, c.oh*c.ow*k
	s.parallelFor(n, colSize, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			c.im2col(s.cols[i*colSize:(i+1)*colSize], x[i*inSize:(i+1)*inSize])
		}
	})
	// The kernel with the bias as one more row, so that one product adds the bias too.
	s.wb = grow(s.wb, k*c.filters)
	copy(s.wb, c.kernel.Data)
	copy(s.wb[(k-1)*c.filters:], c.bias.Data)
	s.y = grow(s.y, rows*c.filters)
	s.sgemm(false, false, rows, c.filters, k, 1, s.cols, k, s.wb, c.filters, 0, s.y, c.filters)
	return s.y
}

func (s *conv2dState) backward(dy []float32, grads [][]float32, needDX bool) []float32 {
	c, n := s.c, s.n
	rows, k := n*c.oh*c.ow, c.kh*c.kw*c.cin+1
	// dL/d[kernel; bias] = colsᵀ·dy; the ones column of cols turns the last row into Σ dy.
	s.gwb = grow(s.gwb, k*c.filters)
	s.sgemm(true, false, k, c.filters, rows, 1, s.cols, k, dy, c.filters, 0, s.gwb, c.filters)
	for i, v := range s.gwb[:(k-1)*c.filters] {
		grads[0][i] += v
	}
	for i, v := range s.gwb[(k-1)*c.filters:] {
		grads[1][i] += v
	}
	if !needDX {
		return nil
	}
	s.dcols = grow(s.dcols, rows*k)
	s.sgemm(false, true, rows, k-1, c.filters, 1, dy, c.filters, c.kernel.Data, c.filters, 0, s.dcols, k)
	inSize, colSize := c.h*c.w*c.cin, c.oh*c.ow*k
	s.dx = grow(s.dx, n*inSize)
	s.parallelFor(n, colSize, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			c.col2im(s.dx[i*inSize:(i+1)*inSize], s.dcols[i*colSize:(i+1)*colSize])
		}
	})
	return s.dx
}

// im2col writes one sample's patches: row (oy*ow+ox) holds the kh×kw×cin window, zero where
// it falls in the padding, followed by a 1 that multiplies the bias.
func (c *conv2d) im2col(cols, x []float32) {
	if c.cin == 1 && c.kh == 3 && c.kw == 3 && c.sh == 1 && c.sw == 1 && c.padTop == 0 && c.padLeft == 0 {
		c.im2col3x3(cols, x)
		return
	}
	k := c.kh*c.kw*c.cin + 1
	for oy := 0; oy < c.oh; oy++ {
		rowBase := oy * c.ow * k
		for ox := 0; ox < c.ow; ox++ {
			cols[rowBase+ox*k+k-1] = 1
		}
		for ky := 0; ky < c.kh; ky++ {
			iy := oy*c.sh + ky - c.padTop
			for kx := 0; kx < c.kw; kx++ {
				off := rowBase + (ky*c.kw+kx)*c.cin
				if iy < 0 || iy >= c.h {
					for ox := 0; ox < c.ow; ox++ {
						clear(cols[off+ox*k : off+ox*k+c.cin])
					}
					continue
				}
				src := x[iy*c.w*c.cin:]
				for ox := 0; ox < c.ow; ox++ {
					ix := ox*c.sw + kx - c.padLeft
					d := off + ox*k
					switch {
					case ix < 0 || ix >= c.w:
						clear(cols[d : d+c.cin])
					case c.cin == 1:
						cols[d] = src[ix]
					default:
						copy(cols[d:d+c.cin], src[ix*c.cin:])
					}
				}
			}
		}
	}
}

// im2col3x3 is im2col for the seed CNN's first layer (one channel, 3x3, stride 1, valid),
// writing each patch row contiguously.
func (c *conv2d) im2col3x3(cols, x []float32) {
	w := c.w
	p := 0
	for oy := 0; oy < c.oh; oy++ {
		r0, r1, r2 := x[oy*w:oy*w+w], x[(oy+1)*w:(oy+1)*w+w], x[(oy+2)*w:(oy+2)*w+w]
		for ox := 0; ox < c.ow; ox++ {
			d := cols[p : p+10 : p+10]
			a, b, e := r0[ox:ox+3:ox+3], r1[ox:ox+3:ox+3], r2[ox:ox+3:ox+3]
			d[0], d[1], d[2] = a[0], a[1], a[2]
			d[3], d[4], d[5] = b[0], b[1], b[2]
			d[6], d[7], d[8] = e[0], e[1], e[2]
			d[9] = 1
			p += 10
		}
	}
}

// col2im is the adjoint of im2col: it sums patch gradients back into dx (overwriting dx).
// cols has the layout of im2col's output; its last column is ignored.
func (c *conv2d) col2im(dx, cols []float32) {
	clear(dx)
	k := c.kh*c.kw*c.cin + 1
	for oy := 0; oy < c.oh; oy++ {
		rowBase := oy * c.ow * k
		for ky := 0; ky < c.kh; ky++ {
			iy := oy*c.sh + ky - c.padTop
			if iy < 0 || iy >= c.h {
				continue
			}
			dst := dx[iy*c.w*c.cin:]
			for kx := 0; kx < c.kw; kx++ {
				off := rowBase + (ky*c.kw+kx)*c.cin
				for ox := 0; ox < c.ow; ox++ {
					ix := ox*c.sw + kx - c.padLeft
					if ix < 0 || ix >= c.w {
						continue
					}
					src := cols[off+ox*k : off+ox*k+c.cin]
					d := dst[ix*c.cin : ix*c.cin+c.cin]
					for ch, v := range src {
						d[ch] += v
					}
				}
			}
		}
	}
}
