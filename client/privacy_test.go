package client

import (
	"context"
	"math"
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
	var wg sync.WaitGroup
	reports := make([][]RoundReport, len(names))
	for i, h := range names {
		wg.Go(func() {
			n, err := New(testNodeConfig(addr, h, t.TempDir(), blobs(uint64(i+1), 60)), testLogger(t))
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
