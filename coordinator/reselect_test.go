package coordinator

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/pb"
)

// secureRoundToDecrypting creates a secure federation of three hospitals (min_clients 2,
// threshold 2) on a one-node cluster with a short decryption timeout, runs the ceremony,
// has every hospital submit an update to round 1, and returns when the round decrypts.
func secureRoundToDecrypting(t *testing.T) (context.Context, *coordclient.Client, he.Params, map[string]*he.Party, *pb.RoundInfo) {
	t.Helper()
	tc := startClusterWith(t, 1, func(c *Config) {
		c.ChunkBytes = 32 << 10
		c.DecryptionTimeout = time.Second
	})
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
	for k, h := range names {
		v, err := he.NewEncryptor(params, pk).EncryptFloat32(delta(k), float64(10*(k+1)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "sec", Round: 1, ClientID: h, Samples: uint64(10 * (k + 1)), Data: b}); err != nil {
			t.Fatalf("submit %s: %v", h, err)
		}
	}
	ri := waitRound(t, ctx, c, "sec", 1, pb.RoundState_ROUND_STATE_DECRYPTING)
	if want := []uint32{1, 2}; !slices.Equal(ri.ActiveParties, want) {
		t.Fatalf("first active set %v, want %v", ri.ActiveParties, want)
	}
	return ctx, c, params, parties, ri
}

// answer makes and submits hospital h's share of the round's current aggregate for the
// round's current active set, and returns the aggregate's digest.
func answer(t *testing.T, ctx context.Context, c *coordclient.Client, params he.Params, pt *he.Party, h string, ri *pb.RoundInfo) [32]byte {
	t.Helper()
	_, b, err := c.FetchAggregate(ctx, "sec", ri.Round)
	if err != nil {
		t.Fatal(err)
	}
	agg, err := he.DecodeVector(params, b)
	if err != nil {
		t.Fatal(err)
	}
	var active []he.PartyID
	for _, p := range ri.ActiveParties {
		active = append(active, he.PartyID(p))
	}
	ds, err := pt.DecryptionShare(agg, active)
	if err != nil {
		t.Fatalf("share from %s for %v: %v", h, active, err)
	}
	sb, err := ds.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubmitDecryptionShare(ctx, "sec", ri.Round, h, sb); err != nil {
		t.Fatalf("share from %s: %v", h, err)
	}
	return agg.Digest()
}

// waitActive waits until round 1 decrypts with the given active set.
func waitActive(t *testing.T, ctx context.Context, c *coordclient.Client, want []uint32) *pb.RoundInfo {
	t.Helper()
	var ri *pb.RoundInfo
	waitFor(t, fmt.Sprintf("active set %v", want), func() bool {
		r, err := c.Round(ctx, "sec", 1)
		if err != nil {
			return false
		}
		ri = r
		return r.State == pb.RoundState_ROUND_STATE_DECRYPTING && slices.Equal(r.ActiveParties, want)
	})
	return ri
}

// TestDecryptionReselect: h2, in the first active set {1, 2}, stops after its update was
// accepted. h1 answers. After the decryption timeout the leader picks {1, 3} for a
// rerandomised aggregate; h1 answers again (a new ciphertext, so no conflict), h3 answers,
// and the round publishes the weighted mean of all three updates.
func TestDecryptionReselect(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ctx, c, params, parties, ri := secureRoundToDecrypting(t)
	_, w0b, err := c.FetchModel(ctx, "sec", 0, "") // version 0 means the latest: fetch it before publishing
	if err != nil {
		t.Fatal(err)
	}
	first := answer(t, ctx, c, params, parties["h1"], "h1", ri)

	ri = waitActive(t, ctx, c, []uint32{1, 3})
	if len(ri.SharesFrom) != 0 {
		t.Fatalf("shares carried over to the new active set: %v", ri.SharesFrom)
	}
	if second := answer(t, ctx, c, params, parties["h1"], "h1", ri); second == first {
		t.Fatal("the new active set was given the same ciphertext")
	}
	answer(t, ctx, c, params, parties["h3"], "h3", ri)
	waitRound(t, ctx, c, "sec", 1, pb.RoundState_ROUND_STATE_PUBLISHED)

	_, w1b, err := c.FetchModel(ctx, "sec", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	w0, _ := DecodeFloat32s(w0b)
	w1, _ := DecodeFloat32s(w1b)
	for i := range w1 {
		var sum, total float64
		for k := range 3 {
			sum += float64(10*(k+1)) * float64(delta(k)[i])
			total += float64(10 * (k + 1))
		}
		if want := float64(w0[i]) + sum/total; math.Abs(float64(w1[i])-want) > 1e-5 {
			t.Fatalf("weight %d = %v, want %v", i, w1[i], want)
		}
	}
}

// TestDecryptionReselectAbort: h2 and h3 stop after their updates were accepted. The
// first set {1, 2} and then {1, 3} time out; with only h1 left of three contributors and
// threshold 2 the round aborts and says why.
func TestDecryptionReselectAbort(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ctx, c, params, parties, ri := secureRoundToDecrypting(t)
	answer(t, ctx, c, params, parties["h1"], "h1", ri)
	ri = waitActive(t, ctx, c, []uint32{1, 3})
	answer(t, ctx, c, params, parties["h1"], "h1", ri)
	ri = waitRound(t, ctx, c, "sec", 1, pb.RoundState_ROUND_STATE_ABORTED)
	for _, want := range []string{"decryption stalled", "parties [2 3]", "1 responsive contributors of 3", "threshold is 2"} {
		if !strings.Contains(ri.Reason, want) {
			t.Errorf("abort reason %q does not say %q", ri.Reason, want)
		}
	}
}
