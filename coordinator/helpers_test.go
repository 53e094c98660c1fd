package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/hashicorp/raft"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/seal"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// testLogger returns nil (the nodes log nothing), or with MEDFED_TEST_LOG=1 a logger to
// stderr, for finding out why a test or benchmark failed.
func testLogger() *slog.Logger {
	if os.Getenv("MEDFED_TEST_LOG") != "1" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Generous timeouts: the tests run on a loaded 2-core machine where an election can take
// seconds.
const waitTimeout = 60 * time.Second

// testModelSpec is a tiny dense classifier: 8 inputs, 3 classes, 27 parameters.
func testModelSpec(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(model.Spec{Input: []int{8}, Layers: []model.LayerSpec{{Type: "dense", Units: 3, Activation: "softmax"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testNumParams = 27

type testCluster struct {
	t     testing.TB
	cfgs  []Config
	nodes []*Node // nil when stopped
}

func testConfig(id, dir string) Config {
	return Config{
		NodeID:             id,
		DataDir:            dir,
		Insecure:           true,
		ChunkBytes:         64, // several chunk entries per update
		DriverInterval:     50 * time.Millisecond,
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		SnapshotInterval:   200 * time.Millisecond,
		SnapshotThreshold:  16,
		TrailingLogs:       8,
	}
}

func startCluster(t testing.TB, n int) *testCluster { return startClusterWith(t, n, nil) }

// startClusterWith starts n nodes, letting tune adjust each node's configuration. Ports come
// from loopback.Addr, which another process (the e2e tests run in parallel) can take before a node
// binds it; then the whole cluster starts again on fresh ports.
func startClusterWith(t testing.TB, n int, tune func(*Config)) *testCluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		tc, err := tryStartCluster(t, n, tune)
		if err == nil {
			t.Cleanup(tc.closeAll)
			return tc
		}
		tc.closeAll()
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; retrying on fresh ports", attempt, err)
	}
}

func tryStartCluster(t testing.TB, n int, tune func(*Config)) (*testCluster, error) {
	var peers []Peer
	for i := range n {
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), RaftAddr: loopback.Addr(t), GRPCAddr: loopback.Addr(t)})
	}
	tc := &testCluster{t: t}
	for _, p := range peers {
		cfg := testConfig(p.ID, filepath.Join(t.TempDir(), p.ID))
		cfg.RaftAddr, cfg.GRPCAddr, cfg.Peers = p.RaftAddr, p.GRPCAddr, peers
		if tune != nil {
			tune(&cfg)
		}
		tc.cfgs = append(tc.cfgs, cfg)
		node, err := New(cfg, testLogger())
		if err != nil {
			return tc, fmt.Errorf("start %s: %w", cfg.NodeID, err)
		}
		tc.nodes = append(tc.nodes, node)
	}
	return tc, nil
}

func (tc *testCluster) start(i int) {
	tc.t.Helper()
	n, err := New(tc.cfgs[i], testLogger())
	if err != nil {
		tc.t.Fatalf("start %s: %v", tc.cfgs[i].NodeID, err)
	}
	tc.nodes[i] = n
}

func (tc *testCluster) stop(i int) {
	tc.t.Helper()
	if err := tc.nodes[i].Close(); err != nil {
		tc.t.Logf("close %s: %v", tc.cfgs[i].NodeID, err)
	}
	tc.nodes[i] = nil
}

func (tc *testCluster) closeAll() {
	for i, n := range tc.nodes {
		if n != nil {
			n.Close()
			tc.nodes[i] = nil
		}
	}
}

func (tc *testCluster) addrs() []string {
	var out []string
	for _, c := range tc.cfgs {
		out = append(out, c.GRPCAddr)
	}
	return out
}

// leader waits for a running node to lead and returns its index.
func (tc *testCluster) leader() int {
	tc.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		for i, n := range tc.nodes {
			if n != nil && n.raft.State() == raft.Leader {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatal("no leader elected")
	return -1
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func newClient(t testing.TB, addrs []string) *coordclient.Client {
	t.Helper()
	c, err := coordclient.New(addrs, coordclient.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, MaxAttempts: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// delta returns a deterministic update for client k.
func delta(k int) []float32 {
	d := make([]float32, testNumParams)
	for i := range d {
		d[i] = float32(k+1)*0.01 + float32(i)*0.001*float32(k%3-1)
	}
	return d
}

func digestOf(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func waitRound(t testing.TB, ctx context.Context, c *coordclient.Client, fed string, r uint64, state pb.RoundState) *pb.RoundInfo {
	t.Helper()
	var last *pb.RoundInfo
	waitFor(t, fmt.Sprintf("round %d %v", r, state), func() bool {
		ri, err := c.Round(ctx, fed, r)
		if err != nil {
			return false
		}
		last = ri
		return ri.State == state
	})
	return last
}

// testEnrolment returns a well-formed enrolment string (seal.FormatEnrolment) of fresh keys.
func testEnrolment(t testing.TB) string {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return seal.FormatEnrolment(id.Recipient(), pub)
}
