package client

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medfed/medfed/internal/pb"
)

// TestHospitalThatStaysDown: a hospital that goes down for good is tolerated while
// min_clients contributions and t decryption shares can still be had, and the others stop
// with a clear error when they cannot.
//
// In secure mode the dead hospital has taken part in the key ceremony and round 1, and
// dies in round 2 with its update saved but not sent, so it is no contributor and the
// coordinator, which picks the decrypting set among the contributors, leaves it out. (A
// hospital that dies after its update is accepted and before its decryption share is
// sent stalls the round today if it is among the first t contributors: the coordinator
// has no decryption deadline. Not tested here.)
func TestHospitalThatStaysDown(t *testing.T) {
	for _, tc := range []struct {
		name       string
		secure     bool
		minClients uint32
		threshold  uint32
		killRound  uint64 // 0: h3 never starts
		want       string // "" : the federation completes; else the others' error
	}{
		{name: "plaintext, never starts", minClients: 2},
		{name: "plaintext, dies in round 2", minClients: 2, killRound: 2},
		{name: "secure, dies in round 2", secure: true, minClients: 2, threshold: 2, killRound: 2},
		{name: "secure, min_clients lost", secure: true, minClients: 3, threshold: 2, killRound: 2,
			want: "deadline passed with 2 contributions, min_clients is 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startCoordinator(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			names := []string{"h1", "h2", "h3"}
			const rounds = 3
			c := createFederation(t, ctx, addr, &pb.FederationSpec{
				Name: "study", ModelSpecJson: denseSpec(t), Clients: names, Rounds: rounds,
				MinClients: tc.minClients, Threshold: tc.threshold, Secure: tc.secure, Strategy: "fedavg",
				LocalEpochs: 1, BatchSize: 16, Lr: 0.05, Seed: 3, RoundTimeoutMs: 1500,
			})
			var wg sync.WaitGroup
			errs := map[string]error{}
			var mu sync.Mutex
			for i, h := range names {
				if h == "h3" && tc.killRound == 0 {
					continue
				}
				cfg := testNodeConfig(addr, h, filepath.Join(t.TempDir(), h), blobs(uint64(i+1), 60))
				cfg.MaxAbortedRounds = 2
				n, err := New(cfg, testLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				rctx, rcancel := context.WithCancel(ctx)
				if h == "h3" {
					n.hook = func(p string, r uint64) {
						if p == "update-saved" && r == tc.killRound {
							rcancel()
						}
					}
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer rcancel()
					err := n.Run(rctx)
					mu.Lock()
					errs[h] = err
					mu.Unlock()
				}()
			}
			wg.Wait()
			if tc.killRound > 0 && !errors.Is(errs["h3"], context.Canceled) {
				t.Errorf("h3: %v, want it killed", errs["h3"])
			}
			for _, h := range names[:2] {
				err := errs[h]
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("%s: %v, want the federation done", h, err)
				case tc.want != "" && (!errors.Is(err, ErrFederation) || !strings.Contains(err.Error(), tc.want)):
					t.Errorf("%s: %v, want ErrFederation saying %q", h, err, tc.want)
				case tc.want != "":
					t.Logf("%s stopped: %v", h, err)
				}
			}
			f, err := c.Federation(ctx, "study")
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" {
				return
			}
			if !f.Done || len(f.Rounds) != rounds {
				t.Fatalf("done=%v after %d rounds, want %d", f.Done, len(f.Rounds), rounds)
			}
			for _, ri := range f.Rounds {
				want := 2
				if ri.Round < tc.killRound {
					want = 3
				}
				got := len(ri.Contributions)
				// A plaintext round opens once min_clients hospitals are enrolled: h3
				// may join round 1 or not.
				ok := got == want || (!tc.secure && ri.Round < tc.killRound && got >= 2)
				if ri.State != pb.RoundState_ROUND_STATE_PUBLISHED || !ok {
					t.Errorf("round %d: %v with %d contributions, want published with %d", ri.Round, ri.State, len(ri.Contributions), want)
				}
			}
		})
	}
}
