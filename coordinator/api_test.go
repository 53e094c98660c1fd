package coordinator

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// TestWatchRoundsAndFetchModel watches a round from a follower through its whole life and
// downloads the published model as f32 and as safetensors: model.Load reads the file back
// to the same weights, with the federation's lineage in the metadata.
func TestWatchRoundsAndFetchModel(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tc := startCluster(t, 3)
	ctx := testCtx(t)
	leader := tc.leader()
	c := newClient(t, tc.addrs())
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "w", ModelSpecJson: testModelSpec(t), Clients: []string{"h1", "h2"}, MinClients: 2, Rounds: 1, Seed: 3,
	}); err != nil {
		t.Fatal(err)
	}

	// A follower applies the new federation a moment after the leader.
	fi := (leader + 1) % 3
	waitFor(t, "the follower to apply the federation", func() bool {
		_, err := tc.nodes[fi].FSM().Federation("w")
		return err == nil
	})
	follower := tc.cfgs[fi].GRPCAddr
	wc := newClient(t, []string{follower})
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	type seen struct {
		state    pb.RoundState
		contribs int
	}
	events := make(chan seen, 64)
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- wc.WatchRounds(wctx, "w", func(ri *pb.RoundInfo) error {
			if ri.Round != 1 {
				t.Errorf("watch: round %d, only round 1 exists", ri.Round)
			}
			events <- seen{ri.State, len(ri.Contributions)}
			return nil
		})
	}()

	for _, h := range []string{"h1", "h2"} {
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "w", ClientId: h}); err != nil {
			t.Fatal(err)
		}
	}
	waitRound(t, ctx, c, "w", 1, pb.RoundState_ROUND_STATE_OPEN)
	for k, h := range []string{"h1", "h2"} {
		if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "w", Round: 1, ClientID: h, Samples: 4, Data: EncodeFloat32s(delta(k))}); err != nil {
			t.Fatal(err)
		}
	}
	// The watcher sees the round open, gain contributions, and reach published, in order.
	var got []seen
	for len(got) == 0 || got[len(got)-1].state != pb.RoundState_ROUND_STATE_PUBLISHED {
		select {
		case e := <-events:
			got = append(got, e)
		case err := <-watchErr:
			t.Fatalf("watch ended early: %v (saw %v)", err, got)
		case <-ctx.Done():
			t.Fatalf("watch saw %v, never published", got)
		}
	}
	t.Logf("watched: %v", got)
	if got[0].state != pb.RoundState_ROUND_STATE_OPEN {
		t.Errorf("first event %v, want open", got[0])
	}
	for i := 1; i < len(got); i++ {
		if got[i].state < got[i-1].state || got[i].contribs < got[i-1].contribs {
			t.Errorf("events out of order: %v", got)
		}
	}
	if last := got[len(got)-1]; last.contribs != 2 {
		t.Errorf("published with %d contributions, want 2", last.contribs)
	}
	stopWatch()
	if err := <-watchErr; status.Code(err) != codes.Canceled && err != context.Canceled {
		t.Errorf("watch after cancel: %v", err)
	}

	// The model, as f32 and as safetensors, from a follower.
	h32, b32, err := wc.FetchModel(ctx, "w", 1, "f32")
	if err != nil {
		t.Fatal(err)
	}
	w, err := DecodeFloat32s(b32)
	if err != nil {
		t.Fatal(err)
	}
	hst, bst, err := wc.FetchModel(ctx, "w", 0 /* latest */, "safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if hst.Version != 1 || hst.Round != 1 || hst.NumParams != testNumParams || hst.Format != "safetensors" || h32.Version != 1 {
		t.Errorf("headers %v, %v", hst, h32)
	}
	m, meta, err := model.Load(bytes.NewReader(bst))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Flat(nil), w) {
		t.Error("safetensors weights differ from the f32 download")
	}
	for k, v := range map[string]string{"federation": "w", "model_version": "1", "round": "1"} {
		if meta[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, meta[k], v)
		}
	}
	ms, _ := model.ParseSpec(testModelSpec(t))
	if got, _ := model.ParseSpec([]byte(meta["spec"])); !got.Equal(ms) {
		t.Errorf("metadata spec %s, want %v", meta["spec"], ms)
	}
	for _, tt := range []struct {
		name    string
		version uint64
		format  string
		code    codes.Code
	}{
		{"unknown format", 1, "onnx", codes.InvalidArgument},
		{"unknown version", 9, "f32", codes.NotFound},
	} {
		if _, _, err := wc.FetchModel(ctx, "w", tt.version, tt.format); status.Code(err) != tt.code {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.code)
		}
	}
	if _, _, err := wc.FetchModel(ctx, "nope", 0, ""); status.Code(err) != codes.NotFound {
		t.Errorf("unknown federation: got %v, want NotFound", err)
	}
	tc.closeAll()
}

// TestRoundAbortsAtDeadline: a round whose deadline passes with fewer than min_clients
// contributions is aborted with its reason, refuses later updates, publishes nothing, and
// the next round opens on the same model version.
func TestRoundAbortsAtDeadline(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tc := startCluster(t, 1)
	ctx := testCtx(t)
	tc.leader()
	c := newClient(t, tc.addrs())
	clients := []string{"h1", "h2", "h3"}
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "d", ModelSpecJson: testModelSpec(t), Clients: clients, MinClients: 2, RoundTimeoutMs: 1500,
	}); err != nil {
		t.Fatal(err)
	}
	for _, h := range clients {
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "d", ClientId: h}); err != nil {
			t.Fatal(err)
		}
	}
	waitRound(t, ctx, c, "d", 1, pb.RoundState_ROUND_STATE_OPEN)
	if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "d", Round: 1, ClientID: "h1", Samples: 1, Data: EncodeFloat32s(delta(0))}); err != nil {
		t.Fatal(err)
	}
	ri := waitRound(t, ctx, c, "d", 1, pb.RoundState_ROUND_STATE_ABORTED)
	t.Logf("aborted: %s", ri.Reason)
	if len(ri.Contributions) != 1 || !strings.Contains(ri.Reason, "min_clients") || ri.PublishedVersion != 0 {
		t.Errorf("aborted round %v", ri)
	}
	_, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "d", Round: 1, ClientID: "h2", Samples: 1, Data: EncodeFloat32s(delta(1))})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("update to an aborted round: got %v, want FailedPrecondition", err)
	}
	r2 := waitRound(t, ctx, c, "d", 2, pb.RoundState_ROUND_STATE_OPEN)
	if r2.ModelVersion != 0 {
		t.Errorf("round 2 trains from version %d, want 0", r2.ModelVersion)
	}
	f, err := c.Federation(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Models) != 1 {
		t.Errorf("%d model versions after an aborted round, want 1", len(f.Models))
	}
	if ri, _ := c.Round(ctx, "d", 1); ri.State != pb.RoundState_ROUND_STATE_ABORTED || len(ri.Contributions) != 1 {
		t.Errorf("round 1 changed after the refusal: %v", ri)
	}
	tc.closeAll()
}

// startJoiner starts a node that joins a cluster once added (no peers), on fresh loopback
// ports, closed when the test ends.
func startJoiner(t *testing.T, id string) (*Node, Config) {
	t.Helper()
	cfg := testConfig(id, t.TempDir())
	cfg.RaftAddr, cfg.GRPCAddr = loopback.Addr(t), loopback.Addr(t)
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, cfg
}

// TestEnrolChecksRecipient: a hospital's enrolment string is checked before it is
// committed. A secure federation needs a well-formed one (the others seal their threshold
// shares to it); a plaintext one takes a well-formed one or none. Nothing is enrolled by a
// refused call, and the same hospital enrols with a good string afterwards.
func TestEnrolChecksRecipient(t *testing.T) {
	tc := startCluster(t, 1)
	tc.leader()
	ctx := testCtx(t)
	c := newClient(t, tc.addrs())
	for _, spec := range []*pb.FederationSpec{
		{Name: "plain", ModelSpecJson: testModelSpec(t), Clients: []string{"h1", "h2"}, MinClients: 1},
		{Name: "secure", ModelSpecJson: testModelSpec(t), Clients: []string{"h1", "h2"}, MinClients: 1, Threshold: 1, Secure: true},
	} {
		if _, err := c.CreateFederation(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	good := testEnrolment(t)
	for _, e := range []struct {
		fed, recipient string
		ok             bool
	}{
		{"plain", "", true},
		{"plain", "age1h2", false},
		{"secure", "", false},
		{"secure", "age1h1", false},
		{"secure", strings.Replace(good, "ed25519:", "ed25519:AAAA", 1), false},
		{"secure", good + " extra", false},
		{"secure", good, true},
	} {
		id := "h1"
		if e.fed == "plain" && e.recipient != "" {
			id = "h2"
		}
		_, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: e.fed, ClientId: id, AgeRecipient: e.recipient})
		switch {
		case e.ok && err != nil:
			t.Errorf("%s %q: %v", e.fed, e.recipient, err)
		case !e.ok && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "age_recipient")):
			t.Errorf("%s %q: got %v, want InvalidArgument naming age_recipient", e.fed, e.recipient, err)
		}
	}
	f, err := c.Federation(ctx, "secure")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Enrolled) != 1 || f.Enrolled[0].AgeRecipient != good {
		t.Errorf("secure federation enrolled %v, want h1 with its good string only", f.Enrolled)
	}
}

// TestAddRemoveNode grows a one-node cluster with AddNode: the new node, started with no
// peers, receives the whole state and serves it; RemoveNode takes it out again and the
// remaining node keeps accepting writes.
func TestAddRemoveNode(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tc := startCluster(t, 1)
	ctx := testCtx(t)
	tc.leader()
	c := newClient(t, tc.addrs())
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "a", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatal(err)
	}

	n2, cfg := startJoiner(t, "n2")
	if _, err := c.AddNode(ctx, &pb.AddNodeRequest{Id: "n2"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("add without addresses: got %v, want InvalidArgument", err)
	}
	if _, err := c.AddNode(ctx, &pb.AddNodeRequest{Id: "n2", RaftAddr: "127.0.0.1:70O4", GrpcAddr: cfg.GRPCAddr}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "raft_addr") {
		t.Errorf("add with a malformed port: got %v, want InvalidArgument naming raft_addr", err)
	}
	// n2 joins as a non-voter (the leader starts replicating to it as one) and is promoted.
	peers := make(chan raft.Observation, 16)
	obs := raft.NewObserver(peers, false, func(o *raft.Observation) bool { _, ok := o.Data.(raft.PeerObservation); return ok })
	tc.nodes[0].raft.RegisterObserver(obs)
	defer tc.nodes[0].raft.DeregisterObserver(obs)
	st, err := c.AddNode(ctx, &pb.AddNodeRequest{Id: "n2", RaftAddr: cfg.RaftAddr, GrpcAddr: cfg.GRPCAddr})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 2 || st.Nodes[1].Id != "n2" || st.Nodes[1].Suffrage != "voter" {
		t.Fatalf("after AddNode: %v", st.Nodes)
	}
	select {
	case o := <-peers:
		if p := o.Data.(raft.PeerObservation).Peer; p.ID != "n2" || p.Suffrage != raft.Nonvoter {
			t.Errorf("the leader first replicated to %s as %v, want n2 as a non-voter", p.ID, p.Suffrage)
		}
	default:
		t.Error("the leader reported no new peer")
	}
	waitFor(t, "n2 to replicate the federation", func() bool {
		_, err := n2.FSM().Federation("a")
		return err == nil
	})
	// n2 serves reads, forwards writes, and knows the leader.
	c2 := newClient(t, []string{cfg.GRPCAddr})
	if _, err := c2.Enrol(ctx, &pb.EnrolRequest{Federation: "a", ClientId: "h1"}); err != nil {
		t.Fatalf("enrol through n2: %v", err)
	}
	st2, err := c2.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st2.NodeId != "n2" || st2.LeaderId != "n1" || st2.NodeState != "follower" || len(st2.Nodes) != 2 {
		t.Errorf("n2 status %v", st2)
	}

	if _, err := c2.RemoveNode(ctx, "n9"); status.Code(err) != codes.NotFound {
		t.Errorf("remove an unknown node: got %v, want NotFound", err)
	}
	st, err = c2.RemoveNode(ctx, "n2") // forwarded to the leader
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Id != "n1" {
		t.Fatalf("after RemoveNode: %v", st.Nodes)
	}
	// The same removal again (an operator's retry after a lost answer) finds n2 gone
	// already: done, not NotFound, which stays for IDs the cluster never knew.
	st, err = c.RemoveNode(ctx, "n2")
	if err != nil {
		t.Fatalf("remove n2 again: %v", err)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Id != "n1" {
		t.Fatalf("after removing n2 again: %v", st.Nodes)
	}
	if _, err := c.RemoveNode(ctx, "n9"); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "never") {
		t.Errorf("remove an unknown node after the removal: got %v, want NotFound saying it was never a member", err)
	}
	n2.Close()
	if _, err := c.RemoveNode(ctx, "n1"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("remove the only node: got %v, want FailedPrecondition", err)
	}
	// n1 alone is a quorum again.
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "b", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatalf("write after RemoveNode: %v", err)
	}
	tc.closeAll()
}

// TestAddNodeCatchingUp adds a node with the gRPC address of another node, then one
// nobody answers, so the leader cannot see it catch up: AddNode answers
// FailedPrecondition saying so, the node stays a non-voter
// (the quorum is still the one node's, which keeps committing), and AddNode with the right
// address promotes it.
func TestAddNodeCatchingUp(t *testing.T) {
	tc := startCluster(t, 1)
	tc.leader()
	c := newClient(t, tc.addrs())
	n2, cfg := startJoiner(t, "n2")
	// The gRPC address of another node (n1's): refused at once, n2 a non-voter.
	_, err := c.AddNode(testCtx(t), &pb.AddNodeRequest{Id: "n2", RaftAddr: cfg.RaftAddr, GrpcAddr: tc.cfgs[0].GRPCAddr})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `is "n1"`) {
		t.Fatalf("add with n1's gRPC address: got %v, want FailedPrecondition naming n1", err)
	}
	short, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	_, err = c.AddNode(short, &pb.AddNodeRequest{Id: "n2", RaftAddr: cfg.RaftAddr, GrpcAddr: loopback.Addr(t)})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "non-voter") {
		t.Fatalf("add with a gRPC address nobody answers: got %v, want FailedPrecondition naming the non-voter", err)
	}
	t.Log(err)
	st, err := c.Status(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 2 || st.Nodes[1].Suffrage != "nonvoter" {
		t.Fatalf("after the failed promotion: %v", st.Nodes)
	}
	if _, err := c.CreateFederation(testCtx(t), &pb.FederationSpec{Name: "a", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatalf("write with a non-voter in the cluster: %v", err)
	}
	st, err = c.AddNode(testCtx(t), &pb.AddNodeRequest{Id: "n2", RaftAddr: cfg.RaftAddr, GrpcAddr: cfg.GRPCAddr})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 2 || st.Nodes[1].Suffrage != "voter" {
		t.Fatalf("after AddNode again: %v", st.Nodes)
	}
	if _, err := n2.FSM().Federation("a"); err != nil {
		t.Errorf("promoted n2: %v", err)
	}
}

// TestNonvoterPromotedLater: an operator adds a node before starting it. AddNode gives up
// waiting (FailedPrecondition) and leaves it a non-voter; once the node starts and catches
// up, the leader promotes it on its own.
func TestNonvoterPromotedLater(t *testing.T) {
	tc := startCluster(t, 1)
	tc.leader()
	c := newClient(t, tc.addrs())
	if _, err := c.CreateFederation(testCtx(t), &pb.FederationSpec{Name: "a", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("n2", t.TempDir())
	cfg.RaftAddr, cfg.GRPCAddr = loopback.Addr(t), loopback.Addr(t)
	short, cancel := context.WithTimeout(testCtx(t), time.Second)
	defer cancel()
	if _, err := c.AddNode(short, &pb.AddNodeRequest{Id: "n2", RaftAddr: cfg.RaftAddr, GrpcAddr: cfg.GRPCAddr}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("add a node not yet started: got %v, want FailedPrecondition", err)
	}
	suffrage := func() string {
		st, err := c.Status(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range st.Nodes {
			if n.Id == "n2" {
				return n.Suffrage
			}
		}
		return ""
	}
	if s := suffrage(); s != "nonvoter" {
		t.Fatalf("n2 before it starts: %q, want nonvoter", s)
	}
	n2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	waitFor(t, "the leader to promote n2", func() bool { return suffrage() == "voter" })
	if _, err := n2.FSM().Federation("a"); err != nil {
		t.Errorf("promoted n2: %v", err)
	}
}

// TestRemoveNodeKeepsQuorum stops one node of three: removing another live node would
// leave two nodes with one of them down, no quorum, and is refused; removing the stopped
// one is allowed, and the two left keep accepting writes.
func TestRemoveNodeKeepsQuorum(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := testCtx(t)
	l := tc.leader()
	live, gone := (l+1)%3, (l+2)%3
	tc.stop(gone)
	c := newClient(t, []string{tc.cfgs[l].GRPCAddr})
	_, err := c.RemoveNode(ctx, tc.cfgs[live].NodeID)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tc.cfgs[gone].NodeID+":") {
		t.Errorf("remove a live node while %s is down: got %v, want FailedPrecondition naming it", tc.cfgs[gone].NodeID, err)
	}
	st, err := c.RemoveNode(ctx, tc.cfgs[gone].NodeID)
	if err != nil {
		t.Fatalf("remove the stopped node: %v", err)
	}
	if len(st.Nodes) != 2 {
		t.Errorf("after removing %s: %v", tc.cfgs[gone].NodeID, st.Nodes)
	}
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "a", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatalf("write after the removal: %v", err)
	}
}

// TestRemoveNodeAgain: in a cluster started as by hand without --grpc-peers, the
// followers record their own gRPC addresses (so that the leader can check a removal
// leaves a quorum that answers). A removal repeated after it took effect (a retry whose
// first answer was lost) is answered as done, also for a member the cluster had no
// address for; an ID the cluster never had stays NotFound.
func TestRemoveNodeAgain(t *testing.T) {
	tc := startClusterWith(t, 3, func(c *Config) {
		c.Peers = slices.Clone(c.Peers)
		for i := range c.Peers {
			c.Peers[i].GRPCAddr = ""
		}
	})
	ctx := testCtx(t)
	l := tc.leader()
	want := map[string]string{}
	for _, cfg := range tc.cfgs {
		want[cfg.NodeID] = cfg.GRPCAddr
	}
	waitFor(t, "every node's gRPC address recorded", func() bool { return maps.Equal(tc.nodes[l].FSM().NodeAddrs(), want) })

	// n5 is a member nobody runs, added to the Raft configuration directly: the cluster
	// has no gRPC address for it.
	if err := tc.nodes[l].raft.AddNonvoter("n5", raft.ServerAddress(loopback.Addr(t)), 0, 0).Error(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, []string{tc.cfgs[l].GRPCAddr})
	for _, id := range []string{tc.cfgs[(l+1)%3].NodeID, "n5"} {
		for i := range 2 {
			st, err := c.RemoveNode(ctx, id)
			if err != nil {
				t.Fatalf("removal %d of %s: %v", i+1, id, err)
			}
			if slices.ContainsFunc(st.Nodes, func(n *pb.NodeStatus) bool { return n.Id == id }) {
				t.Fatalf("after removal %d of %s: %v", i+1, id, st.Nodes)
			}
		}
	}
	if _, err := c.RemoveNode(ctx, "n9"); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "never") {
		t.Errorf("remove an unknown node: got %v, want NotFound saying it never was in the cluster", err)
	}
}

// TestRemoveLeader: an operator decommissions the node that leads. The removal commits,
// that node steps down, the other two elect a leader among themselves and keep taking
// writes, and the removed node no longer counts in the membership.
func TestRemoveLeader(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := testCtx(t)
	l := tc.leader()
	id := tc.cfgs[l].NodeID
	st, err := newClient(t, []string{tc.cfgs[l].GRPCAddr}).RemoveNode(ctx, id)
	if err != nil {
		t.Fatalf("remove the leader %s: %v", id, err)
	}
	for _, n := range st.Nodes {
		if n.Id == id {
			t.Errorf("%s still in the membership: %v", id, st.Nodes)
		}
	}
	tc.stop(l)
	var rest []string
	for i, cfg := range tc.cfgs {
		if i != l {
			rest = append(rest, cfg.GRPCAddr)
		}
	}
	c := newClient(t, rest)
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "after", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatalf("write after removing the leader: %v", err)
	}
	after, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.LeaderId == "" || after.LeaderId == id || len(after.Nodes) != 2 {
		t.Errorf("after removing %s: leader %q, nodes %v", id, after.LeaderId, after.Nodes)
	}
}
