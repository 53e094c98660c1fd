package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/pb"
)

// runStatus prints the coordinator cluster's state: its leader, each node's Raft state
// (asked of the node itself), and every federation's rounds and latest model version.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf, jsonOut := coordinatorCommand("medfed status", "print one JSON object on stdout, nothing else", stderr)
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	c, err := cf.dial(stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	st, err := clusterStatusOf(ctx, c, cf)
	if err != nil {
		return err
	}
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

// clusterView is the object `medfed status --json` prints.
type clusterView struct {
	Leader      string           `json:"leader"`
	Nodes       []nodeView       `json:"nodes"`
	Federations []federationStat `json:"federations"`
	// FederationsError says why Federations is empty when the federations could not be
	// read: without a leader no node can tell whether its state is current, so the nodes
	// do not answer for it.
	FederationsError string `json:"federations_error,omitempty"`
}

type nodeView struct {
	ID       string `json:"id"`
	Address  string `json:"address"` // gRPC
	RaftAddr string `json:"raft_address"`
	// State is the node's own Raft state (leader, follower, candidate, shutdown), or
	// "unreachable".
	State    string `json:"state"`
	Suffrage string `json:"suffrage"`
	Error    string `json:"error,omitempty"`
}

type federationStat struct {
	Name         string      `json:"name"`
	Rounds       []roundView `json:"rounds"`
	ModelVersion uint64      `json:"model_version"`
	Done         bool        `json:"done"`
	// Stopped before its last round (StopReason says why); Suspended hospitals are left
	// out of round selection after a missed round.
	Stopped    bool     `json:"stopped,omitempty"`
	StopReason string   `json:"stop_reason,omitempty"`
	Suspended  []string `json:"suspended,omitempty"`
	// With differential privacy: the epsilon the published rounds have spent, and why the
	// federation is done before its last round (the budget allows no more).
	Epsilon    float64 `json:"epsilon,omitempty"`
	DoneReason string  `json:"done_reason,omitempty"`
}

type roundView struct {
	Round        uint64   `json:"round"`
	State        string   `json:"state"`
	Contributors []string `json:"contributors"`
}

// roundStateNames are the round states as the CLI prints them.
var roundStateNames = map[pb.RoundState]string{
	pb.RoundState_ROUND_STATE_OPEN:       "open",
	pb.RoundState_ROUND_STATE_SEALED:     "sealed",
	pb.RoundState_ROUND_STATE_DECRYPTING: "decrypting",
	pb.RoundState_ROUND_STATE_PUBLISHED:  "published",
	pb.RoundState_ROUND_STATE_ABORTED:    "aborted",
}

func roundViews(f *pb.Federation) []roundView {
	out := []roundView{}
	for _, r := range f.Rounds {
		v := roundView{Round: r.Round, State: roundStateNames[r.State], Contributors: []string{}}
		if v.State == "" {
			v.State = strings.ToLower(strings.TrimPrefix(r.State.String(), "ROUND_STATE_"))
		}
		for _, c := range r.Contributions {
			v.Contributors = append(v.Contributors, c.ClientId)
		}
		out = append(out, v)
	}
	return out
}

func latestVersion(f *pb.Federation) uint64 {
	if len(f.Models) == 0 {
		return 0
	}
	return f.Models[len(f.Models)-1].Version
}

// clusterStatusOf asks one node for the cluster's configuration and the federations, and
// each node for its own Raft state. Without a leader (no quorum) it reports the nodes and,
// instead of the federations, why they are missing.
func clusterStatusOf(ctx context.Context, c *coordclient.Client, cf *coordinatorFlags) (*clusterView, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := &clusterView{Leader: st.LeaderId, Nodes: []nodeView{}, Federations: []federationStat{}}
	var feds []*pb.Federation
	if st.LeaderId == "" {
		out.FederationsError = fmt.Sprintf("not shown: node %s knows no leader (no quorum?), so no node can vouch for its federation state", st.NodeId)
	} else if feds, err = c.Federations(ctx); err != nil {
		return nil, err
	}
	creds, err := cf.tls.clientCreds()
	if err != nil {
		return nil, err
	}
	for _, n := range st.Nodes {
		nv := nodeView{ID: n.Id, Address: n.GrpcAddr, RaftAddr: n.RaftAddr, State: n.State, Suffrage: n.Suffrage}
		switch {
		case n.Id == st.NodeId:
			nv.State = st.NodeState
		case n.GrpcAddr != "":
			own, err := nodeStatus(ctx, n.GrpcAddr, creds)
			if err != nil {
				nv.State, nv.Error = "unreachable", err.Error()
			} else {
				nv.State = own.NodeState
			}
		}
		out.Nodes = append(out.Nodes, nv)
	}
	for _, f := range feds {
		out.Federations = append(out.Federations, federationStat{
			Name: f.GetSpec().GetName(), Rounds: roundViews(f), ModelVersion: latestVersion(f), Done: f.Done,
			Stopped: f.Stopped, StopReason: f.StopReason, Suspended: f.Suspended,
			Epsilon: f.DpEpsilon, DoneReason: f.DoneReason,
		})
	}
	return out, nil
}

// nodeStatus asks one node, once, for its status.
func nodeStatus(ctx context.Context, addr string, creds credentials.TransportCredentials) (*pb.ClusterStatus, error) {
	c, err := coordclient.New([]string{addr}, coordclient.Options{Creds: creds, MaxAttempts: 1})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return c.Status(ctx)
}

func printStatus(w io.Writer, st *clusterView) {
	leader := st.Leader
	if leader == "" {
		leader = "none (no quorum?)"
	}
	fmt.Fprintf(w, "leader: %s\n\nnodes:\n", leader)
	for _, n := range st.Nodes {
		printNode(w, n)
	}
	fmt.Fprintln(w, "\nfederations:")
	if st.FederationsError != "" {
		fmt.Fprintf(w, "  %s\n", st.FederationsError)
	} else if len(st.Federations) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, f := range st.Federations {
		done := ""
		if f.Epsilon != 0 {
			done = fmt.Sprintf(", epsilon %.3g spent", f.Epsilon)
		}
		if f.Done {
			done += ", done"
		}
		if f.DoneReason != "" {
			done += ": " + f.DoneReason
		}
		if f.Stopped {
			done = ", stopped: " + f.StopReason
		}
		if len(f.Suspended) > 0 {
			done += fmt.Sprintf(", left out after a missed round: %s", strings.Join(f.Suspended, " "))
		}
		fmt.Fprintf(w, "  %s: model version %d, %d rounds%s\n", f.Name, f.ModelVersion, len(f.Rounds), done)
		for _, r := range f.Rounds {
			fmt.Fprintf(w, "    round %d: %-10s %d contributors %s\n", r.Round, r.State, len(r.Contributors), strings.Join(r.Contributors, ", "))
		}
	}
}

// printNode prints one node of the membership on a line.
func printNode(w io.Writer, n nodeView) {
	fmt.Fprintf(w, "  %-12s %-10s grpc %-21s raft %-21s %s\n", n.ID, n.State, cmpOr(n.Address, "-"), n.RaftAddr, n.Suffrage)
}
