package coordinator

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/medfed/medfed/inference"
)

// Peer is one voting member of the cluster: its Raft server ID, the address of its Raft
// transport and the address of its gRPC services.
type Peer struct {
	ID       string
	RaftAddr string
	GRPCAddr string
}

// CheckPeerAddr checks an address other nodes dial (a peer's Raft or gRPC address): a host
// name or IP other than a wildcard (0.0.0.0, ::), a colon, and a port number from 1 to
// 65535.
func CheckPeerAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: expected host:port: %v", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q: expected host:port, got no host (other nodes dial this address)", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("address %q: expected this node's host name or IP, got the wildcard %s (other nodes dial this address; a node may listen on %s, but is reached at its own address)", addr, host, host)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("address %q: expected a port number from 1 to 65535, got %q", addr, port)
	}
	return nil
}

// ParsePeers parses the --peers flag, "id1=raftaddr1,id2=raftaddr2,...", and the optional
// --grpc-peers flag in the same form, into peers sorted as given. Every peer in peers must
// have a gRPC address in grpcPeers (unless grpcPeers is empty, in which case the gRPC
// addresses stay empty and nodes learn them from the replicated state).
func ParsePeers(peers, grpcPeers string) ([]Peer, error) {
	parse := func(s, what string) ([][2]string, error) {
		var out [][2]string
		for _, item := range strings.Split(s, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			id, addr, ok := strings.Cut(item, "=")
			if !ok || id == "" || addr == "" {
				return nil, fmt.Errorf("%s entry %q: expected id=host:port", what, item)
			}
			if err := CheckPeerAddr(addr); err != nil {
				return nil, fmt.Errorf("%s entry %q: %v", what, item, err)
			}
			out = append(out, [2]string{id, addr})
		}
		return out, nil
	}
	ps, err := parse(peers, "peers")
	if err != nil {
		return nil, err
	}
	gs, err := parse(grpcPeers, "grpc-peers")
	if err != nil {
		return nil, err
	}
	grpcOf := map[string]string{}
	for _, g := range gs {
		grpcOf[g[0]] = g[1]
	}
	var out []Peer
	seen := map[string]bool{}
	for _, p := range ps {
		if seen[p[0]] {
			return nil, fmt.Errorf("peers: %q listed twice", p[0])
		}
		seen[p[0]] = true
		if len(gs) > 0 && grpcOf[p[0]] == "" {
			return nil, fmt.Errorf("grpc-peers: no address for peer %q", p[0])
		}
		out = append(out, Peer{ID: p[0], RaftAddr: p[1], GRPCAddr: grpcOf[p[0]]})
	}
	for id := range grpcOf {
		if !seen[id] {
			return nil, fmt.Errorf("grpc-peers: %q is not in peers", id)
		}
	}
	return out, nil
}

// Config configures one coordinator node. Zero values mean "default" (DefaultConfig).
type Config struct {
	// NodeID is the node's Raft server ID; it must be one of Peers (or the node waits to be
	// added with AddNode).
	NodeID string
	// DataDir holds the Raft log (raft.db, bolt), snapshots and the stored update blobs
	// (blobs/). A node restarts from it.
	DataDir string
	// RaftDir, if set, holds the Raft log and snapshots instead of DataDir, so that the
	// log's fsync at every commit can go to a device of its own, away from the update
	// bytes (as etcd's --wal-dir). The first start records it in DataDir (file raft-dir);
	// later starts use the recorded one and refuse a different RaftDir, or a recorded
	// directory without raft.db (an unmounted volume), rather than start with an empty log.
	RaftDir string
	// RaftAddr is the address the Raft transport listens on and advertises. The same port
	// carries the copies of update bytes between nodes.
	RaftAddr string
	// GRPCAddr is the address the gRPC services listen on.
	GRPCAddr string
	// HTTPAddr is the address of /healthz, /metrics and the Open Inference Protocol's REST
	// endpoints (/v2/...); empty disables them. Unless Insecure, it serves HTTPS with the
	// ServerTLS certificate; a client certificate is optional there (verified if given), as
	// /healthz, /metrics and /v2/health/* need no authentication and the inference
	// endpoints also take bearer tokens.
	HTTPAddr string
	// Peers is the initial cluster, the same list on every node. Every node bootstraps
	// from it; a node that finds existing state in DataDir ignores it.
	Peers []Peer

	// ServerTLS configures mutual TLS for the gRPC services and the Raft transport
	// (pki.ServerTLSConfig with the node's coordinator certificate): it must require and
	// verify client certificates. The Raft listener further accepts only peers with a
	// coordinator certificate. ClientTLS (pki.ClientTLSConfig with the same certificate)
	// is what the node presents when it dials a Raft peer or forwards a write to the
	// leader. Both nil is allowed only with Insecure.
	ServerTLS *tls.Config
	ClientTLS *tls.Config
	// Insecure runs gRPC and the Raft transport without TLS (plain TCP): any caller may
	// act as any client, and anyone who reaches the Raft address may join the log. For
	// tests and local experiments only.
	Insecure bool

	// ChunkBytes is the size of the chunk entries an upload is split into (default and
	// maximum MaxChunkBytes).
	ChunkBytes int
	// MaxUploadBytes bounds an uploaded update or share (default 1 GiB).
	MaxUploadBytes int64
	// RoundTimeout is how long a round stays open when its federation does not say
	// (default 10 minutes).
	RoundTimeout time.Duration
	// DecryptionTimeout is how long the leader waits for the decryption shares of a
	// secure round's active set (default 2 minutes). Then it chooses another set from
	// the round's contributors, leaving out those that did not answer, and rerandomises
	// the aggregate for it; with fewer than the threshold left it aborts the round.
	DecryptionTimeout time.Duration
	// CeremonyTimeout is how long a secure federation's key ceremony may take, from the
	// federation's creation, when the federation does not say (ceremony_timeout_ms);
	// then the federation stops with a reason naming the hospitals it waits for (default
	// 30 minutes).
	CeremonyTimeout time.Duration
	// DriverInterval is how often the leader checks whether a round should open, seal or
	// publish (default 250ms; it also reacts to every applied entry).
	DriverInterval time.Duration
	// ApplyTimeout bounds one write through Raft, including waiting for a leader (default
	// 30s).
	ApplyTimeout time.Duration

	// SyncUpdates makes every node that stores an update's bytes flush them to disk before
	// the upload is acknowledged. By default an update is acknowledged once a majority of
	// nodes hold it (written, in the page cache) and its digest is committed through Raft
	// (which is flushed); the blob files are flushed in the background a moment later.
	// That survives the loss of any minority of nodes; SyncUpdates also survives a
	// simultaneous power loss of a majority, at the cost of disk bandwidth on the ingest
	// path (see BenchmarkIngest).
	SyncUpdates bool
	// BlobGrace is how long a stored blob that no round references is kept before it is
	// deleted: an upload in flight, or a copy of an update whose commit failed (default
	// 10 minutes). Blobs of published or aborted rounds are deleted right away, unless the
	// same bytes arrived again for a later round that has not committed them yet.
	BlobGrace time.Duration

	// Inference tunes the model serving every node does (batching, limits, rate limit,
	// Inference.Retain: how many of each federation's newest model versions stay loaded).
	// Zero fields mean inference.DefaultConfig's values.
	Inference inference.Config
	// InferenceTokens are the bearer tokens the operator issued for inference callers
	// without a consortium certificate (inference.LoadTokenFile); nil accepts certificates
	// only. When set (and not Insecure), the gRPC port also accepts TLS connections without
	// a client certificate, for OIP calls with a token; the medfed.v1 services still refuse
	// such connections.
	InferenceTokens *inference.TokenSet

	// Raft tuning; zero means hashicorp/raft's defaults.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
}

// DefaultConfig returns the defaults that New fills into zero fields.
func DefaultConfig() Config {
	return Config{
		ChunkBytes:        MaxChunkBytes,
		MaxUploadBytes:    1 << 30,
		RoundTimeout:      10 * time.Minute,
		DecryptionTimeout: 2 * time.Minute,
		DriverInterval:    250 * time.Millisecond,
		ApplyTimeout:      30 * time.Second,
		BlobGrace:         10 * time.Minute,
		CeremonyTimeout:   30 * time.Minute,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ChunkBytes == 0 {
		c.ChunkBytes = d.ChunkBytes
	}
	if c.MaxUploadBytes == 0 {
		c.MaxUploadBytes = d.MaxUploadBytes
	}
	if c.RoundTimeout == 0 {
		c.RoundTimeout = d.RoundTimeout
	}
	if c.DecryptionTimeout == 0 {
		c.DecryptionTimeout = d.DecryptionTimeout
	}
	if c.DriverInterval == 0 {
		c.DriverInterval = d.DriverInterval
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = d.ApplyTimeout
	}
	if c.BlobGrace == 0 {
		c.BlobGrace = d.BlobGrace
	}
	if c.CeremonyTimeout == 0 {
		c.CeremonyTimeout = d.CeremonyTimeout
	}
	return c
}

// Validate names the first bad field, or returns nil.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return fmt.Errorf("coordinator config: NodeID is empty")
	case checkName("node id", c.NodeID) != nil:
		return fmt.Errorf("coordinator config: NodeID: %w", checkName("node id", c.NodeID))
	case c.DataDir == "":
		return fmt.Errorf("coordinator config: DataDir is empty")
	case c.RaftAddr == "":
		return fmt.Errorf("coordinator config: RaftAddr is empty")
	case c.GRPCAddr == "":
		return fmt.Errorf("coordinator config: GRPCAddr is empty")
	case !c.Insecure && (c.ServerTLS == nil || c.ClientTLS == nil):
		return fmt.Errorf("coordinator config: ServerTLS and ClientTLS are required unless Insecure is set")
	case c.ChunkBytes < 0 || c.ChunkBytes > MaxChunkBytes:
		return fmt.Errorf("coordinator config: ChunkBytes %d, expected 1 to %d", c.ChunkBytes, MaxChunkBytes)
	case c.MaxUploadBytes < 0 || c.MaxUploadBytes > MaxBlobBytes:
		return fmt.Errorf("coordinator config: MaxUploadBytes %d, expected 1 to %d", c.MaxUploadBytes, int64(MaxBlobBytes))
	case c.RoundTimeout < 0, c.DecryptionTimeout < 0, c.DriverInterval < 0, c.ApplyTimeout < 0, c.BlobGrace < 0, c.CeremonyTimeout < 0:
		return fmt.Errorf("coordinator config: negative duration")
	}
	if err := c.Inference.Validate(); err != nil {
		return fmt.Errorf("coordinator config: Inference: %w", err)
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if err := checkName("peer id", p.ID); err != nil {
			return fmt.Errorf("coordinator config: Peers: %w", err)
		}
		if seen[p.ID] {
			return fmt.Errorf("coordinator config: Peers: %q listed twice", p.ID)
		}
		seen[p.ID] = true
		if p.RaftAddr == "" {
			return fmt.Errorf("coordinator config: Peers: %q has no Raft address", p.ID)
		}
	}
	if len(c.Peers) > 0 && !seen[c.NodeID] {
		return fmt.Errorf("coordinator config: NodeID %q is not in Peers", c.NodeID)
	}
	return nil
}
