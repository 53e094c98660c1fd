//go:build amd64 && !purego

#include "textflag.h"

// func kernel6x16AVX2(k int, a *float32, rsA, csA int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, load, cols int)
//
// Computes the 6×cols tile C = alpha·Ã·B̃ (+ beta·C when load != 0), 1 ≤ cols ≤ 16, where
//   Ã(i,p) = *(a + i*rsA + p*csA)   i < 6, p < k   (strides in bytes)
//   B̃(p,j) = *(b + p*ldb + 4*j)     j < 16
//   C(i,j) = *(c + i*ldc + 4*j)
// k must be ≥ 1. The strided Ã lets the same kernel read a packed panel (rsA=4, csA=24),
// a row-major A in place (rsA=lda, csA=4) or a transposed A in place (rsA=4, csA=lda).
//
// Registers:
//   CX      remaining k steps
//   SI      &Ã(0,p)            DI  &Ã(3,p) = SI + 3*rsA
//   R8      rsA (bytes)        R9  csA (bytes)
//   DX      &B̃(p,0)            R10 ldb (bytes)
//   BX      &C(i,0)            R11 ldc (bytes)
//   Y0..Y11 accumulators: row i in Y(2i) (columns 0-7) and Y(2i+1) (columns 8-15)
//   Y12,Y13 B̃ row p (columns 0-7, 8-15)
//   Y14,Y15 broadcast Ã(i,p); in the epilogue alpha and beta
//
// Each k step is 2 loads, 6 broadcasts and 12 FMAs, so the loop is bound by the two FMA ports.
// With cols < 16 the epilogue scales the accumulators by alpha first, which frees Y14, and uses
// Y12/Y13 as VMASKMOVPS lane masks, so columns ≥ cols of C are neither read nor written.

// colmask<>: 16 all-ones words then 16 zero words; the 8 words from index 16-cols+8h are the
// mask of half h (lanes j with 8h+j < cols).
DATA colmask<>+0(SB)/8, $0xffffffffffffffff
DATA colmask<>+8(SB)/8, $0xffffffffffffffff
DATA colmask<>+16(SB)/8, $0xffffffffffffffff
DATA colmask<>+24(SB)/8, $0xffffffffffffffff
DATA colmask<>+32(SB)/8, $0xffffffffffffffff
DATA colmask<>+40(SB)/8, $0xffffffffffffffff
DATA colmask<>+48(SB)/8, $0xffffffffffffffff
DATA colmask<>+56(SB)/8, $0xffffffffffffffff
DATA colmask<>+64(SB)/8, $0
DATA colmask<>+72(SB)/8, $0
DATA colmask<>+80(SB)/8, $0
DATA colmask<>+88(SB)/8, $0
DATA colmask<>+96(SB)/8, $0
DATA colmask<>+104(SB)/8, $0
DATA colmask<>+112(SB)/8, $0
DATA colmask<>+120(SB)/8, $0
GLOBL colmask<>(SB), RODATA|NOPTR, $128

// STEP accumulates the rank-1 update for one p and advances the pointers.
#define STEP \
	VMOVUPS      (DX), Y12;            \
	VMOVUPS      32(DX), Y13;          \
	VBROADCASTSS (SI), Y14;            \
	VFMADD231PS  Y12, Y14, Y0;         \
	VFMADD231PS  Y13, Y14, Y1;         \
	VBROADCASTSS (SI)(R8*1), Y15;      \
	VFMADD231PS  Y12, Y15, Y2;         \
	VFMADD231PS  Y13, Y15, Y3;         \
	VBROADCASTSS (SI)(R8*2), Y14;      \
	VFMADD231PS  Y12, Y14, Y4;         \
	VFMADD231PS  Y13, Y14, Y5;         \
	VBROADCASTSS (DI), Y15;            \
	VFMADD231PS  Y12, Y15, Y6;         \
	VFMADD231PS  Y13, Y15, Y7;         \
	VBROADCASTSS (DI)(R8*1), Y14;      \
	VFMADD231PS  Y12, Y14, Y8;         \
	VFMADD231PS  Y13, Y14, Y9;         \
	VBROADCASTSS (DI)(R8*2), Y15;      \
	VFMADD231PS  Y12, Y15, Y10;        \
	VFMADD231PS  Y13, Y15, Y11;        \
	ADDQ         R9, SI;               \
	ADDQ         R9, DI;               \
	ADDQ         R10, DX

// STORE0 writes row (lo, hi) as alpha·acc, then advances BX to the next row of C.
#define STORE0(lo, hi) \
	VMULPS  Y14, lo, lo;  \
	VMULPS  Y14, hi, hi;  \
	VMOVUPS lo, (BX);     \
	VMOVUPS hi, 32(BX);   \
	ADDQ    R11, BX

// STORE1 writes row (lo, hi) as beta·C + alpha·acc, then advances BX to the next row of C.
#define STORE1(lo, hi) \
	VMULPS      (BX), Y15, Y12;   \
	VMULPS      32(BX), Y15, Y13; \
	VFMADD231PS Y14, lo, Y12;     \
	VFMADD231PS Y14, hi, Y13;     \
	VMOVUPS     Y12, (BX);        \
	VMOVUPS     Y13, 32(BX);      \
	ADDQ        R11, BX

// MSTORE0 writes the valid columns of row (lo, hi), already scaled by alpha, and advances BX.
#define MSTORE0(lo, hi) \
	VMASKMOVPS lo, Y12, (BX);   \
	VMASKMOVPS hi, Y13, 32(BX); \
	ADDQ       R11, BX

// MSTORE1 writes the valid columns of beta·C + row (lo, hi), already scaled by alpha.
#define MSTORE1(lo, hi) \
	VMASKMOVPS  (BX), Y12, Y14;   \
	VFMADD231PS Y15, Y14, lo;     \
	VMASKMOVPS  lo, Y12, (BX);    \
	VMASKMOVPS  32(BX), Y13, Y14; \
	VFMADD231PS Y15, Y14, hi;     \
	VMASKMOVPS  hi, Y13, 32(BX);  \
	ADDQ        R11, BX

TEXT ·kernel6x16AVX2(SB), NOSPLIT, $0-88
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rsA+16(FP), R8
	MOVQ csA+24(FP), R9
	MOVQ b+32(FP), DX
	MOVQ ldb+40(FP), R10
	MOVQ c+48(FP), BX
	MOVQ ldc+56(FP), R11

	// DI = SI + 3*rsA addresses rows 3..5 with the same (base)(R8*scale) forms as rows 0..2.
	LEAQ (SI)(R8*2), DI
	ADDQ R8, DI

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	// Main loop, unrolled ×4; the remainder (k mod 4) runs one step at a time.
	CMPQ CX, $4
	JLT  tail

loop4:
	STEP
	STEP
	STEP
	STEP
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JZ    done

loop1:
	STEP
	DECQ CX
	JNZ  loop1

done:
	VBROADCASTSS alpha+64(FP), Y14
	VBROADCASTSS beta+68(FP), Y15
	MOVQ         load+72(FP), AX
	MOVQ         cols+80(FP), DX
	CMPQ         DX, $16
	JLT          masked
	TESTQ        AX, AX
	JNZ          accumulate

	STORE0(Y0, Y1)
	STORE0(Y2, Y3)
	STORE0(Y4, Y5)
	STORE0(Y6, Y7)
	STORE0(Y8, Y9)
	STORE0(Y10, Y11)
	VZEROUPPER
	RET

accumulate:
	STORE1(Y0, Y1)
	STORE1(Y2, Y3)
	STORE1(Y4, Y5)
	STORE1(Y6, Y7)
	STORE1(Y8, Y9)
	STORE1(Y10, Y11)
	VZEROUPPER
	RET

masked:
	VMULPS Y14, Y0, Y0
	VMULPS Y14, Y1, Y1
	VMULPS Y14, Y2, Y2
	VMULPS Y14, Y3, Y3
	VMULPS Y14, Y4, Y4
	VMULPS Y14, Y5, Y5
	VMULPS Y14, Y6, Y6
	VMULPS Y14, Y7, Y7
	VMULPS Y14, Y8, Y8
	VMULPS Y14, Y9, Y9
	VMULPS Y14, Y10, Y10
	VMULPS Y14, Y11, Y11
	LEAQ    colmask<>(SB), CX
	NEGQ    DX
	ADDQ    $16, DX              // DX = 16 - cols
	VMOVDQU (CX)(DX*4), Y12      // lanes j < cols
	VMOVDQU 32(CX)(DX*4), Y13    // lanes 8+j < cols
	TESTQ   AX, AX
	JNZ     maskedAccumulate

	MSTORE0(Y0, Y1)
	MSTORE0(Y2, Y3)
	MSTORE0(Y4, Y5)
	MSTORE0(Y6, Y7)
	MSTORE0(Y8, Y9)
	MSTORE0(Y10, Y11)
	VZEROUPPER
	RET

maskedAccumulate:
	MSTORE1(Y0, Y1)
	MSTORE1(Y2, Y3)
	MSTORE1(Y4, Y5)
	MSTORE1(Y6, Y7)
	MSTORE1(Y8, Y9)
	MSTORE1(Y10, Y11)
	VZEROUPPER
	RET
