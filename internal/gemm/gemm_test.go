package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"testing"
)

// refGemm is the float64 reference: it returns C = alpha*op(A)*op(B) + beta*C for the m×n
// region and, per element, the magnitude sum used to scale the tolerance.
func refGemm(p *problem) (want, scale []float64) {
	want = make([]float64, p.m*p.n)
	scale = make([]float64, p.m*p.n)
	for i := 0; i < p.m; i++ {
		for j := 0; j < p.n; j++ {
			var s, mag float64
			for q := 0; q < p.k; q++ {
				var av, bv float32
				if p.transA {
					av = p.a[q*p.lda+i]
				} else {
					av = p.a[i*p.lda+q]
				}
				if p.transB {
					bv = p.b[j*p.ldb+q]
				} else {
					bv = p.b[q*p.ldb+j]
				}
				s += float64(av) * float64(bv)
				mag += math.Abs(float64(av) * float64(bv))
			}
			w := float64(p.alpha) * s
			mag *= math.Abs(float64(p.alpha))
			if p.beta != 0 {
				cv := float64(p.c[i*p.ldc+j])
				w += float64(p.beta) * cv
				mag += math.Abs(float64(p.beta) * cv)
			}
			want[i*p.n+j] = w
			scale[i*p.n+j] = mag
		}
	}
	return want, scale
}

// sentinel marks C elements outside the m×n region, which Sgemm must not touch.
const sentinel = 12345.5

// newProblem builds a random problem; padA, padB, padC are added to the leading dimensions.
func newProblem(rng *rand.Rand, transA, transB bool, m, n, k, padA, padB, padC int, alpha, beta float32, nanC bool) *problem {
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	p := &problem{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		lda: ac + padA, ldb: bc + padB, ldc: n + padC}
	p.a = randSlice(rng, max(0, (ar-1)*p.lda+ac))
	p.b = randSlice(rng, max(0, (br-1)*p.ldb+bc))
	p.c = make([]float32, max(0, (m-1)*p.ldc+n))
	for i := range p.c {
		p.c[i] = sentinel
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			if nanC {
				p.c[i*p.ldc+j] = float32(math.NaN())
			} else {
				p.c[i*p.ldc+j] = rng.Float32()*2 - 1
			}
		}
	}
	return p
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// check runs the problem with kern and compares against the float64 reference.
func check(t *testing.T, im impl, p *problem) {
	t.Helper()
	want, scale := refGemm(p)
	q := *p
	q.c = append([]float32(nil), p.c...)
	checkShapes(q.transA, q.transB, q.m, q.n, q.k, q.a, q.lda, q.b, q.ldb, q.c, q.ldc)
	workers := runtime.GOMAXPROCS(0)
	if p.m%2 == 1 { // odd-sized problems also go through the serial entry point
		workers = 1
	}
	sgemm(im, &q, workers)
	tol := 4e-7 * float64(p.k+2)
	bad := 0
	for idx, v := range q.c {
		i, j := idx/max(q.ldc, 1), idx%max(q.ldc, 1)
		if i >= q.m || j >= q.n {
			if v != sentinel {
				t.Fatalf("C[%d][%d] outside the %d×%d result changed: got %v want %v", i, j, q.m, q.n, v, sentinel)
			}
			continue
		}
		w, s := want[i*q.n+j], scale[i*q.n+j]
		if d := math.Abs(float64(v) - w); !(d <= tol*(s+1e-30)) {
			if bad++; bad <= 3 {
				t.Errorf("C[%d][%d] = %v, want %v (|diff| %.3g > tol %.3g)", i, j, v, w, d, tol*s)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d elements wrong", bad, q.m*q.n)
	}
}

func sortedImpls() []string {
	var names []string
	for name := range impls() {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func TestSgemmShapes(t *testing.T) {
	// More workers than cores exercise the parallel split (chunking, ragged last chunks) anywhere.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	type shape struct{ m, n, k int }
	shapes := []shape{
		{0, 0, 0}, {0, 5, 3}, {5, 0, 3}, {5, 3, 0}, {1, 1, 1}, {1, 17, 1}, {7, 1, 13},
		{6, 16, 1}, {6, 16, 7}, {5, 15, 9}, {7, 17, 33}, {12, 32, 9}, {13, 33, 257},
		{50, 10, 64}, {32, 10, 64}, {9, 32, 300}, {100, 70, 29}, {37, 130, 520},
		{200, 96, 20}, {8, 2100, 20}, {300, 64, 9}, {33, 385, 128},
		{20, 37, 800}, {26, 10, 4000}, // parallel chunks narrower than a tile
	}
	betas := []float32{0, 1, -0.5}
	for _, name := range sortedImpls() {
		im := impls()[name]
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			for _, s := range shapes {
				for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
					for bi, beta := range betas {
						alpha := []float32{1, 0.75, -2}[bi]
						pad := (s.m + s.n + s.k + bi) % 3 * 5
						p := newProblem(rng, tr[0], tr[1], s.m, s.n, s.k, pad, 2*pad, pad+1, alpha, beta, beta == 0)
						t.Run(fmt.Sprintf("%dx%dx%d_tA=%v_tB=%v_beta=%v", s.m, s.n, s.k, tr[0], tr[1], beta), func(t *testing.T) {
							check(t, im, p)
						})
					}
				}
			}
		})
	}
}

func TestSgemmRandom(t *testing.T) {
	n := 60
	if testing.Short() {
		n = 30
	}
	for _, name := range sortedImpls() {
		im := impls()[name]
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			for it := 0; it < n; it++ {
				m, nn, k := rng.IntN(70), rng.IntN(70), rng.IntN(400)
				beta := []float32{0, 1, 0.3}[rng.IntN(3)]
				alpha := []float32{1, -1.5, 0}[rng.IntN(3)]
				p := newProblem(rng, rng.IntN(2) == 0, rng.IntN(2) == 0, m, nn, k,
					rng.IntN(4), rng.IntN(4), rng.IntN(4), alpha, beta, beta == 0 && rng.IntN(2) == 0)
				check(t, im, p)
			}
		})
	}
}

// TestSgemmModelShapes covers the model engine's shapes, which also exercise the parallel split.
func TestSgemmModelShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range benchShapes {
		if s.m*s.n*s.k > 20_000_000 {
			continue // the float64 reference is too slow under -race
		}
		for _, name := range sortedImpls() {
			p := newProblem(rng, s.transA, s.transB, s.m, s.n, s.k, 0, 0, 0, 1, 0, true)
			t.Run(s.name+"/"+name, func(t *testing.T) { check(t, impls()[name], p) })
		}
	}
}

func TestSgemmPanics(t *testing.T) {
	a := make([]float32, 6)
	tests := []struct {
		name string
		f    func()
	}{
		{"negative", func() { Sgemm(false, false, -1, 2, 3, 1, a, 3, a, 2, 0, a, 2) }},
		{"short a", func() { Sgemm(false, false, 3, 2, 3, 1, a, 3, a, 2, 0, a, 2) }},
		{"small ldb", func() { Sgemm(false, false, 2, 3, 2, 1, a, 2, a, 2, 0, a, 3) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			tt.f()
		})
	}
}

func ExampleSgemm() {
	// C (2×2) = A (2×3) · B (3×2).
	a := []float32{1, 2, 3, 4, 5, 6}
	b := []float32{1, 0, 0, 1, 1, 1}
	c := make([]float32, 4)
	Sgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2)
	fmt.Println(c)
	// Output: [4 5 10 11]
}

func TestSgemmSerialMatchesSgemm(t *testing.T) {
	const m, n, k = 70, 50, 300
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := randSlice(rng, m*k), randSlice(rng, k*n)
	c1, c2 := make([]float32, m*n), make([]float32, m*n)
	Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c1, n)
	SgemmSerial(false, false, m, n, k, 1, a, k, b, n, 0, c2, n)
	for i := range c1 {
		if d := c1[i] - c2[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("c[%d]: Sgemm %v, SgemmSerial %v", i, c1[i], c2[i])
		}
	}
}
