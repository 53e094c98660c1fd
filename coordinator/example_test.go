package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// Example starts a one-node coordinator cluster on loopback, without TLS as for a local
// experiment (a consortium runs three or five nodes with mutual TLS: docs/cluster.md),
// creates a federation through the Go client as an operator would, and reads the cluster
// and the federation back. The client retries until the node has elected itself leader.
func Example() {
	dir, err := os.MkdirTemp("", "medfed-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	raftAddr, err := loopback.FreeAddr()
	if err != nil {
		fmt.Println(err)
		return
	}
	grpcAddr, err := loopback.FreeAddr()
	if err != nil {
		fmt.Println(err)
		return
	}
	node, err := coordinator.New(coordinator.Config{
		NodeID: "n1", DataDir: dir, RaftAddr: raftAddr, GRPCAddr: grpcAddr, Insecure: true,
		Peers: []coordinator.Peer{{ID: "n1", RaftAddr: raftAddr, GRPCAddr: grpcAddr}},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()

	c, err := coordclient.New([]string{grpcAddr}, coordclient.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	arch, err := model.Architecture("cnn", []int{28, 28, 1}, 10)
	if err != nil {
		fmt.Println(err)
		return
	}
	archJSON, err := json.Marshal(arch)
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "study", ModelSpecJson: archJSON, Dataset: "mnist", Clients: []string{"h1", "h2", "h3"},
		Rounds: 5, MinClients: 2, Strategy: "fedavg", LocalEpochs: 1, BatchSize: 32, Lr: 0.001,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("federation %s: hospitals %v, %d rounds, %d parameters\n", f.Spec.Name, f.Spec.Clients, f.Spec.Rounds, f.NumParams)
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("leader %s, %d node(s)\n", st.LeaderId, len(st.Nodes))
	// Output:
	// federation study: hospitals [h1 h2 h3], 5 rounds, 347146 parameters
	// leader n1, 1 node(s)
}
