package he

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestRerandomize: a rerandomised aggregate is a new ciphertext (new digest, same count
// and weight) that decrypts to the same average, is the same on every replica for the
// same seed, and a party that answered the old ciphertext for one active set answers the
// new one for another, while the old one still refuses the second set.
func TestRerandomize(t *testing.T) {
	p := mustParams(t, DefaultProfile())
	f := newFederation(t, p, 3, 2)
	r := rand.New(rand.NewPCG(7, 7))
	xs := [][]float64{randomVector(r, 100), randomVector(r, 100), randomVector(r, 100)}
	agg := encryptSum(t, f, xs, []float64{3, 5, 7})
	raw, err := agg.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := f.decrypt(t, agg, []PartyID{1, 2})

	re := func(seed byte) *Vector {
		v, err := DecodeVector(p, raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Rerandomize(f.pk, [32]byte{seed}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b, c := re(1), re(1), re(2)
	if a.Digest() == agg.Digest() || a.Digest() == c.Digest() {
		t.Fatalf("digests: original %x, seed 1 %x, seed 2 %x; want all different", agg.Digest(), a.Digest(), c.Digest())
	}
	ab, _ := a.MarshalBinary()
	bb, _ := b.MarshalBinary()
	if !bytes.Equal(ab, bb) {
		t.Fatal("the same seed gave different vectors")
	}
	if a.Contributions() != agg.Contributions() || a.Weight() != agg.Weight() {
		t.Fatalf("got %d contributions, weight %v; want %d, %v", a.Contributions(), a.Weight(), agg.Contributions(), agg.Weight())
	}
	// Party 1 answered agg for {1, 2}: it refuses {1, 3} for agg but answers the
	// rerandomised aggregate for it.
	if _, err := f.parties[1].DecryptionShare(agg, []PartyID{1, 3}); !errors.Is(err, ErrShareConflict) {
		t.Fatalf("second active set for the same ciphertext: got %v, want ErrShareConflict", err)
	}
	got := f.decrypt(t, a, []PartyID{1, 3})
	bound := p.ErrorBound(3, 3, 2, a.Weight())
	if d := maxAbsDiff(got, want); d > 2*bound {
		t.Fatalf("rerandomised average differs by %g, bound 2*%g", d, bound)
	}

	other := mustParams(t, CompactProfile())
	g := newFederation(t, other, 3, 2)
	if err := a.Rerandomize(g.pk, [32]byte{3}); !errors.Is(err, ErrProfileMismatch) {
		t.Fatalf("key of another profile: got %v, want ErrProfileMismatch", err)
	}
}
