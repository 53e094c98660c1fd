// Package gemm multiplies row-major float32 matrices, the hot loop of MedFed's model engine.
//
// Sgemm follows the BLAS convention (C = alpha*op(A)*op(B) + beta*C) for row-major storage with
// leading dimensions, so callers can multiply sub-matrices in place. On amd64 with AVX2 and FMA
// the inner kernel is Go assembly; elsewhere (or with the purego build tag) a portable Go kernel
// runs. Large products are split across goroutines (at most runtime.GOMAXPROCS(0)).
//
// # Design
//
// The loops follow GotoBLAS/BLIS: C is computed in 6×16 register tiles by a micro-kernel that
// keeps the tile in twelve 8-wide registers and performs one rank-1 update per step of k. Around
// it, k is cut into slices of at most 256, n into blocks of at most 2048 columns and m into
// blocks of 96 rows. The 16-column panels of op(B) are packed (contiguous, zero-padded) when B is
// transposed or is wide and reused; otherwise the kernel reads B in place. The kernel reads A
// through two strides, so the 6-row panels of op(A) are read in place whether A is transposed or
// not, and are only packed when they are reused across many B panels. A ragged last B panel is
// packed zero-padded and its tiles are stored with masked moves; a ragged last A panel read in
// place is shifted up to overlap its neighbour (so nothing outside A is read) and its tiles go
// through a scratch tile whose valid rows are merged into C. Transposed B panels are packed with
// 8×8 AVX2 transposes. Products above ~1 MFLOP are cut into whole-tile row or column chunks
// that up to GOMAXPROCS goroutines claim dynamically.
//
// Shape mismatches are programmer errors and panic, like gonum/mat.
// All functions are safe for concurrent use on disjoint outputs.
package gemm
