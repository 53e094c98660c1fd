package model

// lstmForward runs step t of an lstm with Keras's gate order i, f, c, o:
//
//	i = σ(·), f = σ(·), g = tanh(·), o = σ(·) of x_t·W + h_{t-1}·U + b
//	c_t = f*c_{t-1} + i*g,  h_t = o*tanh(c_t)
//
// Block t of xp keeps the four gate activations.
func (s *recurrentState) lstmForward(t int) {
	r, n, u := s.r, s.n, s.r.units
	gu := 4 * u
	g := s.xp[t*n*gu : (t+1)*n*gu]
	s.addRecurrent(t, g)
	cPrev := s.cs[t*n*u : (t+1)*n*u]
	c := s.cs[(t+1)*n*u : (t+2)*n*u]
	tc := s.tc[t*n*u : (t+1)*n*u]
	h := s.hs[(t+1)*n*u : (t+2)*n*u]
	s.parallelFor(n, r.rowCost(), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := g[i*gu : (i+1)*gu]
			ig, fg, cg, og := gi[:u], gi[u:2*u], gi[2*u:3*u], gi[3*u:]
			cp, ci, tci, ht := cPrev[i*u:(i+1)*u], c[i*u:(i+1)*u], tc[i*u:(i+1)*u], h[i*u:(i+1)*u]
			for j := range ci {
				iv, fv, gv, ov := sigmoidf(ig[j]), sigmoidf(fg[j]), tanhf(cg[j]), sigmoidf(og[j])
				ig[j], fg[j], cg[j], og[j] = iv, fv, gv, ov
				cv := fv*cp[j] + iv*gv
				tv := tanhf(cv)
				ci[j], tci[j], ht[j] = cv, tv, ov*tv
			}
		}
	})
}

// lstmBackward fills block t of dX from dL/dh_t in s.dh and dL/dc_t (through later steps) in
// s.dc, and leaves dL/dc_{t-1} in s.dc.
func (s *recurrentState) lstmBackward(t int) {
	r, n, u := s.r, s.n, s.r.units
	gu := 4 * u
	g := s.xp[t*n*gu : (t+1)*n*gu]
	d := s.dX[t*n*gu : (t+1)*n*gu]
	cPrev := s.cs[t*n*u : (t+1)*n*u]
	tc := s.tc[t*n*u : (t+1)*n*u]
	s.parallelFor(n, r.rowCost(), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gi, di := g[i*gu:(i+1)*gu], d[i*gu:(i+1)*gu]
			ig, fg, cg, og := gi[:u], gi[u:2*u], gi[2*u:3*u], gi[3*u:]
			dig, dfg, dcg, dog := di[:u], di[u:2*u], di[2*u:3*u], di[3*u:]
			cp, tci := cPrev[i*u:(i+1)*u], tc[i*u:(i+1)*u]
			dh, dc := s.dh[i*u:(i+1)*u], s.dc[i*u:(i+1)*u]
			for j := range dh {
				iv, fv, gv, ov, tv := ig[j], fg[j], cg[j], og[j], tci[j]
				dcv := dc[j] + dh[j]*ov*(1-tv*tv)
				dig[j] = dcv * gv * iv * (1 - iv)
				dfg[j] = dcv * cp[j] * fv * (1 - fv)
				dcg[j] = dcv * iv * (1 - gv*gv)
				dog[j] = dh[j] * tv * ov * (1 - ov)
				dc[j] = dcv * fv
			}
		}
	})
}
