package dataset

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// Set is a labelled data set held in memory.
//
// Sample i occupies X[i*Size() : (i+1)*Size()] in row-major order (images NHWC [H, W, C],
// sequences [steps, features], tables [features]); Y[i] is its class index in [0, Classes).
//
// A Set is not safe for concurrent mutation; concurrent reads (including Subset, Split,
// Shuffled and Sequence, which only read the receiver) are safe.
type Set struct {
	Name       string
	X          []float32 // Len() samples of Size() values each, row-major
	Y          []float32 // one target per sample: the class index for classification
	Shape      []int     // per-sample shape, e.g. [28 28 1], [28 28], [30]
	Classes    int       // number of classes
	Features   []string  // column names for tables (nil otherwise)
	ClassNames []string  // optional, len Classes when set
}

// Len returns the number of samples, len(Y).
func (s *Set) Len() int { return len(s.Y) }

// Size returns the number of values per sample, the product of Shape (1 for an empty Shape).
func (s *Set) Size() int {
	n := 1
	for _, d := range s.Shape {
		n *= d
	}
	return n
}

// Sample returns the values of sample i, a slice of X (not a copy).
func (s *Set) Sample(i int) []float32 {
	size := s.Size()
	return s.X[i*size : (i+1)*size : (i+1)*size]
}

// Subset returns a new Set holding copies of the samples idx, in that order. Indices may
// repeat. It panics if an index is out of range.
func (s *Set) Subset(idx []int) *Set {
	size := s.Size()
	out := s.emptyLike(len(idx))
	for k, i := range idx {
		if i < 0 || i >= s.Len() {
			panic(fmt.Sprintf("dataset: Subset index %d out of range [0, %d)", i, s.Len()))
		}
		copy(out.X[k*size:(k+1)*size], s.X[i*size:(i+1)*size])
		out.Y[k] = s.Y[i]
	}
	return out
}

// emptyLike returns a Set with the receiver's metadata (copied) and room for n samples.
func (s *Set) emptyLike(n int) *Set {
	return &Set{
		Name:       s.Name,
		X:          make([]float32, n*s.Size()),
		Y:          make([]float32, n),
		Shape:      slices.Clone(s.Shape),
		Classes:    s.Classes,
		Features:   slices.Clone(s.Features),
		ClassNames: slices.Clone(s.ClassNames),
	}
}

// Shuffled returns a copy of the set with its samples in a random order determined only by
// seed: the same seed gives the same order on every run and platform.
func (s *Set) Shuffled(seed int64) *Set {
	return s.Subset(permutation(s.Len(), seed))
}

// Split returns a seeded random partition of the set into a training and a test part, with
// round(testFraction*Len()) samples in test. The split is stratified: every class keeps its
// proportion in both parts (to within one sample). Both parts are copies in shuffled order.
// With f = testFraction, class c gets round(f·m_c) - round(f·m_{c-1}) test samples, where
// m_c counts the samples of classes 0..c. scikit-learn's largest-remainder allocation can
// differ from this by one sample per class (the Breast Cancer table at 0.2: 71 benign and 43
// malignant here, 72 and 42 there), and its random choice of samples differs from this
// package's seeded one.
// Samples whose label is not a class index in [0, Classes) are split as one extra group.
//
// Split panics if testFraction is not in [0, 1]; validate user input before calling it.
func (s *Set) Split(testFraction float64, seed int64) (train, test *Set) {
	if !(testFraction >= 0 && testFraction <= 1) {
		panic(fmt.Sprintf("dataset: Split test fraction %v not in [0, 1]", testFraction))
	}
	// Count each class (the last group collects invalid labels), then give class c the
	// test quota round(f*cum[c]) - round(f*cum[c-1]) so the quotas sum to round(f*n).
	counts := make([]int, s.Classes+1)
	for i := range s.Len() {
		counts[s.group(i)]++
	}
	quota := make([]int, len(counts))
	cum, prev := 0, 0
	for c, n := range counts {
		cum += n
		r := int(math.Round(testFraction * float64(cum)))
		quota[c] = r - prev
		prev = r
	}
	var trainIdx, testIdx []int
	for _, i := range permutation(s.Len(), seed) {
		if c := s.group(i); quota[c] > 0 {
			quota[c]--
			testIdx = append(testIdx, i)
		} else {
			trainIdx = append(trainIdx, i)
		}
	}
	return s.Subset(trainIdx), s.Subset(testIdx)
}

// Fold is one round of k-fold cross-validation: Test is one fold, Train the other k-1.
type Fold struct {
	Train, Test *Set
}

// Folds partitions the set into k seeded, stratified folds and returns, for each fold, the
// fold as a test part and the rest as a training part: every sample is tested exactly once.
// Each class is spread over the folds as evenly as it divides, and fold sizes differ by at
// most one: the samples are taken class by class, each class in the seeded order Split
// uses, and dealt to the folds in turn. Both parts are copies.
//
// Folds panics unless 2 <= k <= Len(); validate user input before calling it.
func (s *Set) Folds(k int, seed int64) []Fold {
	if k < 2 || k > s.Len() {
		panic(fmt.Sprintf("dataset: Folds k = %d not in [2, %d]", k, s.Len()))
	}
	byClass := make([][]int, s.Classes+1)
	for _, i := range permutation(s.Len(), seed) {
		c := s.group(i)
		byClass[c] = append(byClass[c], i)
	}
	tests := make([][]int, k)
	next := 0
	for _, idx := range byClass {
		for _, i := range idx {
			tests[next] = append(tests[next], i)
			next = (next + 1) % k
		}
	}
	folds := make([]Fold, k)
	for f := range folds {
		var train []int
		for g, idx := range tests {
			if g != f {
				train = append(train, idx...)
			}
		}
		folds[f] = Fold{Train: s.Subset(train), Test: s.Subset(tests[f])}
	}
	return folds
}

// group returns the stratum of sample i: its class, or Classes for a label out of range.
func (s *Set) group(i int) int {
	y := s.Y[i]
	if y >= 0 && y < float32(s.Classes) && y == float32(int(y)) {
		return int(y)
	}
	return s.Classes
}

// Sequence returns a view of a set of [H W 1] images as sequences of H steps of W features,
// per-sample shape [H W], for recurrent layers (sequential MNIST: 28 steps of 28 pixels).
// The view shares X and Y with the receiver. A set that already has a 2-D shape
// [steps features] is returned as an equal view. Other shapes return an error wrapping ErrShape.
func (s *Set) Sequence() (*Set, error) {
	switch {
	case len(s.Shape) == 3 && s.Shape[2] == 1, len(s.Shape) == 2:
		v := *s
		v.Shape = []int{s.Shape[0], s.Shape[1]}
		return &v, nil
	default:
		return nil, fmt.Errorf("sequence view: %w: per-sample shape %v, want [H W 1] images or [steps features]", ErrShape, s.Shape)
	}
}

// ClassCounts returns the number of samples of each class, len Classes. Labels that are not
// a class index in [0, Classes) are not counted (Validate reports them).
func (s *Set) ClassCounts() []int {
	counts := make([]int, max(s.Classes, 0))
	for i := range s.Len() {
		if c := s.group(i); c < s.Classes {
			counts[c]++
		}
	}
	return counts
}

// Validate reports the first inconsistency in the set: non-positive shape dimensions,
// len(X) != Len()*Size(), a label that is not a class index in [0, Classes), a NaN or
// infinite value, or Features / ClassNames of the wrong length. Errors wrap ErrInvalid.
func (s *Set) Validate() error {
	for i, d := range s.Shape {
		if d <= 0 {
			return fmt.Errorf("%w %q: shape %v: dimension %d is %d, want > 0", ErrInvalid, s.Name, s.Shape, i, d)
		}
	}
	size := s.Size()
	if len(s.X) != s.Len()*size {
		return fmt.Errorf("%w %q: len(X) = %d, want Len()*Size() = %d*%d = %d", ErrInvalid, s.Name, len(s.X), s.Len(), size, s.Len()*size)
	}
	if s.Classes < 0 || (s.Classes == 0 && s.Len() > 0) {
		return fmt.Errorf("%w %q: %d classes, want > 0", ErrInvalid, s.Name, s.Classes)
	}
	if s.Features != nil && len(s.Features) != size {
		return fmt.Errorf("%w %q: %d feature names, want Size() = %d", ErrInvalid, s.Name, len(s.Features), size)
	}
	if s.ClassNames != nil && len(s.ClassNames) != s.Classes {
		return fmt.Errorf("%w %q: %d class names, want Classes = %d", ErrInvalid, s.Name, len(s.ClassNames), s.Classes)
	}
	for i, y := range s.Y {
		if s.group(i) == s.Classes {
			return fmt.Errorf("%w %q: sample %d: label %v, want a class index in [0, %d)", ErrInvalid, s.Name, i, y, s.Classes)
		}
	}
	for j, v := range s.X {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w %q: sample %d value %d is %v, want a finite number", ErrInvalid, s.Name, j/size, j%size, v)
		}
	}
	return nil
}

// permutation returns a permutation of [0, n) determined by seed. It uses PCG from
// math/rand/v2 (a fixed algorithm) with its own Fisher–Yates shuffle and bounded-integer
// routine, so the result does not depend on how rand.Rand implements Shuffle or IntN.
func permutation(n int, seed int64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	src := rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)
	for i := n - 1; i > 0; i-- {
		j := int(boundedUint64(src, uint64(i)+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// boundedUint64 returns a uniform value in [0, n) for n > 0 (Lemire's multiply-shift method
// with rejection).
func boundedUint64(src *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}
