package he

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// Party is one hospital's side of the key ceremony and of collective
// decryption. It holds the hospital's secret material: its secret-key share,
// its Shamir polynomial, the Shamir shares it received, and a key for
// deriving flooding noise. Persist it only encrypted (crypto/seal) with
// MarshalBinary and RestoreParty.
//
// A Party never issues two different messages for the same input: its public
// key share for a seed, its Shamir share for a recipient and its decryption
// share for a ciphertext are each computed once and then resent byte for
// byte. A Party is safe for concurrent use.
type Party struct {
	params Params
	group  Group
	id     PartyID

	mu       sync.Mutex
	sk       *rlwe.SecretKey
	nonce    [32]byte
	floodKey [32]byte
	pkShares map[Seed][]byte
	shamir   *mhe.ShamirPolynomial
	received map[PartyID]mhe.ShamirSecretShare
	combined *mhe.ShamirSecretShare
	issued   map[[32]byte]*issuedShare
	thr      *mhe.Thresholdizer
}

func (pt *Party) thresholdizerLocked() *mhe.Thresholdizer {
	if pt.thr == nil {
		thr := mhe.NewThresholdizer(pt.params.fhe)
		pt.thr = &thr
	}
	return pt.thr
}

type issuedShare struct {
	active        []PartyID
	contributions int
	raw           []byte
}

// NewParty creates party id of group g with a fresh secret-key share.
func NewParty(p Params, g Group, id PartyID) (*Party, error) {
	g, err := g.canonical(p)
	if err != nil {
		return nil, err
	}
	if !g.has(id) {
		return nil, fmt.Errorf("%w: party %d is not in the group", ErrUnknownParty, id)
	}
	return &Party{
		params:   p,
		group:    g,
		id:       id,
		sk:       rlwe.NewKeyGenerator(p.fhe).GenSecretKeyNew(),
		nonce:    randomBytes32(),
		floodKey: randomBytes32(),
		pkShares: make(map[Seed][]byte),
		received: make(map[PartyID]mhe.ShamirSecretShare),
		issued:   make(map[[32]byte]*issuedShare),
	}, nil
}

// ID returns the party's identifier.
func (pt *Party) ID() PartyID { return pt.id }

// SeedCommitment returns the party's commitment to its seed nonce.
func (pt *Party) SeedCommitment() SeedCommitment {
	return SeedCommitment{Party: pt.id, Digest: commitDigest(pt.params, pt.id, pt.nonce), params: pt.params}
}

// SeedReveal returns the party's seed nonce. Call it only after every
// party's commitment has been published (Ceremony enforces the order on its
// side).
func (pt *Party) SeedReveal() SeedReveal {
	return SeedReveal{Party: pt.id, Nonce: pt.nonce, params: pt.params}
}

// PublicKeyShare returns the party's public-key share for seed. The share for
// a given seed is generated once; later calls return the same bytes.
func (pt *Party) PublicKeyShare(seed Seed) (*PublicKeyShare, error) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if raw, ok := pt.pkShares[seed]; ok {
		return DecodePublicKeyShare(pt.params, raw)
	}
	proto, crp := pt.params.crp(seed)
	share := proto.AllocateShare()
	proto.GenShare(pt.sk, crp, &share)
	s := &PublicKeyShare{Party: pt.id, Seed: seed, share: share, params: pt.params}
	raw, err := s.MarshalBinary()
	if err != nil {
		return nil, err
	}
	pt.pkShares[seed] = raw
	s.raw = raw
	return s, nil
}

func (pt *Party) shamirPolyLocked() (*mhe.ShamirPolynomial, error) {
	if pt.shamir != nil {
		return pt.shamir, nil
	}
	thr := pt.thresholdizerLocked()
	poly, err := thr.GenShamirPolynomial(pt.group.Threshold, pt.sk)
	if err != nil {
		return nil, fmt.Errorf("he: shamir polynomial: %w", err)
	}
	pt.shamir = &poly
	own := thr.AllocateThresholdSecretShare()
	thr.GenShamirSecretShare(mhe.ShamirPublicPoint(pt.id), poly, &own)
	pt.received[pt.id] = own
	pt.combineLocked()
	return pt.shamir, nil
}

// ThresholdShare returns the party's Shamir share of its secret for party to.
// Seal it for to (crypto/seal) before it leaves the hospital.
func (pt *Party) ThresholdShare(to PartyID) (*ThresholdShare, error) {
	if !pt.group.has(to) {
		return nil, fmt.Errorf("%w: threshold share for party %d", ErrUnknownParty, to)
	}
	if to == pt.id {
		return nil, fmt.Errorf("%w: party %d keeps its own threshold share", ErrCeremonyState, to)
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	poly, err := pt.shamirPolyLocked()
	if err != nil {
		return nil, err
	}
	thr := pt.thresholdizerLocked()
	share := thr.AllocateThresholdSecretShare()
	thr.GenShamirSecretShare(mhe.ShamirPublicPoint(to), *poly, &share)
	return &ThresholdShare{From: pt.id, To: to, share: share, params: pt.params}, nil
}

// AddThresholdShare stores the Shamir share another party made for this one.
// Once shares from every other party are in, the party can decrypt.
func (pt *Party) AddThresholdShare(s *ThresholdShare) error {
	if s.To != pt.id {
		return fmt.Errorf("%w: threshold share for party %d delivered to party %d", ErrUnknownParty, s.To, pt.id)
	}
	if !pt.group.has(s.From) || s.From == pt.id {
		return fmt.Errorf("%w: threshold share from party %d", ErrUnknownParty, s.From)
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if _, err := pt.shamirPolyLocked(); err != nil {
		return err
	}
	if old, ok := pt.received[s.From]; ok {
		if !old.Equal(&s.share.Poly) {
			return fmt.Errorf("%w: second, different threshold share from party %d", ErrDuplicate, s.From)
		}
		return nil
	}
	pt.received[s.From] = s.share
	pt.combineLocked()
	return nil
}

func (pt *Party) combineLocked() {
	if len(pt.received) != len(pt.group.Parties) || pt.combined != nil {
		return
	}
	thr := pt.thresholdizerLocked()
	sum := thr.AllocateThresholdSecretShare()
	for _, id := range sortedKeys(pt.received) {
		// Levels match by construction.
		_ = thr.AggregateShares(sum, pt.received[id], &sum)
	}
	pt.combined = &sum
}

// Ready reports whether the party holds Shamir shares from every party and
// can take part in decryption.
func (pt *Party) Ready() bool {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.combined != nil
}

// DecryptionShare returns the party's share for decrypting aggregate v
// together with the other members of active, which must list exactly
// Threshold parties including this one.
//
// The share is c1*s'_i + e_i + f_i, where s'_i is the party's additive share
// for active (mhe.Combiner), e_i the key-switch noise of
// mhe.KeySwitchProtocol (to the zero key) and f_i flooding noise uniform in
// [-B, B] with B = 2^LogFloodMargin times the noise bound of an aggregate of
// v.Contributions() contributions. f_i is derived from a secret key and the
// ciphertext digest, so even a recomputed share carries the same flooding.
//
// The party answers each ciphertext (identified by the digest of its c1
// polynomials) for one active set and one contribution count only: the same
// request returns the same bytes; a different one is ErrShareConflict. Check
// v.Contributions() against the round's recorded count before calling: the
// flooding is sized for it.
func (pt *Party) DecryptionShare(v *Vector, active []PartyID) (*DecryptionShare, error) {
	set, err := pt.group.activeSet(active)
	if err != nil {
		return nil, err
	}
	if _, ok := slices.BinarySearch(set, pt.id); !ok {
		return nil, fmt.Errorf("%w: party %d is not in the active set %v", ErrActiveSet, pt.id, set)
	}
	if err := v.check(pt.params); err != nil {
		return nil, err
	}
	digest := v.Digest()

	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.combined == nil {
		return nil, fmt.Errorf("%w: party %d has %d of %d threshold shares",
			ErrCeremonyState, pt.id, len(pt.received), len(pt.group.Parties))
	}
	if is, ok := pt.issued[digest]; ok {
		if !slices.Equal(is.active, set) || is.contributions != v.contributions {
			return nil, fmt.Errorf("%w: ciphertext %x already answered for active set %v and %d contributions, asked for %v and %d",
				ErrShareConflict, digest[:8], is.active, is.contributions, set, v.contributions)
		}
		if is.raw != nil {
			ds, err := DecodeDecryptionShare(pt.params, is.raw)
			if err != nil {
				return nil, err
			}
			ds.raw = is.raw
			return ds, nil
		}
	}

	flood, err := pt.params.floodBound(len(pt.group.Parties), v.contributions)
	if err != nil {
		return nil, err
	}
	p := pt.params
	points := make([]mhe.ShamirPublicPoint, len(pt.group.Parties))
	for i, id := range pt.group.Parties {
		points[i] = mhe.ShamirPublicPoint(id)
	}
	activePoints := make([]mhe.ShamirPublicPoint, len(set))
	for i, id := range set {
		activePoints[i] = mhe.ShamirPublicPoint(id)
	}
	cmb := mhe.NewCombiner(*p.fhe.GetRLWEParameters(), mhe.ShamirPublicPoint(pt.id), points, pt.group.Threshold)
	additive := rlwe.NewSecretKey(p.fhe)
	if err := cmb.GenAdditiveShare(activePoints, mhe.ShamirPublicPoint(pt.id), *pt.combined, additive); err != nil {
		return nil, fmt.Errorf("he: additive share: %w", err)
	}
	zero := rlwe.NewSecretKey(p.fhe)
	// The protocol's own noise is the fresh-encryption width; the flooding is
	// added below, uniform and with an exact bound, because lattigo's Gaussian
	// sampler cannot draw the widths needed here (it panics above 2^53).
	ks, err := mhe.NewKeySwitchProtocol(p.fhe, ring.DiscreteGaussian{Sigma: 0, Bound: 0})
	if err != nil {
		return nil, fmt.Errorf("he: key switch protocol: %w", err)
	}

	rng := rand.NewChaCha8(floodSeed(pt.floodKey, digest, set, v.contributions))
	ringQ := p.fhe.RingQ()
	noise := ringQ.NewPoly()
	ds := &DecryptionShare{
		Party:         pt.id,
		Active:        set,
		Contributions: v.contributions,
		Length:        v.length,
		Digest:        digest,
		polys:         make([]ring.Poly, len(v.cts)),
		params:        p,
	}
	for j, ct := range v.cts {
		share := ks.AllocateShare(ct.Level())
		ks.GenShare(additive, zero, ct, &share)
		p.sampleFlood(rng, flood, noise)
		ringQ.NTT(noise, noise)
		ringQ.Add(share.Value, noise, share.Value)
		ds.polys[j] = share.Value
	}
	raw, err := ds.MarshalBinary()
	if err != nil {
		return nil, err
	}
	ds.raw = raw
	pt.issued[digest] = &issuedShare{active: set, contributions: v.contributions, raw: raw}
	return ds, nil
}

// ForgetShares drops the cached bytes of issued decryption shares to free
// memory (about 2*LogQ/8 bytes per value each) but keeps their active sets:
// a repeated request is recomputed with the same flooding noise, a
// conflicting one is still refused.
func (pt *Party) ForgetShares() {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, is := range pt.issued {
		is.raw = nil
	}
}

func floodSeed(key [32]byte, digest [32]byte, active []PartyID, contributions int) [32]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte("medfed/he/flood/v1\x00"))
	m.Write(digest[:])
	m.Write(binary.LittleEndian.AppendUint32(nil, uint32(contributions)))
	for _, id := range active {
		m.Write(binary.LittleEndian.AppendUint32(nil, uint32(id)))
	}
	return [32]byte(m.Sum(nil))
}

// sampleFlood fills pol (coefficient domain) with integers uniform in [-b, b].
func (p Params) sampleFlood(rng *rand.ChaCha8, b uint64, pol ring.Poly) {
	span := 2*b + 1
	mask := uint64(1)<<bitLen(span) - 1
	rq := p.fhe.RingQ()
	for k := range pol.Coeffs[0] {
		var r uint64
		for {
			r = rng.Uint64() & mask
			if r < span {
				break
			}
		}
		v := int64(r) - int64(b)
		for i, s := range rq.SubRings {
			pol.Coeffs[i][k] = reduceSigned(v, s.Modulus, s.BRedConstant)
		}
	}
}

func bitLen(x uint64) uint {
	n := uint(0)
	for x > 0 {
		n++
		x >>= 1
	}
	return n
}

// reduceSigned returns v mod q in [0, q).
func reduceSigned(v int64, q uint64, brc []uint64) uint64 {
	if v >= 0 {
		return ring.BRedAdd(uint64(v), q, brc)
	}
	r := ring.BRedAdd(uint64(-v), q, brc)
	if r == 0 {
		return 0
	}
	return q - r
}
