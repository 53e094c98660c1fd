package he

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// maxLogQP is the HomomorphicEncryption.org standard table (v1.1, 2018) of the
// largest modulus, in bits, that keeps 128-bit classical security for a
// uniform ternary secret and error width 3.2, by ring degree.
var maxLogQP = map[int]float64{12: 109, 13: 218, 14: 438, 15: 881}

// noiseTailFactor turns a standard deviation into the high-probability bound
// used for the flooding margin: a centred Gaussian exceeds 10 sigma with
// probability below 2^-75 per coefficient.
const noiseTailFactor = 10

// maxFloodBound keeps uniform flooding samples inside int64 arithmetic.
const maxFloodBound = 1 << 62

// Profile is an unchecked, literal description of a parameter set. Turn it
// into Params with NewParams, which validates it. The zero value is not usable;
// start from DefaultProfile or CompactProfile.
type Profile struct {
	// Name identifies the profile on the wire (it is part of the fingerprint).
	Name string
	// LogN is log2 of the ring degree; one ciphertext holds 2^LogN values
	// (coefficient packing).
	LogN int
	// LogQ lists the bit sizes of the ciphertext primes (one or two). There is
	// no special modulus P: the scheme only adds ciphertexts.
	LogQ []int
	// LogScale is log2 of the fixed-point scale applied to weight*value.
	LogScale int
	// MaxAbs bounds |value| accepted by the encryptor.
	MaxAbs float64
	// MaxParties bounds the group size and the number of contributions to one
	// aggregate.
	MaxParties int
	// MaxValues bounds the length of one vector; it is the size limit of
	// every wire decoder.
	MaxValues int
	// LogFloodMargin is log2 of the ratio between the uniform flooding bound
	// added to each decryption share and the high-probability bound of the
	// aggregate ciphertext's noise (statistical distance <= 2^-LogFloodMargin
	// per coefficient).
	LogFloodMargin int
}

// DefaultProfile is the profile to reach for first: 128-bit security
// (LogN 12, LogQ 108 <= 109), two 54-bit primes, 27 bytes per value on the wire
// (6.75x float32), flooding margin 2^40, up to 1024 parties, scale 2^78 with
// |value| <= 16, which leaves room for a total weight of about 2^25.
func DefaultProfile() Profile {
	return Profile{
		Name:           "default",
		LogN:           12,
		LogQ:           []int{54, 54},
		LogScale:       78,
		MaxAbs:         16,
		MaxParties:     1024,
		MaxValues:      1 << 23,
		LogFloodMargin: 40,
	}
}

// CompactProfile cuts the wire size of DefaultProfile by 45% (one 60-bit
// prime: 15 bytes per value, 3.75x float32) and pays for it, as README.md
// details: the flooding margin drops to 2^20 (statistical distance up to
// 2^-20 per coefficient instead of 2^-40), the group to at most 32 parties,
// values to |value| <= 1, the total weight to about 16,000, and the
// worst-case error for 10 parties at total weight 1000 rises to about 4e-6
// (default: 5e-10). Use it for simulations, not for a study on real patients.
func CompactProfile() Profile {
	return Profile{
		Name:           "compact",
		LogN:           12,
		LogQ:           []int{60},
		LogScale:       45,
		MaxAbs:         1,
		MaxParties:     32,
		MaxValues:      1 << 23,
		LogFloodMargin: 20,
	}
}

// ProfileByName returns the named profile: "default" (or "") or "compact".
func ProfileByName(name string) (Profile, error) {
	switch name {
	case "", "default":
		return DefaultProfile(), nil
	case "compact":
		return CompactProfile(), nil
	}
	return Profile{}, fmt.Errorf("%w: profile %q, expected default or compact", ErrInvalidProfile, name)
}

// FitToRange scales v in place so that every |value| is within the profile's MaxAbs, which
// the encryptor requires, and returns the factor applied (1 when v already fits). Norm
// clipping is the proper bound on an update; this only keeps an outsized one encryptable.
func (p Params) FitToRange(v []float32) float32 {
	var m float64
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	bound := p.Profile().MaxAbs
	if m <= bound {
		return 1
	}
	f := float32(bound / m * (1 - 1e-6))
	for i := range v {
		v[i] *= f
	}
	return f
}

// Validate reports the first field of p that is out of range. It does not
// generate primes; NewParams checks the resulting modulus as well.
func (p Profile) Validate() error {
	switch {
	case p.Name == "" || len(p.Name) > 64:
		return fmt.Errorf("%w: name must have 1 to 64 bytes, got %d", ErrInvalidProfile, len(p.Name))
	case maxLogQP[p.LogN] == 0:
		return fmt.Errorf("%w: LogN must be 12, 13, 14 or 15, got %d", ErrInvalidProfile, p.LogN)
	case len(p.LogQ) < 1 || len(p.LogQ) > 2:
		return fmt.Errorf("%w: LogQ must list 1 or 2 primes, got %d", ErrInvalidProfile, len(p.LogQ))
	case p.MaxAbs <= 0 || math.IsInf(p.MaxAbs, 0) || math.IsNaN(p.MaxAbs):
		return fmt.Errorf("%w: MaxAbs must be positive and finite, got %v", ErrInvalidProfile, p.MaxAbs)
	case p.MaxParties < 1 || p.MaxParties > 1<<16:
		return fmt.Errorf("%w: MaxParties must be in [1, 65536], got %d", ErrInvalidProfile, p.MaxParties)
	case p.MaxValues < 1 || p.MaxValues > 1<<26:
		return fmt.Errorf("%w: MaxValues must be in [1, 2^26], got %d", ErrInvalidProfile, p.MaxValues)
	case p.LogFloodMargin < 0 || p.LogFloodMargin > 60:
		return fmt.Errorf("%w: LogFloodMargin must be in [0, 60], got %d", ErrInvalidProfile, p.LogFloodMargin)
	}
	sum := 0
	for i, l := range p.LogQ {
		if l < 30 || l > 61 {
			return fmt.Errorf("%w: LogQ[%d] must be in [30, 61], got %d", ErrInvalidProfile, i, l)
		}
		sum += l
	}
	if float64(sum) > maxLogQP[p.LogN] {
		return fmt.Errorf("%w: LogQ sums to %d bits, 128-bit security at LogN %d allows at most %v",
			ErrInvalidProfile, sum, p.LogN, maxLogQP[p.LogN])
	}
	if p.LogScale < 1 || p.LogScale >= sum-1 {
		return fmt.Errorf("%w: LogScale must be in [1, %d), got %d", ErrInvalidProfile, sum-1, p.LogScale)
	}
	return nil
}

// Params is a validated, immutable parameter set made by NewParams (the zero
// value is not usable). It is safe for concurrent use.
type Params struct {
	profile     Profile
	fhe         hefloat.Parameters
	fingerprint [8]byte
	qBits       []int   // bit length of each prime, the wire width of a coefficient
	polyBytes   int     // wire size of one polynomial
	halfQ       float64 // Q/2
	scale       float64 // 2^LogScale
	sigma       float64 // error standard deviation
	pTernary    float64 // probability of a non-zero secret coefficient
}

// NewParams validates prof, generates its primes and checks the resulting
// modulus against the 128-bit security table and the flooding budget.
func NewParams(prof Profile) (Params, error) {
	if err := prof.Validate(); err != nil {
		return Params{}, err
	}
	prof.LogQ = append([]int(nil), prof.LogQ...)
	lit := hefloat.ParametersLiteral{
		LogN:            prof.LogN,
		LogQ:            prof.LogQ,
		Xs:              ring.Ternary{P: 2.0 / 3.0},
		Xe:              rlwe.DefaultXe,
		LogDefaultScale: min(prof.LogScale, 64),
	}
	fhe, err := hefloat.NewParametersFromLiteral(lit)
	if err != nil {
		return Params{}, fmt.Errorf("%w: %w", ErrInvalidProfile, err)
	}
	if fhe.PCount() != 0 {
		return Params{}, fmt.Errorf("%w: expected no special modulus P, got %d primes", ErrInvalidProfile, fhe.PCount())
	}
	if got, limit := fhe.LogQP(), maxLogQP[prof.LogN]; got > limit {
		return Params{}, fmt.Errorf("%w: modulus has %.2f bits, 128-bit security at LogN %d allows at most %v",
			ErrInvalidProfile, got, prof.LogN, limit)
	}
	p := Params{
		profile:  prof,
		fhe:      fhe,
		scale:    math.Ldexp(1, prof.LogScale),
		sigma:    rlwe.DefaultXe.Sigma,
		pTernary: 2.0 / 3.0,
	}
	halfQ := 0.5
	h := sha256.New()
	h.Write([]byte("medfed/he/profile/v1\x00"))
	h.Write([]byte(prof.Name))
	var b [8]byte
	for _, v := range []uint64{uint64(prof.LogN), uint64(prof.LogScale), math.Float64bits(prof.MaxAbs),
		uint64(prof.MaxParties), uint64(prof.MaxValues), uint64(prof.LogFloodMargin)} {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	for _, q := range fhe.Q() {
		binary.LittleEndian.PutUint64(b[:], q)
		h.Write(b[:])
		p.qBits = append(p.qBits, bits.Len64(q))
		p.polyBytes += fhe.N() * bits.Len64(q) / 8
		halfQ *= float64(q)
	}
	copy(p.fingerprint[:], h.Sum(nil))
	p.halfQ = halfQ

	// The largest flood bound (all parties contribute and decrypt) must fit in
	// int64 sampling, and one full-weight value plus every noise term must fit
	// below Q/2.
	flood, err := p.floodBound(prof.MaxParties, prof.MaxParties)
	if err != nil {
		return Params{}, err
	}
	worst := p.scale*prof.MaxAbs + float64(prof.MaxParties)*float64(flood) + p.ctNoiseBound(prof.MaxParties, prof.MaxParties)
	if worst >= p.halfQ {
		return Params{}, fmt.Errorf("%w: scale 2^%d with MaxAbs %v and flooding for %d parties needs 2^%.1f, modulus holds 2^%.1f",
			ErrInvalidProfile, prof.LogScale, prof.MaxAbs, prof.MaxParties, math.Log2(worst), math.Log2(p.halfQ))
	}
	return p, nil
}

// Profile returns a copy of the profile p was made from.
func (p Params) Profile() Profile {
	prof := p.profile
	prof.LogQ = append([]int(nil), prof.LogQ...)
	return prof
}

// Name returns the profile name.
func (p Params) Name() string { return p.profile.Name }

// Slots returns the number of values one ciphertext holds (the ring degree).
func (p Params) Slots() int { return p.fhe.N() }

// LogQ returns the size of the ciphertext modulus in bits.
func (p Params) LogQ() float64 { return p.fhe.LogQP() }

// Fingerprint identifies the parameter set on the wire.
func (p Params) Fingerprint() [8]byte { return p.fingerprint }

// BytesPerValue returns the wire size of a ciphertext divided by the values it
// holds, excluding the fixed header.
func (p Params) BytesPerValue() float64 { return float64(2*p.polyBytes) / float64(p.fhe.N()) }

// Capacity returns the largest total weight an aggregate accepts: every value
// at MaxAbs, summed with their weights, must stay below Q/2 together with the
// worst-case noise.
func (p Params) Capacity() float64 {
	flood, _ := p.floodBound(p.profile.MaxParties, p.profile.MaxParties)
	room := p.halfQ - float64(p.profile.MaxParties)*float64(flood) - p.ctNoiseBound(p.profile.MaxParties, p.profile.MaxParties)
	return room / (p.scale * p.profile.MaxAbs) * 0.999
}

// ctNoiseStd is the standard deviation of one coefficient of the noise of a sum
// of k fresh encryptions under the collective key of n parties:
// u*e_pk + e0 + e1*s with u, s_i ternary (variance P) and e Gaussian (sigma),
// so Var = k * sigma^2 * (1 + 2*N*P*n).
func (p Params) ctNoiseStd(parties, contributions int) float64 {
	n := float64(p.fhe.N())
	v := float64(contributions) * p.sigma * p.sigma * (1 + 2*n*p.pTernary*float64(parties))
	// Encoding rounds every contribution once; include it (uniform, variance 1/12).
	v += float64(contributions) / 12
	return math.Sqrt(v)
}

func (p Params) ctNoiseBound(parties, contributions int) float64 {
	return noiseTailFactor * p.ctNoiseStd(parties, contributions)
}

// floodBound returns B such that each decryption share adds noise uniform in
// [-B, B]: B = 2^LogFloodMargin * (10 sigma of the aggregate's noise). By the
// smudging lemma the share hides the ciphertext noise (and with it the secret
// key) up to statistical distance 2^-LogFloodMargin per coefficient.
func (p Params) floodBound(parties, contributions int) (uint64, error) {
	b := math.Ldexp(p.ctNoiseBound(parties, contributions), p.profile.LogFloodMargin)
	if b >= maxFloodBound {
		return 0, fmt.Errorf("%w: flooding bound 2^%.1f for %d parties and %d contributions exceeds 2^62",
			ErrInvalidProfile, math.Log2(b), parties, contributions)
	}
	return uint64(math.Ceil(b)), nil
}

// ErrorBound returns a bound on the absolute error of one decrypted weighted
// average, for a group of the given size, contributions to the aggregate,
// threshold and total weight. It is the worst case over the flooding (which is
// bounded) plus the 10-sigma ciphertext noise, divided by scale*weight, plus
// the rounding of published values to multiples of 2^-32; the typical error
// is several times smaller.
func (p Params) ErrorBound(parties, contributions, threshold int, totalWeight float64) float64 {
	flood, err := p.floodBound(parties, contributions)
	if err != nil {
		return math.Inf(1)
	}
	noise := float64(threshold)*(float64(flood)+6*p.sigma) + p.ctNoiseBound(parties, contributions)
	return noise/(p.scale*totalWeight) + 0.5/publishGrid
}

func (p Params) checkFingerprint(fp []byte) error {
	if string(fp) != string(p.fingerprint[:]) {
		return fmt.Errorf("%w: expected profile %q (fingerprint %x), got fingerprint %x",
			ErrProfileMismatch, p.profile.Name, p.fingerprint, fp)
	}
	return nil
}
