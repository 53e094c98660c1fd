package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Register tile and cache block sizes. A micro-kernel call computes an mr×nr tile of C from an
// mr-row panel of op(A) and an nr-column panel of op(B) over at most kc steps of k. The packed
// B block (kc×nc) is sized for L2/L3, a packed A block (mc×kc) for L2, one B panel (kc×nr) for L1.
const (
	mr = 6
	nr = 16
	kc = 256
	mc = 96
	nc = 2048

	// minFlopsPerWorker is the least work (2·m·n·k) worth handing to another goroutine: about
	// 10µs of kernel time, well above the cost of waking an idle thread.
	minFlopsPerWorker = 512 << 10

	// chunksPerWorker is how many pieces of C each worker claims on average.
	chunksPerWorker = 2
)

// kernel computes the mr×cols tile C = alpha·Ã·B̃ + beta·C (C is not read when beta == 0), where
// Ã(i,p) = a[i*rsA+p*csA] for i < mr, p < k and B̃(p,j) = b[p*ldb+j] for j < nr, and C(i,j) is
// c[i*ldc+j] for j < cols ≤ nr. k ≥ 1 and every element addressed must lie within the slices.
type kernel func(k int, a []float32, rsA, csA int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32, cols int)

// impl is one implementation of the inner loops.
type impl struct {
	kernel kernel
	// packBT, if not nil, packs the first steps of a full transposed B panel: it writes
	// dst[p*nr+j] = src[j*ld+p] for j < nr and p < some q ≤ kb, and returns q.
	packBT func(dst, src []float32, ld, kb int) int
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C where op(X) is X or its transpose, op(A) is
// m×k, op(B) is k×n and C is m×n, all row-major with leading dimensions lda, ldb and ldc.
// With beta == 0, C need not be initialised (NaNs in C are overwritten).
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkShapes(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	sgemm(defaultImpl(), &problem{transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc}, runtime.GOMAXPROCS(0))
}

// SgemmSerial is Sgemm computed on the calling goroutine only, for callers that already keep
// every core busy with products of their own (for example one training shard per core).
func SgemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkShapes(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	sgemm(defaultImpl(), &problem{transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc}, 1)
}

// problem is one Sgemm call; sub-problems are the same call on a slice of C.
type problem struct {
	transA, transB bool
	m, n, k        int
	alpha          float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	beta           float32
	c              []float32
	ldc            int
}

// rows returns the sub-problem computing rows [i0, i0+rows) of C.
func (p problem) rows(i0, rows int) problem {
	if p.transA {
		p.a = p.a[i0:]
	} else {
		p.a = p.a[i0*p.lda:]
	}
	p.c = p.c[i0*p.ldc:]
	p.m = rows
	return p
}

// cols returns the sub-problem computing columns [j0, j0+cols) of C.
func (p problem) cols(j0, cols int) problem {
	if p.transB {
		p.b = p.b[j0*p.ldb:]
	} else {
		p.b = p.b[j0:]
	}
	p.c = p.c[j0:]
	p.n = cols
	return p
}

// sgemm runs p (already shape-checked) with im, splitting C across up to maxWorkers goroutines
// when the product is large enough.
func sgemm(im impl, p *problem, maxWorkers int) {
	if p.m == 0 || p.n == 0 {
		return
	}
	if p.k == 0 || p.alpha == 0 {
		scaleC(p.m, p.n, p.beta, p.c, p.ldc)
		return
	}
	mPanels := (p.m + mr - 1) / mr
	nPanels := (p.n + nr - 1) / nr
	workers := 1
	if flops := 2 * float64(p.m) * float64(p.n) * float64(p.k); flops >= 2*minFlopsPerWorker {
		workers = min(maxWorkers, int(flops/minFlopsPerWorker), max(mPanels, nPanels))
	}
	if workers <= 1 {
		ws := getWorkspace()
		serial(im, ws, p)
		wsPool.Put(ws)
		return
	}
	// Split C into whole-tile chunks (only the last chunk has an edge) along its longer side:
	// every row chunk reads all of op(B) and every column chunk all of op(A), so this re-reads
	// the smaller operand. There are a few chunks per worker, claimed dynamically, so a worker
	// whose core is busy with other work does not hold up the others.
	panels, unit, dim := mPanels, mr, p.m
	if nPanels >= workers && (p.n > p.m || mPanels < workers) {
		panels, unit, dim = nPanels, nr, p.n
	}
	chunks := min(panels, chunksPerWorker*workers, max(workers, int(2*float64(p.m)*float64(p.n)*float64(p.k)/minFlopsPerWorker)))
	chunk := (panels + chunks - 1) / chunks * unit
	chunks = (dim + chunk - 1) / chunk
	var next atomic.Int64
	work := func() {
		ws := getWorkspace()
		for {
			x := int(next.Add(1)) - 1
			if x >= chunks {
				break
			}
			lo := x * chunk
			var sub problem
			if unit == mr {
				sub = p.rows(lo, min(chunk, dim-lo))
			} else {
				sub = p.cols(lo, min(chunk, dim-lo))
			}
			serial(im, ws, &sub)
		}
		wsPool.Put(ws)
	}
	var wg sync.WaitGroup
	for range min(workers, chunks) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// workspace holds one goroutine's packing buffers.
type workspace struct {
	a     []float32 // packed A block: mc/mr panels of kc×mr
	b     []float32 // packed B block: nc/nr panels of kc×nr
	aEdge [kc * mr]float32
	tile  [mr * nr]float32
}

// wsPool recycles packing buffers between calls; it holds no state visible to callers.
var wsPool = sync.Pool{New: func() any { return new(workspace) }}

func getWorkspace() *workspace { return wsPool.Get().(*workspace) }

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// serial computes p on the calling goroutine using the GotoBLAS loop order: for each nc-column
// block and kc-deep slice of k, pack B once; for each mc-row block, pack A; then sweep the
// register tiles with B panels outer (kept in L1) and A panels inner.
func serial(im impl, ws *workspace, p *problem) {
	kern := im.kernel
	m, n, k := p.m, p.n, p.k
	// Packing B pays off when B is reused across many row panels or is transposed; a narrow,
	// contiguous B (small ldb) streams well straight from memory. Likewise A is packed only when
	// reused across several B panels.
	packB := p.transB || (p.ldb > 64 && m > 2*mr)
	packA := n > 4*nr
	for jc := 0; jc < n; jc += nc {
		nb := min(nc, n-jc)
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			beta := p.beta
			if pc > 0 {
				beta = 1
			}
			if packB {
				ws.b = grow(ws.b, (nb+nr-1)/nr*nr*kb)
				for j := 0; j < nb; j += nr {
					packBPanel(im, ws.b[j*kb:], p, pc, kb, jc+j, min(nr, nb-j))
				}
			} else if nb%nr != 0 {
				// Only the ragged last panel is packed (zero-padded).
				ws.b = grow(ws.b, nr*kb)
				j := nb / nr * nr
				packBPanel(im, ws.b, p, pc, kb, jc+j, nb-j)
			}
			for ic := 0; ic < m; ic += mc {
				mb := min(mc, m-ic)
				if packA {
					ws.a = grow(ws.a, (mb+mr-1)/mr*mr*kb)
					for i := 0; i < mb; i += mr {
						packAPanel(ws.a[i*kb:], p, ic+i, min(mr, mb-i), pc, kb)
					}
				} else if mb%mr != 0 && m < mr {
					packAPanel(ws.aEdge[:], p, ic, mb, pc, kb)
				}
				for j := 0; j < nb; j += nr {
					cols := min(nr, nb-j)
					// Locate the B panel: packed (stride nr) or in place.
					var bs []float32
					bld := nr
					switch {
					case packB:
						bs = ws.b[j*kb:]
					case cols < nr:
						bs = ws.b
					default:
						bs = p.b[pc*p.ldb+jc+j:]
						bld = p.ldb
					}
					for i := 0; i < mb; i += mr {
						rows := min(mr, mb-i)
						// Locate the A panel: packed or in place. A ragged last panel read in place
						// is shifted up to end at row m, overlapping its neighbour, so the kernel
						// never reads past A; its valid rows are then the tile's last ones.
						var as []float32
						rsA, csA, ti := 1, mr, 0
						switch {
						case packA:
							as = ws.a[i*kb:]
						case rows < mr && m < mr:
							as = ws.aEdge[:]
						case p.transA:
							ti = mr - rows
							as = p.a[pc*p.lda+ic+i-ti:]
							rsA, csA = 1, p.lda
						default:
							ti = mr - rows
							as = p.a[(ic+i-ti)*p.lda+pc:]
							rsA, csA = p.lda, 1
						}
						cs := p.c[(ic+i)*p.ldc+jc+j:]
						if rows == mr {
							kern(kb, as, rsA, csA, bs, bld, cs, p.ldc, p.alpha, beta, cols)
							continue
						}
						// Ragged rows: compute the whole tile aside, then merge the valid part
						// (rewriting the overlapped rows would apply beta twice).
						kern(kb, as, rsA, csA, bs, bld, ws.tile[:], nr, p.alpha, 0, nr)
						for r := 0; r < rows; r++ {
							t := ws.tile[(ti+r)*nr : (ti+r)*nr+cols]
							cr := cs[r*p.ldc : r*p.ldc+cols]
							if beta == 0 {
								copy(cr, t)
								continue
							}
							for x, v := range t {
								cr[x] = beta*cr[x] + v
							}
						}
					}
				}
			}
		}
	}
}

// packAPanel writes op(A)[i0:i0+rows, p0:p0+kb] to dst as kb groups of mr values
// (dst[p*mr+r]), zero-padding rows ≥ rows.
func packAPanel(dst []float32, p *problem, i0, rows, p0, kb int) {
	dst = dst[:kb*mr]
	if rows < mr {
		clear(dst)
	}
	if p.transA {
		// Each k step is rows (≤ mr) contiguous values: a loop beats a tiny memmove.
		for q := 0; q < kb; q++ {
			src := p.a[(p0+q)*p.lda+i0:]
			src = src[:rows]
			d := dst[q*mr : q*mr+rows]
			//lint:ignore S1001 see above
			for r, v := range src {
				d[r] = v
			}
		}
		return
	}
	for r := 0; r < rows; r++ {
		src := p.a[(i0+r)*p.lda+p0:]
		src = src[:kb]
		for q, v := range src {
			dst[q*mr+r] = v
		}
	}
}

// packBPanel writes op(B)[p0:p0+kb, j0:j0+cols] to dst as kb rows of nr values
// (dst[p*nr+j]), zero-padding columns ≥ cols.
func packBPanel(im impl, dst []float32, p *problem, p0, kb, j0, cols int) {
	dst = dst[:kb*nr]
	if cols < nr {
		clear(dst)
	}
	if !p.transB {
		for q := 0; q < kb; q++ {
			copy(dst[q*nr:q*nr+cols], p.b[(p0+q)*p.ldb+j0:])
		}
		return
	}
	q0 := 0
	if cols == nr && im.packBT != nil {
		q0 = im.packBT(dst, p.b[j0*p.ldb+p0:], p.ldb, kb)
		if q0 == kb {
			return
		}
	}
	// Transposed: gather four source rows at a time so each k step writes 4 adjacent values.
	p0, kb, dst = p0+q0, kb-q0, dst[q0*nr:]
	j := 0
	for ; j+4 <= cols; j += 4 {
		s0 := p.b[(j0+j)*p.ldb+p0:]
		s0 = s0[:kb]
		s1 := p.b[(j0+j+1)*p.ldb+p0:]
		s1 = s1[:len(s0)]
		s2 := p.b[(j0+j+2)*p.ldb+p0:]
		s2 = s2[:len(s0)]
		s3 := p.b[(j0+j+3)*p.ldb+p0:]
		s3 = s3[:len(s0)]
		for q, v := range s0 {
			d := (*[4]float32)(dst[q*nr+j:])
			d[0], d[1], d[2], d[3] = v, s1[q], s2[q], s3[q]
		}
	}
	for ; j < cols; j++ {
		src := p.b[(j0+j)*p.ldb+p0:]
		src = src[:kb]
		for q, v := range src {
			dst[q*nr+j] = v
		}
	}
}

// scaleC sets C = beta*C, without reading C when beta == 0.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(ci)
			continue
		}
		for j := range ci {
			ci[j] *= beta
		}
	}
}

// kernelGo is the portable micro-kernel. It sweeps the 6×16 tile in 3×4 blocks so the twelve
// accumulators, three A values and one B value fit in sixteen floating-point registers.
func kernelGo(k int, a []float32, rsA, csA int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32, cols int) {
	var acc [mr][nr]float32
	for i := 0; i < mr; i += 3 {
		for j := 0; j < nr; j += 4 {
			var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23 float32
			ai, bj := i*rsA, j
			for q := 0; q < k; q++ {
				a0, a1, a2 := a[ai], a[ai+rsA], a[ai+2*rsA]
				bq := (*[4]float32)(b[bj : bj+4])
				b0, b1, b2, b3 := bq[0], bq[1], bq[2], bq[3]
				c00 += a0 * b0
				c01 += a0 * b1
				c02 += a0 * b2
				c03 += a0 * b3
				c10 += a1 * b0
				c11 += a1 * b1
				c12 += a1 * b2
				c13 += a1 * b3
				c20 += a2 * b0
				c21 += a2 * b1
				c22 += a2 * b2
				c23 += a2 * b3
				ai += csA
				bj += ldb
			}
			acc[i][j], acc[i][j+1], acc[i][j+2], acc[i][j+3] = c00, c01, c02, c03
			acc[i+1][j], acc[i+1][j+1], acc[i+1][j+2], acc[i+1][j+3] = c10, c11, c12, c13
			acc[i+2][j], acc[i+2][j+1], acc[i+2][j+2], acc[i+2][j+3] = c20, c21, c22, c23
		}
	}
	for i := range acc {
		ci := c[i*ldc : i*ldc+cols]
		if beta == 0 {
			for j := range ci {
				ci[j] = alpha * acc[i][j]
			}
			continue
		}
		for j := range ci {
			ci[j] = beta*ci[j] + alpha*acc[i][j]
		}
	}
}

func checkShapes(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic("gemm: negative dimension")
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	need := func(name string, rows, cols, ld, have int) {
		if rows == 0 || cols == 0 {
			return
		}
		if ld < cols {
			panic("gemm: leading dimension of " + name + " smaller than its column count")
		}
		if have < (rows-1)*ld+cols {
			panic("gemm: " + name + " too short for its shape")
		}
	}
	need("a", ar, ac, lda, len(a))
	need("b", br, bc, ldb, len(b))
	need("c", m, n, ldc, len(c))
}
