package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/pb"
)

// TestReadsAfterRestart checks that a node never answers a read with state older than
// what the cluster had committed when the read arrived. A restarted follower has not yet
// applied what it missed, and a node elected leader applies the entries of earlier terms
// only once an entry of its own term commits: both must wait (or send the caller
// elsewhere, Unavailable) instead of answering "not found" for a federation that exists.
// A node without a leader answers Unavailable, and Status still answers.
func TestReadsAfterRestart(t *testing.T) {
	tune := func(c *Config) {
		// No snapshots: a restarted node replays its whole log, which widens the window
		// between learning of (or becoming) the leader and applying what was committed.
		c.SnapshotThreshold, c.SnapshotInterval = 1<<40, time.Hour
	}

	t.Run("follower", func(t *testing.T) {
		tc := startClusterWith(t, 3, tune)
		_, f := restartBehind(t, tc)
		onlyF := newClient(t, []string{tc.cfgs[f].GRPCAddr})
		if _, err := onlyF.Federation(testCtx(t), "late"); err != nil {
			t.Fatalf("restarted follower %s: %v", tc.cfgs[f].NodeID, err)
		}
		tc.stop(f)
		tc.start(f)
		if _, _, err := onlyF.FetchModel(testCtx(t), "late", 0, "f32"); err != nil {
			t.Fatalf("restarted follower %s: model version 0: %v", tc.cfgs[f].NodeID, err)
		}
	})

	t.Run("no leader", func(t *testing.T) {
		tc := startClusterWith(t, 3, tune)
		c := newClient(t, tc.addrs())
		if _, err := c.CreateFederation(testCtx(t), &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
			t.Fatal(err)
		}
		tc.stop(1)
		tc.stop(2)
		waitFor(t, "n1 to know no leader", func() bool {
			_, id := tc.nodes[0].raft.LeaderWithID()
			return id == ""
		})
		once, err := coordclient.New([]string{tc.cfgs[0].GRPCAddr}, coordclient.Options{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer once.Close()
		if _, err := once.Federation(testCtx(t), "f"); status.Code(err) != codes.Unavailable {
			t.Errorf("federation without a quorum: %v, want Unavailable", err)
		}
		if st, err := once.Status(testCtx(t)); err != nil || st.LeaderId != "" {
			t.Errorf("status without a quorum: %v, %v", st, err)
		}
	})

	t.Run("leader", func(t *testing.T) {
		tc := startClusterWith(t, 1, tune)
		tc.leader()
		padLog(t, tc.nodes[0], 5000)
		c := newClient(t, tc.addrs())
		if _, err := c.CreateFederation(testCtx(t), &pb.FederationSpec{Name: "late", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
			t.Fatal(err)
		}
		tc.stop(0)
		tc.start(0)
		tc.leader()
		// The node leads now; its FSM may still be replaying the log.
		if _, err := c.Federation(testCtx(t), "late"); err != nil {
			t.Fatalf("new leader: %v", err)
		}
	})
}

// restartBehind stops a follower of tc, commits 2000 entries and the federation "late"
// without it, and starts it again. It returns the leader's index and the follower's.
func restartBehind(t *testing.T, tc *testCluster) (l, f int) {
	t.Helper()
	l = tc.leader()
	f = (l + 1) % len(tc.nodes)
	tc.stop(f)
	padLog(t, tc.nodes[l], 2000)
	c := newClient(t, tc.addrs())
	if _, err := c.CreateFederation(testCtx(t), &pb.FederationSpec{Name: "late", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatal(err)
	}
	tc.start(f)
	return l, f
}

// padLog commits n small entries (the leader's own gRPC address, again) on the leader,
// pipelined so that they take a few batches, not n disk syncs.
func padLog(t *testing.T, leader *Node, n int) {
	t.Helper()
	data, err := EncodeCommand(&pb.Command{Cmd: &pb.Command_SetNodeAddr{SetNodeAddr: &pb.SetNodeAddrCmd{Id: leader.cfg.NodeID, GrpcAddr: leader.GRPCAddr()}}})
	if err != nil {
		t.Fatal(err)
	}
	fs := make([]raft.ApplyFuture, n)
	for i := range fs {
		fs[i] = leader.raft.Apply(data, waitTimeout)
	}
	for _, f := range fs {
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadIndex checks how a node decides that its state is current. A leader cut off from
// the others (both followers stopped, its lease not yet run out, so it still believes it
// leads) does not answer from its state: it cannot confirm that it leads, and answers
// Unavailable, as does ReadIndex. A follower whose leader is of an earlier release (no
// ReadIndex: Unimplemented) catches up through the leader's Status instead.
func TestReadIndex(t *testing.T) {
	t.Run("cut-off leader", func(t *testing.T) {
		tc := startClusterWith(t, 3, func(c *Config) {
			// A lease that outlasts stopping two nodes.
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 3*time.Second, 3*time.Second, 3*time.Second
		})
		l := tc.leader()
		c := newClient(t, tc.addrs())
		if _, err := c.CreateFederation(testCtx(t), &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
			t.Fatal(err)
		}
		// Once a heartbeat to each stopped follower has failed, no answer it sent before
		// it stopped can still be on its way to the leader (raft.VerifyLeader counts any
		// successful response the leader processes after the call).
		failed := make(chan raft.Observation, 64)
		obs := raft.NewObserver(failed, false, func(o *raft.Observation) bool {
			_, ok := o.Data.(raft.FailedHeartbeatObservation)
			return ok
		})
		tc.nodes[l].raft.RegisterObserver(obs)
		defer tc.nodes[l].raft.DeregisterObserver(obs)
		down := map[raft.ServerID]bool{}
		for i := range tc.nodes {
			if i != l {
				tc.stop(i)
				down[raft.ServerID(tc.cfgs[i].NodeID)] = true
			}
		}
		for len(down) > 0 {
			select {
			case o := <-failed:
				delete(down, o.Data.(raft.FailedHeartbeatObservation).PeerID)
			case <-time.After(waitTimeout):
				t.Fatalf("no failed heartbeat to %v", down)
			}
		}
		once, err := coordclient.New([]string{tc.cfgs[l].GRPCAddr}, coordclient.Options{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer once.Close()
		if tc.nodes[l].raft.State() != raft.Leader {
			t.Fatal("the leader stepped down before its lease ran out; the test cannot tell anything")
		}
		if f, err := once.Federation(testCtx(t), "f"); status.Code(err) != codes.Unavailable {
			t.Errorf("read on a leader without its followers: %v, %v; want Unavailable", f, err)
		}
		if _, err := (&clusterServer{n: tc.nodes[l]}).ReadIndex(testCtx(t), &pb.ReadIndexRequest{}); status.Code(err) != codes.Unavailable {
			t.Errorf("ReadIndex on a leader without its followers: %v, want Unavailable", err)
		}
	})

	t.Run("leader of an earlier release", func(t *testing.T) {
		tc := startClusterWith(t, 3, func(c *Config) { c.SnapshotThreshold, c.SnapshotInterval = 1<<40, time.Hour })
		_, f := restartBehind(t, tc)
		waitFor(t, tc.cfgs[f].NodeID+" to know the leader", func() bool {
			_, id := tc.nodes[f].raft.LeaderWithID()
			return id != ""
		})
		lc, err := tc.nodes[f].leaderCluster()
		if err != nil || lc == nil {
			t.Fatalf("leader client: %v, %v", lc, err)
		}
		if err := tc.nodes[f].catchUpWith(testCtx(t), earlierRelease{lc}); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.nodes[f].FSM().Federation("late"); err != nil {
			t.Errorf("caught up through Status, yet: %v", err)
		}
	})
}

// earlierRelease is the ClusterService of a leader that predates ReadIndex.
type earlierRelease struct{ pb.ClusterServiceClient }

func (earlierRelease) ReadIndex(context.Context, *pb.ReadIndexRequest, ...grpc.CallOption) (*pb.ReadIndexResponse, error) {
	return nil, status.Error(codes.Unimplemented, "unknown method ReadIndex for service medfed.v1.ClusterService")
}
