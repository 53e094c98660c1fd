package coordinator

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/pb"
)

// Node is one coordinator replica: a Raft member (bolt log store, file snapshots, a
// mutual-TLS transport, or plain TCP when insecure) running the FSM, the medfed.v1 gRPC
// services, the HTTP endpoints, inference on the committed models (Open Inference Protocol
// v2 on the HTTP and gRPC ports) and, while it leads, the driver that opens, seals and
// publishes rounds.
//
// A Node is safe for concurrent use. Close stops everything it started.
type Node struct {
	cfg Config
	log *slog.Logger

	fsm       *FSM
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	transport *gatedTransport
	blobs     *blobstore.Store // the bytes of updates, by digest
	streams   raft.StreamLayer // the Raft port's TLS or TCP layer, for blob connections
	blobConns blobConns
	pins      blobPins

	grpcSrv *grpc.Server
	grpcLn  net.Listener
	httpSrv *http.Server
	httpLn  net.Listener

	metrics *metrics

	upToDateTerm atomic.Uint64 // the last term in which leaderUpToDate saw the log applied

	reg *inference.Registry
	inf *inference.Server

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn

	closeOnce sync.Once
	closeErr  error
}

// New starts a node: it opens (or creates) the Raft state in cfg.DataDir (or RaftDir),
// bootstraps the cluster from cfg.Peers if the state is new, and starts serving. A nil
// logger discards.
func New(cfg Config, logger *slog.Logger) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("node", cfg.NodeID)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = &Node{cfg: cfg, log: logger, fsm: NewFSM(logger), metrics: &metrics{}, ctx: ctx, cancel: cancel, conns: map[string]*grpc.ClientConn{}}
	n.pins.fsm = n.fsm
	// On failure, close what was started: the named result is nil by then ("return nil,
	// err"), so the deferred call keeps its own reference.
	started := n
	defer func() {
		if err != nil {
			started.Close()
		}
	}()

	if n.blobs, err = blobstore.Open(filepath.Join(cfg.DataDir, "blobs")); err != nil {
		return nil, err
	}

	hl := newRaftLogger(logger)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raft config: %w", err)
	}

	rdir, record, err := raftDir(cfg.DataDir, cfg.RaftDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, fmt.Errorf("raft dir: %w", err)
	}
	// The freelist is rebuilt when the file is opened rather than written at every commit
	// (as Consul does); every log write is still fsynced.
	n.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(rdir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if err != nil {
		return nil, fmt.Errorf("raft log store: %w", err)
	}
	if record {
		if err := recordRaftDir(cfg.DataDir, rdir); err != nil {
			return nil, err
		}
	}
	// The leader replicates recent entries from memory instead of reading them back from
	// bolt; at most raftLogCache chunk entries (of at most MaxChunkBytes) are held.
	logs, err := raft.NewLogCache(raftLogCache, n.store)
	if err != nil {
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(rdir, 2, hl)
	if err != nil {
		return nil, fmt.Errorf("raft snapshot store: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("raft address: %w", err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft address %s: the other nodes dial this address, so it must name this host, not a wildcard", cfg.RaftAddr)
	}
	if cfg.Insecure {
		ln, err := net.Listen("tcp", cfg.RaftAddr)
		if err != nil {
			return nil, fmt.Errorf("raft transport: %w", err)
		}
		n.streams = &tcpStreamLayer{Listener: ln, advertise: adv}
	} else {
		if n.streams, err = newTLSStreamLayer(cfg.RaftAddr, adv, cfg.ServerTLS, cfg.ClientTLS, logger); err != nil {
			return nil, fmt.Errorf("raft transport: %w", err)
		}
	}
	// The Raft port also carries the copies of update blobs between nodes (blobwire.go).
	n.transport = &gatedTransport{NetworkTransport: raft.NewNetworkTransportWithLogger(newMuxLayer(n.streams, n.serveBlobConn, logger), 3, 10*time.Second, hl)}
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.store, snaps, n.transport)
	if err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	if len(cfg.Peers) > 0 {
		var conf raft.Configuration
		for _, p := range cfg.Peers {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}

	if err := n.newInference(); err != nil {
		return nil, fmt.Errorf("inference: %w", err)
	}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if !cfg.Insecure {
		tc := cfg.ServerTLS
		if cfg.InferenceTokens != nil {
			// Token callers of the OIP service come without a certificate; certificateGate
			// keeps them out of the medfed.v1 services.
			tc = inference.TokenTLSConfig(tc)
		}
		creds = credentials.NewTLS(tc)
	}
	gate := certificateGate{insecure: cfg.Insecure}
	recv := max(maxCommandBytes+4096, int(inferenceDefaults(cfg.Inference).MaxBodyBytes)+4096)
	n.grpcSrv = grpc.NewServer(grpc.Creds(creds), grpc.MaxRecvMsgSize(recv), grpc.ForceServerCodecV2(newUploadCodec()),
		grpc.ChainUnaryInterceptor(gate.unary, n.upToDateUnary), grpc.ChainStreamInterceptor(gate.stream, n.upToDateStream))
	pb.RegisterFederationServiceServer(n.grpcSrv, &federationServer{n: n})
	pb.RegisterCeremonyServiceServer(n.grpcSrv, &ceremonyServer{n: n})
	pb.RegisterRoundServiceServer(n.grpcSrv, &roundServer{n: n})
	pb.RegisterClusterServiceServer(n.grpcSrv, &clusterServer{n: n})
	pb.RegisterBlobServiceServer(n.grpcSrv, &blobServer{n: n})
	n.inf.RegisterGRPC(n.grpcSrv)
	if n.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("grpc listen: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.grpcSrv.Serve(n.grpcLn); err != nil {
			n.log.Error("grpc server stopped", "err", err)
		}
	}()
	if cfg.HTTPAddr != "" {
		if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("http listen: %w", err)
		}
		n.httpSrv = &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		serve := func() error { return n.httpSrv.Serve(n.httpLn) }
		if !cfg.Insecure {
			// HTTPS; a client certificate is optional (health checks, Prometheus, token
			// callers) and verified against the consortium CA when presented.
			n.httpSrv.TLSConfig = inference.TokenTLSConfig(cfg.ServerTLS)
			serve = func() error { return n.httpSrv.ServeTLS(n.httpLn, "", "") }
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("http server stopped", "err", err)
			}
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.drive(n.ctx)
	}()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.publishModels(n.ctx)
	}()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.collectBlobs(n.ctx)
	}()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.promoteLoop(n.ctx)
	}()
	logger.Info("coordinator node started", "raft", cfg.RaftAddr, "grpc", n.grpcLn.Addr().String(), "insecure", cfg.Insecure)
	return n, nil
}

// Run serves until ctx is cancelled, then closes the node.
func (n *Node) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-n.ctx.Done():
	}
	return n.Close()
}

// Close stops the node: the driver, the model publisher, the gRPC and HTTP servers, Raft,
// the transport, the log store and the inference registry. It does not transfer leadership; the remaining nodes elect a new leader.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		if n.grpcSrv != nil {
			done := make(chan struct{})
			go func() { n.grpcSrv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				n.grpcSrv.Stop()
				<-done
			}
		} else if n.grpcLn != nil {
			n.grpcLn.Close()
		}
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			n.httpSrv.Shutdown(ctx)
			cancel()
		} else if n.httpLn != nil {
			n.httpLn.Close()
		}
		var errs []error
		if n.raft != nil {
			errs = append(errs, n.raft.Shutdown().Error())
		}
		if n.transport != nil {
			n.transport.gate.close() // no heartbeat writes to the store below any more
			// Close pooled outbound connections too, so the peers' handlers for them end.
			n.transport.CloseStreams()
			errs = append(errs, n.transport.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		n.blobConns.close()
		n.connMu.Lock()
		for _, c := range n.conns {
			c.Close()
		}
		n.conns = nil
		n.connMu.Unlock()
		n.wg.Wait()
		if n.blobs != nil {
			errs = append(errs, n.blobs.Close())
		}
		if n.reg != nil {
			// The servers have stopped, so no request is left to answer.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, n.reg.Close(ctx))
			cancel()
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// GRPCAddr returns the address the gRPC services listen on.
func (n *Node) GRPCAddr() string { return n.grpcLn.Addr().String() }

// HTTPAddr returns the address of the HTTP endpoints, or "".
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// FSM returns the node's state machine, for reads.
func (n *Node) FSM() *FSM { return n.fsm }

// IsLeader reports whether the node currently leads the cluster.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's server ID, or "".
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// grpcAddrOf returns the gRPC address of a node.
func (n *Node) grpcAddrOf(id string) string {
	if a := n.fsm.NodeAddrs()[id]; a != "" {
		return a
	}
	for _, p := range n.cfg.Peers {
		if p.ID == id {
			return p.GRPCAddr
		}
	}
	if id == n.cfg.NodeID {
		return n.GRPCAddr()
	}
	return ""
}

func (n *Node) conn(addr string) (*grpc.ClientConn, error) {
	n.connMu.Lock()
	defer n.connMu.Unlock()
	if n.conns == nil {
		return nil, fmt.Errorf("%w: node is shutting down", ErrNotLeader)
	}
	if c := n.conns[addr]; c != nil {
		return c, nil
	}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if !n.cfg.Insecure {
		creds = credentials.NewTLS(n.cfg.ClientTLS)
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxCommandBytes+4096)))
	if err != nil {
		return nil, err
	}
	n.conns[addr] = c
	return c, nil
}

// retryable marks an error after which a proposal may be retried (no leader, leadership
// lost, leader unreachable).
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// propose commits c through Raft, on this node if it leads or through the leader otherwise,
// and returns the log index once this node has applied it. It retries while there is no
// leader, up to ApplyTimeout. The FSM's error for c is returned as is.
func (n *Node) propose(ctx context.Context, c *pb.Command) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		idx, err := n.proposeOnce(ctx, c)
		var r retryable
		if err == nil || !errors.As(err, &r) {
			return idx, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %v", ErrNotLeader, r.err)
		case <-n.ctx.Done():
			return 0, fmt.Errorf("%w: node is shutting down", ErrNotLeader)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (n *Node) proposeOnce(ctx context.Context, c *pb.Command) (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.applyLocal(ctx, c)
	}
	_, leader := n.raft.LeaderWithID()
	if leader == "" {
		return 0, retryable{errors.New("no known leader")}
	}
	addr := n.grpcAddrOf(string(leader))
	if addr == "" {
		return 0, retryable{fmt.Errorf("no gRPC address known for leader %s", leader)}
	}
	conn, err := n.conn(addr)
	if err != nil {
		return 0, err
	}
	data, err := EncodeCommand(c)
	if err != nil {
		return 0, err
	}
	n.metrics.forwarded.Add(1)
	resp, err := pb.NewClusterServiceClient(conn).Propose(ctx, &pb.ProposeRequest{Command: data})
	if err != nil {
		if status.Code(err) == codes.Unavailable {
			return 0, retryable{err}
		}
		return 0, err
	}
	if err := n.waitApplied(ctx, resp.Index); err != nil {
		return 0, err
	}
	return resp.Index, nil
}

// applyLocal applies c on the leader, stamping the time.
func (n *Node) applyLocal(ctx context.Context, c *pb.Command) (uint64, error) {
	c.TimeUnixNano = time.Now().UnixNano()
	data, err := EncodeCommand(c)
	if err != nil {
		return 0, err
	}
	timeout := n.cfg.ApplyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	n.metrics.proposals.Add(1)
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return 0, fmt.Errorf("%w: node is shutting down", ErrNotLeader)
		}
		return 0, retryable{err}
	}
	if e, ok := f.Response().(error); ok && e != nil {
		return f.Index(), e
	}
	return f.Index(), nil
}

// applyAsync hands c to Raft on the leader, stamping the time, and returns without waiting
// for it to commit.
func (n *Node) applyAsync(c *pb.Command) (raft.ApplyFuture, error) {
	c.TimeUnixNano = time.Now().UnixNano()
	data, err := EncodeCommand(c)
	if err != nil {
		return nil, err
	}
	n.metrics.proposals.Add(1)
	return n.raft.Apply(data, n.cfg.ApplyTimeout), nil
}

func (n *Node) waitApplied(ctx context.Context, idx uint64) error {
	for {
		ch, applied := n.fsm.Changed()
		if applied >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for entry %d to apply: %v", ErrNotLeader, idx, ctx.Err())
		}
	}
}

// raftLogCache is the number of recent log entries each node keeps in memory.
const raftLogCache = 64

// maxChunksInFlight bounds the chunk entries of one upload that the leader has handed to
// Raft and not yet seen applied.
const maxChunksInFlight = 4

// stager splits a payload into chunk commands as its bytes arrive. On the leader it
// pipelines them: up to maxChunksInFlight chunk entries are in Raft at once (Raft applies
// them in order), so receiving the next bytes overlaps with replicating the previous
// ones. On a follower each chunk is forwarded and committed before the next.
type stager struct {
	n       *Node
	key     string
	digest  []byte
	total   uint64
	off     uint64
	buf     []byte
	pending []raft.ApplyFuture
}

func (s *stager) write(ctx context.Context, p []byte) error {
	s.buf = append(s.buf, p...)
	for len(s.buf) >= s.n.cfg.ChunkBytes {
		if err := s.flush(ctx, s.n.cfg.ChunkBytes); err != nil {
			return err
		}
	}
	return nil
}

func (s *stager) flush(ctx context.Context, k int) error {
	if k == 0 {
		return nil
	}
	c := &pb.Command{Cmd: &pb.Command_Chunk{Chunk: &pb.ChunkCmd{
		Blob: s.key, Digest: s.digest, TotalLength: s.total, Offset: s.off, Data: s.buf[:k],
	}}}
	if s.n.raft.State() == raft.Leader {
		f, err := s.n.applyAsync(c) // encodes c, so buf may be reused
		if err != nil {
			return err
		}
		s.pending = append(s.pending, f)
		if len(s.pending) >= maxChunksInFlight {
			if err := s.waitOldest(); err != nil {
				return err
			}
		}
	} else {
		if err := s.drain(); err != nil {
			return err
		}
		if _, err := s.n.propose(ctx, c); err != nil {
			return err
		}
	}
	s.off += uint64(k)
	s.buf = append(s.buf[:0], s.buf[k:]...)
	return nil
}

// waitOldest waits until the oldest pipelined chunk entry is applied.
func (s *stager) waitOldest() error {
	f := s.pending[0]
	s.pending = s.pending[1:]
	if err := f.Error(); err != nil {
		// Leadership lost or the node is shutting down: the client retries the upload
		// (on another node); chunks already applied are accepted again as resent.
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	if e, ok := f.Response().(error); ok && e != nil {
		return e
	}
	return nil
}

// drain waits for every pipelined chunk entry.
func (s *stager) drain() error {
	for len(s.pending) > 0 {
		if err := s.waitOldest(); err != nil {
			return err
		}
	}
	return nil
}

func (s *stager) finish(ctx context.Context) error {
	if err := s.flush(ctx, len(s.buf)); err != nil {
		return err
	}
	return s.drain()
}

// stageBlob stages a whole payload under key and returns its digest.
func (n *Node) stageBlob(ctx context.Context, key string, data []byte, digest []byte) error {
	s := &stager{n: n, key: key, digest: digest, total: uint64(len(data))}
	for off := 0; off < len(data); off += n.cfg.ChunkBytes {
		if err := s.write(ctx, data[off:min(off+n.cfg.ChunkBytes, len(data))]); err != nil {
			return err
		}
	}
	return s.finish(ctx)
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
