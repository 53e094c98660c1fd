package coordinator

import (
	"strings"
	"testing"
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
	} {
		if _, err := ParsePeers(c.peers, c.grpc); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParsePeers(%q, %q): got %v, want an error with %q", c.peers, c.grpc, err, c.want)
		}
	}
}
