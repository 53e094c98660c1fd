package model

// gruForward runs step t of a gru with Keras's gate order z, r, h and reset_after:
//
//	z  = σ(x_t W_z + b_z + h_{t-1} U_z + b'_z)
//	r  = σ(x_t W_r + b_r + h_{t-1} U_r + b'_r)
//	hh = tanh(x_t W_h + b_h + r*(h_{t-1} U_h + b'_h))
//	h_t = z*h_{t-1} + (1-z)*hh
//
// where b is bias row 0 and b' bias row 1. Block t of xp keeps z, r and hh; block t of rp
// keeps h_{t-1}·U + b'.
func (s *recurrentState) gruForward(t int) {
	r, n, u := s.r, s.n, s.r.units
	gu := 3 * u
	xg := s.xp[t*n*gu : (t+1)*n*gu]
	rg := s.rp[t*n*gu : (t+1)*n*gu]
	recBias := r.bias.Data[gu:]
	for i := 0; i < n; i++ {
		copy(rg[i*gu:(i+1)*gu], recBias)
	}
	s.addRecurrent(t, rg)
	hPrev := s.hs[t*n*u : (t+1)*n*u]
	h := s.hs[(t+1)*n*u : (t+2)*n*u]
	s.parallelFor(n, r.rowCost(), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xi, ri := xg[i*gu:(i+1)*gu], rg[i*gu:(i+1)*gu]
			xz, xr, xh := xi[:u], xi[u:2*u], xi[2*u:]
			rz, rr, rh := ri[:u], ri[u:2*u], ri[2*u:]
			hp, ht := hPrev[i*u:(i+1)*u], h[i*u:(i+1)*u]
			for j := range ht {
				z := sigmoidf(xz[j] + rz[j])
				rv := sigmoidf(xr[j] + rr[j])
				hh := tanhf(xh[j] + rv*rh[j])
				xz[j], xr[j], xh[j] = z, rv, hh
				ht[j] = z*hp[j] + (1-z)*hh
			}
		}
	})
}

// gruBackward fills block t of dX (input projection) and dR (recurrent projection) from
// dL/dh_t in s.dh, and writes into s.dhp the direct part z*dL/dh_t of dL/dh_{t-1}.
func (s *recurrentState) gruBackward(t int) {
	r, n, u := s.r, s.n, s.r.units
	gu := 3 * u
	xg := s.xp[t*n*gu : (t+1)*n*gu]
	rg := s.rp[t*n*gu : (t+1)*n*gu]
	dX := s.dX[t*n*gu : (t+1)*n*gu]
	dR := s.dR[t*n*gu : (t+1)*n*gu]
	hPrev := s.hs[t*n*u : (t+1)*n*u]
	s.parallelFor(n, r.rowCost(), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xi, rh := xg[i*gu:(i+1)*gu], rg[i*gu+2*u:(i+1)*gu]
			zs, rs, hhs := xi[:u], xi[u:2*u], xi[2*u:]
			dxi, dri := dX[i*gu:(i+1)*gu], dR[i*gu:(i+1)*gu]
			dxz, dxr, dxh := dxi[:u], dxi[u:2*u], dxi[2*u:]
			drz, drr, drh := dri[:u], dri[u:2*u], dri[2*u:]
			hp, dh, dhp := hPrev[i*u:(i+1)*u], s.dh[i*u:(i+1)*u], s.dhp[i*u:(i+1)*u]
			for j := range dh {
				z, rv, hh, g := zs[j], rs[j], hhs[j], dh[j]
				dz := g * (hp[j] - hh) * z * (1 - z)
				dhh := g * (1 - z) * (1 - hh*hh)
				dr := dhh * rh[j] * rv * (1 - rv)
				dxz[j], dxr[j], dxh[j] = dz, dr, dhh
				drz[j], drr[j], drh[j] = dz, dr, dhh*rv
				dhp[j] = g * z
			}
		}
	})
}
