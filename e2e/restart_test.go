package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// clientArgs are the medfed client flags of hospital h in federation fed.
func clientArgs(pk consortium, cl *cluster, dir, fed, h string) []string {
	args := []string{"client", "--coordinator", strings.Join(cl.grpc, ","), "--client-id", h, "--federation", fed,
		"--dataset", "idx", "--data-dir", filepath.Join(dir, "data", h), "--state-dir", filepath.Join(dir, "state", fed, h),
		"--passphrase-file", filepath.Join(dir, "passphrase"), "--json", "--poll", "100ms"}
	return append(args, pk.tlsArgs(h)...)
}

// waitLog waits until a line of p's log matches re, and returns it; it fails the test
// if p exits or ctx ends first.
func waitLog(t *testing.T, ctx context.Context, p *proc, re *regexp.Regexp) string {
	t.Helper()
	for {
		b, _ := os.ReadFile(p.log)
		if m := re.Find(b); m != nil {
			return string(m)
		}
		if p.exited() {
			t.Fatalf("%s exited (%v) before logging %q", p.name, p.err, re)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never logged %q", p.name, re)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitWritten waits until path exists and then has been written after it (the node
// saves its state after the update file, and sends the update after both).
func waitWritten(t *testing.T, ctx context.Context, p *proc, path, then string) {
	t.Helper()
	for {
		a, err1 := os.Stat(path)
		b, err2 := os.Stat(then)
		if err1 == nil && err2 == nil && b.ModTime().After(a.ModTime()) {
			return
		}
		if p.exited() {
			t.Fatalf("%s exited (%v) before writing %s and then %s", p.name, p.err, path, then)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never wrote %s", p.name, path)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func waitExit(t *testing.T, ctx context.Context, p *proc) {
	t.Helper()
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("%s did not finish", p.name)
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.name, p.err)
	}
}

// TestClientKilledAndRestarted runs one coordinator process and three hospital client
// processes (mutual TLS, the seed CNN on small Dirichlet(0.5) MNIST shares, encrypted
// aggregation, 2 rounds). Hospital h2 is killed (SIGKILL) while it trains in round 1,
// h3 the moment its encrypted round-2 update is on disk and recorded in its state (before
// or while it uploads);
// both restart with the same --state-dir. The run must complete with every round
// published holding exactly one update from each hospital, the restarted nodes must
// resume without a second key ceremony, and h3's resent update must be acknowledged
// with the contribution the round holds (the coordinator's idempotent answer when the
// first upload got through).
func TestClientKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run: skipped with -short (CI runs it in the suite's first pass)")
	}
	bin := medfed(t)
	sc := scale{clients: 3, rounds: 2, perClient: 1500, testSamples: 10}
	dir := t.TempDir()
	hospitals := []string{"h1", "h2", "h3"}
	prepareData(t, dir, hospitals, sc)
	pk := newConsortium(t, bin, dir, 1, hospitals)
	cl := startCluster(t, bin, pk, dir, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	op := pk.operator(t, cl.grpc)
	createCNNFederation(t, ctx, op, "restart", hospitals, sc.rounds, len(hospitals), 2, 0)

	procs := map[string]*proc{}
	for _, h := range hospitals {
		procs[h] = start(t, bin, "restart-"+h, dir, clientArgs(pk, cl, dir, "restart", h)...)
	}

	// h2: killed while it trains round 1, that is after its "training" line and before
	// its update is accepted.
	waitLog(t, ctx, procs["h2"], regexp.MustCompile(`msg=training .*round=1 `))
	procs["h2"].kill()
	if b, _ := os.ReadFile(procs["h2"].log); strings.Contains(string(b), `msg="update accepted"`) {
		t.Fatal("h2 finished training before it was killed: the test did not kill it during training")
	}
	t.Log("h2 killed while training round 1")
	h2 := start(t, bin, "restart-h2-again", dir, clientArgs(pk, cl, dir, "restart", "h2")...)

	// h3: killed as soon as its encrypted round-2 update and the state recording it are
	// saved, that is before or while it uploads the update.
	h3dir := filepath.Join(dir, "state", "restart", "h3")
	waitWritten(t, ctx, procs["h3"], filepath.Join(h3dir, "round-2.update.age"), filepath.Join(h3dir, "state.age"))
	procs["h3"].kill()
	t.Log("h3 killed with its round-2 update on disk")
	h3 := start(t, bin, "restart-h3-again", dir, clientArgs(pk, cl, dir, "restart", "h3")...)

	for _, p := range []*proc{procs["h1"], h2, h3} {
		waitExit(t, ctx, p)
	}

	f, err := op.Federation(ctx, "restart")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Done || len(f.Rounds) != sc.rounds {
		t.Fatalf("done=%v after %d rounds, want %d", f.Done, len(f.Rounds), sc.rounds)
	}
	for _, ri := range f.Rounds {
		seen := map[string]int{}
		for _, c := range ri.Contributions {
			seen[c.ClientId]++
		}
		if ri.State != pb.RoundState_ROUND_STATE_PUBLISHED || len(ri.Contributions) != len(hospitals) || len(seen) != len(hospitals) {
			t.Errorf("round %d: %v with contributions %v, want published with one from each of %v", ri.Round, ri.State, seen, hospitals)
		}
	}
	for _, p := range []*proc{h2, h3} {
		if b, _ := os.ReadFile(p.log); !strings.Contains(string(b), "resuming from the state directory") {
			t.Errorf("%s did not resume from its state directory", p.name)
		}
	}
	// h3 either resent the saved bytes, and the acknowledgement names the contribution the
	// round holds, or found its update already committed and sent nothing.
	b, _ := os.ReadFile(h3.log)
	if regexp.MustCompile(`msg=training .*round=2 `).Match(b) {
		t.Error("h3 trained round 2 again after the restart instead of resending its saved update")
	}
	if strings.Contains(string(b), "resending the update saved before a restart") {
		m := regexp.MustCompile(`msg="update accepted" .*round=2 .*index=(\d+)`).FindSubmatch(b)
		if m == nil {
			t.Fatal("h3 resent its round-2 update and logged no acknowledgement")
		}
		idx, _ := strconv.ParseUint(string(m[1]), 10, 64)
		for _, c := range f.Rounds[1].Contributions {
			if c.ClientId == "h3" && c.Index != idx {
				t.Errorf("h3's acknowledgement names index %d, the round holds its update at %d", idx, c.Index)
			}
		}
		t.Logf("h3 resent its saved round-2 update; acknowledged at index %d", idx)
	} else {
		t.Log("h3's round-2 update was committed before the kill; the restarted node sent nothing")
	}
}

// createCNNFederation creates a federation training the seed CNN on MNIST; roundTimeout 0
// means 10 minutes.
func createCNNFederation(t *testing.T, ctx context.Context, op *coordclient.Client, name string, hospitals []string,
	rounds, minClients, threshold int, roundTimeout time.Duration) {
	t.Helper()
	spec, err := model.Architecture("cnn", []int{28, 28, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	specJSON, _ := json.Marshal(spec)
	if roundTimeout == 0 {
		roundTimeout = 10 * time.Minute
	}
	if _, err := op.CreateFederation(ctx, &pb.FederationSpec{
		Name: name, ModelSpecJson: specJSON, Dataset: "mnist", Clients: hospitals, Rounds: uint32(rounds),
		MinClients: uint32(minClients), Threshold: uint32(threshold), Secure: threshold > 0, Strategy: "fedavg",
		LocalEpochs: 1, BatchSize: 32, Lr: 0.001, Seed: 1, RoundTimeoutMs: uint64(roundTimeout / time.Millisecond),
	}); err != nil {
		t.Fatalf("create federation %s: %v", name, err)
	}
}
