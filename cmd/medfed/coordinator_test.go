package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/pb"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the node's logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCoordinatorCommand runs a one-node cluster with the real command, checks /healthz and
// /metrics, creates a federation, stops the node by cancelling its context (what SIGTERM
// does in main) and restarts it with the same flags: the federation is still there.
func TestCoordinatorCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	raftAddr, grpcAddr, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	args := []string{"--node-id", "n1", "--data-dir", dir, "--raft-addr", raftAddr, "--grpc-addr", grpcAddr,
		"--http-addr", httpAddr, "--peers", "n1=" + raftAddr, "--grpc-peers", "n1=" + grpcAddr, "--insecure"}

	start := func() (context.CancelFunc, chan error, *syncBuffer) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var stderr syncBuffer
		go func() { done <- runCoordinator(ctx, args, io.Discard, &stderr) }()
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get("http://" + httpAddr + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("node never became healthy: %v\n%s", err, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return cancel, done, &stderr
	}

	cancel, done, stderr := start()
	if !strings.Contains(stderr.String(), "WITHOUT TLS") {
		t.Errorf("no warning about --insecure in:\n%s", stderr.String())
	}
	c, err := coordclient.New([]string{grpcAddr}, coordclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancelCtx := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelCtx()
	spec := &pb.FederationSpec{Name: "study", Clients: []string{"h1"}, MinClients: 1,
		ModelSpecJson: []byte(`{"input":[4],"layers":[{"type":"dense","units":2,"activation":"softmax"}]}`)}
	if _, err := c.CreateFederation(ctx, spec); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"medfed_coordinator_is_leader 1", `medfed_coordinator_model_version{federation="study"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	cancel, done, _ = start()
	defer func() {
		cancel()
		<-done
	}()
	// The restarted node replays its log once it has been elected; until then it may answer
	// from older state.
	var f *pb.Federation
	for f == nil {
		if f, err = c.Federation(ctx, "study"); err != nil && ctx.Err() != nil {
			t.Fatalf("after restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if f.NumParams != 10 {
		t.Errorf("num_params %d, want 10", f.NumParams)
	}
}

func TestCoordinatorBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1=127.0.0.1:1"},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1", "--insecure"},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1=127.0.0.1:1", "--insecure", "--tls-ca", "x"},
	} {
		var stderr bytes.Buffer
		err := runCoordinator(context.Background(), args, io.Discard, &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: got %v, want a usage error", args, err)
		}
	}
}
