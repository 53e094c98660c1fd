package he

import (
	"encoding/binary"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// Wire format, version 1. Every object starts with a 14-byte header:
//
//	magic "MFHE" | version (1 byte) | kind (1 byte) | profile fingerprint (8 bytes)
//
// followed by fixed-size little-endian fields and polynomials. A polynomial is
// written prime by prime, each coefficient in exactly bits.Len(q_i) bits,
// least significant bit first. Decoders compute the exact size an object must
// have from its fixed fields and the profile, and compare it with the input
// before allocating anything or calling lattigo.
const (
	wireMagic   = "MFHE"
	wireVersion = 1
	headerSize  = 14
)

// kind tags each wire object.
type kind byte

const (
	kindVector kind = iota + 1
	kindDecryptionShare
	kindPublicKeyShare
	kindPublicKey
	kindThresholdShare
	kindSeedCommitment
	kindSeedReveal
	kindPartyState
)

func (k kind) String() string {
	switch k {
	case kindVector:
		return "ciphertext vector"
	case kindDecryptionShare:
		return "decryption share"
	case kindPublicKeyShare:
		return "public key share"
	case kindPublicKey:
		return "public key"
	case kindThresholdShare:
		return "threshold share"
	case kindSeedCommitment:
		return "seed commitment"
	case kindSeedReveal:
		return "seed reveal"
	case kindPartyState:
		return "party state"
	}
	return fmt.Sprintf("kind %d", byte(k))
}

func appendHeader(dst []byte, p Params, k kind) []byte {
	dst = append(dst, wireMagic...)
	dst = append(dst, wireVersion, byte(k))
	return append(dst, p.fingerprint[:]...)
}

// readHeader checks the header and that b has at least min bytes. It returns
// the bytes after the header.
func readHeader(b []byte, p Params, k kind, min int) ([]byte, error) {
	if len(b) < headerSize+min {
		return nil, fmt.Errorf("%w: %v needs at least %d bytes, got %d", ErrMalformed, k, headerSize+min, len(b))
	}
	if string(b[:4]) != wireMagic {
		return nil, fmt.Errorf("%w: expected magic %q, got %q", ErrMalformed, wireMagic, b[:4])
	}
	if b[4] != wireVersion {
		return nil, fmt.Errorf("%w: expected version %d, got %d", ErrMalformed, wireVersion, b[4])
	}
	if kind(b[5]) != k {
		return nil, fmt.Errorf("%w: expected %v, got %v", ErrMalformed, k, kind(b[5]))
	}
	if err := p.checkFingerprint(b[6:14]); err != nil {
		return nil, err
	}
	return b[headerSize:], nil
}

// exactSize compares the input length with the size its fields declare.
func exactSize(k kind, got, want int) error {
	if got != want {
		return fmt.Errorf("%w: %v of this shape must have %d bytes, got %d", ErrMalformed, k, want, got)
	}
	return nil
}

// appendPoly appends the coefficients of pol (levels 0..len(qBits)-1) packed
// at qBits bits each.
func (p Params) appendPoly(dst []byte, pol ring.Poly) []byte {
	for i, w := range p.qBits {
		dst = appendPacked(dst, pol.Coeffs[i], uint(w))
	}
	return dst
}

// readPoly unpacks one polynomial from src (which must hold p.polyBytes bytes)
// into pol and checks that every coefficient is reduced.
func (p Params) readPoly(src []byte, pol ring.Poly) error {
	qs := p.fhe.Q()
	off := 0
	for i, w := range p.qBits {
		n := len(pol.Coeffs[i]) * w / 8
		if err := unpack(src[off:off+n], pol.Coeffs[i], uint(w), qs[i]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// appendPacked appends len(coeffs)*w bits; len(coeffs) must be a multiple of 8.
func appendPacked(dst []byte, coeffs []uint64, w uint) []byte {
	var acc uint64
	var nacc uint
	for _, c := range coeffs {
		acc |= c << nacc
		if nacc+w >= 64 {
			dst = binary.LittleEndian.AppendUint64(dst, acc)
			used := 64 - nacc
			if used == 64 {
				acc = 0
			} else {
				acc = c >> used
			}
			nacc = nacc + w - 64
		} else {
			nacc += w
		}
	}
	for nacc > 0 {
		dst = append(dst, byte(acc))
		acc >>= 8
		if nacc < 8 {
			nacc = 0
		} else {
			nacc -= 8
		}
	}
	return dst
}

// checkPoly checks one packed polynomial in src (p.polyBytes bytes) as readPoly
// does, without unpacking it anywhere.
func (p Params) checkPoly(src []byte) error {
	qs := p.fhe.Q()
	off := 0
	for i, w := range p.qBits {
		n := p.fhe.N() * w / 8
		if err := checkPacked(src[off:off+n], p.fhe.N(), uint(w), qs[i]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// checkPacked checks that the n coefficients of w bits packed in src are all below q,
// with the error unpack gives. For w <= 56 it reads 8 coefficients (w bytes) at a time,
// each with one unaligned 8-byte load at an offset fixed by w, and branches once per
// block; the last blocks, a block that fails and any wider w go one coefficient at a time.
func checkPacked(src []byte, n int, w uint, q uint64) error {
	i := 0
	if w <= 56 {
		mask := uint64(1)<<w - 1
		blk := int(w) // bytes per 8 coefficients
		// Byte offsets and shifts of the 8 coefficients of a block. With w <= 56 the masks
		// change no offset; they let the compiler see that each load stays inside the
		// 64-byte window below, and drop its bounds checks.
		o1, o2, o3, o4, o5, o6, o7 := w/8&7, 2*w/8&15, 3*w/8&31, 4*w/8&31, 5*w/8&63, 6*w/8&63, 7*w/8&63
		s1, s2, s3, s4, s5, s6, s7 := w%8, 2*w%8, 3*w%8, 4*w%8, 5*w%8, 6*w%8, 7*w%8
		le := binary.LittleEndian
		// A block's loads reach at most 7w/8+8 <= 57 bytes past its start.
		for off := 0; i+8 <= n && off+64 <= len(src); i, off = i+8, off+blk {
			b := (*[64]byte)(src[off:])
			bad := q - 1 - le.Uint64(b[:])&mask // wraps, setting the top bit, when above q-1
			bad |= q - 1 - le.Uint64(b[o1:])>>s1&mask
			bad |= q - 1 - le.Uint64(b[o2:])>>s2&mask
			bad |= q - 1 - le.Uint64(b[o3:])>>s3&mask
			bad |= q - 1 - le.Uint64(b[o4:])>>s4&mask
			bad |= q - 1 - le.Uint64(b[o5:])>>s5&mask
			bad |= q - 1 - le.Uint64(b[o6:])>>s6&mask
			bad |= q - 1 - le.Uint64(b[o7:])>>s7&mask
			if bad>>63 != 0 {
				break
			}
		}
	}
	for ; i < n; i++ {
		if v := coefficientAt(src, uint(i)*w, w); v >= q {
			return badCoefficient(i, v, q)
		}
	}
	return nil
}

// coefficientAt returns the w bits of src from bit on.
func coefficientAt(src []byte, bit, w uint) uint64 {
	off, sh := bit>>3, bit&7
	var v uint64
	if int(off)+9 <= len(src) {
		v = binary.LittleEndian.Uint64(src[off:]) >> sh
		if sh+w > 64 {
			v |= uint64(src[off+8]) << (64 - sh)
		}
		return v & (1<<w - 1)
	}
	for j := range w {
		b := bit + j
		v |= uint64(src[b>>3]>>(b&7)&1) << j
	}
	return v
}

func badCoefficient(i int, v, q uint64) error {
	return fmt.Errorf("%w: coefficient %d is %d, expected below modulus %d", ErrMalformed, i, v, q)
}

// unpack reads len(out) coefficients of w bits from src and rejects any that
// is not below q.
func unpack(src []byte, out []uint64, w uint, q uint64) error {
	mask := uint64(1)<<w - 1
	bit := uint(0)
	n := len(out)
	// Fast path: one unaligned 8-byte load per coefficient while 9 bytes remain.
	i := 0
	for ; i < n; i++ {
		off := bit >> 3
		if int(off)+9 > len(src) {
			break
		}
		sh := bit & 7
		v := binary.LittleEndian.Uint64(src[off:]) >> sh
		if sh+w > 64 {
			v |= uint64(src[off+8]) << (64 - sh)
		}
		v &= mask
		if v >= q {
			return badCoefficient(i, v, q)
		}
		out[i] = v
		bit += w
	}
	for ; i < n; i++ {
		v := coefficientAt(src, bit, w)
		if v >= q {
			return badCoefficient(i, v, q)
		}
		out[i] = v
		bit += w
	}
	return nil
}
