package aggregation

import (
	crand "crypto/rand"
	"fmt"
	"math"
	"math/rand/v2"
)

// Defaults of DPConfig's zero fields.
const (
	DefaultNoiseMultiplier = 1.0
	DefaultDPClip          = 1.0
	DefaultDPDelta         = 1e-5
	// MaxNoiseMultiplier bounds DPConfig.NoiseMultiplier and the accountant's noise
	// multipliers, so that every RDP computation stays finite.
	MaxNoiseMultiplier = 1e6
)

// DPConfig sets the differential privacy of a federation: DP-FedAvg (McMahan et al. 2018)
// at the level of a hospital (user-level DP), with the Gaussian noise split across the
// hospitals so that the coordinator, which sees only the decrypted sum, never sees a
// noiseless aggregate. (In plaintext mode it sees each update, with its share of the
// noise only: see CoordinatorNoiseMultiplier.)
//
// The mechanism, exactly:
//
//  1. Each contributing hospital i clips its update delta_i to L2 norm C (ClipNorm).
//  2. It adds its noise share: independent Gaussian noise of standard deviation
//     z·C/sqrt(n) on every coordinate, where n is the smallest number of contributions
//     the round can close with (the federation's min_clients).
//  3. It submits the result with weight 1, NOT multiplied by its sample count.
//  4. The aggregate is the plain sum S = sum_i clip(delta_i) + N(0, k/n·z²C²·I) over the
//     k >= n contributors. The server's update is S divided by a fixed, public number of
//     expected contributors (DPMean), and the server optimizer post-processes it.
//
// Sensitivity: adding or removing one hospital changes sum_i clip(delta_i) by at most C in
// L2 norm, so the sum with noise of standard deviation z·C is the Gaussian mechanism with
// noise multiplier z, and the Accountant's numbers hold for add/remove-one-hospital
// neighbouring federations. Two consequences of that choice:
//
//   - Weighting by sample counts is incompatible with it: a hospital sending n_i·delta_i
//     has sensitivity n_i·C, and n_i is self-reported. A fixed public weight w_i (agreed in
//     the federation, not per round) would need noise z·C·max(w_i) instead. MedFed uses
//     weight 1 in DP mode.
//   - For replace-one-hospital neighbours (same roster, one hospital's data swapped) the
//     sensitivity is 2C: account with noise multiplier z/2.
//
// Dropout: if only k of the n expected hospitals contribute, the noise has standard
// deviation z·C·sqrt(k/n). Using n = min_clients, and with a round that cannot close with
// fewer than min_clients contributions (guarantee 2 of the design), k >= n and the noise
// is never below z·C. More contributors mean more noise than needed, never less.
//
// Collusion: a hospital knows its own noise share. If up to c hospitals collude with the
// coordinator, they can subtract their shares, leaving noise of standard deviation
// z·C·sqrt((k-c)/n). To keep the full guarantee against c colluders, pass n = min_clients-c
// to AddNoiseShare.
//
// The noise is sampled in float64 and rounded to float32; no attempt is made to defend
// against floating-point attacks on the Gaussian sampler (Mironov 2012), which the CKKS
// encoding noise further blurs in encrypted mode.
//
// Zero fields mean "default", so DPConfig{} is z = 1, C = 1, delta = 1e-5, no budget;
// whether DP is on at all is the federation's decision, not this type's.
type DPConfig struct {
	// NoiseMultiplier is z: the standard deviation of the total noise on the sum of
	// clipped updates is z·C. Zero means DefaultNoiseMultiplier.
	NoiseMultiplier float64
	// Clip is C, the L2 bound on each hospital's unweighted update delta. Zero means
	// DefaultDPClip.
	Clip float64
	// Delta is the delta at which epsilon is reported and the budget enforced, in (0, 1).
	// Zero means DefaultDPDelta.
	Delta float64
	// Budget is the largest epsilon (at Delta) the federation may spend; a round that
	// would exceed it is refused. Zero or +Inf means no limit.
	Budget float64
}

// DefaultDPConfig returns DPConfig{} with the defaults filled in.
func DefaultDPConfig() DPConfig {
	return DPConfig{NoiseMultiplier: DefaultNoiseMultiplier, Clip: DefaultDPClip, Delta: DefaultDPDelta}
}

// Validate returns an error wrapping ErrParameter that names the first bad field, or nil.
func (c DPConfig) Validate() error {
	switch {
	case !(c.NoiseMultiplier >= 0 && c.NoiseMultiplier <= MaxNoiseMultiplier):
		return fmt.Errorf("%w: DPConfig.NoiseMultiplier is %v, want 0 < z <= %g (0 for the default)",
			ErrParameter, c.NoiseMultiplier, MaxNoiseMultiplier)
	case !(c.Clip >= 0) || math.IsInf(c.Clip, 1):
		return fmt.Errorf("%w: DPConfig.Clip is %v, want a finite value > 0 (0 for the default)", ErrParameter, c.Clip)
	case !(c.Delta >= 0 && c.Delta < 1):
		return fmt.Errorf("%w: DPConfig.Delta is %v, want 0 < delta < 1 (0 for the default)", ErrParameter, c.Delta)
	case !(c.Budget >= 0):
		return fmt.Errorf("%w: DPConfig.Budget is %v, want epsilon > 0 (0 for no limit)", ErrParameter, c.Budget)
	}
	return nil
}

// Resolved returns c with every zero field replaced by its default (Budget stays 0, no
// limit). c should be valid.
func (c DPConfig) Resolved() DPConfig {
	if c.NoiseMultiplier == 0 {
		c.NoiseMultiplier = DefaultNoiseMultiplier
	}
	if c.Clip == 0 {
		c.Clip = DefaultDPClip
	}
	if c.Delta == 0 {
		c.Delta = DefaultDPDelta
	}
	return c
}

// ShareStd returns the standard deviation z·C/sqrt(n) of the noise each of n contributors
// adds, so that the sum of n shares has standard deviation z·C. It returns NaN if c is
// invalid or n < 1.
func (c DPConfig) ShareStd(n int) float64 {
	if c.Validate() != nil || n < 1 {
		return math.NaN()
	}
	c = c.Resolved()
	return c.NoiseMultiplier * c.Clip / math.Sqrt(float64(n))
}

// CoordinatorNoiseMultiplier returns the noise multiplier that protects a hospital against
// the coordinator when each of at least n contributors adds its share (ShareStd(n)): z
// when the coordinator sees only the sum (secure aggregation: the sum carries noise of at
// least z·C), z/sqrt(n) when it sees each update (plaintext mode: an update carries its
// own share of the noise only, z·C/sqrt(n), for sensitivity C). It returns NaN if c is
// invalid or n < 1. Whoever sees only the published model is protected with z either way.
func (c DPConfig) CoordinatorNoiseMultiplier(sumOnly bool, n int) float64 {
	if c.Validate() != nil || n < 1 {
		return math.NaN()
	}
	z := c.Resolved().NoiseMultiplier
	if sumOnly {
		return z
	}
	return z / math.Sqrt(float64(n))
}

// NewNoiseSource returns a ChaCha8 generator seeded from crypto/rand, the source a real
// deployment passes to AddNoiseShare. Simulations and tests pass a generator with a known
// seed instead. The result is not safe for concurrent use.
func NewNoiseSource() *rand.Rand {
	var seed [32]byte
	crand.Read(seed[:]) // never returns an error since Go 1.24
	return rand.New(rand.NewChaCha8(seed))
}

// AddNoiseShare adds to delta, in place, one hospital's share of the round's Gaussian noise:
// independent N(0, (z·C)²/n) on every coordinate, where n is the number of shares that make
// up the full noise (min_clients; see DPConfig for dropout and collusion). delta should
// already be clipped to norm cfg.Clip (ClipAndNoise does both).
//
// rng supplies the randomness; nil means a fresh NewNoiseSource. An invalid cfg, n < 1 or
// a delta holding NaN or ±Inf returns an error (wrapping ErrParameter or ErrNonFinite) and
// leaves delta unchanged.
func AddNoiseShare(delta []float32, cfg DPConfig, n int, rng *rand.Rand) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("%w: noise is split over %d contributors, want at least 1", ErrParameter, n)
	}
	if j := firstNonFinite(delta); j >= 0 {
		return fmt.Errorf("%w: delta has %v at index %d", ErrNonFinite, delta[j], j)
	}
	if rng == nil {
		rng = NewNoiseSource()
	}
	std := cfg.ShareStd(n)
	for i, x := range delta {
		delta[i] = float32(float64(x) + std*rng.NormFloat64())
	}
	return nil
}

// ClipAndNoise is what a hospital does to its update in DP mode before encrypting it: clip
// delta to norm cfg.Clip, then add its noise share for n contributors. It returns the
// clipping factor (1 if delta was within the bound). On error delta is unchanged.
func ClipAndNoise(delta []float32, cfg DPConfig, n int, rng *rand.Rand) (float64, error) {
	if err := cfg.Validate(); err != nil {
		return 1, err
	}
	if n < 1 {
		return 1, fmt.Errorf("%w: noise is split over %d contributors, want at least 1", ErrParameter, n)
	}
	scale, err := ClipNorm(delta, cfg.Resolved().Clip)
	if err != nil {
		return scale, err
	}
	// ClipNorm has checked delta is finite, and clipping keeps it so.
	return scale, AddNoiseShare(delta, cfg, n, rng)
}

// DPMean is the DP-FedAvg server estimate in plaintext mode: the unweighted sum of the
// (clipped, noised) deltas divided by expected, the fixed public number of contributors
// the federation planned for (min_clients, or the expected number selected). Samples are
// ignored on purpose: see DPConfig. In encrypted mode the decrypted sum is
// divided by the same number. It returns an error wrapping ErrNoUpdates, ErrLengthMismatch
// or ErrNonFinite for an unusable set of updates, and ErrParameter if expected < 1.
func DPMean(updates []Update, expected int) ([]float32, error) {
	if expected < 1 {
		return nil, fmt.Errorf("%w: expected contributors is %d, want at least 1", ErrParameter, expected)
	}
	dim, err := checkUpdates(updates)
	if err != nil {
		return nil, err
	}
	sum := make([]float64, dim)
	for _, u := range updates {
		for j, x := range u.Delta {
			sum[j] += float64(x)
		}
	}
	out := make([]float32, dim)
	for j, s := range sum {
		out[j] = float32(s / float64(expected))
	}
	return out, nil
}
