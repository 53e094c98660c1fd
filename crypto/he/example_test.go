package he_test

import (
	"fmt"

	"github.com/medfed/medfed/crypto/he"
)

// Three hospitals run the key ceremony with threshold 2, encrypt their
// updates weighted by sample count, the coordinator adds them, and two of
// the hospitals decrypt the weighted average. In production each message
// below crosses the network in its MarshalBinary form.
func ExampleCeremony() {
	params, err := he.NewParams(he.DefaultProfile())
	if err != nil {
		panic(err)
	}
	group := he.Group{Parties: []he.PartyID{1, 2, 3}, Threshold: 2}

	hospitals := map[he.PartyID]*he.Party{}
	for _, id := range group.Parties {
		hospitals[id], _ = he.NewParty(params, group, id)
	}
	ceremony, _ := he.NewCeremony(params, group)
	for _, h := range hospitals {
		_ = ceremony.AddCommitment(h.SeedCommitment())
	}
	for _, h := range hospitals {
		_ = ceremony.AddReveal(h.SeedReveal())
	}
	seed, _ := ceremony.Seed()
	for _, h := range hospitals {
		share, _ := h.PublicKeyShare(seed)
		_ = ceremony.AddPublicKeyShare(share)
	}
	pk, _ := ceremony.PublicKey()
	for _, from := range hospitals {
		for _, to := range hospitals {
			if from != to {
				s, _ := from.ThresholdShare(to.ID()) // sealed with crypto/seal in production
				_ = to.AddThresholdShare(s)
			}
		}
	}

	updates := map[he.PartyID][]float64{1: {0.5, -1}, 2: {0.25, 0.5}, 3: {-0.5, 1}}
	samples := map[he.PartyID]float64{1: 100, 2: 300, 3: 100}
	sum, _ := he.NewAggregate(params, 2)
	for id, u := range updates {
		v, err := he.NewEncryptor(params, pk).Encrypt(u, samples[id])
		if err != nil {
			panic(err)
		}
		_ = sum.Add(v)
	}

	active := []he.PartyID{1, 3} // hospital 2 is offline
	dec, _ := he.NewDecryption(params, group, sum, active)
	for _, id := range active {
		share, err := hospitals[id].DecryptionShare(sum, active)
		if err != nil {
			panic(err)
		}
		_ = dec.AddShare(share)
	}
	avg, _ := dec.Average()
	fmt.Printf("%.6f %.6f\n", avg[0], avg[1])
	// Output: 0.150000 0.300000
}
