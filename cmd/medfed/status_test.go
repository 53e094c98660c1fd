package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
)

// TestStatusWithoutQuorum stops two of three nodes: `medfed status` on the third still
// answers, at once, with no leader, the two others unreachable, and instead of the
// federations the reason they are not shown.
func TestStatusWithoutQuorum(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, peers, c := startTestCoordinators(ctx, t, 3)
	status := func() (string, error) {
		var out bytes.Buffer
		err := runStatus(ctx, []string{"--coordinator", peers[0].GRPCAddr, "--insecure", "--json"}, &out, io.Discard)
		return out.String(), err
	}
	if out, err := status(); err != nil || !strings.Contains(out, `"name":"bc"`) {
		t.Fatalf("status with a quorum: %v\n%s", err, out)
	}

	nodes[1].Close()
	nodes[2].Close()
	for {
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.LeaderId == "" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := status()
	if err != nil {
		t.Fatalf("status without a quorum: %v", err)
	}
	var st clusterView
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	unreachable := 0
	for _, n := range st.Nodes {
		if n.State == "unreachable" {
			unreachable++
		}
	}
	if st.Leader != "" || len(st.Nodes) != 3 || unreachable != 2 || len(st.Federations) != 0 || !strings.Contains(st.FederationsError, "no leader") {
		t.Errorf("status without a quorum:\n%s", out)
	}
	var text bytes.Buffer
	if err := runStatus(ctx, []string{"--coordinator", peers[0].GRPCAddr, "--insecure"}, &text, io.Discard); err != nil || !strings.Contains(text.String(), "knows no leader") {
		t.Errorf("status text: %v\n%s", err, text.String())
	}
}

// startTestCoordinators starts an insecure cluster of n coordinator nodes on loopback,
// with short Raft timeouts, closed when the test ends. It returns the nodes, their peer
// list and a client of the first node, through which it has created the federation "bc"
// (one hospital, h1; a dense model of 30 inputs, as the breast cancer table).
func startTestCoordinators(ctx context.Context, t *testing.T, n int) ([]*coordinator.Node, []coordinator.Peer, *coordclient.Client) {
	t.Helper()
	var peers []coordinator.Peer
	for i := range n {
		peers = append(peers, coordinator.Peer{ID: fmt.Sprintf("n%d", i+1), RaftAddr: loopback.Addr(t), GRPCAddr: loopback.Addr(t)})
	}
	var nodes []*coordinator.Node
	for _, p := range peers {
		node, err := coordinator.New(coordinator.Config{
			NodeID: p.ID, DataDir: t.TempDir(), RaftAddr: p.RaftAddr, GRPCAddr: p.GRPCAddr, Insecure: true, Peers: peers,
			DriverInterval: 50 * time.Millisecond, HeartbeatTimeout: 500 * time.Millisecond,
			ElectionTimeout: 500 * time.Millisecond, LeaderLeaseTimeout: 250 * time.Millisecond,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close() })
		nodes = append(nodes, node)
	}
	c, err := coordclient.New([]string{peers[0].GRPCAddr}, coordclient.Options{MaxAttempts: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "bc", Clients: []string{"h1"}, MinClients: 1,
		ModelSpecJson: []byte(`{"input":[30],"layers":[{"type":"dense","units":2,"activation":"softmax"}]}`)}); err != nil {
		t.Fatal(err)
	}
	return nodes, peers, c
}
