package model

// simpleForward runs step t of a simple_rnn: h_t = act(x_t·W + h_{t-1}·U + b). Block t of xp
// keeps the pre-activation.
func (s *recurrentState) simpleForward(t int) {
	r, n, u := s.r, s.n, s.r.units
	pre := s.xp[t*n*u : (t+1)*n*u]
	s.addRecurrent(t, pre)
	h := s.hs[(t+1)*n*u : (t+2)*n*u]
	s.parallelFor(n, r.rowCost(), func(lo, hi int) {
		p, h := pre[lo*u:hi*u], h[lo*u:hi*u]
		if r.relu {
			for j, v := range p {
				h[j] = max(v, 0)
			}
			return
		}
		for j, v := range p {
			h[j] = tanhf(v)
		}
	})
}

// simpleBackward fills block t of dX with dL/d(pre-activation) from dL/dh_t in s.dh.
func (s *recurrentState) simpleBackward(t int) {
	r, n, u := s.r, s.n, s.r.units
	h := s.hs[(t+1)*n*u : (t+2)*n*u]
	d := s.dX[t*n*u : (t+1)*n*u]
	s.parallelFor(n, r.rowCost(), func(lo, hi int) {
		h, d, dh := h[lo*u:hi*u], d[lo*u:hi*u], s.dh[lo*u:hi*u]
		if r.relu {
			for j, v := range h {
				if v > 0 {
					d[j] = dh[j]
				} else {
					d[j] = 0
				}
			}
			return
		}
		for j, v := range h {
			d[j] = dh[j] * (1 - v*v)
		}
	})
}
