//go:build amd64 && !purego

package gemm

import "golang.org/x/sys/cpu"

// defaultImpl returns the fastest implementation for this CPU.
func defaultImpl() impl {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return impl{kernelAVX2, packBTAVX2}
	}
	return impl{kernel: kernelGo}
}

// impls returns every implementation usable on this CPU, by name, for tests and benchmarks.
func impls() map[string]impl {
	ks := map[string]impl{"go": {kernel: kernelGo}}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks["avx2"] = impl{kernelAVX2, packBTAVX2}
	}
	return ks
}

// kernelAVX2 is the AVX2+FMA micro-kernel; see kernel6x16AVX2 in kernel_amd64.s.
// The slices are only used for their base addresses: the caller guarantees the bounds.
func kernelAVX2(k int, a []float32, rsA, csA int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32, cols int) {
	load := 0
	if beta != 0 {
		load = 1
	}
	kernel6x16AVX2(k, &a[0], rsA*4, csA*4, &b[0], ldb*4, &c[0], ldc*4, alpha, beta, load, cols)
}

// kernel6x16AVX2 computes the 6×cols tile C = alpha·Ã·B̃ (+ beta·C if load != 0) with strides in
// bytes; 1 ≤ cols ≤ 16, and columns ≥ cols of C are neither read nor written.
//
//go:noescape
func kernel6x16AVX2(k int, a *float32, rsA, csA int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, load, cols int)

// packBT16AVX2 writes dst[p*16+r] = src[r*ld/4+p] for r < 16, p < 8*blocks (ld in bytes).
//
//go:noescape
func packBT16AVX2(dst *float32, src *float32, ld int, blocks int)

// packBTAVX2 packs the first 8*⌊kb/8⌋ steps of a full transposed B panel (see packBT16AVX2)
// and returns how many it packed. src holds 16 rows of stride ld, each at least kb long.
func packBTAVX2(dst, src []float32, ld, kb int) int {
	blocks := kb / 8
	if blocks == 0 {
		return 0
	}
	_ = dst[kb*nr-1]
	_ = src[15*ld+kb-1]
	packBT16AVX2(&dst[0], &src[0], ld*4, blocks)
	return blocks * 8
}
