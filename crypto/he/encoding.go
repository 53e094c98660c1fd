package he

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

var le = binary.LittleEndian

// MaxWireSize returns the size of the largest object any decoder accepts
// under p: a ciphertext vector of MaxValues values. Transports should refuse
// larger messages before reading them.
func (p Params) MaxWireSize() int {
	return headerSize + vectorFixed + 2*p.numCiphertexts(p.profile.MaxValues)*p.polyBytes
}

const vectorFixed = 4 + 4 + 8

// MarshalBinary encodes v: header, length (u32), contributions (u32), weight
// (f64), then c0 and c1 of each ciphertext.
func (v *Vector) MarshalBinary() ([]byte, error) {
	p := v.params
	b := make([]byte, 0, headerSize+vectorFixed+2*len(v.cts)*p.polyBytes)
	b = appendHeader(b, p, kindVector)
	b = le.AppendUint32(b, uint32(v.length))
	b = le.AppendUint32(b, uint32(v.contributions))
	b = le.AppendUint64(b, math.Float64bits(v.weight))
	for _, ct := range v.cts {
		b = p.appendPoly(b, ct.Value[0])
		b = p.appendPoly(b, ct.Value[1])
	}
	return b, nil
}

// vectorHeader checks everything but the coefficients and returns the body.
func (p Params) vectorHeader(b []byte) (length, contributions int, weight float64, body []byte, err error) {
	if length, contributions, weight, err = p.vectorFields(b); err != nil {
		return 0, 0, 0, nil, err
	}
	if err := exactSize(kindVector, len(b), p.vectorSize(length)); err != nil {
		return 0, 0, 0, nil, err
	}
	return length, contributions, weight, b[headerSize+vectorFixed:], nil
}

// vectorFields checks the header and fixed fields of an encoded Vector, the first
// headerSize+vectorFixed bytes of b, and returns the fields.
func (p Params) vectorFields(b []byte) (length, contributions int, weight float64, err error) {
	rest, err := readHeader(b, p, kindVector, vectorFixed)
	if err != nil {
		return 0, 0, 0, err
	}
	length = int(le.Uint32(rest))
	contributions = int(le.Uint32(rest[4:]))
	weight = math.Float64frombits(le.Uint64(rest[8:]))
	if length < 1 || length > p.profile.MaxValues {
		return 0, 0, 0, fmt.Errorf("%w: vector length must be in [1, %d], got %d", ErrTooLarge, p.profile.MaxValues, length)
	}
	if contributions < 1 || contributions > p.profile.MaxParties {
		return 0, 0, 0, fmt.Errorf("%w: contributions must be in [1, %d], got %d", ErrMalformed, p.profile.MaxParties, contributions)
	}
	if !(weight > 0) || weight > p.Capacity() {
		return 0, 0, 0, fmt.Errorf("%w: weight must be in (0, %g], got %g", ErrMalformed, p.Capacity(), weight)
	}
	return length, contributions, weight, nil
}

// vectorSize is the encoded size of a Vector of length values.
func (p Params) vectorSize(length int) int {
	return headerSize + vectorFixed + 2*p.numCiphertexts(length)*p.polyBytes
}

// DecodeVector decodes a ciphertext vector encoded by Vector.MarshalBinary.
func DecodeVector(p Params, b []byte) (*Vector, error) {
	length, contributions, weight, body, err := p.vectorHeader(b)
	if err != nil {
		return nil, err
	}
	v, err := NewAggregate(p, length)
	if err != nil {
		return nil, err
	}
	off := 0
	for j, ct := range v.cts {
		for comp := 0; comp < 2; comp++ {
			if err := p.readPoly(body[off:off+p.polyBytes], ct.Value[comp]); err != nil {
				return nil, fmt.Errorf("ciphertext %d: %w", j, err)
			}
			off += p.polyBytes
		}
	}
	v.contributions, v.weight = contributions, weight
	return v, nil
}

// VectorInfo is what the header of an encoded Vector says.
type VectorInfo struct {
	Length        int
	Contributions int
	Weight        float64
}

// CheckVector checks an encoded Vector as DecodeVector does (header, exact size, every
// coefficient below its modulus) without building it, and returns its header: it reads
// the packed coefficients in place and allocates nothing the size of the vector.
// VectorChecker does the same on a stream.
func CheckVector(p Params, b []byte) (VectorInfo, error) {
	c := NewVectorChecker(p, len(b))
	c.Write(b)
	return c.Close()
}

// VectorChecker checks an encoded Vector as its bytes arrive, as CheckVector checks them
// whole, so that a receiver validates an upload while it streams through instead of
// keeping or re-reading it. Write the bytes in order, in pieces of any size, then call
// Close. After the first error every call returns it. A coordinator runs one per upload.
type VectorChecker struct {
	p     Params
	size  int // announced length of the encoding
	seen  int
	head  []byte // the header and fixed fields, until complete
	info  VectorInfo
	part  []byte // a polynomial split across writes
	ready bool   // the header is complete and checked
	polys int    // polynomials checked
	err   error
}

// NewVectorChecker returns a checker for an encoding announced to be size bytes long.
func NewVectorChecker(p Params, size int) *VectorChecker {
	return &VectorChecker{p: p, size: size}
}

// Write checks the next bytes of the encoding. It never keeps b.
func (c *VectorChecker) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := len(b)
	if c.seen+n > c.size {
		c.err = fmt.Errorf("%w: %v announced as %d bytes, got more", ErrMalformed, kindVector, c.size)
		return 0, c.err
	}
	c.seen += n
	if !c.ready {
		k := min(headerSize+vectorFixed-len(c.head), len(b))
		c.head, b = append(c.head, b[:k]...), b[k:]
		if len(c.head) < headerSize+vectorFixed {
			return n, nil
		}
		length, contributions, weight, err := c.p.vectorFields(c.head)
		if err == nil {
			err = exactSize(kindVector, c.size, c.p.vectorSize(length))
		}
		if err != nil {
			c.err = err
			return 0, err
		}
		c.info = VectorInfo{Length: length, Contributions: contributions, Weight: weight}
		c.ready = true
	}
	pb := c.p.polyBytes
	if len(c.part) > 0 {
		k := min(pb-len(c.part), len(b))
		c.part, b = append(c.part, b[:k]...), b[k:]
		if len(c.part) < pb {
			return n, nil
		}
		if err := c.poly(c.part); err != nil {
			return 0, err
		}
		c.part = c.part[:0]
	}
	for ; len(b) >= pb; b = b[pb:] {
		if err := c.poly(b[:pb]); err != nil {
			return 0, err
		}
	}
	if len(b) > 0 {
		if c.part == nil {
			c.part = make([]byte, 0, pb)
		}
		c.part = append(c.part, b...)
	}
	return n, nil
}

func (c *VectorChecker) poly(b []byte) error {
	if err := c.p.checkPoly(b); err != nil {
		c.err = fmt.Errorf("ciphertext %d: %w", c.polys/2, err)
		return c.err
	}
	c.polys++
	return nil
}

// Close reports whether all the announced bytes arrived and passed, and returns the
// vector's header.
func (c *VectorChecker) Close() (VectorInfo, error) {
	switch {
	case c.err != nil:
	case !c.ready:
		_, _, _, c.err = c.p.vectorFields(c.head) // names the missing bytes
		if c.err == nil {
			c.err = fmt.Errorf("%w: %v incomplete", ErrMalformed, kindVector)
		}
	case c.seen != c.size:
		c.err = fmt.Errorf("%w: %v of %d bytes ended after %d", ErrMalformed, kindVector, c.size, c.seen)
	}
	if c.err != nil {
		return VectorInfo{}, c.err
	}
	return c.info, nil
}

const shareFixed = 4 + 4 + 4 + 2 + 32

// MarshalBinary encodes the share: header, party (u32), contributions (u32),
// length (u32), threshold (u16), digest, active parties (u32 each), then one
// polynomial per ciphertext.
func (s *DecryptionShare) MarshalBinary() ([]byte, error) {
	if s.raw != nil {
		return append([]byte(nil), s.raw...), nil
	}
	p := s.params
	b := make([]byte, 0, headerSize+shareFixed+4*len(s.Active)+len(s.polys)*p.polyBytes)
	b = appendHeader(b, p, kindDecryptionShare)
	b = le.AppendUint32(b, uint32(s.Party))
	b = le.AppendUint32(b, uint32(s.Contributions))
	b = le.AppendUint32(b, uint32(s.Length))
	b = le.AppendUint16(b, uint16(len(s.Active)))
	b = append(b, s.Digest[:]...)
	for _, id := range s.Active {
		b = le.AppendUint32(b, uint32(id))
	}
	for _, pol := range s.polys {
		b = p.appendPoly(b, pol)
	}
	return b, nil
}

// shareHeader checks everything but the coefficients of a decryption share
// and returns its fixed fields and the polynomial bytes.
func (p Params) shareHeader(b []byte) (*DecryptionShare, []byte, error) {
	rest, err := readHeader(b, p, kindDecryptionShare, shareFixed)
	if err != nil {
		return nil, nil, err
	}
	s := &DecryptionShare{
		Party:         PartyID(le.Uint32(rest)),
		Contributions: int(le.Uint32(rest[4:])),
		Length:        int(le.Uint32(rest[8:])),
		params:        p,
	}
	t := int(le.Uint16(rest[12:]))
	copy(s.Digest[:], rest[14:46])
	switch {
	case s.Party == 0:
		return nil, nil, fmt.Errorf("%w: party id 0 is not allowed", ErrMalformed)
	case s.Contributions < 1 || s.Contributions > p.profile.MaxParties:
		return nil, nil, fmt.Errorf("%w: contributions must be in [1, %d], got %d", ErrMalformed, p.profile.MaxParties, s.Contributions)
	case s.Length < 1 || s.Length > p.profile.MaxValues:
		return nil, nil, fmt.Errorf("%w: vector length must be in [1, %d], got %d", ErrTooLarge, p.profile.MaxValues, s.Length)
	case t < 1 || t > p.profile.MaxParties:
		return nil, nil, fmt.Errorf("%w: threshold must be in [1, %d], got %d", ErrMalformed, p.profile.MaxParties, t)
	}
	nct := p.numCiphertexts(s.Length)
	if err := exactSize(kindDecryptionShare, len(b), headerSize+shareFixed+4*t+nct*p.polyBytes); err != nil {
		return nil, nil, err
	}
	rest = rest[shareFixed:]
	s.Active = make([]PartyID, t)
	for i := range s.Active {
		s.Active[i] = PartyID(le.Uint32(rest[4*i:]))
		if s.Active[i] == 0 || (i > 0 && s.Active[i] <= s.Active[i-1]) {
			return nil, nil, fmt.Errorf("%w: active set must be strictly increasing non-zero ids, got %d at position %d",
				ErrMalformed, s.Active[i], i)
		}
	}
	return s, rest[4*t:], nil
}

// DecodeDecryptionShare decodes a share encoded by DecryptionShare.MarshalBinary.
func DecodeDecryptionShare(p Params, b []byte) (*DecryptionShare, error) {
	s, body, err := p.shareHeader(b)
	if err != nil {
		return nil, err
	}
	rq := p.fhe.RingQ()
	s.polys = make([]ring.Poly, p.numCiphertexts(s.Length))
	for j := range s.polys {
		s.polys[j] = rq.NewPoly()
		if err := p.readPoly(body[j*p.polyBytes:(j+1)*p.polyBytes], s.polys[j]); err != nil {
			return nil, fmt.Errorf("share polynomial %d: %w", j, err)
		}
	}
	return s, nil
}

// MarshalBinary encodes the share: header, party (u32), seed, polynomial.
func (s *PublicKeyShare) MarshalBinary() ([]byte, error) {
	if s.raw != nil {
		return append([]byte(nil), s.raw...), nil
	}
	p := s.params
	b := make([]byte, 0, headerSize+36+p.polyBytes)
	b = appendHeader(b, p, kindPublicKeyShare)
	b = le.AppendUint32(b, uint32(s.Party))
	b = append(b, s.Seed[:]...)
	return p.appendPoly(b, s.share.Value.Q), nil
}

// DecodePublicKeyShare decodes a share encoded by PublicKeyShare.MarshalBinary.
func DecodePublicKeyShare(p Params, b []byte) (*PublicKeyShare, error) {
	rest, err := readHeader(b, p, kindPublicKeyShare, 36)
	if err != nil {
		return nil, err
	}
	if err := exactSize(kindPublicKeyShare, len(b), headerSize+36+p.polyBytes); err != nil {
		return nil, err
	}
	s := &PublicKeyShare{Party: PartyID(le.Uint32(rest)), params: p}
	if s.Party == 0 {
		return nil, fmt.Errorf("%w: party id 0 is not allowed", ErrMalformed)
	}
	copy(s.Seed[:], rest[4:36])
	s.share = mhe.PublicKeyGenShare{Value: p.fhe.RingQP().NewPoly()}
	if err := p.readPoly(rest[36:], s.share.Value.Q); err != nil {
		return nil, err
	}
	s.raw = append([]byte(nil), b...)
	return s, nil
}

// MarshalBinary encodes the key as its seed and its first polynomial; the
// second is expanded from the seed again on decoding.
func (k *PublicKey) MarshalBinary() ([]byte, error) {
	p := k.params
	b := make([]byte, 0, headerSize+32+p.polyBytes)
	b = appendHeader(b, p, kindPublicKey)
	b = append(b, k.Seed[:]...)
	return p.appendPoly(b, k.pk.Value[0].Q), nil
}

// DecodePublicKey decodes a key encoded by PublicKey.MarshalBinary.
func DecodePublicKey(p Params, b []byte) (*PublicKey, error) {
	rest, err := readHeader(b, p, kindPublicKey, 32)
	if err != nil {
		return nil, err
	}
	if err := exactSize(kindPublicKey, len(b), headerSize+32+p.polyBytes); err != nil {
		return nil, err
	}
	k := &PublicKey{params: p}
	copy(k.Seed[:], rest[:32])
	k.pk = rlwe.NewPublicKey(p.fhe)
	if err := p.readPoly(rest[32:], k.pk.Value[0].Q); err != nil {
		return nil, err
	}
	_, crp := p.crp(k.Seed)
	k.pk.Value[1].Copy(crp.Value)
	return k, nil
}

// MarshalBinary encodes the share: header, from (u32), to (u32), polynomial.
// The result is secret; seal it for To.
func (s *ThresholdShare) MarshalBinary() ([]byte, error) {
	p := s.params
	b := make([]byte, 0, headerSize+8+p.polyBytes)
	b = appendHeader(b, p, kindThresholdShare)
	b = le.AppendUint32(b, uint32(s.From))
	b = le.AppendUint32(b, uint32(s.To))
	return p.appendPoly(b, s.share.Q), nil
}

// DecodeThresholdShare decodes a share encoded by ThresholdShare.MarshalBinary.
func DecodeThresholdShare(p Params, b []byte) (*ThresholdShare, error) {
	rest, err := readHeader(b, p, kindThresholdShare, 8)
	if err != nil {
		return nil, err
	}
	if err := exactSize(kindThresholdShare, len(b), headerSize+8+p.polyBytes); err != nil {
		return nil, err
	}
	s := &ThresholdShare{From: PartyID(le.Uint32(rest)), To: PartyID(le.Uint32(rest[4:])), params: p}
	if s.From == 0 || s.To == 0 || s.From == s.To {
		return nil, fmt.Errorf("%w: threshold share needs distinct non-zero parties, got from %d to %d", ErrMalformed, s.From, s.To)
	}
	s.share = mhe.ShamirSecretShare{Poly: p.fhe.RingQP().NewPoly()}
	if err := p.readPoly(rest[8:], s.share.Q); err != nil {
		return nil, err
	}
	return s, nil
}

// MarshalBinary encodes the commitment: header, party (u32), digest.
func (c SeedCommitment) MarshalBinary() ([]byte, error) {
	b := appendHeader(make([]byte, 0, headerSize+36), c.params, kindSeedCommitment)
	b = le.AppendUint32(b, uint32(c.Party))
	return append(b, c.Digest[:]...), nil
}

// DecodeSeedCommitment decodes a commitment encoded by SeedCommitment.MarshalBinary.
func DecodeSeedCommitment(p Params, b []byte) (SeedCommitment, error) {
	party, v, err := decodeFixed32(p, b, kindSeedCommitment)
	return SeedCommitment{Party: party, Digest: v, params: p}, err
}

// MarshalBinary encodes the reveal: header, party (u32), nonce.
func (r SeedReveal) MarshalBinary() ([]byte, error) {
	b := appendHeader(make([]byte, 0, headerSize+36), r.params, kindSeedReveal)
	b = le.AppendUint32(b, uint32(r.Party))
	return append(b, r.Nonce[:]...), nil
}

// DecodeSeedReveal decodes a reveal encoded by SeedReveal.MarshalBinary.
func DecodeSeedReveal(p Params, b []byte) (SeedReveal, error) {
	party, v, err := decodeFixed32(p, b, kindSeedReveal)
	return SeedReveal{Party: party, Nonce: v, params: p}, err
}

func decodeFixed32(p Params, b []byte, k kind) (PartyID, [32]byte, error) {
	rest, err := readHeader(b, p, k, 36)
	if err != nil {
		return 0, [32]byte{}, err
	}
	if err := exactSize(k, len(b), headerSize+36); err != nil {
		return 0, [32]byte{}, err
	}
	party := PartyID(le.Uint32(rest))
	if party == 0 {
		return 0, [32]byte{}, fmt.Errorf("%w: party id 0 is not allowed", ErrMalformed)
	}
	return party, [32]byte(rest[4:36]), nil
}
