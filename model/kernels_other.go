//go:build !amd64 || purego

package model

func hasAVX2() bool { return false }

func maxStep(y []float32, idx []int32, row []float32, k int32) { maxStepGo(y, idx, row, k) }

func adamUpdate(w, g, m, v []float32, b1, b2, alpha, eps float32) {
	adamGo(w, g, m, v, b1, b2, alpha, eps)
}

func combine2(d, a, b []float32, wa, wb float32) { combine2Go(d, a, b, wa, wb) }
