package aggregation_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name    string
		updates []aggregation.Update
		want    []float32
	}{
		// x: 1,3,5 -> 3; y: -6,2,4 -> 2. Sample counts do not matter.
		{"odd", three(), []float32{3, 2}},
		// x: 1,3,5,7 -> (3+5)/2; y: -6,0,2,4 -> (0+2)/2.
		{"even", append(three(), aggregation.Update{Delta: []float32{7, 0}, Samples: 100}), []float32{4, 1}},
		{"one", vectors([]float32{-2.5}), []float32{-2.5}},
		{"two", vectors([]float32{1, -1}, []float32{2, -3}), []float32{1.5, -2}},
		// -0.5, 1, 2, 3, 1e30 -> 2.
		{"outlier ignored", vectors([]float32{1}, []float32{2}, []float32{3}, []float32{1e30}, []float32{-0.5}), []float32{2}},
		// The mean of the middle two is taken in float64, so it does not overflow.
		{"no overflow", vectors([]float32{3e38}, []float32{3e38}), []float32{3e38}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aggregation.Median(tt.updates)
			if err != nil {
				t.Fatal(err)
			}
			checkVec(t, got, tt.want)
		})
	}
}

func TestTrimmedMean(t *testing.T) {
	outlier := vectors([]float32{1, 10}, []float32{2, 20}, []float32{3, 30}, []float32{4, 40}, []float32{1e30, -1e30})
	tests := []struct {
		name    string
		updates []aggregation.Update
		beta    float64
		want    []float32
	}{
		// floor(0.2·5) = 1 dropped each side. x: drop 1 and 1e30 -> mean(2,3,4) = 3;
		// y: drop -1e30 and 40 -> mean(10,20,30) = 20.
		{"huge outlier", outlier, 0.2, []float32{3, 20}},
		// floor(0.1·5) = 0: the plain mean, dominated by the outlier.
		{"beta too small to trim", outlier, 0.1, []float32{(1e30 + 10) / 5, (-1e30 + 100) / 5}},
		// Unweighted mean of (1,2),(3,4),(5,-6).
		{"beta 0", three(), 0, []float32{3, 0}},
		// floor(0.49·3) = 1: only the median remains.
		{"beta near half", three(), 0.49, []float32{3, 2}},
		// floor(0.25·8) = 2 dropped each side of 1..8 -> mean(3,4,5,6) = 4.5.
		{"eight", vectors([]float32{8}, []float32{1}, []float32{7}, []float32{2}, []float32{6}, []float32{3}, []float32{5}, []float32{4}), 0.25, []float32{4.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aggregation.TrimmedMean(tt.updates, tt.beta)
			if err != nil {
				t.Fatal(err)
			}
			checkVec(t, got, tt.want)
		})
	}
}

// TestRobustMatchesSort checks Median and TrimmedMean against a sort-based reference on
// random inputs large enough to exercise the quickselect path, with many ties.
func TestRobustMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 16, 17, 18, 33, 64, 101} {
		const dim = 40
		updates := make([]aggregation.Update, n)
		for i := range updates {
			d := make([]float32, dim)
			for j := range d {
				if j%2 == 0 {
					d[j] = float32(r.IntN(5)) // ties
				} else {
					d[j] = float32(r.NormFloat64())
				}
			}
			updates[i] = aggregation.Update{Delta: d, Samples: 1}
		}
		const beta = 0.2
		k := int(beta * float64(n))
		wantMed := make([]float32, dim)
		wantTrim := make([]float32, dim)
		for j := range dim {
			col := make([]float32, n)
			for i := range updates {
				col[i] = updates[i].Delta[j]
			}
			slices.Sort(col)
			if n%2 == 1 {
				wantMed[j] = col[n/2]
			} else {
				wantMed[j] = float32((float64(col[n/2-1]) + float64(col[n/2])) / 2)
			}
			var s float64
			for _, x := range col[k : n-k] {
				s += float64(x)
			}
			wantTrim[j] = float32(s / float64(n-2*k))
		}
		med, err := aggregation.Median(updates)
		if err != nil {
			t.Fatal(err)
		}
		if !approxEqual(med, wantMed, 0) {
			t.Errorf("n=%d: Median = %v, want %v", n, med, wantMed)
		}
		trim, err := aggregation.TrimmedMean(updates, beta)
		if err != nil {
			t.Fatal(err)
		}
		if !approxEqual(trim, wantTrim, 1e-6) {
			t.Errorf("n=%d: TrimmedMean = %v, want %v", n, trim, wantTrim)
		}
	}
}

func TestKrum(t *testing.T) {
	// One-dimensional points 0, 1, 2, 3, 100 with f = 1: each score sums the n-f-2 = 2
	// smallest squared distances. 0: 1+4 = 5; 1: 1+1 = 2; 2: 1+1 = 2; 3: 1+4 = 5;
	// 100: 97²+98² = 19013. Ties go to the lower index.
	line := vectors([]float32{0}, []float32{1}, []float32{2}, []float32{3}, []float32{100})

	// Seven updates, two of them Byzantine (f = 2): honest ones cluster around (1, 1).
	cluster := vectors(
		[]float32{1.0, 1.0},
		[]float32{50, -40}, // outlier
		[]float32{1.1, 0.9},
		[]float32{0.9, 1.1},
		[]float32{-60, 70}, // outlier
		[]float32{1.0, 1.2},
		[]float32{1.2, 1.0},
	)
	tests := []struct {
		name    string
		updates []aggregation.Update
		f, m    int
		want    []float32
		picked  []int
	}{
		{"krum", line, 1, 1, []float32{1}, []int{1}},
		{"multi-krum 2", line, 1, 2, []float32{1.5}, []int{1, 2}},
		{"multi-krum n-f", line, 1, 4, []float32{1.5}, []int{1, 2, 0, 3}},
		{"f=0", line, 0, 1, []float32{1}, []int{1}},
		// Scores with n-f-2 = 3 nearest: (1,1) is at squared distances 0.02, 0.02, 0.04, 0.04
		// from the other honest updates, so its score is 0.08; (1.1,0.9) scores
		// 0.02+0.02+0.08 = 0.12, and an outlier scores thousands. The five honest updates
		// average to (5.2/5, 5.2/5).
		{"honest cluster krum", cluster, 2, 1, []float32{1, 1}, []int{0}},
		{"honest cluster multi-krum", cluster, 2, 5, []float32{1.04, 1.04}, []int{0, 2, 3, 5, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, picked, err := aggregation.Krum(tt.updates, tt.f, tt.m)
			if err != nil {
				t.Fatal(err)
			}
			checkVec(t, got, tt.want)
			if tt.name == "honest cluster multi-krum" {
				slices.Sort(picked) // the order among honest updates is not the point
			}
			if !slices.Equal(picked, tt.picked) {
				t.Errorf("selected %v, want %v", picked, tt.picked)
			}
		})
	}
}

func TestRobustErrors(t *testing.T) {
	aggregators := map[string]func([]aggregation.Update) ([]float32, error){
		"median":       aggregation.Median,
		"trimmed-mean": func(u []aggregation.Update) ([]float32, error) { return aggregation.TrimmedMean(u, 0.1) },
		"krum": func(u []aggregation.Update) ([]float32, error) {
			v, _, err := aggregation.Krum(u, 0, 1)
			return v, err
		},
	}
	for name, agg := range aggregators {
		for _, tt := range badInputs {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				got, err := agg(tt.updates)
				checkErr(t, got, err, tt.want, tt.mention)
			})
		}
	}
}

func TestRobustParameterErrors(t *testing.T) {
	six := vectors([]float32{1}, []float32{2}, []float32{3}, []float32{4}, []float32{5}, []float32{6})
	tests := []struct {
		name    string
		run     func() error
		want    error
		mention string
	}{
		{"beta negative", func() error { _, err := aggregation.TrimmedMean(six, -0.1); return err }, aggregation.ErrParameter, "-0.1"},
		{"beta half", func() error { _, err := aggregation.TrimmedMean(six, 0.5); return err }, aggregation.ErrParameter, "want 0 <= beta < 0.5"},
		{"beta NaN", func() error { _, err := aggregation.TrimmedMean(six, nan()); return err }, aggregation.ErrParameter, "NaN"},
		{"krum f too large", func() error { _, _, err := aggregation.Krum(six, 2, 1); return err }, aggregation.ErrTooFewUpdates, "f=2 needs more than 6 updates, got 6"},
		{"krum f negative", func() error { _, _, err := aggregation.Krum(six, -1, 1); return err }, aggregation.ErrParameter, "f is -1"},
		{"krum m zero", func() error { _, _, err := aggregation.Krum(six, 1, 0); return err }, aggregation.ErrParameter, "m is 0, want 1 <= m <= n-f = 5"},
		{"krum m above n-f", func() error { _, _, err := aggregation.Krum(six, 1, 6); return err }, aggregation.ErrParameter, "m is 6"},
		{"krum no updates", func() error { _, _, err := aggregation.Krum(nil, 0, 1); return err }, aggregation.ErrNoUpdates, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			checkErr(t, nil, err, tt.want, tt.mention)
		})
	}
}
