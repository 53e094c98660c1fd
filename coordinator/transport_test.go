package coordinator

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
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

// newTestTLSLayer returns the Raft stream layer of node n1 of a test consortium,
// listening on a loopback port until t ends, and n1's configuration.
func newTestTLSLayer(t testing.TB) (*tlsStreamLayer, Config) {
	cfg := Config{NodeID: "n1"}
	newTestPKI(t).serverNode(&cfg)
	layer, err := newTLSStreamLayer("127.0.0.1:0", nil, cfg.ServerTLS, cfg.ClientTLS, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { layer.Close() })
	return layer, cfg
}

// countingConn counts the writes to a connection and the bytes in the largest.
type countingConn struct {
	net.Conn
	writes, largest atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	if n := int64(len(p)); n > c.largest.Load() {
		c.largest.Store(n)
	}
	return c.Conn.Write(p)
}

// countingListener hands each connection it accepts, as a countingConn, to conns too.
type countingListener struct {
	net.Listener
	conns chan *countingConn
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: c}
	select {
	case l.conns <- cc:
	default:
	}
	return cc, nil
}

// TestBatchedTLS: a Raft-port connection (tlsStreamLayer.Dial's) delivers every byte of
// large and small writes in order, writing a MiB to the socket in about MiB/recordBatch
// writes (crypto/tls alone makes one per 16 KiB record), none larger than recordBatch;
// the close_notify it sends on Close, outside any Write, reaches the peer (which reads a
// clean EOF); an accepted connection (Accept's) that writes before it reads completes
// its handshake and batches its records too; and Close ends a Write blocked on a peer
// that reads nothing.
func TestBatchedTLS(t *testing.T) {
	layer, cfg := newTestTLSLayer(t)
	addr := layer.Listener.Addr().String()
	received := make(chan []byte, 1)
	go func() {
		c, err := layer.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c) // a clean EOF only after close_notify
		if err != nil {
			t.Errorf("reading the batched connection: %v", err)
		}
		received <- b
	}()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: raw}
	c, err := clientTLS(testCtx(t), cc, cfg.ClientTLS, addr)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i, size := range []int{1 << 20, 3, 1<<20 + 5, 100} {
		p := make([]byte, size)
		for k := range p {
			p[k] = byte(k*7 + i)
		}
		before := cc.writes.Load()
		if n, err := c.Write(p); err != nil || n != size {
			t.Fatalf("write %d: %d, %v; want %d bytes", i, n, err, size)
		}
		if w, most := cc.writes.Load()-before, int64(size/recordBatch+2); w > most {
			t.Errorf("write %d of %d bytes took %d socket writes, want at most %d", i, size, w, most)
		}
		want = append(want, p...)
	}
	if l := cc.largest.Load(); l > recordBatch {
		t.Errorf("a socket write of %d bytes, want at most %d", l, recordBatch)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := <-received; !bytes.Equal(got, want) {
		t.Fatalf("the peer read %d bytes, not the %d written in order", len(got), len(want))
	}

	// An accepted connection batches too, and may write first: its handshake runs
	// before, not inside, the batch.
	counted := make(chan *countingConn, 1)
	layer.Listener = countingListener{layer.Listener, counted}
	sent := make(chan error, 1)
	go func() {
		c, err := layer.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		_, err = c.Write(want[:1<<20])
		sent <- err
	}()
	d, err := layer.Dial(raft.ServerAddress(addr), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 1<<20)
	if _, err := io.ReadFull(d, got); err != nil || !bytes.Equal(got, want[:1<<20]) {
		t.Fatalf("reading what the accepting side wrote first: %v (equal %v)", err, bytes.Equal(got, want[:1<<20]))
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if w, most := (<-counted).writes.Load(), int64(1<<20/recordBatch+2+3); w > most {
		t.Errorf("the accepting side took %d socket writes for its handshake and a MiB, want at most %d", w, most)
	}
	d.Close()

	// A peer that completes the handshake and then reads nothing.
	stuck := make(chan net.Conn, 1)
	go func() {
		c, err := layer.Accept()
		if err != nil {
			return
		}
		c.Read(make([]byte, 1)) // the handshake, then the first byte
		stuck <- c
	}()
	d, err = layer.Dial(raft.ServerAddress(addr), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var peer net.Conn
	done := make(chan error, 1)
	go func() {
		_, err := d.Write(make([]byte, 64<<20)) // more than both sockets' buffers
		done <- err
	}()
	peer = <-stuck
	defer peer.Close()
	select {
	case err := <-done:
		t.Fatalf("a 64 MiB write to a peer reading nothing returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	d.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the write ended by Close reported no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a blocked Write")
	}
	if _, err := d.Write([]byte("x")); err == nil {
		t.Error("a write after Close succeeded")
	}
}
