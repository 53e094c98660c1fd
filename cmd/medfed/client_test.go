package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
)

func TestClientBadFlags(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("a long enough passphrase\n"), 0o600)
	base := []string{"--coordinator", "127.0.0.1:1", "--client-id", "h1", "--federation", "f", "--dataset", "mnist", "--insecure", "--passphrase-file", pass}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing", nil, "missing --client-id, --coordinator, --dataset, --federation"},
		{"bad dataset", append(base[:6:6], "--dataset", "dicom", "--insecure", "--passphrase-file", pass), `--dataset "dicom"`},
		{"idx without dir", append(base[:6:6], "--dataset", "idx", "--insecure", "--passphrase-file", pass), "needs --data-dir"},
		{"no tls", append(base[:8:8], "--passphrase-file", pass), "mutual TLS needs"},
		{"tls and insecure", append(base, "--tls-ca", "x"), "exclude each other"},
		{"no secret", base[:9], "exactly one of --age-identity and --passphrase-file"},
		{"both secrets", append(base, "--age-identity", "x"), "exactly one of"},
		{"csv label elsewhere", append(base, "--csv-label", "y"), "--csv-label applies"},
		{"negative budget", append(base, "--epsilon-budget", "-2"), "--epsilon-budget -2: expected"},
		{"NaN budget", append(base, "--epsilon-budget", "NaN"), "--epsilon-budget NaN: expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := runClient(context.Background(), tc.args, io.Discard, &stderr)
			if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("got %v, want a usage error saying %q; stderr:\n%s", err, tc.want, stderr.String())
			}
		})
	}
	// Files that do not exist or do not hold what they should are errors, not usage errors.
	for _, args := range [][]string{
		append(base[:9:9], "--age-identity", filepath.Join(dir, "missing")),
		append(base[:9:9], "--passphrase-file", filepath.Join(dir, "missing")),
	} {
		if err := runClient(context.Background(), args, io.Discard, io.Discard); err == nil || errors.Is(err, errUsage) {
			t.Errorf("%v: got %v, want a file error", args, err)
		}
	}
}

// TestClientCommand runs the real command against a one-node coordinator: a plaintext
// federation of one hospital on a CSV table, two rounds, with --json output.
func TestClientCommand(t *testing.T) {
	raftAddr, grpcAddr := loopback.Addr(t), loopback.Addr(t)
	node, err := coordinator.New(coordinator.Config{
		NodeID: "n1", DataDir: t.TempDir(), RaftAddr: raftAddr, GRPCAddr: grpcAddr, Insecure: true,
		Peers:          []coordinator.Peer{{ID: "n1", RaftAddr: raftAddr, GRPCAddr: grpcAddr}},
		DriverInterval: 50 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := coordclient.New([]string{grpcAddr}, coordclient.Options{MaxAttempts: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "bc", Clients: []string{"h1"}, MinClients: 1, Rounds: 2, LocalEpochs: 1, BatchSize: 32, Lr: 0.01,
		ModelSpecJson: []byte(`{"input":[30],"layers":[{"type":"dense","units":2,"activation":"softmax"}]}`),
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bc, err := dataset.LoadBreastCancer("")
	if err != nil {
		t.Fatal(err)
	}
	bc.ClassNames = nil
	var csv bytes.Buffer
	if err := dataset.WriteCSV(&csv, bc, "diagnosis"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "train.csv"), csv.Bytes(), 0o600)
	os.WriteFile(filepath.Join(dir, "pass"), []byte("a long enough passphrase\n"), 0o600)
	var stdout, stderr syncBuffer
	err = runClient(ctx, []string{"--coordinator", grpcAddr, "--client-id", "h1", "--federation", "bc",
		"--dataset", "csv", "--data-dir", dir, "--csv-label", "diagnosis", "--state-dir", filepath.Join(dir, "state"),
		"--insecure", "--passphrase-file", filepath.Join(dir, "pass"), "--poll", "50ms", "--json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var out struct {
		Client string `json:"client"`
		Rounds []struct {
			Round     uint64  `json:"round"`
			Samples   int     `json:"samples"`
			TrainAcc  float64 `json:"train_accuracy"`
			Published uint64  `json:"published_version"`
		} `json:"rounds"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil {
		t.Fatalf("--json output %q: %v", stdout.String(), err)
	}
	if len(out.Rounds) != 2 || out.Rounds[1].Published != 2 || out.Rounds[0].Samples != 569 {
		t.Fatalf("report %+v, want 2 published rounds of 569 samples", out)
	}
	if out.Rounds[1].TrainAcc < 0.9 {
		t.Errorf("round 2 training accuracy %.3f, want >= 0.9 on standardised features", out.Rounds[1].TrainAcc)
	}
}
