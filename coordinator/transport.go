package coordinator

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/medfed/medfed/crypto/pki"
)

// raftHandshakeTimeout bounds the TLS handshake of one Raft connection, so that a peer that
// opens a connection and says nothing holds no goroutine for long.
const raftHandshakeTimeout = 10 * time.Second

// tlsStreamLayer is the raft.StreamLayer of a node run with mutual TLS: it accepts
// connections only from peers whose certificate, signed by the consortium CA, binds the
// coordinator role, and dials peers with the node's own coordinator certificate, checking
// that the peer is a coordinator valid for the address dialled.
//
// A tlsStreamLayer is safe for concurrent use (raft dials from several goroutines).
type tlsStreamLayer struct {
	net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	log       *slog.Logger
}

// newTLSStreamLayer listens on bind with server (a pki.ServerTLSConfig) restricted to
// coordinator peers, advertises advertise, and dials with client (a pki.ClientTLSConfig).
func newTLSStreamLayer(bind string, advertise net.Addr, server, client *tls.Config, log *slog.Logger) (*tlsStreamLayer, error) {
	if server == nil || client == nil {
		return nil, errors.New("raft transport: mutual TLS needs a server and a client configuration")
	}
	srv := server.Clone()
	verifyCA := srv.VerifyConnection
	srv.VerifyConnection = func(cs tls.ConnectionState) error {
		if verifyCA != nil {
			if err := verifyCA(cs); err != nil {
				return err
			}
		}
		return requireCoordinator(cs)
	}
	cli := client.Clone()
	verifyServer := cli.VerifyConnection
	cli.VerifyConnection = func(cs tls.ConnectionState) error {
		if verifyServer != nil {
			if err := verifyServer(cs); err != nil {
				return err
			}
		}
		return requireCoordinator(cs)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	return &tlsStreamLayer{Listener: ln, advertise: advertise, server: srv, client: cli, log: log}, nil
}

// requireCoordinator accepts only a peer certificate binding the coordinator role.
func requireCoordinator(cs tls.ConnectionState) error {
	role, id, err := pki.IdentityFromTLS(cs)
	if err != nil {
		return err
	}
	if role != pki.RoleCoordinator {
		return fmt.Errorf("%w: raft peer is %s %q, only coordinator nodes may join the raft transport", ErrIdentity, role, id)
	}
	return nil
}

// Accept returns the next connection, a batchedTLS like Dial's. Its handshake runs on the
// first read or write, in raft's handler for the connection, so a slow or refused peer
// does not hold up the accept loop.
func (s *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordConn{Conn: c}
	return &raftServerConn{batchedTLS: batchedTLS{Conn: tls.Server(rc, s.server), rc: rc}, log: s.log}, nil
}

// Addr is the advertised address, the one the other nodes know this node by.
func (s *tlsStreamLayer) Addr() net.Addr { return s.advertise }

// Dial opens a connection to a peer and completes the handshake within timeout. The
// connection sends each Write's TLS records in writes of up to recordBatch bytes
// (batchedTLS).
func (s *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	c, err := clientTLS(ctx, raw, s.client, string(address))
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	return c, nil
}

// recordBatch is the most bytes of TLS records a batchedTLS connection sends in one write
// to the socket: four records of 16 KiB, about what loopback and a NIC's segmentation
// offload send at once.
const recordBatch = 64 << 10

// clientTLS runs the client side of a TLS handshake over raw with cfg (naming the server
// after addr's host when cfg names none, as tls.Dialer does) and returns the connection as
// a batchedTLS.
func clientTLS(ctx context.Context, raw net.Conn, cfg *tls.Config, addr string) (*batchedTLS, error) {
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	rc := &recordConn{Conn: raw}
	c := tls.Client(rc, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return &batchedTLS{Conn: c, rc: rc}, nil
}

// batchedTLS is a TLS connection whose Write sends the records it makes in writes of up to
// recordBatch bytes, instead of one write per record (crypto/tls writes each 16 KiB record
// to the socket as it seals it). Every Raft-port connection of a node with TLS is one:
// the copies of update bytes between nodes then cost 16 system calls and TCP segments per
// MiB instead of 64 (BenchmarkRaftTLSCopy). Whatever a Write makes is on the socket when
// it returns, as with tls.Conn; records crypto/tls writes outside a Write (alerts,
// close_notify) go to the socket at once. Its handshake is done before its first Write
// (clientTLS, raftServerConn): one run inside a Write would leave its own records waiting
// in the batch.
type batchedTLS struct {
	*tls.Conn
	rc *recordConn
}

func (c *batchedTLS) Write(p []byte) (int, error) {
	c.rc.batch(true)
	n, err := c.Conn.Write(p)
	if ferr := c.rc.batch(false); err == nil && ferr != nil {
		err = ferr
	}
	return n, err
}

// recordConn is the socket under a batchedTLS: while a Write of the connection is making
// records it gathers them, up to recordBatch bytes at a time; otherwise it writes through.
// A failed write fails every later one (the records gathered are lost, so the stream is
// broken). Close does not wait for a Write in progress: it closes the socket, which ends
// the Write.
type recordConn struct {
	net.Conn

	mu      sync.Mutex
	writers int           // Writes of the batchedTLS in progress
	w       *bufio.Writer // gathers records while writers > 0; empty otherwise
	err     error
}

// batch marks the start (true) or end (false) of a Write of the batchedTLS. At the end it
// sends what was gathered and returns the error of any write since the start.
func (c *recordConn) batch(start bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if start {
		c.writers++
		if c.w == nil {
			c.w = bufio.NewWriterSize(c.Conn, recordBatch)
		}
		return nil
	}
	c.writers--
	if c.err == nil {
		c.err = c.w.Flush()
	}
	return c.err
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	var n int
	if c.writers > 0 {
		n, c.err = c.w.Write(p)
	} else {
		n, c.err = c.Conn.Write(p)
	}
	return n, c.err
}

// raftServerConn is an accepted Raft connection (a batchedTLS) that completes its
// handshake, within raftHandshakeTimeout, before the first read or write and logs a
// refused peer.
type raftServerConn struct {
	batchedTLS
	log  *slog.Logger
	once sync.Once
	err  error
}

func (c *raftServerConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), raftHandshakeTimeout)
		defer cancel()
		if c.err = c.Conn.HandshakeContext(ctx); c.err != nil {
			c.log.Warn("raft connection refused", "remote", c.RemoteAddr().String(), "err", c.err)
		}
	})
	return c.err
}

func (c *raftServerConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *raftServerConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.batchedTLS.Write(p)
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// gatedTransport is the node's Raft transport with its heartbeat fast path behind a gate.
// hashicorp/raft handles a heartbeat in the transport's goroutine that read it, not in its
// own (which raft.Shutdown waits for): one that arrives as the node closes can still be
// writing the new term to the log store when Close closes the store, and raft panics on
// that failed write ("failed to save current term: database not open"). Close shuts the
// gate after raft and before the store: it waits for a heartbeat in flight, and refuses
// later ones.
type gatedTransport struct {
	*raft.NetworkTransport
	gate heartbeatGate
}

func (t *gatedTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.NetworkTransport.SetHeartbeatHandler(t.gate.wrap(cb))
}

// heartbeatGate runs heartbeat handlers under a read lock until it is shut.
type heartbeatGate struct {
	mu   sync.RWMutex
	shut bool
}

func (g *heartbeatGate) wrap(cb func(raft.RPC)) func(raft.RPC) {
	if cb == nil {
		return nil
	}
	return func(rpc raft.RPC) {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if g.shut {
			rpc.Respond(nil, errors.New("node is shutting down"))
			return
		}
		cb(rpc)
	}
}

// close waits for the handlers running and makes later ones refuse their heartbeat.
func (g *heartbeatGate) close() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
}
