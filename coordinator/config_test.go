package coordinator

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/internal/pb"
)

func TestCheckPeerAddr(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:7001", "n1.hospital.example:7001", "[::1]:65535", "localhost:1"} {
		if err := CheckPeerAddr(addr); err != nil {
			t.Errorf("%q: %v", addr, err)
		}
	}
	for addr, want := range map[string]string{
		"127.0.0.1":       "expected host:port",
		":7001":           "no host",
		"0.0.0.0:7001":    "wildcard 0.0.0.0",
		"[::]:7001":       "wildcard ::",
		"127.0.0.1:70O4":  `got "70O4"`,
		"127.0.0.1:0":     `got "0"`,
		"127.0.0.1:70000": `got "70000"`,
		"":                "expected host:port",
	} {
		if err := CheckPeerAddr(addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error with %q", addr, err, want)
		}
	}
}

func TestParsePeers(t *testing.T) {
	ps, err := ParsePeers("n1=10.0.0.1:7001, n2=10.0.0.2:7001", "n1=10.0.0.1:8001,n2=10.0.0.2:8001")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[1] != (Peer{ID: "n2", RaftAddr: "10.0.0.2:7001", GRPCAddr: "10.0.0.2:8001"}) {
		t.Errorf("got %+v", ps)
	}
	for _, c := range []struct{ peers, grpc, want string }{
		{"n1", "", "expected id=host:port"},
		{"n1=10.0.0.1:7O01", "", `got "7O01"`},
		{"n1=10.0.0.1:7001,n1=10.0.0.2:7001", "", "listed twice"},
		{"n1=10.0.0.1:7001,n2=10.0.0.2:7001", "n1=10.0.0.1:8001", `no address for peer "n2"`},
		{"n1=10.0.0.1:7001", "n1=10.0.0.1:8001,n3=10.0.0.3:8001", `"n3" is not in peers`},
		{"n1=10.0.0.1:7001", "n1=0.0.0.0:8001", "wildcard 0.0.0.0"},
	} {
		if _, err := ParsePeers(c.peers, c.grpc); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParsePeers(%q, %q): got %v, want an error with %q", c.peers, c.grpc, err, c.want)
		}
	}
}

// TestCheckTraining: the settings hospitals train with and the leader aggregates with are
// checked when a federation is created, each refusal naming the field.
func TestCheckTraining(t *testing.T) {
	base := func() *pb.FederationSpec {
		return &pb.FederationSpec{Name: "f", Clients: []string{"a", "b", "c", "d", "e"}, MinClients: 5}
	}
	for _, c := range []struct {
		name string
		edit func(*pb.FederationSpec)
		want string // "" for valid
	}{
		{"defaults", func(*pb.FederationSpec) {}, ""},
		{"set", func(s *pb.FederationSpec) { s.LocalEpochs, s.BatchSize, s.Lr, s.ServerLr = 3, 64, 0.05, 1 }, ""},
		{"lr NaN", func(s *pb.FederationSpec) { s.Lr = math.NaN() }, "learning rate"},
		{"lr negative", func(s *pb.FederationSpec) { s.Lr = -0.1 }, "learning rate"},
		{"epochs", func(s *pb.FederationSpec) { s.LocalEpochs = 20000 }, "local_epochs 20000"},
		{"batch", func(s *pb.FederationSpec) { s.BatchSize = 1 << 20 }, "batch_size 1048576"},
		{"server lr", func(s *pb.FederationSpec) { s.Strategy, s.ServerLr = "fedadam", math.Inf(1) }, "server_lr"},
		{"round timeout", func(s *pb.FederationSpec) { s.RoundTimeoutMs = 1 << 40 }, "round_timeout_ms"},
		{"trimmed beta", func(s *pb.FederationSpec) { s.Strategy, s.TrimmedBeta = "trimmed-mean", 0.5 }, "trimmed_beta 0.5"},
		{"trimmed ok", func(s *pb.FederationSpec) { s.Strategy, s.TrimmedBeta = "trimmed-mean", 0.2 }, ""},
		{"krum ok", func(s *pb.FederationSpec) { s.Strategy, s.KrumF = "krum", 1 }, ""},
		{"krum f", func(s *pb.FederationSpec) { s.Strategy, s.KrumF = "krum", 2 }, "raise min_clients to at least 7"},
		{"krum m", func(s *pb.FederationSpec) { s.Strategy, s.KrumF, s.KrumM = "krum", 1, 5 }, "krum_m 5"},
	} {
		s := base()
		c.edit(s)
		st, err := aggregation.ParseStrategy(strategyName(s))
		if err != nil {
			t.Fatal(err)
		}
		err = checkTraining(s, st)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || StatusCode(err) != codes.InvalidArgument):
			t.Errorf("%s: got %v, want InvalidArgument with %q", c.name, err, c.want)
		}
	}
}
