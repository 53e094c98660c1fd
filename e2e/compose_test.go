package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
	"github.com/medfed/medfed/simulations"
)

// composeCmd returns the compose command line available here, or skips the test.
func composeCmd(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("the Docker daemon is unreachable: %v\n%s", err, out)
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("neither 'docker compose' nor docker-compose is available")
	return nil
}

func sh(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestComposeStack builds the FROM-scratch image from the static binary, brings up
// deploy/compose.yaml (3 coordinators, 3 hospitals with their own certificates and data),
// runs 2 encrypted rounds of the seed CNN, stops the leader's container during round 2,
// and checks that the federation still completes with every update.
func TestComposeStack(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run: skipped with -short (CI runs it in the suite's first pass)")
	}
	compose := composeCmd(t)
	bin := medfed(t)
	dir := t.TempDir()
	tag := fmt.Sprintf("medfed:e2e-%d", os.Getpid())

	// The image: the static binary and deploy/Dockerfile.
	bctx := filepath.Join(dir, "build")
	os.MkdirAll(bctx, 0o755)
	df, err := os.ReadFile("../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bctx, "Dockerfile"), df, 0o644)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bctx, "medfed"), b, 0o755)
	sh(t, bctx, nil, "docker", "build", "-q", "-t", tag, ".")
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })

	// The project: compose.yaml, certificates, data, passphrases.
	proj := filepath.Join(dir, "project")
	cy, err := os.ReadFile("../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(proj, 0o755)
	os.WriteFile(filepath.Join(proj, "compose.yaml"), cy, 0o644)
	pkiDir := filepath.Join(proj, "pki")
	run(t, bin, "pki", "init", "--out", filepath.Join(pkiDir, "ca"))
	issue := func(role, id string, extra ...string) {
		run(t, bin, append([]string{"pki", "issue", "--ca-dir", filepath.Join(pkiDir, "ca"), "--role", role, "--id", id, "--out", filepath.Join(pkiDir, "certs")}, extra...)...)
	}
	hospitals := []string{"h1", "h2", "h3"}
	for _, n := range []string{"n1", "n2", "n3"} {
		issue("coordinator", n, "--dns", n+",localhost", "--ip", "127.0.0.1")
	}
	for _, h := range hospitals {
		issue("hospital", h)
	}
	issue("operator", "op")
	train, _, err := dataset.LoadMNIST("")
	if err != nil {
		t.Skipf("MNIST not available: %v", err)
	}
	pool := train.Shuffled(3).Subset(seq(3 * 2000))
	parts, err := simulations.Partition(pool.Y, pool.Classes, 3, simulations.Scheme{Kind: simulations.Dirichlet, Alpha: 0.5}, 7)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(proj, "secrets"), 0o755)
	for i, h := range hospitals {
		if err := dataset.SaveIDX(filepath.Join(proj, "data", h), pool.Subset(parts[i]), "train"); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(proj, "secrets", h+".pass"), []byte("compose passphrase "+h+"\n"), 0o644)
	}
	// Files the containers read must be readable by them (keys are written mode 0600).
	filepath.Walk(pkiDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			os.Chmod(p, 0o644)
		}
		return nil
	})

	project := fmt.Sprintf("medfede2e%d", os.Getpid())
	env := []string{"MEDFED_IMAGE=" + tag}
	dc := func(args ...string) string {
		return sh(t, proj, env, append(append(compose, "-p", project, "-f", "compose.yaml"), args...)...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(compose[0], append(compose[1:], "-p", project, "-f", "compose.yaml", "logs", "--tail", "30")...)
			cmd.Dir, cmd.Env = proj, append(os.Environ(), env...)
			out, _ := cmd.CombinedOutput()
			t.Logf("compose logs:\n%s", out)
		}
		cmd := exec.Command(compose[0], append(compose[1:], "-p", project, "-f", "compose.yaml", "down", "-v", "-t", "1")...)
		cmd.Dir, cmd.Env = proj, append(os.Environ(), env...)
		cmd.Run()
	})
	dc("up", "-d")

	var addrs []string
	nodes := []string{"n1", "n2", "n3"}
	for _, n := range nodes {
		addrs = append(addrs, dc("port", n, "7001"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	op := consortium{dir: pkiDir}.operator(t, addrs)
	spec, _ := model.Architecture("cnn", []int{28, 28, 1}, 10)
	specJSON, _ := json.Marshal(spec)
	if _, err := op.CreateFederation(ctx, &pb.FederationSpec{
		Name: "study", ModelSpecJson: specJSON, Dataset: "mnist", Clients: hospitals, Rounds: 2, MinClients: 3,
		Threshold: 2, Secure: true, Strategy: "fedavg", LocalEpochs: 1, BatchSize: 32, Lr: 0.001, Seed: 1,
	}); err != nil {
		t.Fatalf("create federation: %v", err)
	}
	// Each node answers alone: a follower asks the leader for its read index at the
	// address the cluster recorded for it, from --grpc-peers (n1:7001), not the one it
	// listens on (0.0.0.0:7001, which would lead the follower to itself).
	for i, a := range addrs {
		one := consortium{dir: pkiDir}.operator(t, []string{a})
		if _, err := one.Federation(ctx, "study"); err != nil {
			t.Errorf("read through %s alone: %v", nodes[i], err)
		}
		st, err := one.Status(ctx)
		if err != nil {
			t.Fatalf("status of %s: %v", nodes[i], err)
		}
		for _, n := range st.Nodes {
			if n.GrpcAddr != n.Id+":7001" {
				t.Errorf("%s reports %s at %q, want %s:7001", nodes[i], n.Id, n.GrpcAddr, n.Id)
			}
		}
	}

	// Stop the leader's container during round 2, once an update of it is accepted.
	for {
		if ctx.Err() != nil {
			t.Fatal("round 2 never started")
		}
		f, err := op.Federation(ctx, "study")
		if err == nil && len(f.Rounds) >= 2 && (len(f.Rounds[1].Contributions) > 0 || f.Rounds[1].State != pb.RoundState_ROUND_STATE_OPEN) {
			st, err := op.Status(ctx)
			if err == nil && st.LeaderId != "" {
				t.Logf("stopping the leader's container %s in round 2 (%v, %d updates accepted)", st.LeaderId, f.Rounds[1].State, len(f.Rounds[1].Contributions))
				dc("stop", "-t", "0", st.LeaderId)
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, h := range hospitals {
		id := dc("ps", "-q", h)
		for {
			out := sh(t, proj, nil, "docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id)
			if strings.HasPrefix(out, "exited") {
				if out != "exited 0" {
					t.Fatalf("%s: %s", h, out)
				}
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s did not finish: %s", h, out)
			}
			time.Sleep(time.Second)
		}
	}
	f, err := op.Federation(ctx, "study")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Done || len(f.Rounds) != 2 {
		t.Fatalf("done=%v after %d rounds", f.Done, len(f.Rounds))
	}
	for _, ri := range f.Rounds {
		if ri.State != pb.RoundState_ROUND_STATE_PUBLISHED || len(ri.Contributions) != 3 {
			t.Errorf("round %d %v with %d contributions, want published with 3", ri.Round, ri.State, len(ri.Contributions))
		}
	}
}
