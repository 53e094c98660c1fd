package aggregation

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Errors of the privacy accountant. They are wrapped with details; test with errors.Is.
var (
	// ErrBudgetExceeded means a round would bring epsilon past the federation's budget.
	ErrBudgetExceeded = errors.New("aggregation: privacy budget exceeded")
	// ErrAccountantState means serialised accountant state is malformed, truncated,
	// corrupted or from an unsupported version.
	ErrAccountantState = errors.New("aggregation: bad accountant state")
)

// Limits of an Accountant, which bound the work and memory that decoding state can cause.
const (
	// MaxRDPOrder is the largest Rényi order an Accountant evaluates.
	MaxRDPOrder = 1024
	// MaxRDPOrders is the largest number of orders an Accountant tracks.
	MaxRDPOrders = 1024
	// MaxAccountantEntries is the largest number of distinct (q, z) runs an Accountant
	// records; consecutive rounds with the same q and z take one entry.
	MaxAccountantEntries = 1 << 16
)

// fracSeriesTerms caps the series for fractional orders; an order whose series has not
// converged by then is given infinite RDP, which only makes the bound looser.
const fracSeriesTerms = 200_000

// DefaultRDPOrders returns the Rényi orders an Accountant evaluates unless told otherwise,
// the default list of TensorFlow Privacy's RDP accountant: 1.25 to 4.5 in small steps, every
// integer from 5 to 63, and 128, 256, 512.
func DefaultRDPOrders() []float64 {
	o := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
	for a := 5; a < 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512)
}

// accountantEntry is a run of rounds of the sampled Gaussian mechanism with the same
// sampling rate and noise multiplier.
type accountantEntry struct {
	q, z   float64
	rounds uint64
}

// Accountant tracks the privacy loss of a federation with Rényi differential privacy (RDP),
// round by round, and converts it to (epsilon, delta). Each round is one run of the Sampled
// Gaussian Mechanism: every hospital is included with probability q (q = 1: all of them)
// and the sum of clipped updates gets Gaussian noise of standard deviation z·C. The RDP at
// each order is that of Mironov, Talwar and Zhang 2019, "Rényi Differential Privacy of the
// Sampled Gaussian Mechanism", computed as TensorFlow Privacy's and Opacus's compute_rdp
// do: for integer orders the binomial expansion of A_alpha in log space, for fractional
// orders the paper's two-sided series; q = 1 gives the Gaussian mechanism's alpha/(2z²).
// RDP adds up over rounds.
//
// Only use q < 1 if the selection of hospitals is random (each included independently with
// probability q) and hidden from whoever the guarantee is meant against. The coordinator
// records who contributed to a round, so against the coordinator itself account with q = 1.
//
// The state is the list of (q, z, rounds) runs, exact and independent of the machine, so
// replicas that apply the same Steps hold identical bytes; epsilon is derived from it.
// Decide budget refusals (CanStep, Spend) on one node, the Raft leader, and replicate the
// decision, as different machines may round a value on the budget's edge differently.
//
// The zero value is ready to use with DefaultRDPOrders. An Accountant is not safe for
// concurrent use.
type Accountant struct {
	orders  []float64
	entries []accountantEntry
	rounds  uint64
	// Cached RDP: prefix is the RDP of every entry but the last, last the per-round RDP of
	// the last entry; the total is prefix + rounds(last)·last. Rebuilt from entries by
	// UnmarshalBinary in the same order, so it is bit-for-bit the same after a round trip.
	prefix, last []float64
}

// NewAccountant returns an Accountant that evaluates RDP at the given orders, each finite,
// above 1 and at most MaxRDPOrder, in increasing order. Use it to reproduce another tool's
// numbers; the zero Accountant uses DefaultRDPOrders.
func NewAccountant(orders []float64) (*Accountant, error) {
	if err := checkOrders(orders); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParameter, err)
	}
	a := &Accountant{orders: append([]float64(nil), orders...)}
	a.init()
	return a, nil
}

func checkOrders(orders []float64) error {
	if len(orders) < 1 || len(orders) > MaxRDPOrders {
		return fmt.Errorf("%d RDP orders, want 1 to %d", len(orders), MaxRDPOrders)
	}
	for i, o := range orders {
		if !(o > 1 && o <= MaxRDPOrder) {
			return fmt.Errorf("RDP order %d is %v, want 1 < order <= %d", i, o, MaxRDPOrder)
		}
		if i > 0 && !(o > orders[i-1]) {
			return fmt.Errorf("RDP order %d is %v after %v, want increasing orders", i, o, orders[i-1])
		}
	}
	return nil
}

// init gives a zero Accountant its default orders and empty caches.
func (a *Accountant) init() {
	if a.orders == nil {
		a.orders = DefaultRDPOrders()
	}
	if a.prefix == nil {
		a.prefix = make([]float64, len(a.orders))
		a.last = make([]float64, len(a.orders))
	}
}

// Orders returns a copy of the Rényi orders the Accountant evaluates.
func (a *Accountant) Orders() []float64 {
	a.init()
	return append([]float64(nil), a.orders...)
}

// Rounds returns the number of rounds recorded.
func (a *Accountant) Rounds() uint64 { return a.rounds }

// RDP returns the accumulated RDP at each of Orders (+Inf where it is unbounded).
func (a *Accountant) RDP() []float64 {
	a.init()
	return a.total()
}

// total returns the accumulated RDP.
func (a *Accountant) total() []float64 {
	t := make([]float64, len(a.orders))
	if n := len(a.entries); n > 0 {
		c := float64(a.entries[n-1].rounds)
		for k := range t {
			t[k] = a.prefix[k] + c*a.last[k]
		}
	}
	return t
}

// totalAfter returns the RDP total() will return after one more round of (q, z), whose
// per-round RDP is rdp, computed with the same operations as compose and total so that
// the two agree to the bit.
func (a *Accountant) totalAfter(q, z float64, rdp []float64) []float64 {
	t := make([]float64, len(a.orders))
	n := len(a.entries)
	if n > 0 && a.entries[n-1].q == q && a.entries[n-1].z == z {
		c := float64(a.entries[n-1].rounds + 1)
		for k := range t {
			t[k] = a.prefix[k] + c*a.last[k]
		}
		return t
	}
	for k := range t {
		p := a.prefix[k]
		if n > 0 {
			p += float64(a.entries[n-1].rounds) * a.last[k]
		}
		t[k] = p + 1*rdp[k]
	}
	return t
}

func checkMechanism(q, z float64) error {
	if !(q >= 0 && q <= 1) {
		return fmt.Errorf("%w: sampling rate is %v, want 0 <= q <= 1", ErrParameter, q)
	}
	if !(z > 0 && z <= MaxNoiseMultiplier) {
		return fmt.Errorf("%w: noise multiplier is %v, want 0 < z <= %g", ErrParameter, z, MaxNoiseMultiplier)
	}
	return nil
}

// Step records one round of the Sampled Gaussian Mechanism with sampling rate q (the
// probability that a hospital is in the round; 1 if all are) and noise multiplier z. Bad
// parameters return an error wrapping ErrParameter and change nothing.
func (a *Accountant) Step(q, z float64) error { return a.Compose(q, z, 1) }

// Compose records rounds rounds of the Sampled Gaussian Mechanism at once; it is exactly
// rounds calls of Step. It returns an error wrapping ErrParameter and changes nothing for
// bad parameters, a total past 2^53 rounds, or more than MaxAccountantEntries runs.
func (a *Accountant) Compose(q, z float64, rounds uint64) error {
	if err := checkMechanism(q, z); err != nil {
		return err
	}
	a.init()
	if rounds == 0 {
		return nil
	}
	return a.compose(q, z, rounds, nil)
}

// compose records rounds of (q, z), whose per-round RDP is rdp if not nil. q and z are valid.
func (a *Accountant) compose(q, z float64, rounds uint64, rdp []float64) error {
	if rounds > 1<<53-a.rounds {
		return fmt.Errorf("%w: %d more rounds after %d, want at most 2^53 in all", ErrParameter, rounds, a.rounds)
	}
	n := len(a.entries)
	if n > 0 && a.entries[n-1].q == q && a.entries[n-1].z == z {
		a.entries[n-1].rounds += rounds
		a.rounds += rounds
		return nil
	}
	if n >= MaxAccountantEntries {
		return fmt.Errorf("%w: %d runs of distinct (q, z) recorded, want at most %d",
			ErrParameter, n, MaxAccountantEntries)
	}
	if rdp == nil {
		rdp = sgmRDP(q, z, a.orders)
	}
	if n > 0 {
		c := float64(a.entries[n-1].rounds)
		for k := range a.prefix {
			a.prefix[k] += c * a.last[k]
		}
	}
	copy(a.last, rdp)
	a.entries = append(a.entries, accountantEntry{q: q, z: z, rounds: rounds})
	a.rounds += rounds
	return nil
}

// Epsilon returns the smallest epsilon, over the Accountant's orders, for which the rounds
// so far are (epsilon, delta)-DP, and the order that gives it. It uses the improved
// conversion of Canonne, Kamath and Steinke 2020 (Prop. 12) and Balle et al. 2020
// (Thm. 21), as TensorFlow Privacy and Opacus do today:
//
//	epsilon = rdp + log((alpha-1)/alpha) - (log(delta) + log(alpha))/(alpha-1)
//
// (0 where 1 - exp(-rdp) < delta², orders up to 1.01 skipped, never below 0). No rounds
// give 0. A delta outside (0, 1) gives +Inf; so does an unbounded loss.
func (a *Accountant) Epsilon(delta float64) (eps, order float64) {
	return a.epsilon(delta, nil, improvedEpsilon)
}

// EpsilonClassic is Epsilon with the classic conversion of Mironov 2017 (Prop. 3),
// epsilon = rdp + log(1/delta)/(alpha-1), which TensorFlow Privacy used until 2022 and
// which published DP-SGD numbers such as its MNIST tutorial's are based on. It is never
// smaller than Epsilon's.
func (a *Accountant) EpsilonClassic(delta float64) (eps, order float64) {
	return a.epsilon(delta, nil, classicEpsilon)
}

// epsilon converts rdp, or the accumulated RDP if rdp is nil, with conv.
func (a *Accountant) epsilon(delta float64, rdp []float64, conv func(alpha, rdp, delta float64) float64) (float64, float64) {
	a.init()
	if !(delta > 0 && delta < 1) {
		return math.Inf(1), 0
	}
	if rdp == nil {
		if a.rounds == 0 {
			return 0, 0
		}
		rdp = a.total()
	}
	best, order := math.Inf(1), 0.0
	for k, alpha := range a.orders {
		if e := conv(alpha, rdp[k], delta); e < best {
			best, order = e, alpha
		}
	}
	return math.Max(best, 0), order
}

func classicEpsilon(alpha, rdp, delta float64) float64 {
	return rdp - math.Log(delta)/(alpha-1)
}

func improvedEpsilon(alpha, rdp, delta float64) float64 {
	switch {
	case delta*delta+math.Expm1(-rdp) > 0:
		return 0 // delta <= sqrt(1 - exp(-KL)) and KL <= rdp
	case alpha > 1.01: // the bound is unstable as alpha -> 1, and useless there anyway
		return rdp + math.Log1p(-1/alpha) - math.Log(delta*alpha)/(alpha-1)
	}
	return math.Inf(1)
}

// CanStep reports whether one more round with sampling rate q and noise multiplier z keeps
// epsilon (Epsilon, at delta) within budget. A budget of 0 or +Inf means no limit. Bad
// parameters give false.
func (a *Accountant) CanStep(q, z, delta, budget float64) bool {
	if checkMechanism(q, z) != nil || !(budget >= 0) {
		return false
	}
	if budget == 0 || math.IsInf(budget, 1) {
		return true
	}
	a.init()
	eps, _ := a.epsilon(delta, a.totalAfter(q, z, sgmRDP(q, z, a.orders)), improvedEpsilon)
	return eps <= budget
}

// Spend records one round of cfg's mechanism at sampling rate q if epsilon at cfg.Delta
// stays within cfg.Budget after it, and returns that epsilon. Otherwise it returns the
// epsilon the round would have reached and an error wrapping ErrBudgetExceeded, and records
// nothing; bad parameters return an error wrapping ErrParameter.
func (a *Accountant) Spend(q float64, cfg DPConfig) (float64, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	cfg = cfg.Resolved()
	if err := checkMechanism(q, cfg.NoiseMultiplier); err != nil {
		return 0, err
	}
	a.init()
	rdp := sgmRDP(q, cfg.NoiseMultiplier, a.orders)
	eps, _ := a.epsilon(cfg.Delta, a.totalAfter(q, cfg.NoiseMultiplier, rdp), improvedEpsilon)
	if cfg.Budget > 0 && eps > cfg.Budget {
		was, _ := a.Epsilon(cfg.Delta)
		return eps, fmt.Errorf("%w: round %d would bring epsilon from %.4g to %.4g at delta %g, budget is %g",
			ErrBudgetExceeded, a.rounds+1, was, eps, cfg.Delta, cfg.Budget)
	}
	if err := a.compose(q, cfg.NoiseMultiplier, 1, rdp); err != nil {
		return eps, err
	}
	return eps, nil
}

// sgmRDP returns the RDP of one run of the Sampled Gaussian Mechanism with sampling rate q
// and noise multiplier sigma at each order. q and sigma are valid.
func sgmRDP(q, sigma float64, orders []float64) []float64 {
	r := make([]float64, len(orders))
	for k, alpha := range orders {
		r[k] = sgmRDPOrder(q, sigma, alpha)
	}
	return r
}

func sgmRDPOrder(q, sigma, alpha float64) float64 {
	switch {
	case q == 0:
		return 0
	case q == 1:
		return alpha / (2 * sigma * sigma)
	}
	var logA float64
	if alpha == math.Trunc(alpha) {
		logA = logAInt(q, sigma, int(alpha))
	} else {
		logA = logAFrac(q, sigma, alpha)
	}
	r := logA / (alpha - 1)
	switch {
	case math.IsNaN(r):
		return math.Inf(1) // a numerical failure must not understate the loss
	case r < 0:
		return 0 // A_alpha >= 1; a negative value is rounding
	}
	return r
}

// logAInt returns log A_alpha for an integer order, by the binomial expansion
// A_alpha = sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i²-i)/(2 sigma²)).
func logAInt(q, sigma float64, alpha int) float64 {
	lq, l1q := math.Log(q), math.Log1p(-q)
	lgA, _ := math.Lgamma(float64(alpha) + 1)
	logA := math.Inf(-1)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		lgI, _ := math.Lgamma(fi + 1)
		lgJ, _ := math.Lgamma(float64(alpha-i) + 1)
		s := lgA - lgI - lgJ + fi*lq + float64(alpha-i)*l1q + (fi*fi-fi)/(2*sigma*sigma)
		logA = logAdd(logA, s)
	}
	return logA
}

// logAFrac returns log A_alpha for a fractional order by the series of Mironov, Talwar and
// Zhang 2019, Section 3.3, split at z0 where the two Gaussians' densities cross.
func logAFrac(q, sigma, alpha float64) float64 {
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	lq, l1q := math.Log(q), math.Log1p(-q)
	z0 := sigma*sigma*(l1q-lq) + 0.5
	lgA, _ := math.Lgamma(alpha + 1)
	s2 := math.Sqrt2 * sigma
	for i := 0; i < fracSeriesTerms; i++ {
		fi := float64(i)
		j := alpha - fi
		lgI, _ := math.Lgamma(fi + 1)
		lgJ, sign := math.Lgamma(j + 1)
		logCoef := lgA - lgI - lgJ // log |C(alpha, i)|; its sign is that of Gamma(alpha-i+1)
		logT0 := logCoef + fi*lq + j*l1q
		logT1 := logCoef + j*lq + fi*l1q
		logE0 := math.Log(0.5) + logErfc((fi-z0)/s2)
		logE1 := math.Log(0.5) + logErfc((z0-j)/s2)
		logS0 := logT0 + (fi*fi-fi)/(2*sigma*sigma) + logE0
		logS1 := logT1 + (j*j-j)/(2*sigma*sigma) + logE1
		if sign > 0 {
			logA0 = logAdd(logA0, logS0)
			logA1 = logAdd(logA1, logS1)
		} else {
			logA0 = logSub(logA0, logS0)
			logA1 = logSub(logA1, logS1)
		}
		if math.Max(logS0, logS1) < -30 {
			return logAdd(logA0, logA1)
		}
		if math.IsNaN(logA0) || math.IsNaN(logA1) {
			break
		}
	}
	return math.Inf(1)
}

// logAdd returns log(exp(x) + exp(y)).
func logAdd(x, y float64) float64 {
	a, b := math.Min(x, y), math.Max(x, y)
	if math.IsInf(a, -1) || math.IsInf(b, 1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logSub returns log(exp(x) - exp(y)), or NaN if y > x.
func logSub(x, y float64) float64 {
	switch {
	case x < y:
		return math.NaN()
	case math.IsInf(y, -1):
		return x
	case x == y:
		return math.Inf(-1)
	}
	if d := x - y; d < 700 {
		return math.Log(math.Expm1(d)) + y
	}
	return x
}

// logErfc returns log(erfc(x)), with the asymptotic expansion where erfc underflows.
func logErfc(x float64) float64 {
	if x < 20 {
		return math.Log(math.Erfc(x))
	}
	x2 := 1 / (x * x)
	return -0.5*math.Log(math.Pi) - math.Log(x) - x*x +
		x2*(-0.5+x2*(0.625+x2*(-37.0/24+x2*353.0/64)))
}

// Serialised accountant state, version 1, little-endian:
//
//	offset  size     field
//	0       4        magic "MFDA"
//	4       1        version (1)
//	5       3        reserved, zero
//	8       8        rounds (uint64), the sum of the runs' rounds
//	16      4        number of orders K (uint32), 1 to MaxRDPOrders
//	20      4        number of runs M (uint32), 0 to MaxAccountantEntries
//	24      K×8      orders (float64, increasing)
//	...     M×24     runs: q, z (float64), rounds (uint64 >= 1); consecutive runs differ
//	...     4        CRC-32C of everything before it
const (
	acctMagic   = "MFDA"
	acctVersion = 1
	acctHeader  = 24
)

// MarshalBinary encodes the Accountant's orders and runs in a versioned, checksummed format
// that UnmarshalBinary reads back exactly. It implements encoding.BinaryMarshaler.
func (a *Accountant) MarshalBinary() ([]byte, error) {
	a.init()
	b := make([]byte, acctHeader, acctHeader+8*len(a.orders)+24*len(a.entries)+4)
	copy(b, acctMagic)
	b[4] = acctVersion
	le := binary.LittleEndian
	le.PutUint64(b[8:], a.rounds)
	le.PutUint32(b[16:], uint32(len(a.orders)))
	le.PutUint32(b[20:], uint32(len(a.entries)))
	for _, o := range a.orders {
		b = le.AppendUint64(b, math.Float64bits(o))
	}
	for _, e := range a.entries {
		b = le.AppendUint64(b, math.Float64bits(e.q))
		b = le.AppendUint64(b, math.Float64bits(e.z))
		b = le.AppendUint64(b, e.rounds)
	}
	return le.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// UnmarshalBinary replaces the Accountant's state with one encoded by MarshalBinary; it
// works on a zero Accountant. It implements encoding.BinaryUnmarshaler.
//
// Input is untrusted: a truncated, oversized, corrupted or unsupported encoding, or one an
// Accountant could not have produced, returns an error wrapping ErrAccountantState and
// leaves the Accountant unchanged. It never allocates more than a small multiple of the
// input's size.
func (a *Accountant) UnmarshalBinary(data []byte) error {
	if len(data) < acctHeader+4 {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrAccountantState, len(data), acctHeader+4)
	}
	if string(data[:4]) != acctMagic {
		return fmt.Errorf("%w: magic is %q, want %q", ErrAccountantState, data[:4], acctMagic)
	}
	if data[4] != acctVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrAccountantState, data[4], acctVersion)
	}
	if data[5] != 0 || data[6] != 0 || data[7] != 0 {
		return fmt.Errorf("%w: reserved bytes are % x, want zero", ErrAccountantState, data[5:8])
	}
	le := binary.LittleEndian
	rounds := le.Uint64(data[8:])
	k, m := uint64(le.Uint32(data[16:])), uint64(le.Uint32(data[20:]))
	if k < 1 || k > MaxRDPOrders {
		return fmt.Errorf("%w: %d orders, want 1 to %d", ErrAccountantState, k, MaxRDPOrders)
	}
	if m > MaxAccountantEntries {
		return fmt.Errorf("%w: %d runs, want at most %d", ErrAccountantState, m, MaxAccountantEntries)
	}
	if got, want := uint64(len(data)), acctHeader+8*k+24*m+4; got != want {
		return fmt.Errorf("%w: %d bytes, want %d for %d orders and %d runs", ErrAccountantState, got, want, k, m)
	}
	end := len(data) - 4
	if got, sum := le.Uint32(data[end:]), crc32.Checksum(data[:end], castagnoli); got != sum {
		return fmt.Errorf("%w: checksum %#08x, want %#08x (corrupted)", ErrAccountantState, got, sum)
	}
	p := data[acctHeader:end]
	orders := make([]float64, k)
	for i := range orders {
		orders[i] = math.Float64frombits(le.Uint64(p[8*i:]))
	}
	if err := checkOrders(orders); err != nil {
		return fmt.Errorf("%w: %w", ErrAccountantState, err)
	}
	p = p[8*k:]
	n := &Accountant{orders: orders}
	n.init()
	for i := range m {
		e := p[24*i:]
		q, z := math.Float64frombits(le.Uint64(e)), math.Float64frombits(le.Uint64(e[8:]))
		r := le.Uint64(e[16:])
		if err := checkMechanism(q, z); err != nil {
			return fmt.Errorf("%w: run %d: %w", ErrAccountantState, i, err)
		}
		if r == 0 {
			return fmt.Errorf("%w: run %d has 0 rounds, want at least 1", ErrAccountantState, i)
		}
		if last := len(n.entries) - 1; last >= 0 && n.entries[last].q == q && n.entries[last].z == z {
			return fmt.Errorf("%w: run %d repeats q %v and z %v of run %d", ErrAccountantState, i, q, z, last)
		}
		if err := n.compose(q, z, r, nil); err != nil {
			return fmt.Errorf("%w: run %d: %w", ErrAccountantState, i, err)
		}
	}
	if n.rounds != rounds {
		return fmt.Errorf("%w: header says %d rounds, runs add up to %d", ErrAccountantState, rounds, n.rounds)
	}
	*a = *n
	return nil
}
