package he

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// long reports whether the long scenarios (100 hospitals x 1,000,000 values)
// were asked for with MEDFED_LONG=1.
func long() bool { return os.Getenv("MEDFED_LONG") == "1" }

func TestProfiles(t *testing.T) {
	for _, prof := range []Profile{DefaultProfile(), CompactProfile()} {
		p := mustParams(t, prof)
		if p.LogQ() > maxLogQP[prof.LogN] {
			t.Errorf("%s: modulus %.2f bits exceeds the 128-bit bound %v", prof.Name, p.LogQ(), maxLogQP[prof.LogN])
		}
		if p.fhe.PCount() != 0 {
			t.Errorf("%s: has a special modulus P", prof.Name)
		}
		t.Logf("%s: LogN %d, Q %v (%.2f bits), %.2f bytes/value = %.2fx float32, capacity %.3g, scale 2^%d, flood margin 2^%d",
			prof.Name, prof.LogN, p.fhe.Q(), p.LogQ(), p.BytesPerValue(), p.BytesPerValue()/4, p.Capacity(), prof.LogScale, prof.LogFloodMargin)
		for _, sc := range []struct{ n, t int }{{3, 2}, {10, 6}, {32, 17}, {100, 51}} {
			if sc.n > prof.MaxParties {
				continue
			}
			b, _ := p.floodBound(sc.n, sc.n)
			t.Logf("  %3d parties, %3d contributions, t=%2d: flood bound 2^%.1f, error bound at weight 1: %.2g, at weight 1000: %.2g",
				sc.n, sc.n, sc.t, math.Log2(float64(b)), p.ErrorBound(sc.n, sc.n, sc.t, 1), p.ErrorBound(sc.n, sc.n, sc.t, 1000))
		}
	}
	if got := mustParams(t, DefaultProfile()).BytesPerValue() / 4; got > 8 {
		t.Errorf("default profile: %.2fx float32, want <= 8x", got)
	}

	bad := func(f func(*Profile)) Profile { p := DefaultProfile(); f(&p); return p }
	tests := []struct {
		name string
		prof Profile
	}{
		{"no name", bad(func(p *Profile) { p.Name = "" })},
		{"LogN 11", bad(func(p *Profile) { p.LogN = 11 })},
		{"LogN 12 with 110 bits", bad(func(p *Profile) { p.LogQ = []int{55, 55} })},
		{"three primes", bad(func(p *Profile) { p.LogQ = []int{36, 36, 36} })},
		{"tiny prime", bad(func(p *Profile) { p.LogQ = []int{20, 54} })},
		{"scale above modulus", bad(func(p *Profile) { p.LogScale = 107 })},
		{"scale leaves no room", bad(func(p *Profile) { p.LogScale = 104 })},
		{"MaxAbs zero", bad(func(p *Profile) { p.MaxAbs = 0 })},
		{"MaxAbs NaN", bad(func(p *Profile) { p.MaxAbs = math.NaN() })},
		{"no parties", bad(func(p *Profile) { p.MaxParties = 0 })},
		{"flooding beyond int64", bad(func(p *Profile) { p.MaxParties = 1 << 16 })},
		{"no values", bad(func(p *Profile) { p.MaxValues = 0 })},
		{"margin 61", bad(func(p *Profile) { p.LogFloodMargin = 61 })},
		{"compact with 2^40 margin", func() Profile { p := CompactProfile(); p.LogFloodMargin = 40; return p }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewParams(tc.prof); !errors.Is(err, ErrInvalidProfile) {
				t.Errorf("NewParams: got %v, want ErrInvalidProfile", err)
			}
		})
	}
}

// TestWeightedAverage is the acceptance scenario: hospitals encrypt updates
// in [-1, 1] weighted by their sample counts, the coordinator adds the wire
// bytes, t hospitals decrypt; the max absolute error of the weighted average
// must be <= 1e-6.
func TestWeightedAverage(t *testing.T) {
	tests := []struct {
		hospitals, threshold, values int
		long                         bool
	}{
		{3, 2, 1_000_000, false},
		{10, 6, 1_000_000, false},
		{100, 34, 20_000, false},
		{100, 51, 1_000_000, true},
	}
	p := mustParams(t, DefaultProfile())
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d hospitals t=%d %d values", tc.hospitals, tc.threshold, tc.values), func(t *testing.T) {
			if tc.long && !long() {
				t.Skip("set MEDFED_LONG=1 for 100 hospitals x 1,000,000 values")
			}
			if (testing.Short() || raceEnabled) && (tc.hospitals > 10 || tc.values*tc.hospitals > 3_000_000) {
				t.Skip("short mode or race detector")
			}
			f := newFederation(t, p, tc.hospitals, tc.threshold)
			r := rand.New(rand.NewPCG(uint64(tc.hospitals), uint64(tc.values)))
			agg, err := NewAggregate(p, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float64, tc.values)
			var total float64
			enc := NewEncryptor(p, f.pk)
			for h := 0; h < tc.hospitals; h++ {
				x := randomVector(r, tc.values)
				w := float64(50 + r.IntN(5000)) // sample count
				v, err := enc.Encrypt(x, w)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := v.MarshalBinary()
				if err := agg.AddBinary(raw); err != nil {
					t.Fatal(err)
				}
				for k := range x {
					want[k] += w * x[k]
				}
				total += w
			}
			for k := range want {
				want[k] /= total
			}
			// Any t: take the last t hospitals, so the first N-t are offline.
			active := f.group.Parties[tc.hospitals-tc.threshold:]
			got := f.decrypt(t, agg, active)
			maxErr := maxAbsDiff(got, want)
			t.Logf("max abs error %.3g (bound %.3g), total weight %g", maxErr,
				p.ErrorBound(tc.hospitals, tc.hospitals, tc.threshold, total), total)
			if maxErr > 1e-6 {
				t.Errorf("max abs error %g, want <= 1e-6", maxErr)
			}
		})
	}
}

// TestAnyThreshold decrypts with several active sets of 6 out of 10,
// including 6 of 10 with hospitals 1-4 offline, each on its own aggregate.
func TestAnyThreshold(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 10, 6)
	r := rand.New(rand.NewPCG(7, 7))
	sets := [][]PartyID{{5, 6, 7, 8, 9, 10}, {1, 2, 3, 4, 5, 6}, {10, 1, 9, 2, 8, 3}}
	for i := 0; i < 3; i++ {
		s := r.Perm(10)[:6]
		set := make([]PartyID, 6)
		for k := range s {
			set[k] = PartyID(s[k] + 1)
		}
		sets = append(sets, set)
	}
	for _, set := range sets {
		t.Run(fmt.Sprint(set), func(t *testing.T) {
			x1, x2 := randomVector(r, 5000), randomVector(r, 5000)
			agg := encryptSum(t, f, [][]float64{x1, x2}, []float64{1, 3})
			got := f.decrypt(t, agg, set)
			want := make([]float64, len(x1))
			for k := range want {
				want[k] = (x1[k] + 3*x2[k]) / 4
			}
			if e := maxAbsDiff(got, want); e > 1e-6 {
				t.Errorf("max abs error %g, want <= 1e-6", e)
			}
		})
	}
}

func encryptSum(tb testing.TB, f *federation, xs [][]float64, weights []float64) *Vector {
	tb.Helper()
	agg, err := NewAggregate(f.params, len(xs[0]))
	if err != nil {
		tb.Fatal(err)
	}
	enc := NewEncryptor(f.params, f.pk)
	for i, x := range xs {
		v, err := enc.Encrypt(x, weights[i])
		if err != nil {
			tb.Fatal(err)
		}
		if err := agg.Add(v); err != nil {
			tb.Fatal(err)
		}
	}
	return agg
}

// decodeRaw decodes c0 + extra polynomials (NTT domain) as weighted averages,
// bypassing every check: what an attacker holding those values would compute.
func decodeRaw(v *Vector, extra ...[]ring.Poly) []float64 {
	rq := v.params.fhe.RingQ()
	acc := make([]ring.Poly, len(v.cts))
	for i, ct := range v.cts {
		acc[i] = *ct.Value[0].CopyNew()
		for _, e := range extra {
			rq.Add(acc[i], e[i], acc[i])
		}
	}
	return v.params.decodePolys(acc, v.length, v.weight, 0)
}

// TestBelowThreshold: t-1 shares do not decrypt. The Decryption refuses, and
// the value an attacker would get from t-1 shares, or from t-1 parties
// pooling their Shamir shares with a (t-1)-point interpolation, is
// uncorrelated with the truth.
func TestBelowThreshold(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 10, 6)
	r := rand.New(rand.NewPCG(9, 9))
	const n = 1 << 20
	x := randomVector(r, n)
	agg := encryptSum(t, f, [][]float64{x, randomVector(r, n)}, []float64{1, 1})
	active := []PartyID{1, 2, 3, 4, 5, 6}

	d, err := NewDecryption(p, f.group, agg, active)
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]ring.Poly
	for _, id := range active[:5] {
		s, err := f.parties[id].DecryptionShare(agg, active)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddShare(s); err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s.polys)
	}
	if _, err := d.Average(); !errors.Is(err, ErrNotEnoughShares) {
		t.Errorf("Average with t-1 shares: got %v, want ErrNotEnoughShares", err)
	}
	if c := correlation(decodeRaw(agg, shares...), x); math.Abs(c) > 0.01 {
		t.Errorf("t-1 decryption shares: correlation %g with an update, want |c| < 0.01", c)
	}

	// t-1 parties pool their threshold shares (as if they had colluded) and
	// interpolate over their own 5 points: the key they get is wrong.
	pts := make([]mhe.ShamirPublicPoint, 5)
	for i := range pts {
		pts[i] = mhe.ShamirPublicPoint(active[i])
	}
	rqp := p.fhe.RingQP()
	guess := rlwe.NewSecretKey(p.fhe)
	for _, id := range active[:5] {
		cmb := mhe.NewCombiner(*p.fhe.GetRLWEParameters(), mhe.ShamirPublicPoint(id), pts, 5)
		sk := rlwe.NewSecretKey(p.fhe)
		if err := cmb.GenAdditiveShare(pts, mhe.ShamirPublicPoint(id), *f.parties[id].combined, sk); err != nil {
			t.Fatal(err)
		}
		rqp.Add(guess.Value, sk.Value, guess.Value)
	}
	got := decryptWithKey(agg, guess)
	if c := correlation(got, x); math.Abs(c) > 0.01 {
		t.Errorf("t-1 pooled threshold shares: correlation %g, want |c| < 0.01", c)
	}
}

// decryptWithKey decrypts v with sk directly (c0 + c1*sk).
func decryptWithKey(v *Vector, sk *rlwe.SecretKey) []float64 {
	rq := v.params.fhe.RingQ()
	polys := make([]ring.Poly, len(v.cts))
	for i, ct := range v.cts {
		polys[i] = rq.NewPoly()
		rq.MulCoeffsMontgomery(ct.Value[1], sk.Value.Q, polys[i])
	}
	return decodeRaw(v, polys)
}

// TestCoordinatorCannotDecrypt: with everything the coordinator holds (the
// public key and seed, every ciphertext, the public key shares, fewer than t
// decryption shares of a single update, t shares of the aggregate) one
// hospital's update stays hidden. (The Shamir shares it relays are sealed;
// see crypto/seal's TestEnvelopeOnlyRecipientOpens.)
func TestCoordinatorCannotDecrypt(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 5, 3)
	r := rand.New(rand.NewPCG(11, 11))
	const n = 1 << 20
	x := randomVector(r, n)
	enc := NewEncryptor(p, f.pk)
	single, err := enc.Encrypt(x, 10)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := enc.Encrypt(randomVector(r, n), 10)
	agg, _ := NewAggregate(p, n)
	_ = agg.Add(single)
	_ = agg.Add(other)
	active := []PartyID{1, 2, 3}

	check := func(name string, got []float64) {
		t.Helper()
		if c := correlation(got, x); math.Abs(c) > 0.01 || math.IsNaN(c) {
			t.Errorf("%s: correlation %g with the update, want |c| < 0.01", name, c)
		} else {
			t.Logf("%s: correlation %.2g", name, c)
		}
	}
	check("zero key", decodeRaw(single))

	// The key material it sees: c1 * (public key shares).
	seed := f.pk.Seed
	pkGuess := rlwe.NewSecretKey(p.fhe)
	for _, id := range f.group.Parties {
		s, _ := f.parties[id].PublicKeyShare(seed)
		p.fhe.RingQ().Add(pkGuess.Value.Q, s.share.Value.Q, pkGuess.Value.Q)
	}
	p.fhe.RingQ().MForm(pkGuess.Value.Q, pkGuess.Value.Q)
	check("public key as secret", decryptWithKey(single, pkGuess))

	var aggShares, singleShares [][]ring.Poly
	for _, id := range active {
		s, err := f.parties[id].DecryptionShare(agg, active)
		if err != nil {
			t.Fatal(err)
		}
		aggShares = append(aggShares, s.polys)
	}
	for _, id := range active[:2] {
		s, err := f.parties[id].DecryptionShare(single, active)
		if err != nil {
			t.Fatal(err)
		}
		singleShares = append(singleShares, s.polys)
	}
	check("t-1 shares of the single update", decodeRaw(single, singleShares...))
	check("t shares of the aggregate applied to the update", decodeRaw(single, aggShares...))
}

// TestShareCaching: a party resends the same bytes for the same request and
// refuses a different active set or contribution count for the same
// ciphertext. After ForgetShares the recomputed share carries the same
// flooding noise.
func TestShareCaching(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 4, 2)
	r := rand.New(rand.NewPCG(1, 5))
	agg := encryptSum(t, f, [][]float64{randomVector(r, 9000), randomVector(r, 9000)}, []float64{2, 2})
	pt := f.parties[1]
	s1, err := pt.DecryptionShare(agg, []PartyID{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := pt.DecryptionShare(agg, []PartyID{2, 1}) // same set, other order
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := s1.MarshalBinary()
	b2, _ := s2.MarshalBinary()
	if !bytes.Equal(b1, b2) {
		t.Error("second share for the same request differs")
	}
	if _, err := pt.DecryptionShare(agg, []PartyID{1, 3}); !errors.Is(err, ErrShareConflict) {
		t.Errorf("other active set: got %v, want ErrShareConflict", err)
	}
	// Same c1, claimed contribution count changed: same digest, refused.
	lie := &Vector{params: agg.params, length: agg.length, contributions: 1, weight: agg.weight, cts: agg.cts}
	if _, err := pt.DecryptionShare(lie, []PartyID{1, 2}); !errors.Is(err, ErrShareConflict) {
		t.Errorf("other contribution count: got %v, want ErrShareConflict", err)
	}
	// Same c1, different c0: same digest, same answer.
	c0 := &Vector{params: agg.params, length: agg.length, contributions: agg.contributions, weight: agg.weight, cts: slices.Clone(agg.cts)}
	c0.cts[0] = agg.cts[0].CopyNew()
	c0.cts[0].Value[0].Coeffs[0][0] ^= 1
	if s, err := pt.DecryptionShare(c0, []PartyID{1, 2}); err != nil {
		t.Errorf("modified c0: %v", err)
	} else if b, _ := s.MarshalBinary(); !bytes.Equal(b, b1) {
		t.Error("modified c0 got a different share")
	}

	pt.ForgetShares()
	s3, err := pt.DecryptionShare(agg, []PartyID{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pt.DecryptionShare(agg, []PartyID{1, 4}); !errors.Is(err, ErrShareConflict) {
		t.Errorf("after ForgetShares, other active set: got %v, want ErrShareConflict", err)
	}
	// s3 - s1 is only the small key-switch noise: the flooding is the same.
	rq := p.fhe.RingQ()
	diff := rq.NewPoly()
	dec := newDecoder(p.fhe.Q(), rq.BRedConstants())
	worst := 0.0
	for j := range s1.polys {
		rq.Sub(s3.polys[j], s1.polys[j], diff)
		rq.INTT(diff, diff)
		for k := range diff.Coeffs[0] {
			var b uint64
			if len(diff.Coeffs) > 1 {
				b = diff.Coeffs[1][k]
			}
			worst = math.Max(worst, math.Abs(dec.value(diff.Coeffs[0][k], b)))
		}
	}
	if worst == 0 || worst > 64 {
		t.Errorf("recomputed share differs by up to %g, want small non-zero key-switch noise", worst)
	}

	// Public-key and threshold shares are stable too.
	k1, _ := pt.PublicKeyShare(f.pk.Seed)
	k2, _ := pt.PublicKeyShare(f.pk.Seed)
	kb1, _ := k1.MarshalBinary()
	kb2, _ := k2.MarshalBinary()
	t1, _ := pt.ThresholdShare(3)
	t2, _ := pt.ThresholdShare(3)
	tb1, _ := t1.MarshalBinary()
	tb2, _ := t2.MarshalBinary()
	if !bytes.Equal(kb1, kb2) || !bytes.Equal(tb1, tb2) {
		t.Error("a party issued two different ceremony shares for the same input")
	}
}

func TestCeremonyErrors(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	g := Group{Parties: []PartyID{1, 2, 3}, Threshold: 2}
	parties := map[PartyID]*Party{}
	for _, id := range g.Parties {
		parties[id], _ = NewParty(p, g, id)
	}
	c, _ := NewCeremony(p, g)
	if err := c.AddReveal(parties[1].SeedReveal()); !errors.Is(err, ErrCeremonyState) {
		t.Errorf("reveal before commitments: got %v", err)
	}
	_ = c.AddCommitment(parties[1].SeedCommitment())
	if err := c.AddCommitment(parties[1].SeedCommitment()); err != nil {
		t.Errorf("identical commitment resent: %v", err)
	}
	other, _ := NewParty(p, g, 1)
	if err := c.AddCommitment(other.SeedCommitment()); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second commitment: got %v", err)
	}
	stranger, _ := NewParty(p, Group{Parties: []PartyID{7, 8}, Threshold: 1}, 7)
	if err := c.AddCommitment(stranger.SeedCommitment()); !errors.Is(err, ErrUnknownParty) {
		t.Errorf("stranger: got %v", err)
	}
	_ = c.AddCommitment(parties[2].SeedCommitment())
	_ = c.AddCommitment(parties[3].SeedCommitment())
	if err := c.AddReveal(other.SeedReveal()); !errors.Is(err, ErrCommitment) {
		t.Errorf("wrong nonce: got %v", err)
	}
	if _, err := c.Seed(); !errors.Is(err, ErrCeremonyState) {
		t.Errorf("seed without reveals: got %v", err)
	}
	if err := c.AddReveal(parties[2].SeedReveal()); err != nil {
		t.Fatal(err)
	}
	// Reveals have started: a resent commitment (its first acknowledgement lost) is still
	// accepted, another one is not.
	if err := c.AddCommitment(parties[1].SeedCommitment()); err != nil {
		t.Errorf("identical commitment resent after reveals started: %v", err)
	}
	if err := c.AddCommitment(other.SeedCommitment()); !errors.Is(err, ErrCeremonyState) {
		t.Errorf("another commitment after reveals started: got %v, want ErrCeremonyState", err)
	}
	for _, id := range g.Parties {
		if err := c.AddReveal(parties[id].SeedReveal()); err != nil {
			t.Fatal(err)
		}
	}
	seed, err := c.Seed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublicKey(); !errors.Is(err, ErrCeremonyState) {
		t.Errorf("public key without shares: got %v", err)
	}
	wrong, _ := parties[1].PublicKeyShare(Seed{1})
	if err := c.AddPublicKeyShare(wrong); !errors.Is(err, ErrCeremonyState) {
		t.Errorf("share for another seed: got %v", err)
	}
	s1, _ := parties[1].PublicKeyShare(seed)
	_ = c.AddPublicKeyShare(s1)
	o1, _ := other.PublicKeyShare(seed)
	if err := c.AddPublicKeyShare(o1); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second public key share: got %v", err)
	}
	if _, err := parties[1].ThresholdShare(1); err == nil {
		t.Error("threshold share for oneself")
	}
	ts, _ := parties[2].ThresholdShare(3)
	if err := parties[1].AddThresholdShare(ts); !errors.Is(err, ErrUnknownParty) {
		t.Errorf("misdelivered threshold share: got %v", err)
	}
	agg, _ := NewAggregate(p, 10)
	agg.contributions = 1
	if _, err := parties[1].DecryptionShare(agg, []PartyID{1, 2}); !errors.Is(err, ErrCeremonyState) {
		t.Errorf("decryption before threshold shares: got %v", err)
	}
	for _, g := range []Group{{Parties: nil, Threshold: 1}, {Parties: []PartyID{1, 1}, Threshold: 1},
		{Parties: []PartyID{0, 1}, Threshold: 1}, {Parties: []PartyID{1, 2}, Threshold: 3}, {Parties: []PartyID{1, 2}, Threshold: 0}} {
		if _, err := NewCeremony(p, g); !errors.Is(err, ErrInvalidGroup) {
			t.Errorf("group %+v: got %v, want ErrInvalidGroup", g, err)
		}
	}
}

func TestEncryptAndAddErrors(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 3, 2)
	enc := NewEncryptor(p, f.pk)
	tests := []struct {
		name   string
		values []float64
		weight float64
		want   error
	}{
		{"empty", nil, 1, ErrTooLarge},
		{"NaN", []float64{0, math.NaN()}, 1, ErrValue},
		{"Inf", []float64{math.Inf(1)}, 1, ErrValue},
		{"beyond MaxAbs", []float64{16.5}, 1, ErrValue},
		{"zero weight", []float64{1}, 0, ErrValue},
		{"negative weight", []float64{1}, -1, ErrValue},
		{"NaN weight", []float64{1}, math.NaN(), ErrValue},
		{"weight beyond capacity", []float64{1}, p.Capacity() * 2, ErrValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := enc.Encrypt(tc.values, tc.weight); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	a, _ := enc.Encrypt(make([]float64, 10), 1)
	b, _ := enc.Encrypt(make([]float64, 11), 1)
	if err := a.Add(b); !errors.Is(err, ErrShape) {
		t.Errorf("length mismatch: got %v", err)
	}
	big, _ := enc.Encrypt(make([]float64, 10), p.Capacity()*0.9)
	if err := big.Add(big); !errors.Is(err, ErrCapacity) {
		t.Errorf("capacity: got %v", err)
	}
	x32, err := enc.EncryptFloat32([]float32{0.5, -0.25, 1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	got := f.decrypt(t, x32, []PartyID{2, 3})
	if e := maxAbsDiff(got, []float64{0.5, -0.25, 1}); e > 1e-6 {
		t.Errorf("float32 round trip error %g", e)
	}
}

func TestDecryptionErrors(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 4, 2)
	r := rand.New(rand.NewPCG(2, 2))
	agg1 := encryptSum(t, f, [][]float64{randomVector(r, 100)}, []float64{1})
	agg2 := encryptSum(t, f, [][]float64{randomVector(r, 100)}, []float64{1})
	if _, err := NewDecryption(p, f.group, agg1, []PartyID{1}); !errors.Is(err, ErrActiveSet) {
		t.Errorf("active set of 1: got %v", err)
	}
	if _, err := NewDecryption(p, f.group, agg1, []PartyID{1, 9}); !errors.Is(err, ErrUnknownParty) {
		t.Errorf("active set with a stranger: got %v", err)
	}
	d, err := NewDecryption(p, f.group, agg1, []PartyID{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := f.parties[1].DecryptionShare(agg2, []PartyID{1, 2})
	if err := d.AddShare(other); !errors.Is(err, ErrShareConflict) {
		t.Errorf("share of another aggregate: got %v", err)
	}
	outside, _ := f.parties[3].DecryptionShare(agg1, []PartyID{3, 4})
	if err := d.AddShare(outside); !errors.Is(err, ErrActiveSet) {
		t.Errorf("share for another active set: got %v", err)
	}
	s1, _ := f.parties[1].DecryptionShare(agg1, []PartyID{1, 2})
	raw, _ := s1.MarshalBinary()
	if err := d.AddShareBinary(raw); err != nil {
		t.Fatal(err)
	}
	if err := d.AddShareBinary(raw); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate share: got %v", err)
	}
	if m := d.Missing(); !slices.Equal(m, []PartyID{2}) {
		t.Errorf("missing: got %v, want [2]", m)
	}
	if _, err := f.parties[3].DecryptionShare(agg1, []PartyID{1, 2}); !errors.Is(err, ErrActiveSet) {
		t.Errorf("party outside the active set: got %v", err)
	}
}

// TestWireErrors: malformed input is refused with the right sentinel, and a
// failed AddBinary or AddShareBinary leaves the aggregate unchanged.
func TestWireErrors(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	compact := mustParams(t, CompactProfile())
	f := newFederation(t, p, 3, 2)
	r := rand.New(rand.NewPCG(3, 3))
	v, _ := NewEncryptor(p, f.pk).Encrypt(randomVector(r, 5000), 3)
	good, _ := v.MarshalBinary()

	mod := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good)) }
	hugeLen := mod(func(b []byte) []byte { le.PutUint32(b[headerSize:], 1<<31); return b })
	badCoeff := mod(func(b []byte) []byte {
		for i := len(b) / 2; i < len(b)/2+16; i++ { // covers a whole coefficient: all ones is above either prime
			b[i] = 0xff
		}
		return b
	})
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"nine bytes", good[:9], ErrMalformed},
		{"header only", good[:headerSize], ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformed},
		{"bad magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), ErrMalformed},
		{"bad version", mod(func(b []byte) []byte { b[4] = 2; return b }), ErrMalformed},
		{"wrong kind", mod(func(b []byte) []byte { b[5] = byte(kindPublicKey); return b }), ErrMalformed},
		{"other profile", mod(func(b []byte) []byte { copy(b[6:], compact.fingerprint[:]); return b }), ErrProfileMismatch},
		{"huge length prefix", hugeLen, ErrTooLarge},
		{"zero contributions", mod(func(b []byte) []byte { le.PutUint32(b[headerSize+4:], 0); return b }), ErrMalformed},
		{"NaN weight", mod(func(b []byte) []byte { le.PutUint64(b[headerSize+8:], math.Float64bits(math.NaN())); return b }), ErrMalformed},
		{"coefficient above modulus", badCoeff, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeVector(p, tc.b); !errors.Is(err, tc.want) {
				t.Errorf("DecodeVector: got %v, want %v", err, tc.want)
			}
			if _, err := CheckVector(p, tc.b); !errors.Is(err, tc.want) {
				t.Errorf("CheckVector: got %v, want %v", err, tc.want)
			}
			c := NewVectorChecker(p, len(tc.b))
			for off := 0; off < len(tc.b); off += 1000 {
				c.Write(tc.b[off:min(off+1000, len(tc.b))])
			}
			if _, err := c.Close(); !errors.Is(err, tc.want) {
				t.Errorf("VectorChecker in pieces of 1000 bytes: got %v, want %v", err, tc.want)
			}
			agg, _ := DecodeVector(p, good)
			before, _ := agg.MarshalBinary()
			if err := agg.AddBinary(tc.b); !errors.Is(err, tc.want) {
				t.Errorf("AddBinary: got %v, want %v", err, tc.want)
			}
			if after, _ := agg.MarshalBinary(); !bytes.Equal(before, after) {
				t.Error("failed AddBinary changed the aggregate")
			}
		})
	}

	// Decryption share: a bad coefficient in the last polynomial must not
	// leave the earlier ones added.
	active := []PartyID{1, 2}
	s, _ := f.parties[1].DecryptionShare(v, active)
	raw, _ := s.MarshalBinary()
	bad := bytes.Clone(raw)
	for i := len(bad) - 16; i < len(bad); i++ {
		bad[i] = 0xff
	}
	d, _ := NewDecryption(p, f.group, v, active)
	before := make([]ring.Poly, len(d.acc))
	for i := range d.acc {
		before[i] = *d.acc[i].CopyNew()
	}
	if err := d.AddShareBinary(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad share coefficient: got %v", err)
	}
	for i := range d.acc {
		if !d.acc[i].Equal(&before[i]) {
			t.Fatalf("failed AddShareBinary changed polynomial %d", i)
		}
	}
	for _, tc := range []struct {
		name string
		fn   func([]byte) error
	}{
		{"public key", func(b []byte) error { _, err := DecodePublicKey(p, b); return err }},
		{"public key share", func(b []byte) error { _, err := DecodePublicKeyShare(p, b); return err }},
		{"threshold share", func(b []byte) error { _, err := DecodeThresholdShare(p, b); return err }},
		{"decryption share", func(b []byte) error { _, err := DecodeDecryptionShare(p, b); return err }},
		{"seed commitment", func(b []byte) error { _, err := DecodeSeedCommitment(p, b); return err }},
		{"seed reveal", func(b []byte) error { _, err := DecodeSeedReveal(p, b); return err }},
	} {
		if err := tc.fn(good[:9]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s from 9 bytes: got %v", tc.name, err)
		}
		if err := tc.fn(good); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s from a vector: got %v", tc.name, err)
		}
	}
}

// TestVectorCheckerStream checks what a receiver relies on: a good vector passes in pieces
// of any size with its header reported, a bad coefficient is refused by the Write that
// completes its polynomial (before the rest arrives), and so are bytes past the announced
// size, an announced size the header contradicts, and a stream that ends early.
func TestVectorCheckerStream(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 3, 2)
	v, _ := NewEncryptor(p, f.pk).Encrypt(randomVector(rand.New(rand.NewPCG(4, 4)), 3*p.Slots()), 7)
	good, _ := v.MarshalBinary()
	want := VectorInfo{Length: 3 * p.Slots(), Contributions: 1, Weight: 7}
	feed := func(c *VectorChecker, b []byte, step int) (failedAt int, err error) {
		for off := 0; off < len(b); off += step {
			if _, err := c.Write(b[off:min(off+step, len(b))]); err != nil {
				return off, err
			}
		}
		return -1, nil
	}
	for _, step := range []int{1, 7, 4096, p.polyBytes, p.polyBytes + 1, len(good)} {
		c := NewVectorChecker(p, len(good))
		if _, err := feed(c, good, step); err != nil {
			t.Fatalf("pieces of %d: %v", step, err)
		}
		if info, err := c.Close(); err != nil || info != want {
			t.Errorf("pieces of %d: Close = %+v, %v; want %+v", step, info, err, want)
		}
	}

	bad := bytes.Clone(good)
	at := headerSize + vectorFixed + 2*p.polyBytes // the second ciphertext's first coefficient
	for i := at; i < at+16; i++ {
		bad[i] = 0xff
	}
	c := NewVectorChecker(p, len(bad))
	off, err := feed(c, bad, 4096)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "ciphertext 1") || off > at+p.polyBytes {
		t.Errorf("bad coefficient at byte %d: refused at piece %d with %v; want ErrMalformed naming ciphertext 1, by byte %d", at, off, err, at+p.polyBytes)
	}
	if _, err2 := c.Write(good[:1]); err2 != err {
		t.Errorf("Write after a failure returned %v, want the first error", err2)
	}
	if _, err2 := c.Close(); err2 != err {
		t.Errorf("Close after a failure returned %v, want the first error", err2)
	}

	c = NewVectorChecker(p, len(good)-1)
	if _, err := feed(c, good, 4096); !errors.Is(err, ErrMalformed) {
		t.Errorf("size announced one byte short: got %v", err)
	}
	c = NewVectorChecker(p, len(good))
	c.Write(good)
	if _, err := c.Write([]byte{0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("byte past the announced size: got %v", err)
	}
	for _, n := range []int{0, 9, headerSize + vectorFixed, len(good) - 1} {
		c = NewVectorChecker(p, len(good))
		c.Write(good[:n])
		if _, err := c.Close(); !errors.Is(err, ErrMalformed) {
			t.Errorf("stream ended after %d of %d bytes: Close = %v", n, len(good), err)
		}
	}
}

// TestPartyStateRoundTrip: a hospital restarts from its saved state, keeps
// decrypting, and still refuses a conflicting request it answered before.
func TestPartyStateRoundTrip(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 4, 3)
	r := rand.New(rand.NewPCG(4, 4))
	agg1 := encryptSum(t, f, [][]float64{randomVector(r, 300)}, []float64{1})
	if _, err := f.parties[2].DecryptionShare(agg1, []PartyID{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	state, err := f.parties[2].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := RestoreParty(p, f.group, state)
	if err != nil {
		t.Fatal(err)
	}
	if !restored.Ready() || restored.ID() != 2 {
		t.Fatalf("restored party: ready %v id %d", restored.Ready(), restored.ID())
	}
	if _, err := restored.DecryptionShare(agg1, []PartyID{2, 3, 4}); !errors.Is(err, ErrShareConflict) {
		t.Errorf("restored party, conflicting request: got %v, want ErrShareConflict", err)
	}
	k1, _ := f.parties[2].PublicKeyShare(f.pk.Seed)
	k2, _ := restored.PublicKeyShare(f.pk.Seed)
	kb1, _ := k1.MarshalBinary()
	kb2, _ := k2.MarshalBinary()
	if !bytes.Equal(kb1, kb2) {
		t.Error("restored party issued a different public key share")
	}
	f.parties[2] = restored
	x := randomVector(r, 300)
	agg2 := encryptSum(t, f, [][]float64{x}, []float64{1})
	if e := maxAbsDiff(f.decrypt(t, agg2, []PartyID{2, 3, 4}), x); e > 1e-6 {
		t.Errorf("decryption with a restored party: error %g", e)
	}
	other := Group{Parties: []PartyID{1, 2, 3, 4}, Threshold: 2}
	if _, err := RestoreParty(p, other, state); !errors.Is(err, ErrInvalidGroup) {
		t.Errorf("restore into another group: got %v", err)
	}
	for _, n := range []int{0, 9, headerSize + 8, len(state) / 2, len(state) - 1} {
		if _, err := RestoreParty(p, f.group, state[:n]); !errors.Is(err, ErrMalformed) {
			t.Errorf("state truncated to %d bytes: got %v", n, err)
		}
	}
}

// TestNoiseModel checks the noise estimate the flooding is sized from: the
// measured noise of an aggregate of fresh encryptions of zero, decrypted with
// the (test-only) collective secret, has the predicted standard deviation
// and stays below the 10-sigma bound.
func TestNoiseModel(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	for _, sc := range []struct{ parties, contributions int }{{3, 1}, {10, 10}} {
		f := newFederation(t, p, sc.parties, sc.parties)
		s := rlwe.NewSecretKey(p.fhe)
		for _, pt := range f.parties {
			p.fhe.RingQP().Add(s.Value, pt.sk.Value, s.Value)
		}
		agg, _ := NewAggregate(p, 4*p.Slots())
		enc := NewEncryptor(p, f.pk)
		for i := 0; i < sc.contributions; i++ {
			v, _ := enc.Encrypt(make([]float64, agg.Len()), 1)
			_ = agg.Add(v)
		}
		agg.weight = 1
		noise := decryptWithKey(agg, s)
		var sum2, worst float64
		for _, e := range noise {
			e *= p.scale // back to integer units
			sum2 += e * e
			worst = math.Max(worst, math.Abs(e))
		}
		std := math.Sqrt(sum2 / float64(len(noise)))
		want := p.ctNoiseStd(sc.parties, sc.contributions)
		t.Logf("%d parties, %d contributions: noise std %.1f (model %.1f), max %.0f (bound %.0f)",
			sc.parties, sc.contributions, std, want, worst, p.ctNoiseBound(sc.parties, sc.contributions))
		if std < 0.8*want || std > 1.2*want {
			t.Errorf("noise std %.1f, model %.1f", std, want)
		}
		if worst > p.ctNoiseBound(sc.parties, sc.contributions) {
			t.Errorf("noise %.0f above the bound %.0f", worst, p.ctNoiseBound(sc.parties, sc.contributions))
		}
	}
}

// TestPartyConcurrent: a Party is safe for concurrent use; concurrent
// identical requests get identical bytes (run with -race).
func TestPartyConcurrent(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 3, 2)
	agg := encryptSum(t, f, [][]float64{randomVector(rand.New(rand.NewPCG(5, 5)), 5000)}, []float64{1})
	const n = 4
	out := make([][]byte, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			s, err := f.parties[1].DecryptionShare(agg, []PartyID{1, 2})
			if err == nil {
				out[i], err = s.MarshalBinary()
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < n; i++ {
		if !bytes.Equal(out[i], out[0]) {
			t.Fatal("concurrent requests got different shares")
		}
	}
}

// TestBadInputAllocatesLittle: length prefixes claiming the maximum size are
// rejected before any buffer is allocated for them.
func TestBadInputAllocatesLittle(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	vec := appendHeader(nil, p, kindVector)
	vec = le.AppendUint32(vec, uint32(p.profile.MaxValues))
	vec = le.AppendUint32(vec, 1)
	vec = le.AppendUint64(vec, math.Float64bits(1))
	share := appendHeader(nil, p, kindDecryptionShare)
	share = le.AppendUint32(share, 1)
	share = le.AppendUint32(share, 1)
	share = le.AppendUint32(share, uint32(p.profile.MaxValues))
	share = le.AppendUint16(share, uint16(p.profile.MaxParties))
	share = append(share, make([]byte, 32+64)...)
	state := appendHeader(nil, p, kindPartyState)
	state = le.AppendUint32(state, 1)
	state = le.AppendUint16(state, 2)
	state = le.AppendUint16(state, 1024)
	g := Group{Parties: roster(3), Threshold: 2}
	for _, tc := range []struct {
		name string
		fn   func() error
	}{
		{"vector", func() error { _, err := DecodeVector(p, vec); return err }},
		{"add vector", func() error { a, _ := NewAggregate(p, 1); return a.AddBinary(vec) }},
		{"decryption share", func() error { _, err := DecodeDecryptionShare(p, share); return err }},
		{"party state", func() error { _, err := RestoreParty(p, g, state); return err }},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := tc.fn()
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: accepted a truncated maximum-size input", tc.name)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("%s: allocated %d bytes before rejecting", tc.name, n)
		}
	}
}

// TestCheckPacked compares the block-wise check a receiver runs with unpack, which
// decoders run: for every coefficient width, counts around whole blocks, and one
// coefficient at or above the modulus at each position of a block (first, middle,
// last, and in the final partial block), both accept the same bytes and name the same
// coefficient.
func TestCheckPacked(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, w := range []uint{20, 31, 49, 54, 55, 56, 57, 60} {
		q := uint64(1)<<(w-1) + uint64(r.IntN(1<<16))*2 + 1 // w bits
		for _, n := range []int{1, 7, 8, 9, 64, 67, 4096} {
			coeffs := make([]uint64, n)
			for i := range coeffs {
				coeffs[i] = r.Uint64N(q)
			}
			good := appendPacked(nil, pad8(coeffs), w)
			if err := checkPacked(good, n, w, q); err != nil {
				t.Fatalf("w=%d n=%d: good coefficients refused: %v", w, n, err)
			}
			for _, at := range []int{0, n / 2, n - 1, max(0, n-9), 8*(n/8) - 1} {
				if at < 0 {
					continue
				}
				for _, v := range []uint64{q, q + 1, 1<<w - 1} {
					bad := slices.Clone(coeffs)
					bad[at] = v
					b := appendPacked(nil, pad8(bad), w)
					want := unpack(b, make([]uint64, n), w, q)
					got := checkPacked(b, n, w, q)
					if want == nil || got == nil || got.Error() != want.Error() || !errors.Is(got, ErrMalformed) {
						t.Fatalf("w=%d n=%d coefficient %d = %d: checkPacked %v, unpack %v", w, n, at, v, got, want)
					}
				}
			}
		}
	}
}

// pad8 extends coeffs with zeros to a multiple of 8, as appendPacked requires.
func pad8(coeffs []uint64) []uint64 {
	return append(slices.Clone(coeffs), make([]uint64, (8-len(coeffs)%8)%8)...)
}
