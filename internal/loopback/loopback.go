// Package loopback finds free TCP addresses on 127.0.0.1, for the tests and in-process
// simulations that must know every server's address before any starts (a Raft peer list
// names all the nodes).
package loopback

import "net"

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago. Another process
// may take it before the caller listens on it; tests and simulations accept that.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// TB is the part of testing.TB that Addr uses (so this package does not import testing).
type TB interface {
	Helper()
	Fatal(args ...any)
}

// Addr is FreeAddr for a test: it fails t if no port can be had.
func Addr(t TB) string {
	t.Helper()
	a, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}
