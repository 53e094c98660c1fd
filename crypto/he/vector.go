package he

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// Vector is an encrypted float vector: ceil(Len/Slots) ciphertexts, each
// holding Slots values as polynomial coefficients (coefficient packing), the
// number of updates summed into it and their total weight (both in clear).
//
// A Vector holds weight*value at the profile's fixed scale, so a sum of
// Vectors is the weighted sum of their values and the weighted average is that
// sum divided by the total weight, which Decryption.Average does exactly at
// decode time. A Vector is not safe for concurrent mutation.
type Vector struct {
	params        Params
	length        int
	contributions int
	weight        float64
	cts           []*rlwe.Ciphertext
	digest        atomic.Pointer[[32]byte] // cache of Digest, cleared by Add
}

// Len returns the number of values.
func (v *Vector) Len() int { return v.length }

// Contributions returns the number of encrypted updates summed into v.
func (v *Vector) Contributions() int { return v.contributions }

// Weight returns the total weight of the updates summed into v.
func (v *Vector) Weight() float64 { return v.weight }

func (p Params) numCiphertexts(length int) int { return (length + p.fhe.N() - 1) / p.fhe.N() }

func (p Params) newCiphertext() *rlwe.Ciphertext {
	ct := rlwe.NewCiphertext(p.fhe, 1, p.fhe.MaxLevel())
	ct.IsNTT = true
	ct.IsBatched = false // coefficient packing
	return ct
}

// NewAggregate returns an empty aggregate of the given length (no
// contributions, zero weight) to Add vectors into.
func NewAggregate(p Params, length int) (*Vector, error) {
	if length < 1 || length > p.profile.MaxValues {
		return nil, fmt.Errorf("%w: vector length must be in [1, %d], got %d", ErrTooLarge, p.profile.MaxValues, length)
	}
	v := &Vector{params: p, length: length, cts: make([]*rlwe.Ciphertext, p.numCiphertexts(length))}
	for i := range v.cts {
		v.cts[i] = p.newCiphertext()
	}
	return v, nil
}

func (v *Vector) check(p Params) error {
	if v.params.fingerprint != p.fingerprint {
		return fmt.Errorf("%w: vector made with profile %q, expected %q", ErrProfileMismatch, v.params.profile.Name, p.profile.Name)
	}
	if v.contributions < 1 {
		return fmt.Errorf("%w: aggregate has no contributions", ErrCeremonyState)
	}
	return nil
}

// Digest identifies the ciphertext for decryption: it hashes the length and
// the c1 polynomials, the part a decryption share depends on. It is computed
// once and cached until v changes; concurrent calls are safe.
func (v *Vector) Digest() [32]byte {
	if d := v.digest.Load(); d != nil {
		return *d
	}
	h := sha256.New()
	h.Write([]byte("medfed/he/c1/v1\x00"))
	h.Write(v.params.fingerprint[:])
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(v.length)))
	buf := make([]byte, 8*v.params.fhe.N())
	for _, ct := range v.cts {
		for _, row := range ct.Value[1].Coeffs {
			for k, c := range row {
				binary.LittleEndian.PutUint64(buf[8*k:], c)
			}
			h.Write(buf[:8*len(row)])
		}
	}
	d := [32]byte(h.Sum(nil))
	v.digest.Store(&d)
	return d
}

// Add adds w into v (homomorphically): the result encrypts the sum of both,
// counts both contributions and weights. On error v is unchanged.
func (v *Vector) Add(w *Vector) error {
	if err := v.compatible(w.params, w.length, w.contributions, w.weight); err != nil {
		return err
	}
	rq := v.params.fhe.RingQ()
	for i, ct := range v.cts {
		rq.Add(ct.Value[0], w.cts[i].Value[0], ct.Value[0])
		rq.Add(ct.Value[1], w.cts[i].Value[1], ct.Value[1])
	}
	v.contributions += w.contributions
	v.weight += w.weight
	v.digest.Store(nil)
	return nil
}

func (v *Vector) compatible(p Params, length, contributions int, weight float64) error {
	if p.fingerprint != v.params.fingerprint {
		return fmt.Errorf("%w: expected profile %q, got %q", ErrProfileMismatch, v.params.profile.Name, p.profile.Name)
	}
	if length != v.length {
		return fmt.Errorf("%w: expected %d values, got %d", ErrShape, v.length, length)
	}
	if n := v.contributions + contributions; n > v.params.profile.MaxParties {
		return fmt.Errorf("%w: %d contributions exceed the profile's %d", ErrCapacity, n, v.params.profile.MaxParties)
	}
	if c := v.params.Capacity(); v.weight+weight > c {
		return fmt.Errorf("%w: total weight %g exceeds capacity %g", ErrCapacity, v.weight+weight, c)
	}
	return nil
}

// AddBinary decodes a wire-encoded Vector and adds it into v in one pass,
// without materialising it. On error (malformed input, shape or capacity) v
// is unchanged.
func (v *Vector) AddBinary(b []byte) error {
	length, contributions, weight, body, err := v.params.vectorHeader(b)
	if err != nil {
		return err
	}
	if err := v.compatible(v.params, length, contributions, weight); err != nil {
		return err
	}
	p := v.params
	qs := p.fhe.Q()
	type pos struct{ ct, comp, prime int }
	var done []pos
	rollback := func() {
		rq := p.fhe.RingQ()
		for _, d := range done {
			s := rq.SubRings[d.prime]
			row := v.cts[d.ct].Value[d.comp].Coeffs[d.prime]
			tmp := make([]uint64, len(row))
			off := p.rowOffset(d.ct, d.comp, d.prime)
			_ = unpack(body[off:off+len(row)*p.qBits[d.prime]/8], tmp, uint(p.qBits[d.prime]), s.Modulus)
			for k := range row {
				row[k] = subMod(row[k], tmp[k], s.Modulus)
			}
		}
	}
	for j, ct := range v.cts {
		for comp := 0; comp < 2; comp++ {
			for i, q := range qs {
				row := ct.Value[comp].Coeffs[i]
				off := p.rowOffset(j, comp, i)
				n := len(row) * p.qBits[i] / 8
				if err := unpackAdd(body[off:off+n], row, uint(p.qBits[i]), q); err != nil {
					rollback()
					return fmt.Errorf("ciphertext %d: %w", j, err)
				}
				done = append(done, pos{j, comp, i})
			}
		}
	}
	v.contributions += contributions
	v.weight += weight
	v.digest.Store(nil)
	return nil
}

// rowOffset is the byte offset of a prime's row in the body of a vector.
func (p Params) rowOffset(ct, comp, prime int) int {
	off := (2*ct + comp) * p.polyBytes
	for i := 0; i < prime; i++ {
		off += p.fhe.N() * p.qBits[i] / 8
	}
	return off
}

func subMod(a, b, q uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + q - b
}

// unpackAdd unpacks len(acc) coefficients and adds them mod q into acc. On a
// malformed coefficient it undoes its own additions before returning.
func unpackAdd(src []byte, acc []uint64, w uint, q uint64) error {
	mask := uint64(1)<<w - 1
	bit := uint(0)
	for i := range acc {
		off := bit >> 3
		sh := bit & 7
		var v uint64
		if int(off)+9 <= len(src) {
			v = binary.LittleEndian.Uint64(src[off:]) >> sh
			if sh+w > 64 {
				v |= uint64(src[off+8]) << (64 - sh)
			}
			v &= mask
		} else {
			v = coefficientAt(src, bit, w)
		}
		if v >= q {
			tmp := make([]uint64, i)
			_ = unpack(src, tmp, w, q)
			for k := range tmp {
				acc[k] = subMod(acc[k], tmp[k], q)
			}
			return badCoefficient(i, v, q)
		}
		s := acc[i] + v
		if s >= q {
			s -= q
		}
		acc[i] = s
		bit += w
	}
	return nil
}

// Encryptor encrypts vectors under the collective public key. It is not safe
// for concurrent use; make one per goroutine.
type Encryptor struct {
	params Params
	enc    *rlwe.Encryptor
	pt     ring.Poly
}

// NewEncryptor returns an Encryptor for pk. pk must come from p (a Ceremony
// or DecodePublicKey with p); mixing parameter sets is a programmer error and
// panics.
func NewEncryptor(p Params, pk *PublicKey) *Encryptor {
	if pk.params.fingerprint != p.fingerprint {
		panic(fmt.Sprintf("he: public key of profile %q used with profile %q", pk.params.profile.Name, p.profile.Name))
	}
	return &Encryptor{params: p, enc: rlwe.NewEncryptor(p.fhe, pk.pk), pt: p.fhe.RingQ().NewPoly()}
}

// Encrypt encrypts weight*values. weight is typically the hospital's sample
// count; every |value| must be at most the profile's MaxAbs.
func (e *Encryptor) Encrypt(values []float64, weight float64) (*Vector, error) {
	return encrypt(e, values, weight)
}

// EncryptFloat32 is Encrypt for float32 values (model parameters).
func (e *Encryptor) EncryptFloat32(values []float32, weight float64) (*Vector, error) {
	return encrypt(e, values, weight)
}

func encrypt[T float32 | float64](e *Encryptor, values []T, weight float64) (*Vector, error) {
	p := e.params
	prof := p.profile
	if len(values) < 1 || len(values) > prof.MaxValues {
		return nil, fmt.Errorf("%w: vector length must be in [1, %d], got %d", ErrTooLarge, prof.MaxValues, len(values))
	}
	if !(weight > 0) || weight > p.Capacity() {
		return nil, fmt.Errorf("%w: weight must be positive, finite and at most %g, got %g", ErrValue, p.Capacity(), weight)
	}
	for i, x := range values {
		f := float64(x)
		if !(math.Abs(f) <= prof.MaxAbs) { // also catches NaN
			return nil, fmt.Errorf("%w: value %d is %g, expected |value| <= %g", ErrValue, i, f, prof.MaxAbs)
		}
	}
	// Encode round(value*weight*2^k) exactly in int64 with k as large as
	// possible, then multiply by 2^(LogScale-k) mod each prime: the scale may
	// exceed 2^64 without big-number arithmetic.
	_, e2 := math.Frexp(prof.MaxAbs * weight)
	k := min(62-e2, prof.LogScale)
	factor := math.Ldexp(weight, k)
	rq := p.fhe.RingQ()
	mult := make([]uint64, len(rq.SubRings))
	for i, s := range rq.SubRings {
		mult[i] = powMod(2, uint64(prof.LogScale-k), s.Modulus)
	}

	v, err := NewAggregate(p, len(values))
	if err != nil {
		return nil, err
	}
	n := p.fhe.N()
	for j, ct := range v.cts {
		chunk := values[j*n : min((j+1)*n, len(values))]
		for i, s := range rq.SubRings {
			row := e.pt.Coeffs[i]
			q, brc, m := s.Modulus, s.BRedConstant, mult[i]
			for t, x := range chunk {
				r := reduceSigned(int64(math.Round(float64(x)*factor)), q, brc)
				if m != 1 {
					r = ring.BRed(r, m, q, brc)
				}
				row[t] = r
			}
			clear(row[len(chunk):])
		}
		rq.NTT(e.pt, e.pt)
		if err := e.enc.EncryptZero(ct); err != nil {
			return nil, fmt.Errorf("he: encrypt: %w", err)
		}
		rq.Add(ct.Value[0], e.pt, ct.Value[0])
	}
	v.contributions = 1
	v.weight = weight
	return v, nil
}

func powMod(b, e, q uint64) uint64 {
	r := uint64(1) % q
	b %= q
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = mulMod(r, b, q)
		}
		b = mulMod(b, b, q)
	}
	return r
}

// Rerandomize adds an encryption of zero under pk to v, so v decrypts to the same
// values but is a new ciphertext: its Digest changes, and a Party answers it as a new
// request. Use it to ask a different active set to decrypt an aggregate whose first
// active set did not finish, since a Party refuses a second active set for the same
// ciphertext (ErrShareConflict). Contributions and Weight are unchanged.
//
// The encryption of zero is a deterministic function of pk, v's length and seed, so
// every replica of a coordinator that applies the same seed reaches the same vector.
// Whoever knows the seed knows that randomness; a Party's flooding stays fresh because it
// is keyed by the new digest. Each call adds the noise of one fresh encryption without
// raising the flooding bound, which is sized for Contributions: after k calls on an
// aggregate of c contributions the statistical margin shrinks by at most
// log2(1+k/c)/2 bits (half a bit while k <= c).
func (v *Vector) Rerandomize(pk *PublicKey, seed [32]byte) error {
	if pk.params.fingerprint != v.params.fingerprint {
		return fmt.Errorf("%w: public key of profile %q, vector of profile %q", ErrProfileMismatch, pk.params.profile.Name, v.params.profile.Name)
	}
	p := v.params
	prng, err := sampling.NewKeyedPRNG(append([]byte("medfed/he/rerandomize/v1\x00"), seed[:]...))
	if err != nil {
		return fmt.Errorf("he: rerandomize: %w", err)
	}
	rq := p.fhe.RingQ()
	xs, err := ring.NewSampler(prng, rq, p.fhe.Xs(), false)
	if err != nil {
		return fmt.Errorf("he: rerandomize: %w", err)
	}
	xe, err := ring.NewSampler(prng, rq, p.fhe.Xe(), false)
	if err != nil {
		return fmt.Errorf("he: rerandomize: %w", err)
	}
	u, e, tmp := rq.NewPoly(), rq.NewPoly(), rq.NewPoly()
	for _, ct := range v.cts {
		// (u*pk0 + e0, u*pk1 + e1), in the NTT domain like every ciphertext of v.
		xs.Read(u)
		rq.NTT(u, u)
		for j := 0; j < 2; j++ {
			rq.MulCoeffsMontgomery(u, pk.pk.Value[j].Q, tmp)
			xe.Read(e)
			rq.NTT(e, e)
			rq.Add(tmp, e, tmp)
			rq.Add(ct.Value[j], tmp, ct.Value[j])
		}
	}
	v.digest.Store(nil)
	return nil
}
