package simulations

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
)

// mnistLikeLabels returns n labels of 10 classes with MNIST's uneven class sizes (the
// training set's counts scaled to n), in a scrambled order.
func mnistLikeLabels(n int) []float32 {
	counts := []int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949} // sum 60000
	labels := make([]float32, 0, n)
	for c, k := range counts {
		for range k * n / 60000 {
			labels = append(labels, float32(c))
		}
	}
	for len(labels) < n {
		labels = append(labels, 1)
	}
	r := newRNG(99)
	perm := r.permutation(n)
	out := make([]float32, n)
	for i, p := range perm {
		out[i] = labels[p]
	}
	return out
}

func mustParse(t testing.TB, s string) Scheme {
	t.Helper()
	sc, err := ParseScheme(s)
	if err != nil {
		t.Fatalf("ParseScheme(%q): %v", s, err)
	}
	return sc
}

// checkPartition fails t unless parts are disjoint, cover [0, n), are each non-empty and
// sorted.
func checkPartition(t *testing.T, parts [][]int, n, clients int) {
	t.Helper()
	if len(parts) != clients {
		t.Fatalf("%d parts, want %d", len(parts), clients)
	}
	seen := make([]bool, n)
	total := 0
	for j, p := range parts {
		if len(p) == 0 {
			t.Errorf("client %d is empty", j)
		}
		if !slices.IsSorted(p) {
			t.Errorf("client %d: indices not sorted", j)
		}
		for _, i := range p {
			if i < 0 || i >= n {
				t.Fatalf("client %d: index %d out of [0, %d)", j, i, n)
			}
			if seen[i] {
				t.Fatalf("sample %d given to two clients", i)
			}
			seen[i] = true
		}
		total += len(p)
	}
	if total != n {
		t.Errorf("%d samples assigned, want %d", total, n)
	}
}

// meanTV is the average total-variation distance between each client's label distribution
// and the global one.
func meanTV(labels []float32, parts [][]int, classes int) float64 {
	all := make([]int, len(labels))
	for i := range all {
		all[i] = i
	}
	global := LabelCounts(labels, all, classes)
	var sum float64
	for _, p := range parts {
		counts := LabelCounts(labels, p, classes)
		var tv float64
		for c := range classes {
			tv += math.Abs(float64(counts[c])/float64(len(p)) - float64(global[c])/float64(len(labels)))
		}
		sum += tv / 2
	}
	return sum / float64(len(parts))
}

func TestParseScheme(t *testing.T) {
	tests := []struct {
		in   string
		want Scheme
	}{
		{"iid", Scheme{Kind: IID}},
		{" IID ", Scheme{Kind: IID}},
		{"dirichlet:0.5", Scheme{Kind: Dirichlet, Alpha: 0.5}},
		{"dirichlet:100", Scheme{Kind: Dirichlet, Alpha: 100}},
		{"pathological:2", Scheme{Kind: Pathological, K: 2}},
		{"quantity:1e-1", Scheme{Kind: Quantity, Alpha: 0.1}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseScheme(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseScheme(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			again, err := ParseScheme(got.String())
			if err != nil || again != got {
				t.Errorf("round trip through %q: %+v, %v", got.String(), again, err)
			}
		})
	}
	for _, bad := range []string{"", "random", "iid:3", "dirichlet", "dirichlet:", "dirichlet:0", "dirichlet:-1",
		"dirichlet:abc", "dirichlet:NaN", "dirichlet:Inf", "quantity:0", "pathological", "pathological:0",
		"pathological:-2", "pathological:1.5"} {
		t.Run("bad "+bad, func(t *testing.T) {
			_, err := ParseScheme(bad)
			if !errors.Is(err, ErrScheme) {
				t.Fatalf("ParseScheme(%q) error %v, want ErrScheme", bad, err)
			}
			t.Log(err)
		})
	}
}

func TestPartitionInvariants(t *testing.T) {
	labels := mnistLikeLabels(6000)
	for _, s := range []string{"iid", "dirichlet:0.1", "dirichlet:0.5", "dirichlet:100", "pathological:1", "pathological:2", "quantity:0.1", "quantity:10"} {
		for _, clients := range []int{1, 3, 10, 100} {
			t.Run(fmt.Sprintf("%s/%d", s, clients), func(t *testing.T) {
				sc := mustParse(t, s)
				if sc.Kind == Pathological && clients*sc.K < 10 {
					t.Skip("fewer shards than classes (an error, tested below)")
				}
				parts, err := Partition(labels, 10, clients, sc, 7)
				if err != nil {
					t.Fatal(err)
				}
				checkPartition(t, parts, len(labels), clients)
				if sc.Kind != IID {
					for j, p := range parts {
						if m := minSize(len(labels), clients); len(p) < m {
							t.Errorf("client %d has %d samples, want >= %d", j, len(p), m)
						}
					}
				}
				again, _ := Partition(labels, 10, clients, sc, 7)
				if !equalParts(parts, again) {
					t.Error("same seed gave a different partition")
				}
				if clients > 1 {
					other, _ := Partition(labels, 10, clients, sc, 8)
					if equalParts(parts, other) {
						t.Error("seeds 7 and 8 gave the same partition")
					}
				}
			})
		}
	}
}

func equalParts(a, b [][]int) bool {
	return slices.EqualFunc(a, b, func(x, y []int) bool { return slices.Equal(x, y) })
}

// TestPartitionGolden pins the output for one seed so that a change of algorithm (which
// would change every published simulation) is noticed.
func TestPartitionGolden(t *testing.T) {
	labels := []float32{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}
	tests := []struct {
		scheme string
		want   string
	}{
		{"iid", "[[1 2 8 11] [0 3 5 7] [4 6 9 10]]"},
		{"dirichlet:0.5", "[[0 3 6] [4 10] [1 2 5 7 8 9 11]]"},
		{"pathological:1", "[[2 5 8 11] [0 3 6 9] [1 4 7 10]]"},
		{"quantity:1", "[[2 8 11] [0 1 3 5 6 7] [4 9 10]]"},
	}
	for _, tt := range tests {
		parts, err := Partition(labels, 3, 3, mustParse(t, tt.scheme), 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(parts); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.scheme, got, tt.want)
		}
	}
}

func TestIIDBalanced(t *testing.T) {
	labels := mnistLikeLabels(60000)
	parts, err := Partition(labels, 10, 10, Scheme{Kind: IID}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for j, p := range parts {
		if len(p) != 6000 {
			t.Errorf("client %d: %d samples, want 6000", j, len(p))
		}
	}
	if tv := meanTV(labels, parts, 10); tv > 0.02 {
		t.Errorf("IID mean total-variation distance to the global labels %.4f, want <= 0.02", tv)
	}
}

func TestDirichletSkew(t *testing.T) {
	labels := mnistLikeLabels(60000)
	tv := map[float64]float64{}
	for _, alpha := range []float64{0.1, 0.5, 100} {
		parts, err := Partition(labels, 10, 20, Scheme{Kind: Dirichlet, Alpha: alpha}, 3)
		if err != nil {
			t.Fatal(err)
		}
		tv[alpha] = meanTV(labels, parts, 10)
		t.Logf("dirichlet:%v: mean TV distance %.3f", alpha, tv[alpha])
	}
	if tv[0.1] < 0.6 || tv[100] > 0.1 || !(tv[0.1] > tv[0.5] && tv[0.5] > tv[100]) {
		t.Errorf("mean TV distances %v, want alpha 0.1 >= 0.6 > alpha 0.5 > alpha 100 <= 0.1", tv)
	}
}

func TestQuantitySkew(t *testing.T) {
	labels := mnistLikeLabels(60000)
	sizeSpread := func(parts [][]int) float64 {
		lo, hi := math.MaxInt, 0
		for _, p := range parts {
			lo, hi = min(lo, len(p)), max(hi, len(p))
		}
		return float64(hi) / float64(lo)
	}
	skewed, _ := Partition(labels, 10, 10, Scheme{Kind: Quantity, Alpha: 0.5}, 2)
	even, _ := Partition(labels, 10, 10, Scheme{Kind: Quantity, Alpha: 1000}, 2)
	t.Logf("largest/smallest client: quantity:0.5 %.1f, quantity:1000 %.2f", sizeSpread(skewed), sizeSpread(even))
	if sizeSpread(skewed) < 5 || sizeSpread(even) > 1.3 {
		t.Errorf("size spread %.2f (alpha 0.5) and %.2f (alpha 1000), want >= 5 and <= 1.3", sizeSpread(skewed), sizeSpread(even))
	}
	// Labels stay IID: clients of at least 1000 samples are close to the global mix.
	var big [][]int
	for _, p := range skewed {
		if len(p) >= 1000 {
			big = append(big, p)
		}
	}
	if tv := meanTV(labels, big, 10); tv > 0.05 {
		t.Errorf("quantity skew: mean TV distance of large clients %.3f, want <= 0.05 (IID labels)", tv)
	}
}

func TestPathologicalClasses(t *testing.T) {
	labels := mnistLikeLabels(60000)
	for _, tt := range []struct{ clients, k int }{{5, 2}, {10, 2}, {100, 2}, {10, 1}, {7, 3}} {
		t.Run(fmt.Sprintf("%d clients K=%d", tt.clients, tt.k), func(t *testing.T) {
			parts, err := Partition(labels, 10, tt.clients, Scheme{Kind: Pathological, K: tt.k}, 5)
			if err != nil {
				t.Fatal(err)
			}
			checkPartition(t, parts, len(labels), tt.clients)
			for j, p := range parts {
				present := 0
				for _, n := range LabelCounts(labels, p, 10) {
					if n > 0 {
						present++
					}
				}
				if present > tt.k || present < 1 {
					t.Errorf("client %d holds %d classes, want 1..%d", j, present, tt.k)
				}
			}
		})
	}
}

func TestPartitionErrors(t *testing.T) {
	labels := mnistLikeLabels(100)
	tests := []struct {
		name    string
		labels  []float32
		classes int
		clients int
		scheme  Scheme
		want    error
	}{
		{"more clients than samples", labels, 10, 101, Scheme{Kind: IID}, ErrPartition},
		{"zero clients", labels, 10, 0, Scheme{Kind: IID}, ErrPartition},
		{"zero classes", labels, 0, 2, Scheme{Kind: IID}, ErrPartition},
		{"label out of range", []float32{0, 1, 2, 10}, 10, 2, Scheme{Kind: IID}, ErrPartition},
		{"fractional label", []float32{0, 1.5}, 10, 2, Scheme{Kind: IID}, ErrPartition},
		{"negative label", []float32{0, -1}, 10, 2, Scheme{Kind: IID}, ErrPartition},
		{"NaN label", []float32{0, float32(math.NaN())}, 10, 2, Scheme{Kind: IID}, ErrPartition},
		{"alpha zero", labels, 10, 2, Scheme{Kind: Dirichlet}, ErrScheme},
		{"alpha negative", labels, 10, 2, Scheme{Kind: Quantity, Alpha: -1}, ErrScheme},
		{"K zero", labels, 10, 2, Scheme{Kind: Pathological}, ErrScheme},
		{"unknown kind", labels, 10, 2, Scheme{Kind: "random"}, ErrScheme},
		{"too few shards for the classes", labels, 10, 4, Scheme{Kind: Pathological, K: 2}, ErrPartition},
		{"more shards than samples", labels, 10, 60, Scheme{Kind: Pathological, K: 2}, ErrPartition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := Partition(tt.labels, tt.classes, tt.clients, tt.scheme, 1)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want error %v", parts, err, tt.want)
			}
			t.Log(err)
		})
	}
}

func TestGammaMean(t *testing.T) {
	r := newRNG(1)
	for _, a := range []float64{0.1, 0.5, 1, 3, 100} {
		const n = 100000
		var sum, sq float64
		for range n {
			g := r.gamma(a)
			sum += g
			sq += g * g
		}
		mean, vr := sum/n, sq/n-(sum/n)*(sum/n)
		if math.Abs(mean-a) > 0.03*a+0.005 || math.Abs(vr-a) > 0.1*a+0.005 {
			t.Errorf("Gamma(%v): mean %.4f, variance %.4f, want both %v", a, mean, vr, a)
		}
	}
}

func BenchmarkPartition(b *testing.B) {
	labels := mnistLikeLabels(60000)
	for _, s := range []string{"iid", "dirichlet:0.1", "dirichlet:0.5", "pathological:2", "quantity:0.5"} {
		sc := mustParse(b, s)
		b.Run(s, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := Partition(labels, 10, 1000, sc, uint64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func ExamplePartition() {
	labels := []float32{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}
	scheme, err := ParseScheme("pathological:1")
	if err != nil {
		panic(err)
	}
	parts, err := Partition(labels, 3, 3, scheme, 42)
	if err != nil {
		panic(err)
	}
	for _, idx := range parts {
		fmt.Println("label counts", LabelCounts(labels, idx, 3))
	}
	// Unordered output:
	// label counts [4 0 0]
	// label counts [0 4 0]
	// label counts [0 0 4]
}
