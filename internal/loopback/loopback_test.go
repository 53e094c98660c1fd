package loopback

import (
	"net"
	"testing"
)

func TestAddrCanBeListenedOn(t *testing.T) {
	a := Addr(t)
	host, port, err := net.SplitHostPort(a)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("address %q, want 127.0.0.1 with a port chosen (err %v)", a, err)
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("listen on %s: %v", a, err)
	}
	l.Close()
}

// TestAddrsDistinct asks for many addresses, as a test that starts several clusters does,
// and checks that none repeats, although the kernel may reuse a just-closed port.
func TestAddrsDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		a := Addr(t)
		if seen[a] {
			t.Fatalf("address %s handed out twice", a)
		}
		seen[a] = true
	}
}
