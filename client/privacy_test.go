package client

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medfed/medfed/internal/pb"
)

// TestPrivacyBudgetEndsFederation runs two hospitals with differential privacy in
// plaintext mode (z = sqrt(2), so that each update, which the coordinator sees, carries
// noise of multiplier 1; budget epsilon 8 at delta 1e-5; 5 rounds asked for) against a
// real coordinator: the
// coordinator ends the federation after the two rounds the budget allows (epsilon 7.09; a
// third would spend 9.02), and each hospital's node finishes without an error, having
// contributed clipped and noised updates to exactly those two rounds.
func TestPrivacyBudgetEndsFederation(t *testing.T) {
	addr := startCoordinator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names := []string{"h1", "h2"}
	c := createFederation(t, ctx, addr, &pb.FederationSpec{
		Name: "study", ModelSpecJson: denseSpec(t), Clients: names, Rounds: 5, MinClients: 2,
		Strategy: "fedavg", LocalEpochs: 1, BatchSize: 16, Lr: 0.05, Seed: 3,
		DpNoiseMultiplier: math.Sqrt2, DpClipNorm: 1, DpEpsilonBudget: 8,
	})
	reports := runHospitals(t, ctx, addr, names, nil)
	f, err := c.Federation(ctx, "study")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Done || len(f.Rounds) != 2 || !strings.Contains(f.DoneReason, "privacy budget spent") {
		t.Fatalf("federation: done %v after %d rounds, reason %q", f.Done, len(f.Rounds), f.DoneReason)
	}
	for i, reps := range reports {
		if len(reps) != 2 || reps[0].Published != 1 || reps[1].Published != 2 {
			t.Errorf("%s reports %+v, want rounds 1 and 2 contributed and published", names[i], reps)
		}
	}
}

// TestHospitalPrivacyBudget: a hospital with its own epsilon budget (8, which allows two
// rounds at the accounted noise multiplier of 1) in a federation with differential
// privacy but no budget of its own, 4 rounds of 3 hospitals with min_clients 2, h2 and h3
// started once h1 has enrolled (so that round 1 selects it). The
// coordinator keeps opening rounds; h1 sends no update to round 3 and says why; the others
// finish the round without it; left out of selection for round 4 (it missed round 3), h1
// does not enrol again.
func TestHospitalPrivacyBudget(t *testing.T) {
	addr := startCoordinator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names := []string{"h1", "h2", "h3"}
	c := createFederation(t, ctx, addr, &pb.FederationSpec{
		Name: "study", ModelSpecJson: denseSpec(t), Clients: names, Rounds: 4, MinClients: 2,
		Strategy: "fedavg", LocalEpochs: 1, BatchSize: 16, Lr: 0.05, Seed: 3, RoundTimeoutMs: 3000,
		DpNoiseMultiplier: math.Sqrt2, DpClipNorm: 1,
	})
	reports := runHospitals(t, ctx, addr, names, func(cfg *Config) {
		if cfg.ClientID == "h1" {
			cfg.EpsilonBudget = 8
			return
		}
		// The others start once h1 has enrolled, so that round 1 (opened when two have)
		// selects h1; a round seals when all it selected are in, so h1 is in rounds 1-2.
		for {
			f, err := c.Federation(ctx, "study")
			if err != nil {
				t.Error(err)
				return
			}
			if slices.ContainsFunc(f.Enrolled, func(e *pb.Enrolment) bool { return e.ClientId == "h1" }) {
				return
			}
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				t.Error(err)
				return
			}
		}
	})
	f, err := c.Federation(ctx, "study")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Done || len(f.Rounds) != 4 {
		t.Fatalf("federation: done %v after %d rounds, want 4", f.Done, len(f.Rounds))
	}
	for _, ri := range f.Rounds {
		var from []string
		for _, c := range ri.Contributions {
			from = append(from, c.ClientId)
		}
		// A round seals once min_clients have contributed, so h2 or h3 may miss one.
		if ri.State != pb.RoundState_ROUND_STATE_PUBLISHED || len(from) < 2 || slices.Contains(from, "h1") != (ri.Round <= 2) {
			t.Errorf("round %d: %v with contributions from %v, want published, with h1's in rounds 1 and 2 only", ri.Round, ri.State, from)
		}
		if ri.Round == 4 && slices.Contains(ri.Selected, "h1") {
			t.Errorf("round 4 selected %v: h1 enrolled again with its budget spent", ri.Selected)
		}
	}
	var skipped string
	for _, r := range reports[0] {
		if r.Round == 3 {
			skipped = r.Skipped
		} else if r.Round < 3 && (r.Skipped != "" || r.UpdateBytes == 0) {
			t.Errorf("h1, round %d: %+v, want an update sent", r.Round, r)
		}
	}
	if !strings.Contains(skipped, "privacy budget spent") || !strings.Contains(skipped, "this hospital's epsilon budget, 8") {
		t.Errorf("h1 skipped round 3 with %q, want the hospital's budget named", skipped)
	}
}

// TestHospitalBudgetNeedsDP: a hospital with an epsilon budget refuses a federation that
// adds no noise, before it sends anything.
func TestHospitalBudgetNeedsDP(t *testing.T) {
	addr := startCoordinator(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := createFederation(t, ctx, addr, &pb.FederationSpec{
		Name: "study", ModelSpecJson: denseSpec(t), Clients: []string{"h1", "h2"}, Rounds: 1, MinClients: 2,
		Strategy: "fedavg", LocalEpochs: 1, BatchSize: 16, Lr: 0.05,
	})
	cfg := testNodeConfig(addr, "h1", t.TempDir(), blobs(1, 60))
	cfg.EpsilonBudget = 3
	n, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = n.Run(ctx)
	if !errors.Is(err, ErrFederation) || !strings.Contains(err.Error(), "adds no differential-privacy noise") {
		t.Fatalf("Run: %v, want ErrFederation naming the missing noise", err)
	}
	f, err := c.Federation(ctx, "study")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Enrolled) != 0 {
		t.Errorf("enrolled %v, want nobody: the node should refuse before enrolling", f.Enrolled)
	}
}

// runHospitals runs a node for each of names (60 samples of blobs each) against addr,
// with tune applied to its configuration if not nil, until each Run returns (an error
// fails the test), and returns their reports. tune runs in the hospital's goroutine just
// before its node starts, so it may also wait for something.
func runHospitals(t *testing.T, ctx context.Context, addr string, names []string, tune func(*Config)) [][]RoundReport {
	var wg sync.WaitGroup
	reports := make([][]RoundReport, len(names))
	for i, h := range names {
		wg.Go(func() {
			cfg := testNodeConfig(addr, h, t.TempDir(), blobs(uint64(i+1), 60))
			if tune != nil {
				tune(&cfg)
			}
			n, err := New(cfg, testLogger(t))
			if err != nil {
				t.Error(err)
				return
			}
			if err := n.Run(ctx); err != nil {
				t.Errorf("%s: %v", h, err)
			}
			reports[i] = n.Reports()
		})
	}
	wg.Wait()
	return reports
}
