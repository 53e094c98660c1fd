package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
)

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
// /metrics, creates a federation and runs its round, predicts with the published model over
// the node's HTTP port (medfed predict with a token from --inference-tokens), stops the node
// by cancelling its context (what SIGTERM does in main) and restarts it with the same
// flags: the federation is still there, and so is the served model.
func TestCoordinatorCommand(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "n1")
	const token = "predict-token-0123456789abcdef"
	tokenFile := filepath.Join(tmp, "tokens")
	if err := os.WriteFile(tokenFile, []byte("# inference callers\napp "+inference.HashToken(token)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	csvFile := filepath.Join(tmp, "in.csv")
	if err := os.WriteFile(csvFile, []byte("a,b,c,d\n1,0,0,0\n0,0,0,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	raftAddr, grpcAddr, httpAddr := loopback.Addr(t), loopback.Addr(t), loopback.Addr(t)
	args := []string{"--node-id", "n1", "--data-dir", dir, "--raft-addr", raftAddr, "--grpc-addr", grpcAddr,
		"--http-addr", httpAddr, "--peers", "n1=" + raftAddr, "--grpc-peers", "n1=" + grpcAddr, "--insecure",
		"--inference-tokens", tokenFile, "--inference-retain", "2"}
	predict := func() string {
		t.Helper()
		var out, errb bytes.Buffer
		// The node publishes to its registry a moment after the round commits.
		deadline := time.Now().Add(60 * time.Second)
		for {
			out.Reset()
			errb.Reset()
			err := runPredict(context.Background(), []string{"--coordinator", httpAddr, "--insecure", "--token", token,
				"--model", "study", "--input", csvFile, "--json"}, &out, &errb)
			if err == nil {
				return out.String()
			}
			if time.Now().After(deadline) {
				t.Fatalf("predict: %v\n%s", err, errb.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

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
	if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "study", ClientId: "h1"}); err != nil {
		t.Fatal(err)
	}
	for {
		ri, err := c.Round(ctx, "study", 1)
		if err == nil && ri.State == pb.RoundState_ROUND_STATE_OPEN {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("round 1 never opened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "study", Round: 1, ClientID: "h1", Samples: 5,
		Data: coordinator.EncodeFloat32s([]float32{1, -1, 0, 0, 0, 0, 1, -1, 0.5, -0.5})}); err != nil {
		t.Fatal(err)
	}
	var pred struct {
		Model       string
		Version     string
		Predictions []struct{ Class int }
	}
	if err := json.Unmarshal([]byte(predict()), &pred); err != nil {
		t.Fatal(err)
	}
	if pred.Model != "study" || pred.Version != "1" || len(pred.Predictions) != 2 {
		t.Errorf("predict: %+v, want model study version 1 with 2 predictions", pred)
	}
	// Without the token: refused.
	resp, err := http.Post("http://"+httpAddr+"/v2/models/study/infer", "application/json",
		strings.NewReader(`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,0,0,0]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("infer without a token: HTTP %d, want 401", resp.StatusCode)
	}
	resp, err = http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"medfed_coordinator_is_leader 1", `medfed_coordinator_model_version{federation="study"} 1`, `medfed_inference_requests_total{caller="token/app",protocol="rest",endpoint="infer",code="ok"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	// The accepted update's time, split into receiving and committing, each above zero.
	for _, name := range []string{"medfed_coordinator_update_receive_seconds_total", "medfed_coordinator_update_commit_seconds_total"} {
		var v float64
		for _, line := range strings.Split(string(body), "\n") {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				v, _ = strconv.ParseFloat(rest, 64)
			}
		}
		if v <= 0 {
			t.Errorf("/metrics gives %s %v, want above 0", name, v)
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
	if err := json.Unmarshal([]byte(predict()), &pred); err != nil || pred.Version != "1" {
		t.Errorf("predict after restart: %+v %v, want version 1", pred, err)
	}
}

func TestCoordinatorBadTokenFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(bad, []byte("app not-a-hash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--node-id", "n1", "--data-dir", t.TempDir(), "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2",
		"--peers", "n1=127.0.0.1:1", "--insecure", "--inference-tokens", bad}
	err := runCoordinator(context.Background(), args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--inference-tokens") || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad token file: got %v, want an error naming the flag and the line", err)
	}
}

func TestCoordinatorBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1=127.0.0.1:1"},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1", "--insecure"},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1=127.0.0.1:1", "--insecure", "--tls-ca", "x"},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1=127.0.0.1:1", "--insecure", "--inference-retain", "-1"},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1=127.0.0.1:1", "--insecure", "--ceremony-timeout", "-1m"},
		{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--peers", "n1=127.0.0.1:1", "--insecure", "--ceremony-timeout", "soon"},
	} {
		var stderr bytes.Buffer
		err := runCoordinator(context.Background(), args, io.Discard, &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: got %v, want a usage error", args, err)
		}
	}
}

func TestCoordinatorDurabilityFlags(t *testing.T) {
	args := []string{"--node-id", "n1", "--data-dir", "d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2",
		"--peers", "n1=127.0.0.1:1", "--insecure", "--sync-updates", "--ceremony-timeout", "45m", "--raft-dir", "/log/n1"}
	cfg, _, err := coordinatorConfig(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.SyncUpdates || cfg.CeremonyTimeout != 45*time.Minute || cfg.RaftDir != "/log/n1" {
		t.Fatalf("SyncUpdates %v, CeremonyTimeout %v, RaftDir %q; want true, 45m and /log/n1", cfg.SyncUpdates, cfg.CeremonyTimeout, cfg.RaftDir)
	}
}
