package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/internal/pb"
)

// runCluster changes the coordinator cluster's membership.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runSubcommand(ctx, "cluster", args, stdout, stderr, clusterUsage, map[string]subcommand{
		"add":    runClusterChange,
		"remove": runClusterChange,
	})
}

func clusterUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  medfed cluster add    --coordinator ADDR[,ADDR...] --id ID --raft-addr HOST:PORT --grpc-addr HOST:PORT [TLS flags] [--json]
  medfed cluster remove --coordinator ADDR[,ADDR...] --id ID [TLS flags] [--json]

add makes a node a voting member of the cluster. Start it first with
'medfed coordinator --join' (no --peers), with a coordinator certificate for ID; the
leader then sends it the log or a snapshot, and the node counts towards the quorum only
once it has caught up. If that takes longer than --timeout allows, add fails saying so,
and the leader promotes the node on its own once it has. remove takes a node out (the
leader too); stop it afterwards. Removing a node that is out already succeeds (say, again
after an answer was lost); an ID the cluster never had is NotFound.
The cluster refuses a removal that would leave fewer answering nodes than a quorum of
the rest (remove the node that is down instead). Both need an operator certificate.
Prints the membership after the change.
`)
}

// membershipView is what `medfed cluster add|remove --json` prints.
type membershipView struct {
	Leader string     `json:"leader"`
	Nodes  []nodeView `json:"nodes"`
}

func runClusterChange(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	var id, raftAddr, grpcAddr string
	fs, cf, jsonOut := coordinatorCommand("medfed cluster "+sub, "print one JSON object on stdout, nothing else", stderr)
	fs.StringVar(&id, "id", "", "the node's ID, as its --node-id (required)")
	if sub == "add" {
		fs.StringVar(&raftAddr, "raft-addr", "", "the node's Raft address, as its --raft-addr (required)")
		fs.StringVar(&grpcAddr, "grpc-addr", "", "the node's gRPC address, as its --grpc-addr (required)")
	}
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	switch {
	case id == "":
		return usageError(fs, "missing --id")
	case sub == "add" && (raftAddr == "" || grpcAddr == ""):
		return usageError(fs, "missing --raft-addr or --grpc-addr: the cluster dials the new node at both")
	}
	if sub == "add" {
		for _, a := range [][2]string{{"raft-addr", raftAddr}, {"grpc-addr", grpcAddr}} {
			if err := coordinator.CheckPeerAddr(a[1]); err != nil {
				return usageError(fs, "--%s: %v", a[0], err)
			}
		}
	}
	c, err := cf.dial(stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	var st *pb.ClusterStatus
	verb := "added to"
	if sub == "add" {
		st, err = c.AddNode(ctx, &pb.AddNodeRequest{Id: id, RaftAddr: raftAddr, GrpcAddr: grpcAddr})
	} else {
		// Removing a node that is out already succeeds (a repeated removal); say so.
		verb = "removed from"
		if before, err := c.Status(ctx); err == nil && !slices.ContainsFunc(before.Nodes, func(n *pb.NodeStatus) bool { return n.Id == id }) {
			verb = "was not in"
		}
		st, err = c.RemoveNode(ctx, id)
	}
	if err != nil {
		return err
	}
	view := membershipView{Leader: st.LeaderId, Nodes: []nodeView{}}
	for _, n := range st.Nodes {
		view.Nodes = append(view.Nodes, nodeView{ID: n.Id, Address: n.GrpcAddr, RaftAddr: n.RaftAddr, State: n.State, Suffrage: n.Suffrage})
	}
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(view)
	}
	fmt.Fprintf(stdout, "node %s %s the cluster; leader %s; nodes:\n", id, verb, cmpOr(view.Leader, "none"))
	for _, n := range view.Nodes {
		printNode(stdout, n)
	}
	return nil
}
