package aggregation

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Median returns the coordinate-wise median of the updates' deltas, ignoring sample counts.
// For an even number of updates a coordinate is the mean of its two middle values.
//
// It returns an error wrapping ErrNoUpdates, ErrLengthMismatch or ErrNonFinite for an empty
// set, deltas of different length, or a NaN or infinite value.
func Median(updates []Update) ([]float32, error) {
	dim, err := checkUpdates(updates)
	if err != nil {
		return nil, err
	}
	n := len(updates)
	out := make([]float32, dim)
	columns(updates, dim, func(j int, col []float32) {
		if n%2 == 1 {
			out[j] = selectKth(col, n/2)
			return
		}
		// After selecting the upper middle, the lower middle is the largest value before it.
		hi := selectKth(col, n/2)
		lo := slices.Max(col[:n/2])
		out[j] = float32((float64(lo) + float64(hi)) / 2)
	})
	return out, nil
}

// TrimmedMean returns the coordinate-wise trimmed mean of the updates' deltas (Yin et al.
// 2018): for every coordinate it drops the floor(beta·n) largest and floor(beta·n) smallest of
// the n values and averages the rest, ignoring sample counts. Beta 0 is the unweighted mean.
//
// It returns an error wrapping ErrParameter if beta is not in [0, 0.5), and otherwise the
// errors of Median.
func TrimmedMean(updates []Update, beta float64) ([]float32, error) {
	if !(beta >= 0 && beta < 0.5) {
		return nil, fmt.Errorf("%w: trimmed mean beta is %v, want 0 <= beta < 0.5", ErrParameter, beta)
	}
	dim, err := checkUpdates(updates)
	if err != nil {
		return nil, err
	}
	n := len(updates)
	k := int(math.Floor(beta * float64(n)))
	kept := float64(n - 2*k)
	out := make([]float32, dim)
	columns(updates, dim, func(j int, col []float32) {
		if k > 0 {
			// Partition so that col[:k] holds the k smallest and col[n-k:] the k largest.
			selectKth(col, k)
			selectKth(col[k:], n-2*k)
		}
		var s float64
		for _, x := range col[k : n-k] {
			s += float64(x)
		}
		out[j] = float32(s / kept)
	})
	return out, nil
}

// Krum runs Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine
// Tolerant Gradient Descent") over the updates' deltas, tolerating up to f Byzantine updates.
// Each update's score is the sum of its squared Euclidean distances to its n-f-2 nearest
// neighbours; Krum selects the m updates with the lowest scores (ties go to the lower index)
// and returns their unweighted mean together with their indices in order of increasing
// score. With m = 1 this is Krum: the single most central update, unchanged.
//
// It needs n > 2f+2 updates and 1 <= m <= n-f, and returns an error wrapping
// ErrTooFewUpdates or ErrParameter otherwise, and the errors of Median for bad updates.
// Its cost is n²/2 distance computations over the full vectors.
func Krum(updates []Update, f, m int) ([]float32, []int, error) {
	n := len(updates)
	if f < 0 {
		return nil, nil, fmt.Errorf("%w: krum f is %d, want f >= 0", ErrParameter, f)
	}
	dim, err := checkUpdates(updates)
	if err != nil {
		return nil, nil, err
	}
	if n <= 2*f+2 {
		return nil, nil, fmt.Errorf("%w: krum with f=%d needs more than %d updates, got %d",
			ErrTooFewUpdates, f, 2*f+2, n)
	}
	if m < 1 || m > n-f {
		return nil, nil, fmt.Errorf("%w: krum m is %d, want 1 <= m <= n-f = %d", ErrParameter, m, n-f)
	}

	// Pairwise squared distances, a block of coordinates at a time so that the block of
	// every update stays in cache while it is compared with all the others.
	dist := make([]float64, n*n)
	for j0 := 0; j0 < dim; j0 += krumBlock {
		j1 := min(j0+krumBlock, dim)
		for i := range n {
			a := updates[i].Delta[j0:j1]
			for k := i + 1; k < n; k++ {
				dist[i*n+k] += sqDist(a, updates[k].Delta[j0:j1])
			}
		}
	}
	for i := range n {
		for k := i + 1; k < n; k++ {
			dist[k*n+i] = dist[i*n+k]
		}
	}
	scores := make([]float64, n)
	near := make([]float64, 0, n-1)
	for i := range n {
		near = near[:0]
		for k := range n {
			if k != i {
				near = append(near, dist[i*n+k])
			}
		}
		slices.Sort(near)
		for _, d := range near[:n-f-2] {
			scores[i] += d
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(scores[a], scores[b]) })
	selected := order[:m:m]

	acc := make([]float64, dim)
	for _, i := range selected {
		for j, x := range updates[i].Delta[:dim] {
			acc[j] += float64(x)
		}
	}
	out := make([]float32, dim)
	for j, s := range acc {
		out[j] = float32(s / float64(m))
	}
	return out, selected, nil
}

// columnBlock is how many coordinates columns transposes at a time: 256 coordinates of 100
// updates take 100 KiB, which stays in a core's L2 cache.
const columnBlock = 256

// columns calls fn(j, col) for every coordinate j < dim in order, with col holding the n
// updates' values of coordinate j in update order. fn may reorder col. Transposing a block of
// coordinates at a time reads every delta sequentially instead of striding across n slices.
func columns(updates []Update, dim int, fn func(j int, col []float32)) {
	n := len(updates)
	buf := make([]float32, n*min(columnBlock, dim))
	for j0 := 0; j0 < dim; j0 += columnBlock {
		w := min(columnBlock, dim-j0)
		for i, u := range updates {
			for jj, x := range u.Delta[j0 : j0+w] {
				buf[jj*n+i] = x
			}
		}
		for jj := range w {
			fn(j0+jj, buf[jj*n:(jj+1)*n:(jj+1)*n])
		}
	}
}

// krumBlock is how many coordinates Krum compares at a time: 2048 coordinates of 100 updates
// take 800 KiB.
const krumBlock = 2048

// sqDist returns the squared Euclidean distance between a and b, accumulated in float64.
func sqDist(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0 := float64(a[i]) - float64(b[i])
		d1 := float64(a[i+1]) - float64(b[i+1])
		d2 := float64(a[i+2]) - float64(b[i+2])
		d3 := float64(a[i+3]) - float64(b[i+3])
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := float64(a[i]) - float64(b[i])
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// selectKth reorders v so that v[k] is the value a sort would put there, everything before
// it is <= v[k] and everything after is >= v[k], and returns v[k]. v must hold no NaN.
// Short slices use insertion sort; longer ones Hoare-style quickselect with a
// median-of-three pivot.
func selectKth(v []float32, k int) float32 {
	lo, hi := 0, len(v)-1
	for hi-lo > 16 {
		mid := lo + (hi-lo)/2
		// Median of three into v[mid], with v[lo] <= v[mid] <= v[hi].
		if v[mid] < v[lo] {
			v[mid], v[lo] = v[lo], v[mid]
		}
		if v[hi] < v[lo] {
			v[hi], v[lo] = v[lo], v[hi]
		}
		if v[hi] < v[mid] {
			v[hi], v[mid] = v[mid], v[hi]
		}
		p := v[mid]
		i, j := lo, hi
		for i <= j {
			for v[i] < p {
				i++
			}
			for v[j] > p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k] // j < k < i: v[k] == p
		}
	}
	for i := lo + 1; i <= hi; i++ {
		x := v[i]
		j := i
		for j > lo && v[j-1] > x {
			v[j] = v[j-1]
			j--
		}
		v[j] = x
	}
	return v[k]
}
