package coordinator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/internal/pb"
)

// upToDate brings this node's state up to what the cluster had committed when upToDate was
// called, so that an answer never lacks a write acknowledged before the question arrived.
// A leader checks that it still leads (readIndex). A follower, which may have just
// restarted or fallen behind, waits until it has applied as far as the leader says it
// must (catchUp: one ReadIndex call to the leader). Without a known leader it waits about
// one election for one, then fails with ErrNotLeader and the client asks another node.
func (n *Node) upToDate(ctx context.Context) error {
	if n.raft.State() == raft.Leader {
		_, err := n.readIndex(ctx)
		return err
	}
	if err := n.awaitLeader(ctx); err != nil {
		return err
	}
	if n.raft.State() == raft.Leader {
		_, err := n.readIndex(ctx)
		return err
	}
	return n.catchUp(ctx)
}

// readIndex returns, on the leader, the log index a read must see (Raft's read index):
// everything this node had applied when called, which covers every acknowledged write
// once it has applied the entries of earlier terms (leaderUpToDate). It answers only once
// a quorum has confirmed that this node still leads (raft.VerifyLeader: one heartbeat
// round, shared by concurrent calls; it counts any successful answer the leader processes
// after the call, so the confirmation is as of at most about one round trip before it).
// Without that, a leader cut off from the others would answer from its own state until
// its lease ran out, while the majority may have elected a new leader and committed
// writes it lacks: the lease rests on timing alone (a paused process outlives it), the
// confirmation on answers from a quorum.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if err := n.leaderUpToDate(); err != nil {
		return 0, err
	}
	idx := n.fsm.AppliedIndex()
	f := n.raft.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return 0, fmt.Errorf("%w: node %s could not confirm that it still leads: %v", ErrNotLeader, n.cfg.NodeID, err)
		}
		return idx, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: confirming that node %s still leads: %v", ErrNotLeader, n.cfg.NodeID, ctx.Err())
	}
}

// catchUp makes a follower's state at least as new as the cluster's was when catchUp was
// called: it waits until it has applied the leader's read index.
func (n *Node) catchUp(ctx context.Context) error {
	lc, err := n.leaderCluster()
	if err != nil || lc == nil {
		return err
	}
	return n.catchUpWith(ctx, lc)
}

// catchUpWith is catchUp with lc, a client of the leader's ClusterService. A leader of an
// earlier release (as during an upgrade) has no ReadIndex; its Status reports its applied
// index after the entries of earlier terms, without confirming that it leads.
func (n *Node) catchUpWith(ctx context.Context, lc pb.ClusterServiceClient) error {
	r, err := lc.ReadIndex(ctx, &pb.ReadIndexRequest{})
	if status.Code(err) == codes.Unimplemented {
		st, err := lc.Status(ctx, &pb.StatusRequest{})
		if err != nil {
			return err
		}
		return n.waitApplied(ctx, st.AppliedIndex)
	}
	if err != nil {
		return err
	}
	return n.waitApplied(ctx, r.Index)
}

// awaitLeader waits until this node knows a leader, for at most a heartbeat timeout and
// two election timeouts: what a restarted node needs to hear from the leader, or a
// cluster to elect one.
func (n *Node) awaitLeader(ctx context.Context) error {
	rc := n.raft.ReloadableConfig()
	deadline := time.Now().Add(rc.HeartbeatTimeout + 2*rc.ElectionTimeout)
	for {
		if _, id := n.raft.LeaderWithID(); id != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: no known leader, so this node cannot tell whether its state is current", ErrNotLeader)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no known leader: %v", ErrNotLeader, ctx.Err())
		case <-n.ctx.Done():
			return fmt.Errorf("%w: node is shutting down", ErrNotLeader)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// leaderUpToDate returns once this node, leading, has applied every entry committed before
// its term: Raft commits (and so applies) them only together with an entry of the new
// term, and until then the FSM of a new leader can lack an acknowledged update. It commits
// a barrier once per term; later calls in the same term return at once.
func (n *Node) leaderUpToDate() error {
	term := n.raft.CurrentTerm()
	if n.upToDateTerm.Load() == term {
		return nil
	}
	if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("%w: applying the entries of earlier terms: %v", ErrNotLeader, err)
	}
	n.upToDateTerm.Store(term)
	return nil
}

// upToDateServices are the services whose calls read or check the federation state, and so
// call upToDate first. ClusterService is not among them (Status must answer without a quorum,
// Propose and the membership calls go to the leader), nor are BlobService and inference.
var upToDateServices = []string{
	pb.FederationService_ServiceDesc.ServiceName,
	pb.CeremonyService_ServiceDesc.ServiceName,
	pb.RoundService_ServiceDesc.ServiceName,
}

func needsUpToDate(method string) bool {
	for _, s := range upToDateServices {
		if strings.HasPrefix(method, "/"+s+"/") {
			return true
		}
	}
	return false
}

func (n *Node) upToDateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if needsUpToDate(info.FullMethod) {
		if err := n.upToDate(ctx); err != nil {
			return nil, n.toStatus(err)
		}
	}
	return h(ctx, req)
}

func (n *Node) upToDateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if needsUpToDate(info.FullMethod) {
		if err := n.upToDate(ss.Context()); err != nil {
			return n.toStatus(err)
		}
	}
	return h(srv, ss)
}
