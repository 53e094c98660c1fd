package coordinator

import (
	"crypto/tls"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/internal/pb"
)

// testPKI is a consortium CA in a temporary folder that issues certificates on demand.
type testPKI struct {
	t   testing.TB
	dir string
	ca  *pki.CA
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("Test consortium", 365*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), false); err != nil {
		t.Fatal(err)
	}
	return &testPKI{t: t, dir: dir, ca: ca}
}

func (p *testPKI) caFile() string { return filepath.Join(p.dir, "ca.crt") }

// issue writes <id>.crt and <id>.key (coordinators are valid for 127.0.0.1) and returns
// their paths.
func (p *testPKI) issue(role pki.Role, id string) (cert, key string) {
	p.t.Helper()
	req := pki.IssueRequest{Role: role, ID: id}
	if role == pki.RoleCoordinator {
		req.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	c, k, err := p.ca.Issue(req)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, key = filepath.Join(p.dir, id+".crt"), filepath.Join(p.dir, id+".key")
	if _, err := os.Stat(cert); err == nil {
		return cert, key
	}
	if err := pki.SaveKeyPair(cert, c, key, k, false); err != nil {
		p.t.Fatal(err)
	}
	return cert, key
}

// serverNode fills a node configuration with its coordinator certificate.
func (p *testPKI) serverNode(c *Config) {
	p.t.Helper()
	cert, key := p.issue(pki.RoleCoordinator, c.NodeID)
	var err error
	if c.ServerTLS, err = pki.ServerTLSConfig(cert, key, p.caFile()); err != nil {
		p.t.Fatal(err)
	}
	if c.ClientTLS, err = pki.ClientTLSConfig(cert, key, p.caFile(), ""); err != nil {
		p.t.Fatal(err)
	}
	c.Insecure = false
}

func (p *testPKI) clientTLS(role pki.Role, id string) *tls.Config {
	p.t.Helper()
	cert, key := p.issue(role, id)
	cfg, err := pki.ClientTLSConfig(cert, key, p.caFile(), "")
	if err != nil {
		p.t.Fatal(err)
	}
	return cfg
}

// client returns a coordclient presenting the certificate of role and id.
func (p *testPKI) client(addrs []string, role pki.Role, id string) *coordclient.Client {
	p.t.Helper()
	c, err := coordclient.New(addrs, coordclient.Options{
		Creds: credentials.NewTLS(p.clientTLS(role, id)), MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, MaxAttempts: 200,
	})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { c.Close() })
	return c
}

// rogueTransport is a Raft transport that dials with the given TLS configuration (nil:
// plain TCP).
func rogueTransport(t testing.TB, cfg *tls.Config) *raft.NetworkTransport {
	t.Helper()
	hl := hclog.New(&hclog.LoggerOptions{Output: io.Discard})
	if cfg == nil {
		tr, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 1, 5*time.Second, hl)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := &tlsStreamLayer{Listener: ln, advertise: ln.Addr(), client: cfg}
	return raft.NewNetworkTransportWithLogger(sl, 1, 5*time.Second, hl)
}

func raftTerm(n *Node) uint64 {
	t, _ := strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
	return t
}

// TestTLSCluster runs a 3-node cluster with mutual TLS everywhere (certificates from a test
// CA): it elects a leader over the TLS Raft transport and replicates a federation and an
// update to every node. A transport presenting a hospital certificate, or no TLS at all,
// cannot take part in Raft: its vote request with a huge term is refused and the cluster's
// term is unchanged. A hospital may act only as the client ID its certificate binds: h1
// submitting as h2 is PermissionDenied and the round is unaffected. A hospital cannot call
// the nodes' internal ReadIndex, nor stop the federation.
func TestTLSCluster(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ca := newTestPKI(t)
	tc := startClusterWith(t, 3, ca.serverNode)
	ctx := testCtx(t)
	leader := tc.leader()

	op := ca.client(tc.addrs(), pki.RoleOperator, "op")
	h1 := ca.client(tc.addrs(), pki.RoleHospital, "h1")
	h2 := ca.client(tc.addrs(), pki.RoleHospital, "h2")

	if _, err := h1.CreateFederation(ctx, &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("hospital creating a federation: got %v, want PermissionDenied", err)
	}
	if _, err := op.CreateFederation(ctx, &pb.FederationSpec{
		Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1", "h2"}, MinClients: 2,
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cl *coordclient.Client
		id string
	}{{h1, "h1"}, {h2, "h2"}} {
		if _, err := c.cl.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: c.id}); err != nil {
			t.Fatalf("enrol %s: %v", c.id, err)
		}
	}
	waitRound(t, ctx, op, "f", 1, pb.RoundState_ROUND_STATE_OPEN)
	first, err := h1.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h1", Samples: 3, Data: EncodeFloat32s(delta(0))})
	if err != nil {
		t.Fatal(err)
	}

	// Replication over the TLS transport: every node holds h1's update.
	for i, n := range tc.nodes {
		waitFor(t, tc.cfgs[i].NodeID+" to apply the update", func() bool {
			return n.FSM().Contribution("f", 1, "h1") != nil
		})
	}

	// h1's certificate, acting as h2: refused, through every node, and nothing changes.
	for i := range tc.nodes {
		mallory := ca.client(tc.addrs()[i:i+1], pki.RoleHospital, "h1")
		_, err := mallory.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h2", Samples: 3, Data: EncodeFloat32s(delta(1))})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("h1 submitting as h2 via %s: got %v, want PermissionDenied", tc.cfgs[i].NodeID, err)
		}
		t.Logf("via %s: %v", tc.cfgs[i].NodeID, err)
		ri, err := op.Round(ctx, "f", 1)
		if err != nil {
			t.Fatal(err)
		}
		if ri.State != pb.RoundState_ROUND_STATE_OPEN || len(ri.Contributions) != 1 || !proto.Equal(ri.Contributions[0], first.Contribution) {
			t.Fatalf("round changed: %v", ri)
		}
	}

	// The internal calls between nodes refuse a hospital's certificate.
	conn, err := grpc.NewClient(tc.cfgs[leader].GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(ca.clientTLS(pki.RoleHospital, "h1"))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pb.NewClusterServiceClient(conn).ReadIndex(ctx, &pb.ReadIndexRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("hospital calling ReadIndex: got %v, want PermissionDenied", err)
	}
	if _, err := pb.NewFederationServiceClient(conn).StopFederation(ctx, &pb.StopFederationRequest{Federation: "f"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("hospital stopping the federation: got %v, want PermissionDenied", err)
	}
	conn.Close()

	// Rogue Raft peers: a hospital certificate, and plain TCP.
	term := raftTerm(tc.nodes[leader])
	rogues := []struct {
		name string
		cfg  *tls.Config
	}{
		{"hospital certificate", ca.clientTLS(pki.RoleHospital, "h1")},
		{"operator certificate", ca.clientTLS(pki.RoleOperator, "op")},
		{"plain TCP", nil},
	}
	for _, r := range rogues {
		t.Run(r.name, func(t *testing.T) {
			tr := rogueTransport(t, r.cfg)
			defer func() { tr.CloseStreams(); tr.Close() }()
			target := tc.cfgs[leader]
			var resp raft.RequestVoteResponse
			err := tr.RequestVote(raft.ServerID(target.NodeID), raft.ServerAddress(target.RaftAddr), &raft.RequestVoteRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("rogue"), Addr: []byte(tr.LocalAddr())},
				Term:      term + 1000, LastLogIndex: 1 << 40, LastLogTerm: term + 1000,
			}, &resp)
			if err == nil {
				t.Fatalf("vote request accepted (granted=%v)", resp.Granted)
			}
			t.Logf("refused: %v", err)
		})
	}
	for i, n := range tc.nodes {
		if got := raftTerm(n); got >= term+1000 {
			t.Errorf("%s term %d: a rogue vote request got through", tc.cfgs[i].NodeID, got)
		}
	}

	// The round still completes.
	if _, err := h2.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h2", Samples: 3, Data: EncodeFloat32s(delta(1))}); err != nil {
		t.Fatal(err)
	}
	ri := waitRound(t, ctx, op, "f", 1, pb.RoundState_ROUND_STATE_PUBLISHED)
	if len(ri.Contributions) != 2 {
		t.Fatalf("published round has %d contributions, want 2", len(ri.Contributions))
	}
	tc.closeAll()
}

// TestListenOnAllInterfaces: nodes that listen on every interface (--grpc-addr
// 0.0.0.0:PORT, as in deploy/compose.yaml) are recorded at the addresses the peer list
// gives (--grpc-peers), the leader included, and a follower forwards a write to the leader
// there. At 0.0.0.0 a follower on another host would dial itself; here the TLS check of
// the name fails.
func TestListenOnAllInterfaces(t *testing.T) {
	ca := newTestPKI(t)
	tc := startClusterWith(t, 3, func(c *Config) {
		ca.serverNode(c)
		_, port, err := net.SplitHostPort(c.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.GRPCAddr = net.JoinHostPort("0.0.0.0", port)
	})
	ctx := testCtx(t)
	l := tc.leader()
	want := map[string]string{}
	for _, p := range tc.cfgs[0].Peers {
		want[p.ID] = p.GRPCAddr
	}
	waitFor(t, "the leader to record the peer list's addresses", func() bool {
		return maps.Equal(tc.nodes[l].FSM().NodeAddrs(), want)
	})
	f := tc.cfgs[(l+1)%3].NodeID
	op := ca.client([]string{want[f]}, pki.RoleOperator, "op")
	if _, err := op.CreateFederation(ctx, &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatalf("create through follower %s: %v", f, err)
	}
}
