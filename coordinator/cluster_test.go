package coordinator

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/pb"
)

// TestClusterSurvivesLeaderLoss runs a 3-node cluster on loopback (TCP transport, bolt
// stores), kills the leader in the middle of round 1, finishes round 1 and runs round 2 on
// the remaining two nodes, and checks that every acknowledged update is in the published
// model, that each round is published exactly once, and that the old leader, restarted from
// its data directory, catches up from a snapshot.
func TestClusterSurvivesLeaderLoss(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tc := startCluster(t, 3)
	ctx := testCtx(t)
	c := newClient(t, tc.addrs())
	tc.leader()

	clients := []string{"h1", "h2", "h3", "h4"}
	spec := &pb.FederationSpec{
		Name: "study", ModelSpecJson: testModelSpec(t), Clients: clients,
		Rounds: 2, MinClients: 4, Strategy: "fedavg", Seed: 7,
	}
	fed, err := c.CreateFederation(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if fed.NumParams != testNumParams {
		t.Fatalf("num_params = %d, want %d", fed.NumParams, testNumParams)
	}
	_, w0b, err := c.FetchModel(ctx, "study", 0, "f32")
	if err != nil {
		t.Fatal(err)
	}
	w0, err := DecodeFloat32s(w0b)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range clients {
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "study", ClientId: h}); err != nil {
			t.Fatalf("enrol %s: %v", h, err)
		}
	}

	submit := func(c *coordclient.Client, round uint64, version uint64, k int) *pb.UpdateAck {
		t.Helper()
		ack, err := c.SubmitUpdate(ctx, coordclient.Update{
			Federation: "study", Round: round, ClientID: clients[k], ModelVersion: version,
			Samples: uint64(10 * (k + 1)), Data: EncodeFloat32s(delta(k + int(round))),
		})
		if err != nil {
			t.Fatalf("round %d: submit %s: %v", round, clients[k], err)
		}
		return ack
	}

	// Round 1: two updates, then the leader dies, then two more.
	waitRound(t, ctx, c, "study", 1, pb.RoundState_ROUND_STATE_OPEN)
	acks := map[string]*pb.UpdateAck{}
	for k := range 2 {
		acks[clients[k]] = submit(c, 1, 0, k)
	}
	old := tc.leader()
	oldLast := tc.nodes[old].raft.LastIndex()
	t.Logf("stopping leader %s in the middle of round 1 (last log index %d)", tc.cfgs[old].NodeID, oldLast)
	tc.stop(old)
	var live []string
	for i, n := range tc.nodes {
		if n != nil {
			live = append(live, tc.cfgs[i].GRPCAddr)
		}
	}
	// The client still lists the dead node first: it must move on by itself.
	for k := 2; k < 4; k++ {
		acks[clients[k]] = submit(c, 1, 0, k)
	}
	ri := waitRound(t, ctx, c, "study", 1, pb.RoundState_ROUND_STATE_PUBLISHED)
	if ri.PublishedVersion != 1 {
		t.Fatalf("round 1 published version %d, want 1", ri.PublishedVersion)
	}
	// Every acknowledged update is in the round, with the acknowledged commit.
	for _, ctb := range ri.Contributions {
		if want := acks[ctb.ClientId].Contribution; !proto.Equal(ctb, want) {
			t.Errorf("contribution %v, acknowledged %v", ctb, want)
		}
	}
	if len(ri.Contributions) != 4 {
		t.Fatalf("round 1 has %d contributions, want 4", len(ri.Contributions))
	}
	// A lost acknowledgement: re-sending the same bytes returns the original ack.
	again := submit(c, 1, 0, 0)
	if !proto.Equal(again, acks["h1"]) {
		t.Errorf("resubmission ack %v, original %v", again, acks["h1"])
	}

	// The published model is w0 + sum(n_k d_k)/sum(n_k) (FedAvg, server lr 1).
	checkModel := func(version uint64, w0 []float32, round uint64) []float32 {
		t.Helper()
		h, b, err := c.FetchModel(ctx, "study", version, "f32")
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != version || h.Round != round {
			t.Fatalf("model header %v, want version %d round %d", h, version, round)
		}
		got, err := DecodeFloat32s(b)
		if err != nil {
			t.Fatal(err)
		}
		var total float64
		sum := make([]float64, testNumParams)
		for k := range clients {
			n := float64(10 * (k + 1))
			total += n
			for i, d := range delta(k + int(round)) {
				sum[i] += n * float64(d)
			}
		}
		for i := range got {
			want := float64(w0[i]) + sum[i]/total
			if math.Abs(float64(got[i])-want) > 1e-5 {
				t.Fatalf("v%d weight %d = %v, want %v", version, i, got[i], want)
			}
		}
		return got
	}
	w1 := checkModel(1, w0, 1)

	// Round 2 on the two surviving nodes.
	waitRound(t, ctx, c, "study", 2, pb.RoundState_ROUND_STATE_OPEN)
	c2 := newClient(t, live)
	for k := range clients {
		submit(c2, 2, 1, k)
	}
	waitRound(t, ctx, c, "study", 2, pb.RoundState_ROUND_STATE_PUBLISHED)
	checkModel(2, w1, 2)

	// Exactly once: versions 0, 1, 2 with their lineage, and the federation is done.
	f, err := c.Federation(ctx, "study")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Models) != 3 || !f.Done {
		t.Fatalf("federation has %d model versions (done=%v), want 3 (done)", len(f.Models), f.Done)
	}
	for v, m := range f.Models {
		if m.Version != uint64(v) || m.Round != uint64(v) {
			t.Errorf("model %d: version %d round %d", v, m.Version, m.Round)
		}
		if v > 0 && !slices.Equal(m.Contributors, clients) {
			t.Errorf("model %d contributors %v, want %v", v, m.Contributors, clients)
		}
	}

	// The leader compacts its log past what the stopped node holds, so the stopped node
	// can only catch up from a snapshot. Waiting for some compaction is not enough (under
	// load the leader may have snapshotted early in round 2, keeping entries the stopped
	// node could replay, and then the restarted node need not install a snapshot): take a
	// snapshot now, which compacts up to the last TrailingLogs entries.
	// Every live node does so, as either may lead when the stopped node comes back.
	now := tc.leader()
	for i, n := range tc.nodes {
		if n == nil {
			continue
		}
		waitFor(t, fmt.Sprintf("node %d's log compaction past the stopped node's log", i), func() bool {
			if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
				t.Logf("snapshot: %v", err)
			}
			first, err := n.store.FirstIndex()
			return err == nil && first > oldLast+1
		})
	}
	tc.start(old)
	restarted := tc.nodes[old]
	waitFor(t, "restarted node to catch up", func() bool {
		f, err := restarted.FSM().Federation("study")
		return err == nil && len(f.Models) == 3
	})
	want, _ := tc.nodes[now].FSM().Federation("study")
	got, _ := restarted.FSM().Federation("study")
	if !proto.Equal(want, got) {
		t.Errorf("restarted node state differs from the leader's:\n got %v\nwant %v", got, want)
	}
	_, wl, _, _ := tc.nodes[now].FSM().ModelVersion("study", 2, false)
	_, wr, _, _ := restarted.FSM().ModelVersion("study", 2, false)
	if !slices.Equal(wl, wr) {
		t.Error("restarted node holds different model weights")
	}
	// Raft records the installed snapshot just after the FSM's restore, which the wait
	// above can see first.
	waitFor(t, "restarted node to record a snapshot (last_snapshot_index above 0)", func() bool {
		return restarted.raft.Stats()["last_snapshot_index"] != "0"
	})
	// Restored from the snapshot, it serves the models too.
	waitFor(t, "restarted node to serve version 2", func() bool {
		vs, err := restarted.Registry().Versions("study")
		return err == nil && slices.Equal(vs, []uint64{1, 2})
	})
	tc.closeAll()
}
