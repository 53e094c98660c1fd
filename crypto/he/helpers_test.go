package he

import (
	"math"
	"math/rand/v2"
	"testing"
)

// federation is an in-process key ceremony: every message goes through its
// wire encoding, as it would through the coordinator.
type federation struct {
	params  Params
	group   Group
	parties map[PartyID]*Party
	pk      *PublicKey
}

func mustParams(tb testing.TB, prof Profile) Params {
	tb.Helper()
	p, err := NewParams(prof)
	if err != nil {
		tb.Fatalf("NewParams(%s): %v", prof.Name, err)
	}
	return p
}

func roster(n int) []PartyID {
	ids := make([]PartyID, n)
	for i := range ids {
		ids[i] = PartyID(i + 1)
	}
	return ids
}

func newFederation(tb testing.TB, p Params, n, t int) *federation {
	tb.Helper()
	g := Group{Parties: roster(n), Threshold: t}
	f := &federation{params: p, group: g, parties: make(map[PartyID]*Party)}
	c, err := NewCeremony(p, g)
	if err != nil {
		tb.Fatal(err)
	}
	for _, id := range g.Parties {
		pt, err := NewParty(p, g, id)
		if err != nil {
			tb.Fatal(err)
		}
		f.parties[id] = pt
	}
	for _, id := range g.Parties {
		b, _ := f.parties[id].SeedCommitment().MarshalBinary()
		sc, err := DecodeSeedCommitment(p, b)
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.AddCommitment(sc); err != nil {
			tb.Fatal(err)
		}
	}
	for _, id := range g.Parties {
		b, _ := f.parties[id].SeedReveal().MarshalBinary()
		sr, err := DecodeSeedReveal(p, b)
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.AddReveal(sr); err != nil {
			tb.Fatal(err)
		}
	}
	seed, err := c.Seed()
	if err != nil {
		tb.Fatal(err)
	}
	for _, id := range g.Parties {
		s, err := f.parties[id].PublicKeyShare(seed)
		if err != nil {
			tb.Fatal(err)
		}
		b, _ := s.MarshalBinary()
		s2, err := DecodePublicKeyShare(p, b)
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.AddPublicKeyShare(s2); err != nil {
			tb.Fatal(err)
		}
	}
	pk, err := c.PublicKey()
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := pk.MarshalBinary()
	if f.pk, err = DecodePublicKey(p, b); err != nil {
		tb.Fatal(err)
	}
	for _, from := range g.Parties {
		for _, to := range g.Parties {
			if from == to {
				continue
			}
			s, err := f.parties[from].ThresholdShare(to)
			if err != nil {
				tb.Fatal(err)
			}
			b, _ := s.MarshalBinary()
			s2, err := DecodeThresholdShare(p, b)
			if err != nil {
				tb.Fatal(err)
			}
			if err := f.parties[to].AddThresholdShare(s2); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for _, id := range g.Parties {
		if !f.parties[id].Ready() {
			tb.Fatalf("party %d not ready", id)
		}
	}
	return f
}

// decrypt runs a collective decryption of agg with the active set, through
// the wire encoding of every share, and returns the weighted average.
func (f *federation) decrypt(tb testing.TB, agg *Vector, active []PartyID) []float64 {
	tb.Helper()
	d, err := NewDecryption(f.params, f.group, agg, active)
	if err != nil {
		tb.Fatal(err)
	}
	for _, id := range active {
		s, err := f.parties[id].DecryptionShare(agg, active)
		if err != nil {
			tb.Fatal(err)
		}
		b, _ := s.MarshalBinary()
		if err := d.AddShareBinary(b); err != nil {
			tb.Fatal(err)
		}
	}
	avg, err := d.Average()
	if err != nil {
		tb.Fatal(err)
	}
	return avg
}

func randomVector(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 2*r.Float64() - 1
	}
	return v
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func correlation(a, b []float64) float64 {
	n := float64(len(a))
	var sa, sb float64
	for i := range a {
		sa += a[i]
		sb += b[i]
	}
	ma, mb := sa/n, sb/n
	var cov, va, vb float64
	for i := range a {
		x, y := a[i]-ma, b[i]-mb
		cov += x * y
		va += x * x
		vb += y * y
	}
	return cov / math.Sqrt(va*vb)
}
