package model

// maxStepGo is the portable maxStep: where row > y, idx = k; then y = max(y, row).
func maxStepGo(y []float32, idx []int32, row []float32, k int32) {
	y, idx = y[:len(row)], idx[:len(row)]
	for i, v := range row {
		if v > y[i] {
			y[i], idx[i] = v, k
		}
	}
}

// adamGo is the portable Adam update (see adam.step).
func adamGo(w, g, m, v []float32, b1, b2, alpha, eps float32) {
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	for j := range w {
		gj := g[j]
		m[j] = b1*m[j] + (1-b1)*gj
		v[j] = b2*v[j] + (1-b2)*gj*gj
		w[j] -= alpha * m[j] / (sqrt32(v[j]) + eps)
	}
}

// combine2Go is the portable combine2: d = wa·a + wb·b, then a = b = 0.
func combine2Go(d, a, b []float32, wa, wb float32) {
	a, b = a[:len(d)], b[:len(d)]
	for j := range d {
		d[j] = wa*a[j] + wb*b[j]
	}
	clear(a)
	clear(b)
}
