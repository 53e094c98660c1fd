package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
)

// TestClusterAddRemove grows a one-node cluster with a node started by `medfed coordinator
// --join` and `medfed cluster add`, restarts the new node with the same flags, and takes
// it out again with `medfed cluster remove`; an unknown node and the last one are refused.
func TestClusterAddRemove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, peers, _ := startTestCoordinators(ctx, t, 1)
	g1 := peers[0].GRPCAddr

	r2, g2 := loopback.Addr(t), loopback.Addr(t)
	joinArgs := []string{"--node-id", "n2", "--data-dir", t.TempDir(), "--raft-addr", r2, "--grpc-addr", g2, "--join", "--insecure", "--log-level", "warn"}
	start := func() (stop func()) {
		nctx, ncancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- runCoordinator(nctx, joinArgs, io.Discard, io.Discard) }()
		return func() {
			ncancel()
			if err := <-done; err != nil {
				t.Errorf("n2: %v", err)
			}
		}
	}
	stop := start()
	defer func() { stop() }()
	c2, err := coordclient.New([]string{g2}, coordclient.Options{MaxAttempts: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	waitLeader := func(want string) {
		t.Helper()
		for {
			st, err := c2.Status(ctx)
			if err == nil && st.LeaderId == want {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("n2 never saw leader %q: %v, %v", want, st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLeader("") // serving, and waiting to be added

	cli := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runCluster(ctx, append(args, "--coordinator", g1, "--insecure"), &out, &errb)
		if err != nil {
			t.Logf("cluster %v: %v\n%s", args, err, errb.String())
		}
		return out.String(), err
	}
	out, err := cli("add", "--id", "n2", "--raft-addr", r2, "--grpc-addr", g2, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var mv membershipView
	if err := json.Unmarshal([]byte(out), &mv); err != nil || mv.Leader != "n1" || len(mv.Nodes) != 2 {
		t.Fatalf("cluster add --json: %+v, %v\n%s", mv, err, out)
	}
	waitLeader("n1")
	if _, err := c2.Federation(ctx, "bc"); err != nil {
		t.Errorf("n2 after joining: %v", err)
	}

	// A restart with the same flags finds the membership in the data dir.
	stop()
	stop = start()
	waitLeader("n1")
	if _, err := c2.Enrol(ctx, &pb.EnrolRequest{Federation: "bc", ClientId: "h1"}); err != nil {
		t.Errorf("enrol through the restarted n2: %v", err)
	}

	if _, err := cli("remove", "--id", "n9"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("remove an unknown node: %v, want NotFound", err)
	}
	out, err = cli("remove", "--id", "n2")
	if err != nil || !strings.Contains(out, "node n2 removed from the cluster") || strings.Contains(out, "\n  n2 ") {
		t.Errorf("cluster remove: %v\n%s", err, out)
	}
	out, err = cli("remove", "--id", "n2")
	if err != nil || !strings.Contains(out, "node n2 was not in the cluster") {
		t.Errorf("cluster remove again: %v\n%s", err, out)
	}
	if _, err := cli("remove", "--id", "n1"); err == nil || !strings.Contains(err.Error(), "FailedPrecondition") {
		t.Errorf("remove the last node: %v, want FailedPrecondition", err)
	}
}

func TestClusterBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"grow"},
		{"add", "--coordinator", "127.0.0.1:1", "--insecure", "--id", "n2", "--grpc-addr", "127.0.0.1:2"},
		{"remove", "--coordinator", "127.0.0.1:1", "--insecure"},
		{"remove", "--id", "n2", "--insecure"},
		{"add", "--coordinator", "127.0.0.1:1", "--insecure", "--id", "n2", "--raft-addr", "127.0.0.1:70O4", "--grpc-addr", "127.0.0.1:2"},
		{"add", "--coordinator", "127.0.0.1:1", "--insecure", "--id", "n2", "--raft-addr", "127.0.0.1:1", "--grpc-addr", ":8004"},
		{"add", "--coordinator", "127.0.0.1:1", "--insecure", "--id", "n2", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "0.0.0.0:8004"},
		{"add", "--coordinator", "127.0.0.1:1", "--insecure", "--id", "n2", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:70000"},
	} {
		if err := runCluster(context.Background(), args, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("cluster %v: got %v, want a usage error", args, err)
		}
	}
	base := []string{"--node-id", "n2", "--data-dir", t.TempDir(), "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--insecure", "--join"}
	for _, extra := range [][]string{{"--peers", "n1=127.0.0.1:3"}, {"--grpc-peers", "n1=127.0.0.1:4"}} {
		if _, _, err := coordinatorConfig(append(base, extra...), io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("coordinator --join %v: got %v, want a usage error", extra, err)
		}
	}
	if _, _, err := coordinatorConfig(base, io.Discard); err != nil {
		t.Errorf("coordinator --join: %v", err)
	}
}
