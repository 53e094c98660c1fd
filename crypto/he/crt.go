package he

import (
	"math/bits"

	"github.com/tuneinsight/lattigo/v5/ring"
)

const two64 = 1 << 64

func mulMod(a, b, q uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return bits.Rem64(hi, lo, q)
}

// decoder turns coefficient-domain residues into centred integers as float64.
type decoder struct {
	qs     []uint64
	brc1   []uint64 // Barrett constant of q1
	oneSub bool     // q0 < 2*q1: r0 mod q1 needs at most one subtraction
	q0inv  uint64   // q0^-1 mod q1
	qHi    uint64   // Q = q0*q1 as 128 bits
	qLo    uint64
	halfHi uint64 // floor(Q/2)
	halfLo uint64
}

func newDecoder(qs []uint64, brc [][]uint64) decoder {
	d := decoder{qs: qs}
	if len(qs) == 2 {
		d.q0inv = powMod(qs[0]%qs[1], qs[1]-2, qs[1])
		d.brc1 = brc[1]
		d.oneSub = qs[0]/2 < qs[1]
		d.qHi, d.qLo = bits.Mul64(qs[0], qs[1])
		d.halfLo = d.qLo>>1 | d.qHi<<63
		d.halfHi = d.qHi >> 1
	}
	return d
}

// value returns the centred integer with residues r0 (and r1) as float64.
func (d decoder) value(r0, r1 uint64) float64 {
	if len(d.qs) == 1 {
		if r0 > d.qs[0]/2 {
			return -float64(d.qs[0] - r0)
		}
		return float64(r0)
	}
	q0, q1 := d.qs[0], d.qs[1]
	// x = r0 + q0 * ((r1 - r0) * q0^-1 mod q1)
	var r0q1 uint64 // r0 mod q1
	if d.oneSub {
		r0q1 = r0
		if r0q1 >= q1 {
			r0q1 -= q1
		}
	} else {
		r0q1 = ring.BRedAdd(r0, q1, d.brc1)
	}
	t := ring.BRed(subMod(r1, r0q1, q1), d.q0inv, q1, d.brc1)
	hi, lo := bits.Mul64(q0, t)
	var c uint64
	lo, c = bits.Add64(lo, r0, 0)
	hi += c
	if hi > d.halfHi || (hi == d.halfHi && lo > d.halfLo) {
		// negative: x - Q
		var b uint64
		lo, b = bits.Sub64(d.qLo, lo, 0)
		hi = d.qHi - hi - b
		return -(float64(hi)*two64 + float64(lo))
	}
	return float64(hi)*two64 + float64(lo)
}
