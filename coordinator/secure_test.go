package coordinator

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"go.uber.org/goleak"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/pb"
)

// TestSecureRound runs the key ceremony and one encrypted round through a 3-node cluster:
// three hospitals (in-process he.Party values) with threshold 2 make the collective key,
// relay their threshold shares through the coordinator, submit encrypted updates, and two
// of them decrypt the aggregate. The published model must be w0 + the weighted mean.
func TestSecureRound(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	// An encrypted update of 27 values is one 4096-slot ciphertext, about 110 KB.
	tc := startClusterWith(t, 3, func(c *Config) { c.ChunkBytes = 32 << 10; c.SnapshotThreshold = 1024 })
	ctx := testCtx(t)
	c := newClient(t, tc.addrs())
	tc.leader()

	names := []string{"h1", "h2", "h3"}
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "sec", ModelSpecJson: testModelSpec(t), Clients: names, MinClients: 2, Threshold: 2,
		Secure: true, HeProfile: "default", Strategy: "fedavg",
	}); err != nil {
		t.Fatal(err)
	}
	params, pk, parties := runCeremony(t, ctx, c, "sec", names, 2)

	waitRound(t, ctx, c, "sec", 1, pb.RoundState_ROUND_STATE_OPEN)
	_, w0b, err := c.FetchModel(ctx, "sec", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	w0, _ := DecodeFloat32s(w0b)
	for k, h := range names {
		v, err := he.NewEncryptor(params, pk).EncryptFloat32(delta(k), float64(10*(k+1)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			// Malformed ciphertexts are refused, one while it streams in (a coefficient
			// above its modulus in the third 32 KiB chunk), one at its end (a weight that
			// is not the sample count), and the round takes the good update after them.
			bad := bytes.Clone(b)
			for i := 80 << 10; i < 80<<10+16; i++ {
				bad[i] = 0xff
			}
			for _, tt := range []struct {
				data    []byte
				samples uint64
				want    string
			}{
				{bad, 10, "expected below modulus"},
				{b, 11, "expected 1 contribution of weight 11"},
			} {
				_, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "sec", Round: 1, ClientID: h, Samples: tt.samples, Data: tt.data})
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("malformed update: %v, want InvalidArgument saying %q", err, tt.want)
				}
			}
		}
		if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "sec", Round: 1, ClientID: h, Samples: uint64(10 * (k + 1)), Data: b}); err != nil {
			t.Fatalf("submit %s: %v", h, err)
		}
	}
	ri := waitRound(t, ctx, c, "sec", 1, pb.RoundState_ROUND_STATE_DECRYPTING)
	if len(ri.ActiveParties) != 2 {
		t.Fatalf("active set %v", ri.ActiveParties)
	}
	var active []he.PartyID
	for _, p := range ri.ActiveParties {
		active = append(active, he.PartyID(p))
	}
	for _, p := range ri.ActiveParties {
		h := names[p-1]
		hdr, b, err := c.FetchAggregate(ctx, "sec", 1)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Contributions != 3 {
			t.Fatalf("aggregate of %d contributions, want 3", hdr.Contributions)
		}
		agg, err := he.DecodeVector(params, b)
		if err != nil {
			t.Fatal(err)
		}
		ds, err := parties[h].DecryptionShare(agg, active)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := ds.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SubmitDecryptionShare(ctx, "sec", 1, h, sb); err != nil {
			t.Fatalf("share from %s: %v", h, err)
		}
	}
	waitRound(t, ctx, c, "sec", 1, pb.RoundState_ROUND_STATE_PUBLISHED)
	_, w1b, err := c.FetchModel(ctx, "sec", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	w1, _ := DecodeFloat32s(w1b)
	for i := range w1 {
		var sum, total float64
		for k := range names {
			sum += float64(10*(k+1)) * float64(delta(k)[i])
			total += float64(10 * (k + 1))
		}
		if want := float64(w0[i]) + sum/total; math.Abs(float64(w1[i])-want) > 1e-5 {
			t.Fatalf("weight %d = %v, want %v", i, w1[i], want)
		}
	}
	tc.closeAll()
}

// runCeremony enrols names in the secure federation fed and runs the whole key ceremony
// through the cluster, as in-process he.Party values with the given threshold: seed
// commitments and reveals, public-key shares, and threshold shares relayed as envelopes.
// It returns the parameters, the collective public key and the parties, ready to decrypt.
func runCeremony(t testing.TB, ctx context.Context, c *coordclient.Client, fed string, names []string, threshold int) (he.Params, *he.PublicKey, map[string]*he.Party) {
	t.Helper()
	return runCeremonyAs(t, ctx, func(string) *coordclient.Client { return c }, fed, names, threshold)
}

// publishedSeed derives the joint seed, as each party does, from the commitments and
// reveals a ceremony status publishes.
func publishedSeed(t testing.TB, params he.Params, g he.Group, st *pb.CeremonyStatus) he.Seed {
	t.Helper()
	var commits []he.SeedCommitment
	var reveals []he.SeedReveal
	for i := range st.Commitments {
		sc, err := he.DecodeSeedCommitment(params, st.Commitments[i])
		if err != nil {
			t.Fatal(err)
		}
		sr, err := he.DecodeSeedReveal(params, st.Reveals[i])
		if err != nil {
			t.Fatal(err)
		}
		commits, reveals = append(commits, sc), append(reveals, sr)
	}
	seed, err := he.JointSeed(params, g, commits, reveals)
	if err != nil {
		t.Fatalf("joint seed from the published messages: %v", err)
	}
	return seed
}

// runCeremonyAs is runCeremony with each hospital's calls made through clientOf(hospital),
// for a cluster that checks that each caller's certificate is the hospital it speaks for.
func runCeremonyAs(t testing.TB, ctx context.Context, clientOf func(hospital string) *coordclient.Client, fed string, names []string, threshold int) (he.Params, *he.PublicKey, map[string]*he.Party) {
	t.Helper()
	params, err := he.NewParams(he.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	var ids []he.PartyID
	for i := range names {
		ids = append(ids, he.PartyID(i+1))
	}
	group := he.Group{Parties: ids, Threshold: threshold}
	parties := map[string]*he.Party{}
	for i, h := range names {
		e, err := clientOf(h).Enrol(ctx, &pb.EnrolRequest{Federation: fed, ClientId: h, AgeRecipient: testEnrolment(t)})
		if err != nil {
			t.Fatal(err)
		}
		if e.PartyId != uint32(i+1) {
			t.Fatalf("%s got party %d, want %d", h, e.PartyId, i+1)
		}
		if parties[h], err = he.NewParty(params, group, he.PartyID(e.PartyId)); err != nil {
			t.Fatal(err)
		}
	}
	// Opening a round needs the collective key.
	if _, err := clientOf(names[0]).Round(ctx, fed, 0); StatusCode(err) != 5 /* NotFound */ {
		t.Fatalf("round before the ceremony: %v", err)
	}

	bytesOf := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	send := func(step, h string, b []byte) *pb.CeremonyStatus {
		t.Helper()
		st, err := clientOf(h).SubmitCeremony(ctx, step, &pb.CeremonyMessage{Federation: fed, ClientId: h, Data: b})
		if err != nil {
			t.Fatalf("%s from %s: %v", step, h, err)
		}
		return st
	}
	for _, h := range names {
		send("commitment", h, bytesOf(parties[h].SeedCommitment().MarshalBinary()))
	}
	var st *pb.CeremonyStatus
	for _, h := range names {
		st = send("reveal", h, bytesOf(parties[h].SeedReveal().MarshalBinary()))
	}
	seed := publishedSeed(t, params, group, st)
	for _, h := range names {
		s, err := parties[h].PublicKeyShare(seed)
		if err != nil {
			t.Fatal(err)
		}
		st = send("public-key-share", h, bytesOf(s.MarshalBinary()))
	}
	if !st.Complete || len(st.CollectivePublicKey) == 0 {
		t.Fatalf("ceremony not complete: %v", st.PublicKeySharesFrom)
	}
	pk, err := he.DecodePublicKey(params, st.CollectivePublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// Threshold shares travel as opaque envelopes (sealed with crypto/seal in production).
	for _, from := range names {
		for _, to := range names {
			if from == to {
				continue
			}
			s, err := parties[from].ThresholdShare(parties[to].ID())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := s.MarshalBinary()
			if err := clientOf(from).SendEnvelope(ctx, &pb.Envelope{Federation: fed, FromClient: from, ToClient: to, Sealed: b}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, h := range names {
		envs, err := clientOf(h).FetchEnvelopes(ctx, fed, h)
		if err != nil || len(envs) != len(names)-1 {
			t.Fatalf("%s: %d envelopes, %v", h, len(envs), err)
		}
		for _, e := range envs {
			s, err := he.DecodeThresholdShare(params, e.Sealed)
			if err != nil {
				t.Fatal(err)
			}
			if err := parties[h].AddThresholdShare(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	return params, pk, parties
}
