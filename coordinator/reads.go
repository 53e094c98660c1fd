package coordinator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/medfed/medfed/internal/pb"
)

// upToDate brings this node's state up to what the cluster had committed when upToDate was
// called, so that an answer never lacks a write acknowledged before the question arrived.
// A follower, which may have just restarted or fallen behind, waits until it has applied
// as far as the leader has (catchUp: one Status call to the leader). Without a known
// leader it waits about one election for one, then fails with ErrNotLeader and the client
// asks another node. A leader waits until it has applied every entry of earlier terms
// (leaderUpToDate).
func (n *Node) upToDate(ctx context.Context) error {
	if n.raft.State() == raft.Leader {
		return n.leaderUpToDate()
	}
	if err := n.awaitLeader(ctx); err != nil {
		return err
	}
	if n.raft.State() == raft.Leader {
		return n.leaderUpToDate()
	}
	return n.catchUp(ctx)
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
