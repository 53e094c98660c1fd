package gemm

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// benchShapes are the model engine's products (seed CNN, batch 32) plus a large square one.
var benchShapes = []struct {
	name           string
	transA, transB bool
	m, n, k        int
}{
	{"conv_fwd_21632x32x9", false, false, 21632, 32, 9},
	{"conv_wgrad_tA_9x32x21632", true, false, 9, 32, 21632},
	{"conv_igrad_tB_21632x9x32", false, true, 21632, 9, 32},
	{"dense_fwd_32x64x5408", false, false, 32, 64, 5408},
	{"dense_infer_256x64x5408", false, false, 256, 64, 5408},
	{"dense_wgrad_tA_5408x64x32", true, false, 5408, 64, 32},
	{"dense_igrad_tB_32x5408x64", false, true, 32, 5408, 64},
	{"small_32x10x64", false, false, 32, 10, 64},
	{"small_tB_32x10x64", false, true, 32, 10, 64},
	{"rnn_32x384x128", false, false, 32, 384, 128},
	{"rnn_tB_32x384x128", false, true, 32, 384, 128},
	{"rnn_32x128x28", false, false, 32, 128, 28},
	{"rnn_tB_32x128x28", false, true, 32, 128, 28},
	{"rnn_seq_896x384x28", false, false, 896, 384, 28},
	{"rnn_wgrad_tA_128x384x864", true, false, 128, 384, 864},
	{"square_1024", false, false, 1024, 1024, 1024},
}

func benchOperands(transA, transB bool, m, n, k int) (a []float32, lda int, b []float32, ldb int, c []float32) {
	rng := rand.New(rand.NewPCG(7, 8))
	lda, ldb = k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	return randSlice(rng, m*k), lda, randSlice(rng, k*n), ldb, make([]float32, m*n)
}

func reportGFLOPS(b *testing.B, m, n, k int) {
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkSgemm measures Sgemm (fastest kernel for this CPU) on each shape.
func BenchmarkSgemm(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			a, lda, bm, ldb, c := benchOperands(s.transA, s.transB, s.m, s.n, s.k)
			for b.Loop() {
				Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
			}
			reportGFLOPS(b, s.m, s.n, s.k)
		})
	}
}

// BenchmarkSgemmPureGo measures the portable kernel on the same shapes.
func BenchmarkSgemmPureGo(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			a, lda, bm, ldb, c := benchOperands(s.transA, s.transB, s.m, s.n, s.k)
			for b.Loop() {
				sgemm(impl{kernel: kernelGo}, &problem{s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n}, runtime.GOMAXPROCS(0))
			}
			reportGFLOPS(b, s.m, s.n, s.k)
		})
	}
}

// BenchmarkGonumSgemm is the reference: gonum's pure-Go blas32.Gemm on the same shapes.
func BenchmarkGonumSgemm(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			a, lda, bm, ldb, c := benchOperands(s.transA, s.transB, s.m, s.n, s.k)
			ar, ac := s.m, s.k
			tA, tB := blas.NoTrans, blas.NoTrans
			if s.transA {
				ar, ac, tA = s.k, s.m, blas.Trans
			}
			br, bc := s.k, s.n
			if s.transB {
				br, bc, tB = s.n, s.k, blas.Trans
			}
			ga := blas32.General{Rows: ar, Cols: ac, Stride: lda, Data: a}
			gb := blas32.General{Rows: br, Cols: bc, Stride: ldb, Data: bm}
			gc := blas32.General{Rows: s.m, Cols: s.n, Stride: s.n, Data: c}
			for b.Loop() {
				blas32.Gemm(tA, tB, 1, ga, gb, 0, gc)
			}
			reportGFLOPS(b, s.m, s.n, s.k)
		})
	}
}
