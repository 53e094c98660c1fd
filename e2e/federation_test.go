package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
	"github.com/medfed/medfed/simulations"
)

// federationRun is one federation run across processes.
type federationRun struct {
	name      string
	secure    bool
	killRound uint64 // kill the leader during this round; 0: no kill
}

type scale struct {
	clients, rounds, perClient, testSamples int
	killRound                               uint64
	minAcc, maxGap                          float64
}

func scaleNow() scale {
	if long() {
		// Issue 5's acceptance run.
		return scale{clients: 5, rounds: 5, perClient: 12000, testSamples: 10000, killRound: 3, minAcc: 0.97, maxGap: 0.005}
	}
	return scale{clients: 3, rounds: 2, perClient: 3000, testSamples: 2000, killRound: 2, minAcc: 0.85, maxGap: 0.01}
}

// TestFederationAcrossProcesses runs 3 coordinator processes and N hospital client
// processes on loopback with mutual TLS: the seed CNN on Dirichlet(0.5) MNIST partitions,
// encrypted aggregation, the leader killed (SIGKILL) during a round with updates already
// accepted. The run must complete with every update in every round, every update accepted
// before the kill still there, and a global accuracy within maxGap of the same run in
// plaintext mode.
func TestFederationAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run: skipped with -short (CI runs it in the suite's first pass)")
	}
	bin := medfed(t)
	sc := scaleNow()
	dir := t.TempDir()
	var hospitals []string
	for i := range sc.clients {
		hospitals = append(hospitals, fmt.Sprintf("h%d", i+1))
	}
	test := prepareData(t, dir, hospitals, sc)
	pk := newConsortium(t, bin, dir, 3, hospitals)
	cl := startCluster(t, bin, pk, dir, 3)
	timeout := 4 * time.Minute
	if long() {
		timeout = 40 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	op := pk.operator(t, cl.grpc)

	var accs []float64
	for _, fr := range []federationRun{{name: "secure", secure: true, killRound: sc.killRound}, {name: "plain"}} {
		acc, reports := runFederation(t, ctx, bin, pk, cl, op, dir, hospitals, test, sc, fr)
		t.Logf("%s: global test accuracy %.4f on %d samples", fr.name, acc, test.Len())
		for _, h := range hospitals {
			for _, r := range reports[h] {
				t.Logf("%s %s round %d: train %.1fs, encrypt %.2fs, upload %.2fs, share %.2fs, update %.1f MB, share %.1f MB",
					fr.name, h, r.Round, r.TrainSeconds, r.EncryptSeconds, r.UploadSeconds, r.ShareSeconds, float64(r.UpdateBytes)/1e6, float64(r.ShareBytes)/1e6)
			}
		}
		if acc < sc.minAcc {
			t.Errorf("%s: accuracy %.4f, want >= %.2f", fr.name, acc, sc.minAcc)
		}
		accs = append(accs, acc)
	}
	if gap := math.Abs(accs[0] - accs[1]); gap > sc.maxGap {
		t.Errorf("encrypted accuracy %.4f, plaintext %.4f: gap %.4f, want <= %.3f", accs[0], accs[1], gap, sc.maxGap)
	}
}

// prepareData writes each hospital's Dirichlet(0.5) share of an MNIST sample as the IDX
// pair medfed client --dataset idx reads, and returns the test set.
func prepareData(t *testing.T, dir string, hospitals []string, sc scale) *dataset.Set {
	t.Helper()
	train, test, err := dataset.LoadMNIST("")
	if err != nil {
		t.Skipf("MNIST not available: %v", err)
	}
	pool := train.Shuffled(1).Subset(seq(min(train.Len(), sc.perClient*len(hospitals))))
	parts, err := simulations.Partition(pool.Y, pool.Classes, len(hospitals), simulations.Scheme{Kind: simulations.Dirichlet, Alpha: 0.5}, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hospitals {
		s := pool.Subset(parts[i])
		if err := dataset.SaveIDX(filepath.Join(dir, "data", h), s, "train"); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d samples, labels %v", h, s.Len(), s.ClassCounts())
	}
	os.WriteFile(filepath.Join(dir, "passphrase"), []byte("e2e test passphrase\n"), 0o600)
	return test.Shuffled(2).Subset(seq(min(test.Len(), sc.testSamples)))
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

type roundReport struct {
	Round          uint64  `json:"round"`
	TrainSeconds   float64 `json:"train_seconds"`
	EncryptSeconds float64 `json:"encrypt_seconds"`
	UploadSeconds  float64 `json:"upload_seconds"`
	ShareSeconds   float64 `json:"share_seconds"`
	UpdateBytes    int     `json:"update_bytes"`
	ShareBytes     int     `json:"share_bytes"`
}

func runFederation(t *testing.T, ctx context.Context, bin string, pk consortium, cl *cluster, op *coordclient.Client,
	dir string, hospitals []string, test *dataset.Set, sc scale, fr federationRun) (float64, map[string][]roundReport) {
	t.Helper()
	spec, err := model.Architecture("cnn", []int{28, 28, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	specJSON, _ := json.Marshal(spec)
	threshold := uint32(len(hospitals)/2 + 1)
	if _, err := op.CreateFederation(ctx, &pb.FederationSpec{
		Name: fr.name, ModelSpecJson: specJSON, Dataset: "mnist", Clients: hospitals, Rounds: uint32(sc.rounds),
		MinClients: uint32(len(hospitals)), Threshold: threshold, Secure: fr.secure, Strategy: "fedavg",
		LocalEpochs: 1, BatchSize: 32, Lr: 0.001, Seed: 1, RoundTimeoutMs: uint64(10 * time.Minute / time.Millisecond),
	}); err != nil {
		t.Fatalf("create federation %s: %v", fr.name, err)
	}
	var clients []*proc
	for _, h := range hospitals {
		args := []string{"client", "--coordinator", strings.Join(cl.grpc, ","), "--client-id", h, "--federation", fr.name,
			"--dataset", "idx", "--data-dir", filepath.Join(dir, "data", h), "--state-dir", filepath.Join(dir, "state", fr.name, h),
			"--passphrase-file", filepath.Join(dir, "passphrase"), "--json"}
		clients = append(clients, start(t, bin, fr.name+"-"+h, dir, append(args, pk.tlsArgs(h)...)...))
	}

	// Kill the leader during killRound, once at least one update of it is accepted.
	accepted := map[string]*pb.Contribution{}
	if fr.killRound > 0 {
		for {
			if ctx.Err() != nil {
				t.Fatalf("%s: round %d never started", fr.name, fr.killRound)
			}
			f, err := op.Federation(ctx, fr.name)
			if err == nil && len(f.Rounds) >= int(fr.killRound) {
				ri := f.Rounds[fr.killRound-1]
				if len(ri.Contributions) > 0 || ri.State != pb.RoundState_ROUND_STATE_OPEN {
					for _, c := range ri.Contributions {
						accepted[c.ClientId] = c
					}
					i := cl.leader(t, ctx, op)
					t.Logf("%s: killing leader %s in round %d (%v, %d updates accepted)", fr.name, cl.ids[i], ri.Round, ri.State, len(ri.Contributions))
					cl.procs[i].kill()
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	reports := map[string][]roundReport{}
	for i, p := range clients {
		select {
		case <-p.done:
		case <-ctx.Done():
			t.Fatalf("%s: client %s did not finish", fr.name, hospitals[i])
		}
		if p.err != nil {
			t.Fatalf("%s: client %s: %v", fr.name, hospitals[i], p.err)
		}
		b, _ := os.ReadFile(p.log)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "{") {
				var out struct {
					Rounds []roundReport `json:"rounds"`
				}
				if err := json.Unmarshal([]byte(line), &out); err == nil {
					reports[hospitals[i]] = out.Rounds
				}
			}
		}
	}

	f, err := op.Federation(ctx, fr.name)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Done || len(f.Rounds) != sc.rounds {
		t.Fatalf("%s: done=%v after %d rounds, want %d", fr.name, f.Done, len(f.Rounds), sc.rounds)
	}
	for _, ri := range f.Rounds {
		if ri.State != pb.RoundState_ROUND_STATE_PUBLISHED || len(ri.Contributions) != len(hospitals) {
			t.Errorf("%s: round %d %v with %d contributions, want published with %d", fr.name, ri.Round, ri.State, len(ri.Contributions), len(hospitals))
		}
		if ri.Round != fr.killRound {
			continue
		}
		// No update lost: everything accepted before the kill is in the round as accepted.
		for _, c := range ri.Contributions {
			if a := accepted[c.ClientId]; a != nil && (a.Index != c.Index || string(a.Digest) != string(c.Digest)) {
				t.Errorf("%s: %s's update accepted at index %d before the kill is now %d", fr.name, c.ClientId, a.Index, c.Index)
			}
			delete(accepted, c.ClientId)
		}
		if len(accepted) > 0 {
			t.Errorf("%s: updates accepted before the kill are missing: %v", fr.name, accepted)
		}
	}
	_, wb, err := op.FetchModel(ctx, fr.name, 0, "f32")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Build(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := make([]float32, len(wb)/4)
	for i := range w {
		w[i] = math.Float32frombits(binary.LittleEndian.Uint32(wb[4*i:]))
	}
	if err := m.SetFlat(w); err != nil {
		t.Fatal(err)
	}
	_, acc, err := m.Evaluate(test.X, test.Y, test.Len(), model.SparseCategoricalCrossentropy)
	if err != nil {
		t.Fatal(err)
	}
	return acc, reports
}
