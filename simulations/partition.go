package simulations

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Sentinel errors of Partition and ParseScheme. Test with errors.Is.
var (
	// ErrScheme means a partition scheme is malformed or has a parameter out of range.
	ErrScheme = errors.New("invalid partition scheme")

	// ErrPartition means the labels cannot be partitioned as asked: too few samples for the
	// number of clients, a label that is not a class index, and the like.
	ErrPartition = errors.New("cannot partition")
)

// Scheme kinds, the part of a scheme string before the colon.
const (
	IID          = "iid"          // uniform random split, equal sizes
	Dirichlet    = "dirichlet"    // label skew: per-class Dirichlet(Alpha) proportions
	Pathological = "pathological" // label skew: K single-class shards per client
	Quantity     = "quantity"     // size skew: Dirichlet(Alpha) client sizes, IID labels
)

// maxMinSize bounds the minimum number of samples Partition guarantees each client under the
// skewed schemes: every client gets at least min(maxMinSize, max(1, samples/(2*clients)))
// samples, so at least half of the samples are distributed by the skewed draw.
const maxMinSize = 10

// dirichletAttempts is how many times a Dirichlet label partition is redrawn when some client
// falls below the minimum size, before the shortfall is repaired by moving samples.
const dirichletAttempts = 10

// Scheme says how Partition distributes samples among clients. Build one with ParseScheme or
// as a literal; Validate reports a bad field. A Scheme is a plain value, safe for concurrent
// use.
type Scheme struct {
	// Kind is IID, Dirichlet, Pathological or Quantity.
	Kind string
	// Alpha is the Dirichlet concentration for Dirichlet and Quantity, > 0: small values
	// (0.1) give very uneven clients, large values (100) nearly IID ones.
	Alpha float64
	// K is the number of class shards each client gets under Pathological, >= 1.
	K int
}

// ParseScheme parses "iid", "dirichlet:ALPHA", "pathological:K" or "quantity:ALPHA"
// (case-insensitive, surrounding spaces ignored). Errors wrap ErrScheme.
func ParseScheme(s string) (Scheme, error) {
	kind, param, hasParam := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	var sc Scheme
	switch kind {
	case IID:
		if hasParam {
			return Scheme{}, fmt.Errorf("%w %q: iid takes no parameter", ErrScheme, s)
		}
		sc = Scheme{Kind: IID}
	case Dirichlet, Quantity:
		if !hasParam {
			return Scheme{}, fmt.Errorf("%w %q: want %s:ALPHA with ALPHA > 0, e.g. %s:0.5", ErrScheme, s, kind, kind)
		}
		a, err := strconv.ParseFloat(param, 64)
		if err != nil {
			return Scheme{}, fmt.Errorf("%w %q: alpha %q is not a number, want %s:ALPHA with ALPHA > 0", ErrScheme, s, param, kind)
		}
		sc = Scheme{Kind: kind, Alpha: a}
	case Pathological:
		if !hasParam {
			return Scheme{}, fmt.Errorf("%w %q: want pathological:K with K >= 1 classes per client, e.g. pathological:2", ErrScheme, s)
		}
		k, err := strconv.Atoi(param)
		if err != nil {
			return Scheme{}, fmt.Errorf("%w %q: K %q is not an integer, want pathological:K with K >= 1", ErrScheme, s, param)
		}
		sc = Scheme{Kind: Pathological, K: k}
	default:
		return Scheme{}, fmt.Errorf("%w %q: unknown kind %q, want iid, dirichlet:ALPHA, pathological:K or quantity:ALPHA", ErrScheme, s, kind)
	}
	if err := sc.Validate(); err != nil {
		return Scheme{}, err
	}
	return sc, nil
}

// Validate reports the first bad field of s, wrapping ErrScheme.
func (s Scheme) Validate() error {
	switch s.Kind {
	case IID:
	case Dirichlet, Quantity:
		if !(s.Alpha > 0) || math.IsInf(s.Alpha, 0) {
			return fmt.Errorf("%w: %s alpha %v, want a finite number > 0", ErrScheme, s.Kind, s.Alpha)
		}
	case Pathological:
		if s.K < 1 {
			return fmt.Errorf("%w: pathological K = %d, want >= 1 classes per client", ErrScheme, s.K)
		}
	default:
		return fmt.Errorf("%w: kind %q, want %q, %q, %q or %q", ErrScheme, s.Kind, IID, Dirichlet, Pathological, Quantity)
	}
	return nil
}

// String returns the scheme in the form ParseScheme reads.
func (s Scheme) String() string {
	switch s.Kind {
	case Dirichlet, Quantity:
		return s.Kind + ":" + strconv.FormatFloat(s.Alpha, 'g', -1, 64)
	case Pathological:
		return s.Kind + ":" + strconv.Itoa(s.K)
	}
	return s.Kind
}

// Partition splits the samples whose class labels are given among clients and returns each
// client's sample indices, in ascending order. The clients' index sets are disjoint, together
// cover every sample, and none is empty. The result depends only on the arguments: the same
// seed gives the same partition everywhere, a different seed (almost always) another one.
//
// labels[i] must be a class index in [0, classes). The schemes:
//
//   - iid: a uniform random permutation cut into clients parts whose sizes differ by at
//     most one.
//   - dirichlet:ALPHA (Hsu, Qi and Brown 2019; Flower's DirichletPartitioner): for each
//     class, proportions p ~ Dirichlet(ALPHA, ..., ALPHA) over the clients, and the class's
//     shuffled samples are cut at floor(cumsum(p) * n_class). If a client ends up with fewer
//     than m = min(10, max(1, samples/(2*clients))) samples, the whole draw is repeated (up
//     to 10 draws, as Flower's min_partition_size does); if the last draw still falls
//     short, each short client takes random samples from the currently largest client until
//     it has m. So every client has at least m samples, at a small cost in skew for tiny
//     ALPHA with many clients.
//   - pathological:K (McMahan et al. 2017): the samples, sorted by label, are cut into
//     clients*K shards and each client is dealt K random shards. Unlike the original, shards
//     never straddle two classes (each class is cut into a number of shards proportional to
//     its size, at least one), so a client holds at most K classes. It needs clients*K >=
//     the number of classes present (otherwise some class could not be dealt) and <= samples.
//   - quantity:ALPHA: client sizes m + floor-of-cumsum(p * (samples - clients*m)) with
//     p ~ Dirichlet(ALPHA) and the same minimum m, filled from a uniform random
//     permutation, so sizes are skewed but label distributions are IID.
//
// Errors wrap ErrScheme (bad scheme) or ErrPartition (clients < 1, classes < 1, fewer samples
// than clients, a label that is not a class index, pathological shards that cannot be dealt).
func Partition(labels []float32, classes, clients int, scheme Scheme, seed uint64) ([][]int, error) {
	if err := scheme.Validate(); err != nil {
		return nil, err
	}
	n := len(labels)
	switch {
	case classes < 1:
		return nil, fmt.Errorf("%w: %d classes, want >= 1", ErrPartition, classes)
	case clients < 1:
		return nil, fmt.Errorf("%w: %d clients, want >= 1", ErrPartition, clients)
	case n < clients:
		return nil, fmt.Errorf("%w: %d samples for %d clients, want at least one sample per client", ErrPartition, n, clients)
	}
	byClass := make([][]int, classes)
	for i, y := range labels {
		if !(y >= 0 && y < float32(classes) && y == float32(int(y))) {
			return nil, fmt.Errorf("%w: sample %d has label %v, want a class index in [0, %d)", ErrPartition, i, y, classes)
		}
		byClass[int(y)] = append(byClass[int(y)], i)
	}
	r := newRNG(seed)
	var parts [][]int
	var err error
	switch scheme.Kind {
	case IID:
		parts = cutBySizes(r.permutation(n), equalSizes(n, clients))
	case Quantity:
		parts = cutBySizes(r.permutation(n), quantitySizes(r, n, clients, scheme.Alpha))
	case Dirichlet:
		parts = dirichletPartition(r, byClass, n, clients, scheme.Alpha)
	case Pathological:
		parts, err = pathologicalPartition(r, byClass, n, clients, scheme.K)
	}
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		slices.Sort(p)
	}
	return parts, nil
}

// LabelCounts returns how many of the samples idx have each class, len classes. Labels that
// are not a class index in [0, classes) are not counted. It panics if an index is out of
// range of labels.
func LabelCounts(labels []float32, idx []int, classes int) []int {
	counts := make([]int, max(classes, 0))
	for _, i := range idx {
		y := labels[i]
		if y >= 0 && y < float32(classes) && y == float32(int(y)) {
			counts[int(y)]++
		}
	}
	return counts
}

// minSize is the smallest client the skewed schemes allow.
func minSize(n, clients int) int { return min(maxMinSize, max(1, n/(2*clients))) }

// equalSizes returns clients sizes summing to n that differ by at most one.
func equalSizes(n, clients int) []int {
	sizes := make([]int, clients)
	for i := range sizes {
		sizes[i] = n / clients
		if i < n%clients {
			sizes[i]++
		}
	}
	return sizes
}

// cutBySizes cuts perm into consecutive parts of the given sizes (which sum to len(perm)),
// each part a fresh slice.
func cutBySizes(perm []int, sizes []int) [][]int {
	parts := make([][]int, len(sizes))
	at := 0
	for i, s := range sizes {
		parts[i] = slices.Clone(perm[at : at+s])
		at += s
	}
	return parts
}

// proportionalCuts returns the sizes of the parts of n items cut at floor(cumsum(p)*n)
// (the last cut at n), as numpy's np.split(idx, (cumsum(p)*n).astype(int)[:-1]) does.
func proportionalCuts(p []float64, n int) []int {
	sizes := make([]int, len(p))
	var cum float64
	prev := 0
	for j, pj := range p {
		cum += pj
		cut := min(int(cum*float64(n)), n)
		if j == len(p)-1 {
			cut = n
		}
		cut = max(cut, prev)
		sizes[j] = cut - prev
		prev = cut
	}
	return sizes
}

// quantitySizes draws client sizes: m each, plus Dirichlet(alpha) shares of the rest.
func quantitySizes(r *rng, n, clients int, alpha float64) []int {
	m := minSize(n, clients)
	sizes := proportionalCuts(r.dirichlet(alpha, clients), n-clients*m)
	for i := range sizes {
		sizes[i] += m
	}
	return sizes
}

// dirichletPartition draws per-class Dirichlet proportions, redraws while a client is too
// small, and repairs the last draw if needed.
func dirichletPartition(r *rng, byClass [][]int, n, clients int, alpha float64) [][]int {
	m := minSize(n, clients)
	var parts [][]int
	for range dirichletAttempts {
		parts = make([][]int, clients)
		for _, idx := range byClass {
			if len(idx) == 0 {
				continue
			}
			perm := slices.Clone(idx)
			r.shuffle(perm)
			at := 0
			for j, s := range proportionalCuts(r.dirichlet(alpha, clients), len(perm)) {
				parts[j] = append(parts[j], perm[at:at+s]...)
				at += s
			}
		}
		if smallest(parts) >= m {
			return parts
		}
	}
	// Repair: each short client takes random samples from the largest client.
	for j := range parts {
		for len(parts[j]) < m {
			big := largest(parts)
			k := int(r.bounded(uint64(len(parts[big]))))
			last := len(parts[big]) - 1
			parts[j] = append(parts[j], parts[big][k])
			parts[big][k] = parts[big][last]
			parts[big] = parts[big][:last]
		}
	}
	return parts
}

func smallest(parts [][]int) int {
	s := math.MaxInt
	for _, p := range parts {
		s = min(s, len(p))
	}
	return s
}

func largest(parts [][]int) int {
	best := 0
	for j, p := range parts {
		if len(p) > len(parts[best]) {
			best = j
		}
	}
	return best
}

// pathologicalPartition cuts each class into shards (shard counts proportional to class
// sizes, at least one per present class, clients*k in all) and deals k random shards to each
// client.
func pathologicalPartition(r *rng, byClass [][]int, n, clients, k int) ([][]int, error) {
	if clients > n/k {
		return nil, fmt.Errorf("%w: pathological:%d needs clients*K = %d*%d shards of at least one sample, have %d samples", ErrPartition, k, clients, k, n)
	}
	shards := clients * k
	present := 0
	for _, idx := range byClass {
		if len(idx) > 0 {
			present++
		}
	}
	if shards < present {
		return nil, fmt.Errorf("%w: pathological:%d with %d clients deals %d shards, want at least one per class present (%d); use more clients or a larger K", ErrPartition, k, clients, shards, present)
	}
	alloc := allocateShards(byClass, n, shards)
	var all [][]int
	for c, idx := range byClass {
		if alloc[c] == 0 {
			continue
		}
		perm := slices.Clone(idx)
		r.shuffle(perm)
		all = append(all, cutBySizes(perm, equalSizes(len(perm), alloc[c]))...)
	}
	order := r.permutation(len(all))
	parts := make([][]int, clients)
	for j := range parts {
		for _, s := range order[j*k : (j+1)*k] {
			parts[j] = append(parts[j], all[s]...)
		}
	}
	return parts, nil
}

// allocateShards gives each present class a number of shards in [1, its size], summing to
// shards, proportional to its size as nearly as possible (largest remainder). It needs
// present classes <= shards <= n.
func allocateShards(byClass [][]int, n, shards int) []int {
	alloc := make([]int, len(byClass))
	quota := make([]float64, len(byClass))
	total := 0
	for c, idx := range byClass {
		if len(idx) == 0 {
			continue
		}
		quota[c] = float64(shards) * float64(len(idx)) / float64(n)
		alloc[c] = min(max(1, int(quota[c])), len(idx))
		total += alloc[c]
	}
	for total > shards { // only because of the minimum of one: take from the most over quota
		best := -1
		for c := range alloc {
			if alloc[c] > 1 && (best < 0 || float64(alloc[c])-quota[c] > float64(alloc[best])-quota[best]) {
				best = c
			}
		}
		alloc[best]--
		total--
	}
	for total < shards { // give to the most under quota that has room
		best := -1
		for c, idx := range byClass {
			if alloc[c] > 0 && alloc[c] < len(idx) && (best < 0 || quota[c]-float64(alloc[c]) > quota[best]-float64(alloc[best])) {
				best = c
			}
		}
		alloc[best]++
		total++
	}
	return alloc
}

// rng draws the random numbers of Partition from PCG with fixed algorithms, so results do
// not depend on how math/rand/v2 implements its Rand methods.
type rng struct{ src *rand.PCG }

func newRNG(seed uint64) *rng { return &rng{rand.NewPCG(seed, 0x6d656466656421)} }

// bounded returns a uniform integer in [0, n) for n > 0 (Lemire's method with rejection).
func (r *rng) bounded(n uint64) uint64 {
	hi, lo := bits.Mul64(r.src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.src.Uint64(), n)
		}
	}
	return hi
}

// float returns a uniform float64 in [0, 1).
func (r *rng) float() float64 { return float64(r.src.Uint64()>>11) / (1 << 53) }

// shuffle permutes p uniformly (Fisher–Yates).
func (r *rng) shuffle(p []int) {
	for i := len(p) - 1; i > 0; i-- {
		j := int(r.bounded(uint64(i) + 1))
		p[i], p[j] = p[j], p[i]
	}
}

// permutation returns a uniform random permutation of [0, n).
func (r *rng) permutation(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	r.shuffle(p)
	return p
}

// normal returns a standard normal deviate (Marsaglia's polar method, one of the pair).
func (r *rng) normal() float64 {
	for {
		u, v := 2*r.float()-1, 2*r.float()-1
		s := u*u + v*v
		if s > 0 && s < 1 {
			return u * math.Sqrt(-2*math.Log(s)/s)
		}
	}
}

// gamma returns a Gamma(a, 1) deviate for a > 0 (Marsaglia and Tsang 2000; for a < 1,
// Gamma(a+1) * U^(1/a)).
func (r *rng) gamma(a float64) float64 {
	if a < 1 {
		u := r.float()
		return r.gamma(a+1) * math.Pow(u, 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.normal()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.float()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// dirichlet returns a draw from the symmetric Dirichlet(alpha) distribution over k
// categories. If every gamma draw underflows to zero it returns uniform proportions.
func (r *rng) dirichlet(alpha float64, k int) []float64 {
	p := make([]float64, k)
	var sum float64
	for i := range p {
		p[i] = r.gamma(alpha)
		sum += p[i]
	}
	if !(sum > 0) || math.IsInf(sum, 0) {
		for i := range p {
			p[i] = 1 / float64(k)
		}
		return p
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}
