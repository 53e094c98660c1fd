package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// startCoordinator runs a one-node insecure coordinator cluster on loopback.
func startCoordinator(t *testing.T) string { return startCoordinatorWith(t, nil) }

// startCoordinatorWith is startCoordinator with tune applied to the node's configuration.
func startCoordinatorWith(t *testing.T, tune func(*coordinator.Config)) string {
	t.Helper()
	raftAddr, grpcAddr := loopback.Addr(t), loopback.Addr(t)
	cfg := coordinator.Config{
		NodeID: "n1", DataDir: t.TempDir(), RaftAddr: raftAddr, GRPCAddr: grpcAddr, Insecure: true,
		Peers:          []coordinator.Peer{{ID: "n1", RaftAddr: raftAddr, GRPCAddr: grpcAddr}},
		DriverInterval: 50 * time.Millisecond, HeartbeatTimeout: 500 * time.Millisecond,
		ElectionTimeout: 500 * time.Millisecond, LeaderLeaseTimeout: 250 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	n, err := coordinator.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return grpcAddr
}

// blobs is a separable 3-class problem with 8 features: class k is centred on e_k*3.
func blobs(seed uint64, n int) *dataset.Set {
	r := rand.New(rand.NewPCG(seed, 1))
	s := &dataset.Set{Name: "blobs", Shape: []int{8}, Classes: 3}
	for i := range n {
		k := i % 3
		for j := range 8 {
			v := r.NormFloat64() * 0.5
			if j == k {
				v += 3
			}
			s.X = append(s.X, float32(v))
		}
		s.Y = append(s.Y, float32(k))
	}
	return s
}

func denseSpec(t *testing.T) []byte {
	b, err := json.Marshal(model.Spec{Input: []int{8}, Layers: []model.LayerSpec{{Type: "dense", Units: 3, Activation: "softmax"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func createFederation(t *testing.T, ctx context.Context, addr string, spec *pb.FederationSpec) *coordclient.Client {
	t.Helper()
	c, err := coordclient.New([]string{addr}, coordclient.Options{MinBackoff: 50 * time.Millisecond, MaxAttempts: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.CreateFederation(ctx, spec); err != nil {
		t.Fatal(err)
	}
	return c
}

func testNodeConfig(addr, id, dir string, data *dataset.Set) Config {
	return Config{
		Coordinators: []string{addr}, ClientID: id, Federation: "study", Data: Static(data),
		StateDir: dir, Insecure: true, Passphrase: "correct horse " + id, ScryptWorkFactor: 2,
		PollInterval: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond,
	}
}

// TestSecureFederationSurvivesRestarts runs a secure federation of three hospitals
// (threshold 2) for two rounds. Hospital h1 is killed in round 1 after its encrypted update
// is on disk but before it is sent, h2 after its decryption share is on disk but before it
// is sent; both restart from their state directories, resend the same bytes without a
// second ceremony, and the federation completes with every update in.
func TestSecureFederationSurvivesRestarts(t *testing.T) {
	addr := startCoordinator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	names := []string{"h1", "h2", "h3"}
	c := createFederation(t, ctx, addr, &pb.FederationSpec{
		Name: "study", ModelSpecJson: denseSpec(t), Clients: names, Rounds: 2, MinClients: 3, Threshold: 2,
		Secure: true, Strategy: "fedavg", LocalEpochs: 2, BatchSize: 16, Lr: 0.05, Seed: 3,
	})

	dirs := map[string]string{}
	for _, h := range names {
		dirs[h] = filepath.Join(t.TempDir(), h)
	}
	run := func(h string, hook func(*Node, context.CancelFunc) func(string, uint64)) (*Node, error) {
		n, err := New(testNodeConfig(addr, h, dirs[h], blobs(uint64(len(h)+int(h[1])), 90)), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		defer rcancel()
		if hook != nil {
			n.hook = hook(n, rcancel)
		}
		return n, n.Run(rctx)
	}
	killAt := func(point string, round uint64) func(*Node, context.CancelFunc) func(string, uint64) {
		return func(n *Node, cancel context.CancelFunc) func(string, uint64) {
			return func(p string, r uint64) {
				if p == point && r == round {
					cancel()
				}
			}
		}
	}

	var wg sync.WaitGroup
	results := map[string][]RoundReport{}
	var mu sync.Mutex
	for _, h := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var hook func(*Node, context.CancelFunc) func(string, uint64)
			switch h {
			case "h1":
				hook = killAt("update-saved", 1)
			case "h2":
				hook = killAt("share-saved", 1)
			}
			n, err := run(h, hook)
			if hook != nil {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s: first run ended with %v, want a cancellation", h, err)
					return
				}
				n, err = run(h, nil)
			}
			if err != nil {
				t.Errorf("%s: %v", h, err)
				return
			}
			mu.Lock()
			results[h] = n.Reports()
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if reps := results["h1"]; len(reps) == 0 || reps[0].Round != 1 || !reps[0].Resumed {
		t.Errorf("h1 after restart: reports %+v, want round 1 resumed from disk", reps)
	}
	f, err := c.Federation(ctx, "study")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Done || len(f.Rounds) != 2 {
		t.Fatalf("federation done=%v with %d rounds", f.Done, len(f.Rounds))
	}
	for _, ri := range f.Rounds {
		if ri.State != pb.RoundState_ROUND_STATE_PUBLISHED || len(ri.Contributions) != 3 {
			t.Errorf("round %d: %v with %d contributions, want published with 3", ri.Round, ri.State, len(ri.Contributions))
		}
	}
	// The published model classifies the blobs.
	_, wb, err := c.FetchModel(ctx, "study", 0, "f32")
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := model.ParseSpec(denseSpec(t))
	m, _ := model.Build(ms, 0)
	w, err := decodeFloat32s(wb, m.NumParams())
	if err != nil {
		t.Fatal(err)
	}
	m.SetFlat(w)
	test := blobs(99, 300)
	if _, acc, _ := m.Evaluate(test.X, test.Y, test.Len(), model.SparseCategoricalCrossentropy); acc < 0.9 {
		t.Errorf("global model accuracy %.3f, want >= 0.9", acc)
	}
	// Nothing in the state directories is readable without the passphrase.
	for _, h := range names {
		ents, _ := os.ReadDir(dirs[h])
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(dirs[h], e.Name()))
			if !strings.HasPrefix(string(b), "age-encryption.org/v1") {
				t.Errorf("%s/%s is not an age file", h, e.Name())
			}
		}
	}
}

// TestWrongPassphrase: a state directory opened with another passphrase is refused.
func TestWrongPassphrase(t *testing.T) {
	dir := t.TempDir()
	cfg := testNodeConfig("x", "h1", dir, blobs(1, 3))
	st, err := newStore(cfg.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.saveState(&state{Version: stateVersion, Federation: "study", ClientID: "h1"}); err != nil {
		t.Fatal(err)
	}
	cfg.Passphrase = "wrong"
	st, _ = newStore(cfg.withDefaults())
	if _, err := st.loadState(); !errors.Is(err, ErrState) {
		t.Fatalf("got %v, want ErrState", err)
	}
	id, _ := age.GenerateX25519Identity()
	cfg.Passphrase, cfg.AgeIdentity = "", id
	st, _ = newStore(cfg.withDefaults())
	if _, err := st.loadState(); !errors.Is(err, ErrState) {
		t.Fatalf("with an identity: got %v, want ErrState", err)
	}
}

func TestCheckSchema(t *testing.T) {
	cnn, _ := model.Architecture("cnn", []int{28, 28, 1}, 10)
	rnn, _ := model.Architecture("rnn", []int{28, 28}, 10)
	sig := model.Spec{Input: []int{30}, Layers: []model.LayerSpec{{Type: "dense", Units: 1, Activation: "sigmoid"}}}
	img := func(shape []int, classes int, labels ...float32) *dataset.Set {
		size := 1
		for _, d := range shape {
			size *= d
		}
		return &dataset.Set{Shape: shape, Classes: classes, Y: labels, X: make([]float32, size*len(labels))}
	}
	for _, tc := range []struct {
		name string
		spec model.Spec
		data *dataset.Set
		want string // "" means accepted
	}{
		{"mnist", cnn, img([]int{28, 28, 1}, 10, 0, 9), ""},
		{"fewer classes", cnn, img([]int{28, 28, 1}, 3, 0, 2), ""},
		{"sequences from images", rnn, img([]int{28, 28, 1}, 10, 1), ""},
		{"binary", sig, img([]int{30}, 2, 0, 1), ""},
		{"shape", cnn, img([]int{32, 32, 3}, 10, 1), "shape [28 28 1], the local data has shape [32 32 3]"},
		{"classes", cnn, img([]int{28, 28, 1}, 12, 11), "outputs 10 classes, the local data has 12"},
		{"label", sig, img([]int{30}, 2, 0, 3), "sample 1 has label 3"},
		{"empty", cnn, img([]int{28, 28, 1}, 10), "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := CheckSchema(tc.spec, tc.data)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want accepted", err)
				}
				if fmt.Sprint(s.Shape) != fmt.Sprint(tc.spec.Input) {
					t.Errorf("view shape %v, want %v", s.Shape, tc.spec.Input)
				}
				return
			}
			if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrSchema mentioning %q", err, tc.want)
			}
		})
	}
}

// TestRefusesSmallAggregate: no decryption share for a round with fewer than min_clients
// contributions, whatever the coordinator asks.
func TestRefusesSmallAggregate(t *testing.T) {
	n := &Node{cfg: Config{Federation: "study", ClientID: "h1"}, spec: &pb.FederationSpec{MinClients: 3}}
	for _, ri := range []*pb.RoundInfo{
		{Round: 1, State: pb.RoundState_ROUND_STATE_DECRYPTING, Contributions: []*pb.Contribution{{ClientId: "h1"}, {ClientId: "h2"}}},
		{Round: 1, State: pb.RoundState_ROUND_STATE_OPEN, Contributions: []*pb.Contribution{{ClientId: "h1"}, {ClientId: "h2"}, {ClientId: "h3"}}},
	} {
		if _, err := n.makeShare(context.Background(), ri); !errors.Is(err, ErrRefused) {
			t.Errorf("%v with %d contributions: got %v, want ErrRefused", ri.State, len(ri.Contributions), err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	good := Config{Coordinators: []string{"a:1"}, ClientID: "h1", Federation: "f", Data: Static(nil), StateDir: "d", Insecure: true, AgeIdentity: id}
	if err := good.withDefaults().Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no coordinators", func(c *Config) { c.Coordinators = nil }, "Coordinators"},
		{"no client", func(c *Config) { c.ClientID = "" }, "ClientID"},
		{"bad client", func(c *Config) { c.ClientID = "../x" }, "ClientID"},
		{"no tls", func(c *Config) { c.Insecure = false }, "TLS"},
		{"both secrets", func(c *Config) { c.Passphrase = "x" }, "exactly one"},
		{"no secret", func(c *Config) { c.AgeIdentity = nil }, "exactly one"},
		{"no state", func(c *Config) { c.StateDir = "" }, "StateDir"},
		{"negative budget", func(c *Config) { c.EpsilonBudget = -1 }, "EpsilonBudget -1"},
		{"NaN budget", func(c *Config) { c.EpsilonBudget = math.NaN() }, "EpsilonBudget NaN"},
		{"infinite budget", func(c *Config) { c.EpsilonBudget = math.Inf(1) }, "EpsilonBudget +Inf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// testLogger logs through t.Log when MEDFED_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("MEDFED_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
