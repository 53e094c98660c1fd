//go:build amd64 && !purego

#include "textflag.h"

// func packBT16AVX2(dst *float32, src *float32, ld int, blocks int)
//
// Packs a transposed B panel: for 16 source rows r (row r at src + r*ld bytes) and
// 8*blocks consecutive values p of each row, writes dst[p*16 + r] = src[r][p].
// Each 8-value block is two 8×8 transposes (rows 0-7 → dst columns 0-7, rows 8-15 → 8-15).
//
// Registers:
//   DX          dst (advances 8*64 bytes per block)
//   SI, DI      rows 0 and 3          R8  ld (bytes)
//   R9, R10     rows 6 and 8
//   R11, R12    rows 11 and 14        (all row pointers advance 32 bytes per block)
//   CX          remaining blocks
//   Y0..Y7      the eight rows, then the shuffled halves s0..s7
//   Y8..Y15     unpacked pairs t0..t7, then the transposed columns

// The transpose is the usual three stages: VUNPCKLPS/VUNPCKHPS interleave row pairs
// (t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5], …), VSHUFPS gathers four rows of one
// column per 128-bit lane (s0 = column 0 rows 0-3 | column 4 rows 0-3, …), and VPERM2F128 joins
// the lanes of rows 0-3 and 4-7 (column 0 = s0.lo|s4.lo with $0x20, column 4 = s0.hi|s4.hi with $0x31).

// TRANSPOSE8 loads rows (r0),(r0+ld),(r0+2ld),(r3),(r3+ld),(r3+2ld),(r6),(r6+ld), transposes
// them and stores column c at off + c*64 (DX).
#define TRANSPOSE8(r0, r3, r6, off) \
	VMOVUPS    (r0), Y0;                \
	VMOVUPS    (r0)(R8*1), Y1;          \
	VMOVUPS    (r0)(R8*2), Y2;          \
	VMOVUPS    (r3), Y3;                \
	VMOVUPS    (r3)(R8*1), Y4;          \
	VMOVUPS    (r3)(R8*2), Y5;          \
	VMOVUPS    (r6), Y6;                \
	VMOVUPS    (r6)(R8*1), Y7;          \
	VUNPCKLPS  Y1, Y0, Y8;              \
	VUNPCKHPS  Y1, Y0, Y9;              \
	VUNPCKLPS  Y3, Y2, Y10;             \
	VUNPCKHPS  Y3, Y2, Y11;             \
	VUNPCKLPS  Y5, Y4, Y12;             \
	VUNPCKLPS  Y7, Y6, Y14;             \
	VUNPCKHPS  Y5, Y4, Y13;             \
	VUNPCKHPS  Y7, Y6, Y15;             \
	VSHUFPS    $0x44, Y10, Y8, Y0;      \
	VSHUFPS    $0xEE, Y10, Y8, Y1;      \
	VSHUFPS    $0x44, Y11, Y9, Y2;      \
	VSHUFPS    $0xEE, Y11, Y9, Y3;      \
	VSHUFPS    $0x44, Y14, Y12, Y4;     \
	VSHUFPS    $0xEE, Y14, Y12, Y5;     \
	VSHUFPS    $0x44, Y15, Y13, Y6;     \
	VSHUFPS    $0xEE, Y15, Y13, Y7;     \
	VPERM2F128 $0x20, Y4, Y0, Y8;       \
	VPERM2F128 $0x20, Y5, Y1, Y9;       \
	VPERM2F128 $0x20, Y6, Y2, Y10;      \
	VPERM2F128 $0x20, Y7, Y3, Y11;      \
	VPERM2F128 $0x31, Y4, Y0, Y12;      \
	VPERM2F128 $0x31, Y5, Y1, Y13;      \
	VPERM2F128 $0x31, Y6, Y2, Y14;      \
	VPERM2F128 $0x31, Y7, Y3, Y15;      \
	VMOVUPS    Y8, off(DX);             \
	VMOVUPS    Y9, off+64(DX);          \
	VMOVUPS    Y10, off+128(DX);        \
	VMOVUPS    Y11, off+192(DX);        \
	VMOVUPS    Y12, off+256(DX);        \
	VMOVUPS    Y13, off+320(DX);        \
	VMOVUPS    Y14, off+384(DX);        \
	VMOVUPS    Y15, off+448(DX)

TEXT ·packBT16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DX
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ blocks+24(FP), CX
	TESTQ CX, CX
	JZ   done

	LEAQ (SI)(R8*2), DI  // DI = row 3
	ADDQ R8, DI
	LEAQ (DI)(R8*2), R9  // R9 = row 6
	ADDQ R8, R9
	LEAQ (R9)(R8*2), R10 // R10 = row 8
	LEAQ (R10)(R8*2), R11 // R11 = row 11
	ADDQ R8, R11
	LEAQ (R11)(R8*2), R12 // R12 = row 14
	ADDQ R8, R12

loop:
	TRANSPOSE8(SI, DI, R9, 0)
	TRANSPOSE8(R10, R11, R12, 32)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R9
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	ADDQ $512, DX
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET
