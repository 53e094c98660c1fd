package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/internal/pb"
)

// Membership changes, on the leader: AddNode's two steps (a non-voter, promoted once it
// has caught up), the leader's own promotion of non-voters that caught up later, and
// RemoveNode's quorum check.

// addVoter makes the node of req a voting member, in two steps. A node that is not yet
// one joins as a non-voter: it receives the log (a snapshot first) but does not count
// towards the quorum. Once it has applied everything committed when it joined, it is
// promoted. A voter added at once would count before it can help to commit: with n4
// still installing a snapshot, three of four nodes must answer, so one more failure
// stops every write. If it does not catch up in time (about 90% of what is left of ctx,
// at most addNodeWait), it stays a non-voter and the error says so; the leader promotes
// it once it has (promoteLoop), or calling AddNode again does.
func (n *Node) addVoter(ctx context.Context, req *pb.AddNodeRequest) error {
	id, addr := raft.ServerID(req.Id), raft.ServerAddress(req.RaftAddr)
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("%w: add node %s: %v", ErrNotLeader, req.Id, err)
	}
	voter := slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return s.ID == id && s.Suffrage == raft.Voter })
	if !voter {
		if err := n.raft.AddNonvoter(id, addr, 0, n.cfg.ApplyTimeout).Error(); err != nil {
			return fmt.Errorf("%w: add node %s as a non-voter: %v", ErrNotLeader, req.Id, err)
		}
		if err := n.awaitCaughtUp(ctx, req.Id, req.GrpcAddr, n.fsm.AppliedIndex()); err != nil {
			return err
		}
	}
	if err := n.raft.AddVoter(id, addr, 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("%w: promote node %s to voter: %v", ErrNotLeader, req.Id, err)
	}
	return nil
}

// addNodeWait bounds how long AddNode waits for a joining node to catch up.
const addNodeWait = 5 * time.Minute

// awaitCaughtUp waits until node id, at gRPC address addr, has applied index idx, asking
// it every 100 ms (nodeProgress), and fails with ErrCatchingUp when its time is up (see
// addVoter) or when another node answers at addr.
func (n *Node) awaitCaughtUp(ctx context.Context, id, addr string, idx uint64) error {
	wait := addNodeWait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)*9/10)
	}
	deadline := time.Now().Add(wait)
	var last string
	for {
		applied, who, err := n.nodeProgress(ctx, addr, time.Second)
		switch {
		case err != nil:
			last = fmt.Sprintf("its status at %s: %v", addr, status.Convert(err).Message())
		case who != id:
			return fmt.Errorf("%w: node %s joined as a non-voter, but the node at %s, which should show that it has caught up, is %q: add it again (medfed cluster add) with its own gRPC address to promote it",
				ErrCatchingUp, id, addr, who)
		case applied >= idx:
			return nil
		default:
			last = fmt.Sprintf("it has applied %d of the %d entries committed when it joined", applied, idx)
		}
		if time.Now().Add(100 * time.Millisecond).After(deadline) {
			return fmt.Errorf("%w: node %s joined as a non-voter and has not caught up after %s (%s); it does not count towards the quorum yet: the leader promotes it once it answers at %s having caught up (if that address is wrong, add it again with the right one)",
				ErrCatchingUp, id, wait.Round(time.Millisecond), last, addr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: node %s joined as a non-voter; waiting for it to catch up: %v", ErrCatchingUp, id, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// nodeProgress asks the node at gRPC address addr, once (within timeout), which node it
// is and how far it has applied the log.
func (n *Node) nodeProgress(ctx context.Context, addr string, timeout time.Duration) (applied uint64, id string, err error) {
	c, err := n.conn(addr)
	if err != nil {
		return 0, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := pb.NewClusterServiceClient(c).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return 0, "", err
	}
	return st.AppliedIndex, st.NodeId, nil
}

// promoteEvery is how often the leader looks for non-voters that have caught up.
const promoteEvery = time.Second

// promoteLoop runs promoteCaughtUp every promoteEvery while this node leads, apart from
// the driver, so that a non-voter slow to answer never delays a round.
func (n *Node) promoteLoop(ctx context.Context) {
	t := time.NewTicker(promoteEvery)
	defer t.Stop()
	var mark uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.raft.State() != raft.Leader {
			mark = 0
			continue
		}
		mark = n.promoteCaughtUp(ctx, mark)
	}
}

// promoteCaughtUp makes a voter of a non-voter that has applied at least mark, what the
// leader had applied at the previous check (promoteEvery earlier; 0: there was none, and
// nothing is promoted), so that a node whose AddNode stopped waiting (ErrCatchingUp)
// joins the quorum once it has caught up, without an operator. The promotion names the
// configuration it was decided on (prevIndex), so a node removed in the meantime is not
// added back. It returns the mark for the next check.
func (n *Node) promoteCaughtUp(ctx context.Context, mark uint64) uint64 {
	next := n.fsm.AppliedIndex()
	f := n.raft.GetConfiguration()
	if mark == 0 || f.Error() != nil {
		return next
	}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != raft.Nonvoter {
			continue
		}
		addr := n.grpcAddrOf(string(srv.ID))
		if addr == "" {
			continue
		}
		if applied, who, err := n.nodeProgress(ctx, addr, time.Second); err != nil || who != string(srv.ID) || applied < mark {
			continue
		}
		if err := n.raft.AddVoter(srv.ID, srv.Address, f.Index(), n.cfg.ApplyTimeout).Error(); err != nil {
			n.log.Warn("promoting a caught-up non-voter", "node", srv.ID, "err", err)
			return next
		}
		n.log.Info("non-voter caught up; promoted to voter", "node", srv.ID)
		return next // the configuration changed: the next check reads it again
	}
	return next
}

// quorumWithout checks that the voters left after removing id include a majority that
// answers: with n3 down, removing n2 from n1, n2, n3 would leave n1 and n3, which commit
// nothing until n3 is back. It asks each remaining node for its status (2 s each, at once).
func (n *Node) quorumWithout(ctx context.Context, servers []raft.Server, id string) error {
	var rest []string
	for _, srv := range servers {
		if srv.Suffrage == raft.Voter && string(srv.ID) != id {
			rest = append(rest, string(srv.ID))
		}
	}
	answers := make([]error, len(rest))
	var wg sync.WaitGroup
	for i, peer := range rest {
		if peer == n.cfg.NodeID {
			continue
		}
		wg.Go(func() {
			addr := n.grpcAddrOf(peer)
			if addr == "" {
				answers[i] = errors.New("no gRPC address known: --grpc-peers does not name it, and it has not recorded its own (start the nodes with --grpc-peers)")
				return
			}
			_, _, answers[i] = n.nodeProgress(ctx, addr, 2*time.Second)
		})
	}
	wg.Wait()
	var live, down []string
	for i, peer := range rest {
		if answers[i] == nil {
			live = append(live, peer)
		} else {
			down = append(down, fmt.Sprintf("%s: %v", peer, status.Convert(answers[i]).Message()))
		}
	}
	if need := len(rest)/2 + 1; len(live) < need {
		return fmt.Errorf("remove node %s: the %d nodes left (%s) need %d of them up for a quorum, and only %d answer (%s); bring them back first, or remove a node that is down",
			id, len(rest), strings.Join(rest, ", "), need, len(live), strings.Join(down, "; "))
	}
	return nil
}
