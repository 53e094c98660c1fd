// Package loopback finds free TCP addresses on 127.0.0.1, for the tests and in-process
// simulations that must know every server's address before any starts (a Raft peer list
// names all the nodes).
package loopback

import (
	"fmt"
	"net"
	"sync"
)

var (
	mu    sync.Mutex
	given = map[string]bool{} // every address FreeAddr returned in this process
)

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago and that no
// earlier call in this process returned: the kernel may hand a port it just gave out to
// the next listener on port 0, and two servers of one cluster must not be told the same
// address. Another process may still take it before the caller listens on it; tests and
// simulations accept that.
func FreeAddr() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		a := l.Addr().String()
		l.Close()
		if !given[a] {
			given[a] = true
			return a, nil
		}
	}
	return "", fmt.Errorf("loopback: 100 listeners in a row got ports handed out before")
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
