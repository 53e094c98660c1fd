package client

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/internal/pb"
)

// TestHospitalThatStaysDown: a hospital that goes down for good is tolerated while
// min_clients contributions and t decryption shares can still be had (in secure mode one
// that never comes is dropped from the key ceremony, which starts again without it), costs one round
// timeout (the round it died in; later rounds leave it out), and when min_clients cannot
// be had the coordinator stops the federation after max_aborted_rounds and the others stop
// with its reason.
//
// In secure mode the dead hospital has taken part in the key ceremony and round 1, and
// dies in round 2 with its update saved but not sent, so it is no contributor and the
// coordinator, which picks the decrypting set among the contributors, leaves it out.
// TestDecryptingHospitalDies covers a hospital that dies after its update is accepted.
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
		{name: "secure, never starts", secure: true, minClients: 2, threshold: 2},
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
				LocalEpochs: 1, BatchSize: 16, Lr: 0.05, Seed: 3, RoundTimeoutMs: 1500, MaxAbortedRounds: 2,
				CeremonyTimeoutMs: 1500,
			})
			var wg sync.WaitGroup
			errs := map[string]error{}
			var mu sync.Mutex
			for i, h := range names {
				if h == "h3" && tc.killRound == 0 {
					continue
				}
				cfg := testNodeConfig(addr, h, filepath.Join(t.TempDir(), h), blobs(uint64(i+1), 60))
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
				// The coordinator stopped the federation; the hospitals say why.
				if !f.Stopped || !strings.Contains(f.StopReason, tc.want) {
					t.Fatalf("federation stopped=%v (%q), want stopped saying %q", f.Stopped, f.StopReason, tc.want)
				}
				return
			}
			if f.Stopped {
				t.Fatalf("federation stopped: %s", f.StopReason)
			}
			if tc.secure && tc.killRound == 0 {
				// h3 never took part: the key ceremony started again without it.
				if cs := f.Ceremony; cs.Generation != 1 || !slices.Equal(cs.Members, []string{"h1", "h2"}) || !strings.Contains(cs.RestartedBecause, "h3 (not enrolled)") {
					t.Fatalf("ceremony generation %d, members %v (%q); want generation 1 with h1 and h2", cs.Generation, cs.Members, cs.RestartedBecause)
				}
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
				// The round h3 died in waited for it until the deadline; later rounds
				// leave it out, so they do not wait.
				if tc.killRound > 0 && ri.Round > tc.killRound && slices.Contains(ri.Selected, "h3") {
					t.Errorf("round %d selected h3, which missed round %d", ri.Round, tc.killRound)
				}
			}
			if tc.killRound > 0 && !slices.Contains(f.Suspended, "h3") {
				t.Errorf("suspended %v, want h3 among them", f.Suspended)
			}
		})
	}
}

// TestDecryptingHospitalDies: h1's update is accepted and h1 is in the round's active set
// (the first t contributors in roster order), then it dies before sending its decryption
// share. After the coordinator's decryption timeout the leader picks a new active set from
// the other contributors and rerandomises the aggregate; h2 answers the new ciphertext
// (its second share of the round, for a different ciphertext), h3 its first, and the run
// completes without h1, which round 2 no longer selects.
func TestDecryptingHospitalDies(t *testing.T) {
	addr := startCoordinatorWith(t, func(c *coordinator.Config) { c.DecryptionTimeout = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names := []string{"h1", "h2", "h3"}
	const rounds = 2
	c := createFederation(t, ctx, addr, &pb.FederationSpec{
		Name: "study", ModelSpecJson: denseSpec(t), Clients: names, Rounds: rounds,
		MinClients: 2, Threshold: 2, Secure: true, Strategy: "fedavg",
		LocalEpochs: 1, BatchSize: 16, Lr: 0.05, Seed: 3, RoundTimeoutMs: 30000,
	})
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, h := range names {
		n, err := New(testNodeConfig(addr, h, filepath.Join(t.TempDir(), h), blobs(uint64(i+1), 60)), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		if h == "h1" {
			n.hook = func(p string, r uint64) {
				if p == "share-saved" && r == 1 {
					rcancel()
				}
			}
		}
		wg.Go(func() {
			defer rcancel()
			errs[i] = n.Run(rctx)
		})
	}
	wg.Wait()
	if !errors.Is(errs[0], context.Canceled) {
		t.Errorf("h1: %v, want it killed", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("%s: %v, want the federation done", names[i+1], err)
		}
	}
	f, err := c.Federation(ctx, "study")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Done || f.Stopped {
		t.Fatalf("done=%v stopped=%v (%s)", f.Done, f.Stopped, f.StopReason)
	}
	r1 := f.Rounds[0]
	if r1.State != pb.RoundState_ROUND_STATE_PUBLISHED || len(r1.Contributions) != 3 {
		t.Fatalf("round 1: %v with %d contributions, want published with 3", r1.State, len(r1.Contributions))
	}
	if !slices.Equal(r1.ActiveParties, []uint32{2, 3}) {
		t.Fatalf("round 1 decrypted by parties %v; want the new active set [2 3], without h1 (party 1)", r1.ActiveParties)
	}
	// Silent when asked for its share, h1 is left out of round 2, which so does not wait
	// for it until its deadline.
	if r2 := f.Rounds[1]; slices.Contains(r2.Selected, "h1") || r2.State != pb.RoundState_ROUND_STATE_PUBLISHED {
		t.Fatalf("round 2: %v, selected %v; want published without h1", r2.State, r2.Selected)
	}
}
