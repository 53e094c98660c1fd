package aggregation_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

// tfTutorialOrders are the orders of TensorFlow Privacy's MNIST tutorial and of its
// compute_dp_sgd_privacy script (2019): 1.1 to 10.9 in steps of 0.1, then 12 to 63.
func tfTutorialOrders() []float64 {
	var o []float64
	for x := 1; x < 100; x++ {
		o = append(o, 1+float64(x)/10)
	}
	for a := 12; a < 64; a++ {
		o = append(o, float64(a))
	}
	return o
}

func newAccountant(t testing.TB, orders []float64) *aggregation.Accountant {
	t.Helper()
	a, err := aggregation.NewAccountant(orders)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func relClose(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Abs(want)
}

// With q = 1 the round is the Gaussian mechanism, whose RDP is alpha/(2z²); both
// conversions are then closed forms over the orders.
func TestAccountantGaussianClosedForm(t *testing.T) {
	const z, delta = 1.1, 1e-5
	var a aggregation.Accountant
	if err := a.Step(1, z); err != nil {
		t.Fatal(err)
	}
	classic, improved := math.Inf(1), math.Inf(1)
	for _, alpha := range aggregation.DefaultRDPOrders() {
		r := alpha / (2 * z * z)
		classic = math.Min(classic, r+math.Log(1/delta)/(alpha-1))
		improved = math.Min(improved, r+math.Log((alpha-1)/alpha)-(math.Log(delta)+math.Log(alpha))/(alpha-1))
	}
	gotC, orderC := a.EpsilonClassic(delta)
	gotI, orderI := a.Epsilon(delta)
	if !relClose(gotC, classic, 1e-12) || orderC != 6 {
		t.Errorf("classic epsilon = %v at order %v, want %v at order 6", gotC, orderC, classic)
	}
	if !relClose(gotI, improved, 1e-12) || orderI != 6 {
		t.Errorf("improved epsilon = %v at order %v, want %v at order 6", gotI, orderI, improved)
	}
	// Over continuous orders the classic bound is 1/(2z²) + sqrt(2 log(1/delta))/z = 4.7755;
	// the discrete orders can only be a little above it.
	cont := 1/(2*z*z) + math.Sqrt(2*math.Log(1/delta))/z
	if gotC < cont || gotC > cont*1.005 {
		t.Errorf("classic epsilon = %v, want within 0.5%% above the continuous optimum %v", gotC, cont)
	}
	for k, r := range a.RDP() {
		if alpha := a.Orders()[k]; !relClose(r, alpha/(2*z*z), 1e-15) {
			t.Errorf("RDP at order %v = %v, want %v", alpha, r, alpha/(2*z*z))
		}
	}
	t.Logf("q=1 z=%v 1 round delta=%g: classic eps %.4f, improved eps %.4f, continuous classic %.4f",
		z, delta, gotC, gotI, cont)
}

// gaussianDelta is the exact delta(eps) of the Gaussian mechanism with sensitivity 1 and
// noise sigma (Balle and Wang 2018, Thm. 8).
func gaussianDelta(eps, sigma float64) float64 {
	phi := func(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
	return phi(1/(2*sigma)-eps*sigma) - math.Exp(eps)*phi(-1/(2*sigma)-eps*sigma)
}

// Both conversions are upper bounds: at the epsilon they report, the exact delta of the
// Gaussian mechanism (k rounds of noise z compose to one with noise z/sqrt(k)) is at most
// the delta asked for.
func TestAccountantBoundsExactGaussian(t *testing.T) {
	for _, tt := range []struct {
		z      float64
		rounds uint64
		delta  float64
	}{{1.1, 1, 1e-5}, {0.8, 10, 1e-5}, {3, 100, 1e-6}, {5, 1, 1e-3}} {
		var a aggregation.Accountant
		if err := a.Compose(1, tt.z, tt.rounds); err != nil {
			t.Fatal(err)
		}
		sigma := tt.z / math.Sqrt(float64(tt.rounds))
		for name, eps := range map[string]float64{"classic": first(a.EpsilonClassic(tt.delta)), "improved": first(a.Epsilon(tt.delta))} {
			if d := gaussianDelta(eps, sigma); d > tt.delta {
				t.Errorf("z=%v rounds=%d: %s epsilon %.4f has exact delta %.3g > %g", tt.z, tt.rounds, name, eps, d, tt.delta)
			}
		}
	}
}

func first(a, _ float64) float64 { return a }

// Published DP-SGD numbers from TensorFlow Privacy's MNIST tutorial README (2019, classic
// conversion, tfTutorialOrders, delta 1e-5, q = 256/60000): its table and its
// compute_dp_sgd_privacy example (N=60000, batch 256, z=1.1, 60 epochs -> 14063 steps,
// "eps = 3.01"), and the per-epoch log of the tutorial (234 steps per epoch).
func TestAccountantPublishedDPSGD(t *testing.T) {
	const q, delta = 256.0 / 60000, 1e-5
	tests := []struct {
		name    string
		z       float64
		steps   uint64
		classic float64 // published, 3 significant digits
		// improved is this implementation's value with the improved conversion (a
		// regression value; it must stay below the classic one).
		improved float64
	}{
		{"z=1.1, 60 epochs (CLI)", 1.1, 14063, 3.01, 2.597},
		{"z=1.1, 60 epochs (tutorial)", 1.1, 60 * 234, 3.01, 2.594},
		{"z=1.1, 1 epoch", 1.1, 234, 1.03, 0.740},
		{"z=1.1, 2 epochs", 1.1, 468, 1.11, 0.807},
		{"z=1.3, 15 epochs", 1.3, 15 * 234, 1.19, 0.954},
		{"z=0.7, 45 epochs", 0.7, 45 * 234, 7.10, 6.314},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAccountant(t, tfTutorialOrders())
			if err := a.Compose(q, tt.z, tt.steps); err != nil {
				t.Fatal(err)
			}
			classic, order := a.EpsilonClassic(delta)
			if !relClose(classic, tt.classic, 0.005) {
				t.Errorf("classic epsilon = %.4f (order %v), want published %.2f within 0.5%%", classic, order, tt.classic)
			}
			improved, order := a.Epsilon(delta)
			if !relClose(improved, tt.improved, 0.002) || improved >= classic {
				t.Errorf("improved epsilon = %.4f (order %v), want %.3f, below classic %.4f", improved, order, tt.improved, classic)
			}
			t.Logf("%s: classic %.4f (published %.2f), improved %.4f", tt.name, classic, tt.classic, improved)
		})
	}
}

// The RDP of one round agrees with direct numerical integration of
// A_alpha = E_{x~N(0,sigma²)}[((1-q) + q·exp((2x-1)/(2 sigma²)))^alpha],
// for integer orders (binomial expansion) and fractional ones (series).
func TestAccountantRDPMatchesIntegration(t *testing.T) {
	tests := []struct{ q, sigma, alpha float64 }{
		{0.01, 1.1, 2}, {0.01, 1.1, 8}, {0.01, 1.1, 32}, {0.01, 1.1, 1.5}, {0.01, 1.1, 4.5},
		{0.1, 2, 3}, {0.1, 2, 1.25}, {0.1, 2, 7.5}, {0.5, 1, 2.5}, {0.5, 1, 6},
		{256.0 / 60000, 0.7, 3.8}, {0.9, 3, 10.25},
	}
	for _, tt := range tests {
		a := newAccountant(t, []float64{tt.alpha})
		if err := a.Step(tt.q, tt.sigma); err != nil {
			t.Fatal(err)
		}
		got := a.RDP()[0]
		want := integrateLogA(tt.q, tt.sigma, tt.alpha) / (tt.alpha - 1)
		if !relClose(got, want, 1e-6) {
			t.Errorf("q=%v sigma=%v alpha=%v: RDP %.10g, integration gives %.10g", tt.q, tt.sigma, tt.alpha, got, want)
		}
	}
}

// integrateLogA integrates log A_alpha with the trapezoid rule in log space.
func integrateLogA(q, sigma, alpha float64) float64 {
	const h = 1e-3
	lo, hi := -40*sigma, 40*sigma+4*alpha
	var logs []float64
	peak := math.Inf(-1)
	for x := lo; x <= hi; x += h {
		l := -x*x/(2*sigma*sigma) - math.Log(sigma*math.Sqrt(2*math.Pi)) +
			alpha*math.Log((1-q)+q*math.Exp((2*x-1)/(2*sigma*sigma)))
		logs = append(logs, l)
		peak = math.Max(peak, l)
	}
	var s float64
	for _, l := range logs {
		s += math.Exp(l - peak)
	}
	return peak + math.Log(s*h)
}

func TestAccountantMonotone(t *testing.T) {
	const delta = 1e-5
	eps := func(q, z float64, rounds uint64) float64 {
		var a aggregation.Accountant
		if err := a.Compose(q, z, rounds); err != nil {
			t.Fatal(err)
		}
		e, _ := a.Epsilon(delta)
		return e
	}
	prev := 0.0
	for _, r := range []uint64{1, 2, 5, 10, 50, 100, 1000} {
		e := eps(0.1, 1.1, r)
		if !(e > prev) {
			t.Errorf("epsilon after %d rounds = %v, want more than %v", r, e, prev)
		}
		prev = e
	}
	prev = math.Inf(1)
	for _, z := range []float64{0.5, 0.8, 1, 1.5, 2, 4, 10} {
		e := eps(0.1, z, 100)
		if !(e < prev) {
			t.Errorf("epsilon with z=%v = %v, want less than %v", z, e, prev)
		}
		prev = e
	}
	prev = 0
	for _, q := range []float64{0.001, 0.01, 0.1, 0.5, 1} {
		e := eps(q, 1.1, 10)
		if !(e > prev) {
			t.Errorf("epsilon with q=%v = %v, want more than %v", q, e, prev)
		}
		prev = e
	}
	var a aggregation.Accountant
	if e, _ := a.Epsilon(delta); e != 0 {
		t.Errorf("epsilon before any round = %v, want 0", e)
	}
	if err := a.Step(0, 1); err != nil {
		t.Fatal(err)
	}
	if e, _ := a.Epsilon(delta); e != 0 {
		t.Errorf("epsilon after a round with q = 0 = %v, want 0", e)
	}
}

// Compose(n) is exactly n Steps, and runs with the same (q, z) merge.
func TestAccountantComposeEqualsSteps(t *testing.T) {
	var a, b aggregation.Accountant
	for range 25 {
		if err := a.Step(0.2, 1.3); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Compose(0.2, 1.3, 25); err != nil {
		t.Fatal(err)
	}
	ab, _ := a.MarshalBinary()
	bb, _ := b.MarshalBinary()
	if !bytes.Equal(ab, bb) {
		t.Errorf("25 Steps and Compose(25) encode differently")
	}
	if ea, eb := first(a.Epsilon(1e-5)), first(b.Epsilon(1e-5)); ea != eb {
		t.Errorf("epsilon after 25 Steps %v, after Compose(25) %v", ea, eb)
	}
	if a.Rounds() != 25 {
		t.Errorf("Rounds() = %d, want 25", a.Rounds())
	}
}

func TestAccountantBadParameters(t *testing.T) {
	var a aggregation.Accountant
	for _, tt := range []struct{ q, z float64 }{
		{-0.1, 1}, {1.1, 1}, {nan(), 1}, {0.5, 0}, {0.5, -1}, {0.5, nan()}, {0.5, math.Inf(1)}, {0.5, 2e6},
	} {
		if err := a.Step(tt.q, tt.z); !errors.Is(err, aggregation.ErrParameter) {
			t.Errorf("Step(%v, %v) error %v, want ErrParameter", tt.q, tt.z, err)
		}
		if a.CanStep(tt.q, tt.z, 1e-5, 10) {
			t.Errorf("CanStep(%v, %v) = true", tt.q, tt.z)
		}
	}
	if a.Rounds() != 0 {
		t.Errorf("bad Steps recorded %d rounds", a.Rounds())
	}
	for _, orders := range [][]float64{nil, {1}, {0.5, 2}, {2, 2}, {3, 2}, {2, nan()}, {2, 2000}} {
		if _, err := aggregation.NewAccountant(orders); !errors.Is(err, aggregation.ErrParameter) {
			t.Errorf("NewAccountant(%v) error %v, want ErrParameter", orders, err)
		}
	}
	if e, _ := a.Epsilon(0); !math.IsInf(e, 1) {
		t.Errorf("Epsilon(0) = %v, want +Inf", e)
	}
}

func TestAccountantBudget(t *testing.T) {
	cfg := aggregation.DPConfig{NoiseMultiplier: 1.1, Clip: 1, Delta: 1e-5, Budget: 3}
	var a aggregation.Accountant
	var spent []float64
	for {
		can := a.CanStep(0.1, cfg.NoiseMultiplier, cfg.Delta, cfg.Budget)
		before, _ := a.MarshalBinary()
		eps, err := a.Spend(0.1, cfg)
		if can != (err == nil) {
			t.Fatalf("round %d: CanStep %v but Spend error %v", a.Rounds()+1, can, err)
		}
		if err != nil {
			if !errors.Is(err, aggregation.ErrBudgetExceeded) {
				t.Fatalf("error %v, want ErrBudgetExceeded", err)
			}
			if eps <= cfg.Budget {
				t.Errorf("refused round would reach epsilon %v, within budget %v", eps, cfg.Budget)
			}
			if after, _ := a.MarshalBinary(); !bytes.Equal(before, after) {
				t.Errorf("refused round changed the state")
			}
			t.Logf("refused round %d: %v", a.Rounds()+1, err)
			break
		}
		if now, _ := a.Epsilon(cfg.Delta); now != eps || eps > cfg.Budget {
			t.Fatalf("Spend returned %v, Epsilon says %v, budget %v", eps, now, cfg.Budget)
		}
		spent = append(spent, eps)
		if len(spent) > 10000 {
			t.Fatal("budget never reached")
		}
	}
	if len(spent) < 2 {
		t.Fatalf("only %d rounds fit the budget", len(spent))
	}
	// No limit: Budget 0 and +Inf.
	for _, budget := range []float64{0, math.Inf(1)} {
		if !a.CanStep(1, 0.1, 1e-5, budget) {
			t.Errorf("CanStep with budget %v = false", budget)
		}
		c := cfg
		c.Budget = budget
		if _, err := a.Spend(1, c); err != nil {
			t.Errorf("Spend with budget %v: %v", budget, err)
		}
	}
	if _, err := a.Spend(0.1, aggregation.DPConfig{Delta: 2}); !errors.Is(err, aggregation.ErrParameter) {
		t.Errorf("Spend with a bad config: error %v, want ErrParameter", err)
	}
}

// mixedAccountant has three runs with different (q, z) and custom orders.
func mixedAccountant(t testing.TB) *aggregation.Accountant {
	a := newAccountant(t, []float64{1.5, 2, 4, 8, 16.5, 32})
	for _, s := range []struct {
		q, z float64
		n    uint64
	}{{1, 2, 3}, {0.1, 1.1, 10}, {1, 2, 1}} {
		if err := a.Compose(s.q, s.z, s.n); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func TestAccountantStateRoundTrip(t *testing.T) {
	var zero aggregation.Accountant
	var def aggregation.Accountant
	if err := def.Compose(0.05, 1.1, 500); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*aggregation.Accountant{"zero": &zero, "default orders": &def, "mixed": mixedAccountant(t)} {
		t.Run(name, func(t *testing.T) {
			b, err := a.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var c aggregation.Accountant
			if err := c.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			b2, _ := c.MarshalBinary()
			if !bytes.Equal(b, b2) {
				t.Errorf("re-encoding differs")
			}
			e1, o1 := a.Epsilon(1e-5)
			e2, o2 := c.Epsilon(1e-5)
			if e1 != e2 || o1 != o2 || a.Rounds() != c.Rounds() {
				t.Errorf("after round trip epsilon %v (order %v, %d rounds), want %v (order %v, %d rounds)",
					e2, o2, c.Rounds(), e1, o1, a.Rounds())
			}
			// The decoded accountant continues exactly like the original.
			_ = a.Step(0.3, 0.9)
			_ = c.Step(0.3, 0.9)
			if first(a.Epsilon(1e-5)) != first(c.Epsilon(1e-5)) {
				t.Errorf("decoded accountant diverged after a step")
			}
		})
	}
}

// encodeAccountant builds an encoding by hand, with a valid checksum unless told otherwise.
func encodeAccountant(version byte, rounds uint64, k, m uint32, body []float64, runs [][3]uint64) []byte {
	le := binary.LittleEndian
	b := []byte("MFDA")
	b = append(b, version, 0, 0, 0)
	b = le.AppendUint64(b, rounds)
	b = le.AppendUint32(b, k)
	b = le.AppendUint32(b, m)
	for _, o := range body {
		b = le.AppendUint64(b, math.Float64bits(o))
	}
	for _, r := range runs {
		b = le.AppendUint64(b, r[0])
		b = le.AppendUint64(b, r[1])
		b = le.AppendUint64(b, r[2])
	}
	return le.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func run(q, z float64, n uint64) [3]uint64 {
	return [3]uint64{math.Float64bits(q), math.Float64bits(z), n}
}

func TestAccountantUnmarshalRejects(t *testing.T) {
	valid, _ := mixedAccountant(t).MarshalBinary()
	flipped := bytes.Clone(valid)
	flipped[30] ^= 1
	tests := map[string][]byte{
		"empty":             nil,
		"nine bytes":        valid[:9],
		"truncated":         valid[:len(valid)-1],
		"trailing byte":     append(bytes.Clone(valid), 0),
		"bad magic":         append([]byte("MFSO"), valid[4:]...),
		"bad checksum":      flipped,
		"version 2":         encodeAccountant(2, 0, 1, 0, []float64{2}, nil),
		"huge order count":  encodeAccountant(1, 0, math.MaxUint32, 0, []float64{2}, nil),
		"huge run count":    encodeAccountant(1, 1, 1, math.MaxUint32, []float64{2}, [][3]uint64{run(1, 1, 1)}),
		"no orders":         encodeAccountant(1, 0, 0, 0, nil, nil),
		"order count lies":  encodeAccountant(1, 0, 2, 0, []float64{2}, nil),
		"order 1":           encodeAccountant(1, 0, 1, 0, []float64{1}, nil),
		"orders decrease":   encodeAccountant(1, 0, 2, 0, []float64{3, 2}, nil),
		"q above 1":         encodeAccountant(1, 1, 1, 1, []float64{2}, [][3]uint64{run(1.5, 1, 1)}),
		"z zero":            encodeAccountant(1, 1, 1, 1, []float64{2}, [][3]uint64{run(1, 0, 1)}),
		"z NaN":             encodeAccountant(1, 1, 1, 1, []float64{2}, [][3]uint64{run(1, nan(), 1)}),
		"run of 0 rounds":   encodeAccountant(1, 0, 1, 1, []float64{2}, [][3]uint64{run(1, 1, 0)}),
		"repeated run":      encodeAccountant(1, 2, 1, 2, []float64{2}, [][3]uint64{run(1, 1, 1), run(1, 1, 1)}),
		"rounds mismatch":   encodeAccountant(1, 5, 1, 1, []float64{2}, [][3]uint64{run(1, 1, 1)}),
		"rounds overflow":   encodeAccountant(1, 0, 1, 2, []float64{2}, [][3]uint64{run(1, 1, math.MaxUint64), run(1, 2, 2)}),
		"reserved not zero": append(append([]byte("MFDA\x01\x00\x01\x00"), valid[8:len(valid)-4]...), 0, 0, 0, 0),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			a := mixedAccountant(t)
			before, _ := a.MarshalBinary()
			err := a.UnmarshalBinary(data)
			if !errors.Is(err, aggregation.ErrAccountantState) {
				t.Fatalf("error %v, want ErrAccountantState", err)
			}
			if after, _ := a.MarshalBinary(); !bytes.Equal(before, after) {
				t.Errorf("rejected input changed the accountant")
			}
		})
	}
}

// FuzzAccountantState feeds arbitrary bytes to UnmarshalBinary. Whatever it accepts must
// encode back to the same bytes and give a usable epsilon. The committed corpus in
// testdata/fuzz/FuzzAccountantState holds valid states, a 9-byte input, huge counts and a
// corrupted checksum.
func FuzzAccountantState(f *testing.F) {
	var zero aggregation.Accountant
	for _, a := range []*aggregation.Accountant{&zero, mixedAccountant(f)} {
		b, err := a.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a aggregation.Accountant
		if err := a.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, aggregation.ErrAccountantState) {
				t.Fatalf("error %v does not wrap ErrAccountantState", err)
			}
			return
		}
		b, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("accepted input does not re-encode to itself")
		}
		if e, _ := a.Epsilon(1e-5); math.IsNaN(e) || e < 0 {
			t.Fatalf("epsilon %v", e)
		}
	})
}
