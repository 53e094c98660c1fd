// Package gemm multiplies row-major float32 matrices, the hot loop of MedFed's model engine.
//
// Sgemm follows the BLAS convention (C = alpha*op(A)*op(B) + beta*C) for row-major storage with
// leading dimensions, so callers can multiply sub-matrices in place. On amd64 with AVX2 and FMA
// the inner kernel is Go assembly; elsewhere a portable Go kernel runs. Large products are split
// across goroutines (at most runtime.GOMAXPROCS(0)).
//
// Shape mismatches are programmer errors and panic, like gonum/mat.
// All functions are safe for concurrent use on disjoint outputs.
package gemm
