package coordinator

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatGate: closing the gate waits for a heartbeat handler that is running (one
// that would still write the new term to the log store), and a heartbeat after it is
// refused without reaching raft.
func TestHeartbeatGate(t *testing.T) {
	var g heartbeatGate
	entered, release := make(chan struct{}), make(chan struct{})
	calls := 0
	h := g.wrap(func(raft.RPC) {
		calls++
		close(entered)
		<-release
	})
	go h(raft.RPC{RespChan: make(chan raft.RPCResponse, 1)})
	<-entered
	closed := make(chan struct{})
	go func() { g.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("the gate closed while a heartbeat was being handled")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed

	resp := make(chan raft.RPCResponse, 1)
	h(raft.RPC{RespChan: resp})
	if calls != 1 {
		t.Errorf("the handler ran %d times, want 1 (none after the gate closed)", calls)
	}
	if r := <-resp; r.Error == nil {
		t.Error("a heartbeat after the gate closed got no error")
	}
	if g.wrap(nil) != nil {
		t.Error("wrap(nil) is not nil: the transport would call it")
	}
}
