package aggregation

import (
	"errors"
	"math"
	"testing"

	"github.com/medfed/medfed/crypto/he"
)

// ceremony runs a 3-party, threshold-2 key ceremony in process.
func ceremony(t *testing.T) (he.Params, he.Group, *he.PublicKey, map[he.PartyID]*he.Party) {
	t.Helper()
	p, err := he.NewParams(he.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	g := he.Group{Parties: []he.PartyID{1, 2, 3}, Threshold: 2}
	parties := map[he.PartyID]*he.Party{}
	c, err := he.NewCeremony(p, g)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range g.Parties {
		if parties[id], err = he.NewParty(p, g, id); err != nil {
			t.Fatal(err)
		}
		if err := c.AddCommitment(parties[id].SeedCommitment()); err != nil {
			t.Fatal(err)
		}
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
	for _, id := range g.Parties {
		s, err := parties[id].PublicKeyShare(seed)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddPublicKeyShare(s); err != nil {
			t.Fatal(err)
		}
	}
	pk, err := c.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range g.Parties {
		for _, to := range g.Parties {
			if from != to {
				s, err := parties[from].ThresholdShare(to)
				if err != nil {
					t.Fatal(err)
				}
				if err := parties[to].AddThresholdShare(s); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return p, g, pk, parties
}

func encryptUpdate(t *testing.T, p he.Params, pk *he.PublicKey, client string, delta []float64, samples int) EncryptedUpdate {
	t.Helper()
	v, err := he.NewEncryptor(p, pk).Encrypt(delta, float64(samples)) // encrypts samples·delta
	if err != nil {
		t.Fatal(err)
	}
	b, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return EncryptedUpdate{Client: client, Data: b, Samples: samples}
}

func TestEncryptedWeightedSum(t *testing.T) {
	p, g, pk, parties := ceremony(t)
	ups := []EncryptedUpdate{
		encryptUpdate(t, p, pk, "a", []float64{0.5, -1}, 100),
		encryptUpdate(t, p, pk, "b", []float64{0.25, 0.5}, 300),
		encryptUpdate(t, p, pk, "c", []float64{-0.5, 1}, 100),
	}
	for _, u := range ups {
		if err := CheckEncrypted(p, 2, u); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := EncryptedWeightedSum(p, 2, ups)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Contributions() != 3 || sum.Weight() != 500 {
		t.Fatalf("sum has %d contributions of weight %v, want 3 and 500", sum.Contributions(), sum.Weight())
	}
	// By hand: (100·0.5 + 300·0.25 − 100·0.5)/500 = 0.15, (−100 + 150 + 100)/500 = 0.3.
	active := []he.PartyID{1, 3}
	dec, err := he.NewDecryption(p, g, sum, active)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range active {
		s, err := parties[id].DecryptionShare(sum, active)
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.AddShare(s); err != nil {
			t.Fatal(err)
		}
	}
	avg, err := dec.Average()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{0.15, 0.3} {
		if math.Abs(avg[i]-want) > 1e-6 {
			t.Errorf("mean[%d] = %v, want %v", i, avg[i], want)
		}
	}
}

func TestEncryptedWeightedSumRefuses(t *testing.T) {
	p, _, pk, _ := ceremony(t)
	good := encryptUpdate(t, p, pk, "a", []float64{1, 2}, 10)
	lying := good
	lying.Client, lying.Samples = "liar", 1000 // claims more samples than it encrypted
	long := encryptUpdate(t, p, pk, "long", []float64{1, 2, 3}, 10)
	garbage := EncryptedUpdate{Client: "junk", Data: []byte("not a ciphertext"), Samples: 1}
	two, err := EncryptedWeightedSum(p, 2, []EncryptedUpdate{good, good})
	if err != nil {
		t.Fatal(err)
	}
	twoBytes, err := two.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	double := EncryptedUpdate{Client: "double", Data: twoBytes, Samples: 20}
	for _, c := range []struct {
		name string
		u    EncryptedUpdate
		want error
	}{
		{"weight differs from samples", lying, ErrSamples},
		{"wrong length", long, ErrLengthMismatch},
		{"not a ciphertext", garbage, ErrLengthMismatch},
		{"an aggregate posing as one update", double, ErrSamples},
	} {
		if err := CheckEncrypted(p, 2, c.u); !errors.Is(err, c.want) {
			t.Errorf("CheckEncrypted(%s) = %v, want %v", c.name, err, c.want)
		}
		// The same through an EncryptedChecker, a few bytes at a time.
		ec := NewEncryptedChecker(p, 2, c.u, len(c.u.Data))
		var err error
		for off := 0; off < len(c.u.Data) && err == nil; off += 3000 {
			_, err = ec.Write(c.u.Data[off:min(off+3000, len(c.u.Data))])
		}
		if err == nil {
			err = ec.Close()
		}
		if !errors.Is(err, c.want) {
			t.Errorf("EncryptedChecker(%s) = %v, want %v", c.name, err, c.want)
		}
		if _, err := EncryptedWeightedSum(p, 2, []EncryptedUpdate{good, c.u}); !errors.Is(err, c.want) {
			t.Errorf("EncryptedWeightedSum(%s) = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := EncryptedWeightedSum(p, 2, nil); !errors.Is(err, ErrNoUpdates) {
		t.Errorf("empty sum: %v", err)
	}
}
