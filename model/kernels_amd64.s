//go:build !purego

#include "textflag.h"

// func maxStepAVX2(y *float32, idx *int32, row *float32, n int, k int32)
// For i < n (n a multiple of 8): where row[i] > y[i], set idx[i] = k; then y[i] = max(y[i], row[i]).
TEXT ·maxStepAVX2(SB), NOSPLIT, $0-36
	MOVQ y+0(FP), DI
	MOVQ idx+8(FP), SI
	MOVQ row+16(FP), DX
	MOVQ n+24(FP), CX
	MOVL k+32(FP), AX
	MOVQ AX, X2
	VPBROADCASTD X2, Y2     // Y2 = k in every lane

maxloop:
	CMPQ CX, $8
	JL   maxdone
	VMOVUPS (DX), Y0        // row
	VMOVUPS (DI), Y1        // y
	VCMPPS  $0x1e, Y1, Y0, Y3 // Y3 = row > y (GT_OQ: false for NaN)
	VMAXPS  Y1, Y0, Y4      // Y4 = max(row, y)
	VMOVUPS Y4, (DI)
	VMOVDQU (SI), Y5
	VPBLENDVB Y3, Y2, Y5, Y5 // Y5 = Y3 ? k : idx
	VMOVDQU Y5, (SI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	SUBQ $8, CX
	JMP  maxloop

maxdone:
	VZEROUPPER
	RET

// func adamAVX2(w, grad, m, v *float32, n int, b1, b2, alpha, eps float32)
// For i < n (n a multiple of 8), Keras's Adam update with the bias correction folded into
// alpha: m = b1·m + (1-b1)·g; v = b2·v + (1-b2)·g²; w -= alpha·m / (sqrt(v) + eps).
//
// The moments of weights whose gradients stay zero (pixels that are always blank, say) decay
// geometrically into the subnormal range, where every multiply, square root and divide costs
// a hundred cycles. The loop therefore runs with flush-to-zero and denormals-are-zero set in
// MXCSR (as TensorFlow runs by default) and restores the caller's MXCSR before returning.
TEXT ·adamAVX2(SB), NOSPLIT, $16-56
	STMXCSR saved-4(SP)
	MOVL saved-4(SP), AX
	ORL  $0x8040, AX        // FTZ (bit 15) | DAZ (bit 6)
	MOVL AX, ftz-8(SP)
	LDMXCSR ftz-8(SP)
	MOVQ w+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), DX
	MOVQ v+24(FP), R8
	MOVQ n+32(FP), CX
	VBROADCASTSS b1+40(FP), Y10
	VBROADCASTSS b2+44(FP), Y11
	VBROADCASTSS alpha+48(FP), Y12
	VBROADCASTSS eps+52(FP), Y13
	MOVL $0x3f800000, AX    // 1.0
	MOVQ AX, X14
	VBROADCASTSS X14, Y14
	VSUBPS Y10, Y14, Y8     // Y8 = 1 - b1
	VSUBPS Y11, Y14, Y9     // Y9 = 1 - b2

adamloop:
	CMPQ CX, $8
	JL   adamdone
	VMOVUPS (SI), Y0        // g
	VMULPS  (DX), Y10, Y1   // b1·m
	VFMADD231PS Y0, Y8, Y1  // m = b1·m + (1-b1)·g
	VMOVUPS Y1, (DX)
	VMULPS  Y0, Y0, Y2      // g²
	VMULPS  (R8), Y11, Y3   // b2·v
	VFMADD231PS Y2, Y9, Y3  // v = b2·v + (1-b2)·g²
	VMOVUPS Y3, (R8)
	VSQRTPS Y3, Y4
	VADDPS  Y13, Y4, Y4     // sqrt(v) + eps
	VMULPS  Y12, Y1, Y5     // alpha·m
	VDIVPS  Y4, Y5, Y5      // alpha·m / (sqrt(v) + eps)
	VMOVUPS (DI), Y6
	VSUBPS  Y5, Y6, Y6
	VMOVUPS Y6, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, R8
	SUBQ $8, CX
	JMP  adamloop

adamdone:
	VZEROUPPER
	LDMXCSR saved-4(SP)
	RET

// func combine2AVX2(d, a, b *float32, n int, wa, wb float32)
// For i < n (n a multiple of 8): d = wa·a + wb·b, then a = b = 0.
TEXT ·combine2AVX2(SB), NOSPLIT, $0-40
	MOVQ d+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS wa+32(FP), Y10
	VBROADCASTSS wb+36(FP), Y11
	VXORPS Y12, Y12, Y12

combloop:
	CMPQ CX, $8
	JL   combdone
	VMULPS (SI), Y10, Y0
	VMOVUPS (DX), Y1
	VFMADD231PS Y1, Y11, Y0 // Y0 = wa·a + wb·b
	VMOVUPS Y0, (DI)
	VMOVUPS Y12, (SI)
	VMOVUPS Y12, (DX)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	SUBQ $8, CX
	JMP  combloop

combdone:
	VZEROUPPER
	RET
