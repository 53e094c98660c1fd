package aggregation_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

func TestDPConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  aggregation.DPConfig
		ok   bool
	}{
		{"zero means defaults", aggregation.DPConfig{}, true},
		{"defaults", aggregation.DefaultDPConfig(), true},
		{"budget", aggregation.DPConfig{NoiseMultiplier: 0.8, Clip: 0.5, Delta: 1e-6, Budget: 8}, true},
		{"infinite budget", aggregation.DPConfig{Budget: math.Inf(1)}, true},
		{"negative z", aggregation.DPConfig{NoiseMultiplier: -1}, false},
		{"NaN z", aggregation.DPConfig{NoiseMultiplier: nan()}, false},
		{"huge z", aggregation.DPConfig{NoiseMultiplier: 1e7}, false},
		{"negative clip", aggregation.DPConfig{Clip: -1}, false},
		{"infinite clip", aggregation.DPConfig{Clip: math.Inf(1)}, false},
		{"delta 1", aggregation.DPConfig{Delta: 1}, false},
		{"negative delta", aggregation.DPConfig{Delta: -1e-5}, false},
		{"negative budget", aggregation.DPConfig{Budget: -1}, false},
		{"NaN budget", aggregation.DPConfig{Budget: nan()}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, aggregation.ErrParameter) {
				t.Errorf("error %v does not wrap ErrParameter", err)
			}
		})
	}
	if got, want := (aggregation.DPConfig{}).Resolved(), aggregation.DefaultDPConfig(); got != want {
		t.Errorf("DPConfig{}.Resolved() = %+v, want %+v", got, want)
	}
}

// sampleStd returns the mean and standard deviation of v.
func sampleStd(v []float64) (mean, std float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)-1))
}

// The shares of n hospitals add up to noise of standard deviation z·C, whatever n is.
func TestDPNoiseShareSumHasTargetStd(t *testing.T) {
	const dim = 40000 // std of the sample std is about 1/sqrt(2·dim) = 0.35%
	for _, tt := range []struct {
		n    int
		z, c float64
	}{{1, 1.1, 1}, {5, 1.1, 1}, {10, 0.7, 0.5}, {100, 2, 3}} {
		t.Run(fmt.Sprintf("n=%d,z=%v,C=%v", tt.n, tt.z, tt.c), func(t *testing.T) {
			cfg := aggregation.DPConfig{NoiseMultiplier: tt.z, Clip: tt.c}
			rng := rand.New(rand.NewPCG(1, uint64(tt.n)))
			sum := make([]float64, dim)
			share := make([]float32, dim)
			for range tt.n {
				clear(share)
				if err := aggregation.AddNoiseShare(share, cfg, tt.n, rng); err != nil {
					t.Fatal(err)
				}
				for i, x := range share {
					sum[i] += float64(x)
				}
			}
			mean, std := sampleStd(sum)
			want := tt.z * tt.c
			if math.Abs(std-want) > 0.02*want {
				t.Errorf("std of the summed noise = %.4f, want %.4f within 2%%", std, want)
			}
			if math.Abs(mean) > 5*want/math.Sqrt(dim) {
				t.Errorf("mean of the summed noise = %.4f, want 0 within %.4f", mean, 5*want/math.Sqrt(dim))
			}
			if got, want := cfg.ShareStd(tt.n), want/math.Sqrt(float64(tt.n)); math.Abs(got-want) > 1e-12 {
				t.Errorf("ShareStd(%d) = %v, want %v", tt.n, got, want)
			}
		})
	}
}

// Clipping then noising keeps the mean: the DP mean of many hospitals' clipped, noised
// updates is the mean of the clipped updates, up to noise of std z·C/n per coordinate.
func TestDPClipAndNoiseKeepsMean(t *testing.T) {
	const (
		n   = 50
		dim = 2000
		z   = 1.0
		c   = 1.0
	)
	cfg := aggregation.DPConfig{NoiseMultiplier: z, Clip: c}
	rng := rand.New(rand.NewPCG(7, 7))
	dir := make([]float32, dim) // a unit vector
	for i := range dir {
		dir[i] = float32(rng.NormFloat64())
	}
	unit := aggregation.L2Norm(dir)
	for i := range dir {
		dir[i] = float32(float64(dir[i]) / unit)
	}
	updates := make([]aggregation.Update, n)
	for k := range updates {
		d := make([]float32, dim)
		norm := 0.5 + 4.5*float64(k)/n // half within the bound, half clipped to it
		for i := range d {
			d[i] = float32(norm * float64(dir[i]))
		}
		scale, err := aggregation.ClipAndNoise(d, cfg, n, rng)
		if err != nil {
			t.Fatal(err)
		}
		if want := math.Min(1, c/norm); math.Abs(scale-want) > 1e-6 {
			t.Errorf("client %d: clip factor %v, want %v", k, scale, want)
		}
		updates[k] = aggregation.Update{Delta: d, Samples: 1000 * (k + 1)} // Samples ignored
	}
	mean, err := aggregation.DPMean(updates, n)
	if err != nil {
		t.Fatal(err)
	}
	var wantNorm float64 // mean of the clipped norms
	for k := range n {
		wantNorm += math.Min(c, 0.5+4.5*float64(k)/n) / n
	}
	errs := make([]float64, dim)
	for i := range mean {
		errs[i] = float64(mean[i]) - wantNorm*float64(dir[i])
	}
	bias, std := sampleStd(errs)
	if want := z * c / n; math.Abs(std-want) > 0.1*want {
		t.Errorf("std of the mean's error = %.5f, want %.5f within 10%%", std, want)
	}
	if lim := 5 * z * c / n / math.Sqrt(dim); math.Abs(bias) > lim {
		t.Errorf("mean error = %.6f, want 0 within %.6f", bias, lim)
	}
}

func TestDPAddNoiseShareErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	orig := []float32{1, float32(math.NaN()), 3}
	d := slices.Clone(orig)
	if err := aggregation.AddNoiseShare(d, aggregation.DPConfig{}, 3, rng); !errors.Is(err, aggregation.ErrNonFinite) {
		t.Errorf("NaN delta: error %v, want ErrNonFinite", err)
	}
	if _, err := aggregation.ClipAndNoise(d, aggregation.DPConfig{}, 3, rng); !errors.Is(err, aggregation.ErrNonFinite) {
		t.Errorf("NaN delta: ClipAndNoise error %v, want ErrNonFinite", err)
	}
	good := []float32{1, 2, 3}
	for _, tt := range []struct {
		name string
		cfg  aggregation.DPConfig
		n    int
	}{
		{"n = 0", aggregation.DPConfig{}, 0},
		{"negative n", aggregation.DPConfig{}, -2},
		{"bad config", aggregation.DPConfig{Clip: -1}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := slices.Clone(good)
			if err := aggregation.AddNoiseShare(d, tt.cfg, tt.n, rng); !errors.Is(err, aggregation.ErrParameter) {
				t.Errorf("AddNoiseShare error %v, want ErrParameter", err)
			}
			if _, err := aggregation.ClipAndNoise(d, tt.cfg, tt.n, rng); !errors.Is(err, aggregation.ErrParameter) {
				t.Errorf("ClipAndNoise error %v, want ErrParameter", err)
			}
			if !slices.Equal(d, good) {
				t.Errorf("delta changed to %v on error", d)
			}
		})
	}
	if _, err := aggregation.DPMean(vectors([]float32{1}), 0); !errors.Is(err, aggregation.ErrParameter) {
		t.Errorf("DPMean(expected 0) error %v, want ErrParameter", err)
	}
	if _, err := aggregation.DPMean(vectors([]float32{1}, []float32{1, 2}), 2); !errors.Is(err, aggregation.ErrLengthMismatch) {
		t.Errorf("DPMean(mismatched) error %v, want ErrLengthMismatch", err)
	}
}

func TestDPNoiseSources(t *testing.T) {
	noise := func(rng *rand.Rand) []float32 {
		d := make([]float32, 8)
		if err := aggregation.AddNoiseShare(d, aggregation.DPConfig{}, 4, rng); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b := noise(rand.New(rand.NewPCG(3, 4))), noise(rand.New(rand.NewPCG(3, 4)))
	if !slices.Equal(a, b) {
		t.Errorf("same seed gave %v and %v", a, b)
	}
	c, d := noise(aggregation.NewNoiseSource()), noise(aggregation.NewNoiseSource())
	if slices.Equal(c, d) {
		t.Errorf("two crypto-seeded sources gave the same noise %v", c)
	}
	if e := noise(nil); slices.Equal(e, make([]float32, 8)) {
		t.Errorf("nil source added no noise")
	}
}

// A hospital's DP round: clip, add its share for min_clients contributors, submit with
// weight 1. The coordinator divides the decrypted sum by min_clients and asks the
// accountant whether the round fits the budget.
func ExampleClipAndNoise() {
	cfg := aggregation.DPConfig{NoiseMultiplier: 1.1, Clip: 1.0, Budget: 5}
	const minClients = 5
	delta := []float32{3, 4} // norm 5
	rng := aggregation.NewNoiseSource()
	scale, err := aggregation.ClipAndNoise(delta, cfg, minClients, rng)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("clipped by %.1f, noise share std %.3f\n", scale, cfg.ShareStd(minClients))

	var acct aggregation.Accountant
	eps, err := acct.Spend(1, cfg) // every hospital takes part: q = 1
	fmt.Printf("round 1: epsilon %.2f at delta %g, err %v\n", eps, cfg.Resolved().Delta, err)
	_, err = acct.Spend(1, cfg)
	fmt.Println(err)
	// Output:
	// clipped by 0.2, noise share std 0.492
	// round 1: epsilon 4.24 at delta 1e-05, err <nil>
	// aggregation: privacy budget exceeded: round 2 would bring epsilon from 4.241 to 6.327 at delta 1e-05, budget is 5
}

func TestCoordinatorNoiseMultiplier(t *testing.T) {
	for _, tt := range []struct {
		cfg     aggregation.DPConfig
		sumOnly bool
		n       int
		want    float64
	}{
		{aggregation.DPConfig{NoiseMultiplier: 1.2}, true, 4, 1.2},
		{aggregation.DPConfig{NoiseMultiplier: 1.2}, false, 4, 0.6},
		{aggregation.DPConfig{NoiseMultiplier: 2}, false, 1, 2},
		{aggregation.DPConfig{}, false, 9, aggregation.DefaultNoiseMultiplier / 3},
	} {
		if got := tt.cfg.CoordinatorNoiseMultiplier(tt.sumOnly, tt.n); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%+v, sum only %v, n %d: %v, want %v", tt.cfg, tt.sumOnly, tt.n, got, tt.want)
		}
	}
	if !math.IsNaN((aggregation.DPConfig{NoiseMultiplier: -1}).CoordinatorNoiseMultiplier(true, 2)) || !math.IsNaN((aggregation.DPConfig{}).CoordinatorNoiseMultiplier(true, 0)) {
		t.Error("invalid settings or n < 1 should give NaN")
	}
}
