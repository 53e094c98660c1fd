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
