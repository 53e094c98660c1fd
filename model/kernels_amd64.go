//go:build amd64 && !purego

package model

import "golang.org/x/sys/cpu"

// Element-wise kernels in AVX2 assembly (kernels_amd64.s), with the portable loops of
// kernels.go for the tails and for CPUs without AVX2 and FMA.

//go:noescape
func maxStepAVX2(y *float32, idx *int32, row *float32, n int, k int32)

//go:noescape
func adamAVX2(w, grad, m, v *float32, n int, b1, b2, alpha, eps float32)

//go:noescape
func combine2AVX2(d, a, b *float32, n int, wa, wb float32)

func hasAVX2() bool { return cpu.X86.HasAVX2 && cpu.X86.HasFMA }

func maxStep(y []float32, idx []int32, row []float32, k int32) {
	n := len(row)
	if hasAVX2() && n >= 8 {
		y, idx = y[:n], idx[:n]
		head := n &^ 7
		maxStepAVX2(&y[0], &idx[0], &row[0], head, k)
		y, idx, row = y[head:], idx[head:], row[head:]
	}
	maxStepGo(y, idx, row, k)
}

func adamUpdate(w, g, m, v []float32, b1, b2, alpha, eps float32) {
	n := len(w)
	if hasAVX2() && n >= 8 {
		g, m, v = g[:n], m[:n], v[:n]
		head := n &^ 7
		adamAVX2(&w[0], &g[0], &m[0], &v[0], head, b1, b2, alpha, eps)
		w, g, m, v = w[head:], g[head:], m[head:], v[head:]
	}
	adamGo(w, g, m, v, b1, b2, alpha, eps)
}

func combine2(d, a, b []float32, wa, wb float32) {
	n := len(d)
	if hasAVX2() && n >= 8 {
		a, b = a[:n], b[:n]
		head := n &^ 7
		combine2AVX2(&d[0], &a[0], &b[0], head, wa, wb)
		d, a, b = d[head:], a[head:], b[head:]
	}
	combine2Go(d, a, b, wa, wb)
}
