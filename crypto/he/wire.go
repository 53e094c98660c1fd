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
			return fmt.Errorf("%w: coefficient %d is %d, expected below modulus %d", ErrMalformed, i, v, q)
		}
		out[i] = v
		bit += w
	}
	for ; i < n; i++ {
		var v uint64
		for j := uint(0); j < w; j++ {
			b := bit + j
			v |= uint64(src[b>>3]>>(b&7)&1) << j
		}
		if v >= q {
			return fmt.Errorf("%w: coefficient %d is %d, expected below modulus %d", ErrMalformed, i, v, q)
		}
		out[i] = v
		bit += w
	}
	return nil
}
