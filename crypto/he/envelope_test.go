package he_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"filippo.io/age"

	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/crypto/seal"
)

// TestThresholdSharesThroughCoordinator runs the threshold step of the
// ceremony through sealed envelopes: the coordinator relays every envelope
// but cannot open any, and the hospitals end up able to decrypt.
func TestThresholdSharesThroughCoordinator(t *testing.T) {
	params, err := he.NewParams(he.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	group := he.Group{Parties: []he.PartyID{1, 2, 3, 4}, Threshold: 3}
	name := func(id he.PartyID) string { return fmt.Sprintf("hospital-%d", id) }
	type hospital struct {
		party  *he.Party
		signer *seal.Signer
		age    *age.X25519Identity
	}
	hospitals := map[he.PartyID]*hospital{}
	roster := seal.Keys{}
	for _, id := range group.Parties {
		p, err := he.NewParty(params, group, id)
		if err != nil {
			t.Fatal(err)
		}
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		s, _ := seal.NewSigner(name(id), key)
		a, _ := age.GenerateX25519Identity()
		hospitals[id] = &hospital{party: p, signer: s, age: a}
		roster[name(id)] = s.Public()
	}
	coordinatorID, _ := age.GenerateX25519Identity()

	// Every hospital seals its Shamir share for every other one; the
	// coordinator collects the envelopes (its relay queue).
	var relayed [][]byte
	for _, from := range group.Parties {
		for _, to := range group.Parties {
			if from == to {
				continue
			}
			share, err := hospitals[from].party.ThresholdShare(to)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := share.MarshalBinary()
			env, err := seal.Seal(hospitals[from].signer, name(to), hospitals[to].age.Recipient(), "he/threshold-share", raw)
			if err != nil {
				t.Fatal(err)
			}
			relayed = append(relayed, env)
		}
	}
	for _, env := range relayed {
		h, err := seal.ParseHeader(env)
		if err != nil {
			t.Fatal(err)
		}
		// The coordinator, even claiming to be the recipient, cannot open it.
		if _, err := seal.Open(env, h.To, coordinatorID, roster); !errors.Is(err, seal.ErrDecrypt) {
			t.Fatalf("coordinator opened an envelope for %s: %v", h.To, err)
		}
		var to he.PartyID
		fmt.Sscanf(h.To, "hospital-%d", &to)
		letter, err := seal.Open(env, h.To, hospitals[to].age, roster)
		if err != nil {
			t.Fatal(err)
		}
		share, err := he.DecodeThresholdShare(params, letter.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if letter.From != name(share.From) {
			t.Fatalf("envelope from %s carries a share from party %d", letter.From, share.From)
		}
		if err := hospitals[to].party.AddThresholdShare(share); err != nil {
			t.Fatal(err)
		}
	}
	for id, h := range hospitals {
		if !h.party.Ready() {
			t.Errorf("hospital %d not ready after the relayed shares", id)
		}
	}
}
