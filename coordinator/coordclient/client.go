package coordclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/internal/logrepeat"
	"github.com/medfed/medfed/internal/pb"
)

// ChunkBytes is the size of the data messages of an upload.
const ChunkBytes = 1 << 20

// Options configures a Client. Zero values mean "default".
type Options struct {
	// Creds are the transport credentials (mutual TLS from crypto/pki); nil means plaintext,
	// for coordinators run with --insecure.
	Creds credentials.TransportCredentials
	// MinBackoff and MaxBackoff bound the wait between attempts (default 100ms and 2s).
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts bounds the attempts of one call (default 30); the call's context also
	// bounds it.
	MaxAttempts int
	// DialOptions are added, after the transport credentials, to the options of every
	// connection: interceptors or stats handlers that observe the calls (tracing, or a
	// test that inspects what a client sends).
	DialOptions []grpc.DialOption
	// Logger, if set, gets a record (at info level) for an attempt that failed in a way
	// that is retried (on the next address, if there are several), with the node's
	// address and the error: a node that keeps failing shows there even while the calls
	// succeed on the others. The same node failing with the same code again within
	// FailoverLogRepeat is counted instead, and its next record carries repeated=N, the
	// number left out: a cluster that is down for a minute makes a few lines, not one per
	// retry.
	Logger *slog.Logger
}

// FailoverLogRepeat is how long a client does not log the same node failing in the same
// way again (see Options.Logger).
const FailoverLogRepeat = 30 * time.Second

// Client talks to a coordinator cluster.
type Client struct {
	opts  Options
	conns []*grpc.ClientConn

	logLimit *logrepeat.Limiter

	mu  sync.Mutex
	cur int // index of the address that last answered
}

// New returns a client for the nodes at addrs. It does not connect until the first call.
func New(addrs []string, opts Options) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("coordclient: no coordinator address")
	}
	if opts.Creds == nil {
		opts.Creds = insecure.NewCredentials()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 2 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 30
	}
	c := &Client{opts: opts, logLimit: logrepeat.New(FailoverLogRepeat)}
	for _, a := range addrs {
		dial := append([]grpc.DialOption{grpc.WithTransportCredentials(opts.Creds)}, opts.DialOptions...)
		conn, err := grpc.NewClient(a, dial...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("coordclient: %s: %w", a, err)
		}
		c.conns = append(c.conns, conn)
	}
	return c, nil
}

// Close closes the connections.
func (c *Client) Close() error {
	var errs []error
	for _, conn := range c.conns {
		errs = append(errs, conn.Close())
	}
	return errors.Join(errs...)
}

// Retryable reports whether an error means "try another node": the node is unreachable,
// shutting down, or has no leader.
func Retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted:
		return true
	}
	return false
}

// do runs call against one node after another until it succeeds, fails with a
// non-retryable error, or runs out of attempts or time.
func (c *Client) do(ctx context.Context, call func(*grpc.ClientConn) error) error {
	backoff := c.opts.MinBackoff
	var err error
	for attempt := 0; attempt < c.opts.MaxAttempts; attempt++ {
		c.mu.Lock()
		i := c.cur
		c.mu.Unlock()
		err = call(c.conns[i])
		if err == nil || !Retryable(err) {
			return err
		}
		if c.opts.Logger != nil && ctx.Err() == nil && attempt+1 < c.opts.MaxAttempts {
			node := c.conns[i].Target()
			if skipped, ok := c.logLimit.Allow(node + "\x00" + status.Code(err).String()); ok {
				attrs := []any{"node", node, "attempt", attempt + 1, "err", err}
				if skipped > 0 {
					attrs = append(attrs, "repeated", skipped)
				}
				c.opts.Logger.Info("coordinator node failed; retrying", attrs...)
			}
		}
		c.mu.Lock()
		if c.cur == i {
			c.cur = (i + 1) % len(c.conns)
		}
		c.mu.Unlock()
		// A full pass over the nodes without success: wait before the next one.
		if (attempt+1)%len(c.conns) == 0 || len(c.conns) == 1 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, c.opts.MaxBackoff)
		}
	}
	return err
}

// CreateFederation creates a federation.
func (c *Client) CreateFederation(ctx context.Context, spec *pb.FederationSpec) (*pb.Federation, error) {
	var out *pb.Federation
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewFederationServiceClient(conn).CreateFederation(ctx, &pb.CreateFederationRequest{Spec: spec})
		return err
	})
	return out, err
}

// Federation returns a federation's state.
func (c *Client) Federation(ctx context.Context, name string) (*pb.Federation, error) {
	var out *pb.Federation
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewFederationServiceClient(conn).GetFederation(ctx, &pb.GetFederationRequest{Name: name})
		return err
	})
	return out, err
}

// Federations lists every federation.
func (c *Client) Federations(ctx context.Context) ([]*pb.Federation, error) {
	var out *pb.ListFederationsResponse
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewFederationServiceClient(conn).ListFederations(ctx, &pb.ListFederationsRequest{})
		return err
	})
	return out.GetFederations(), err
}

// Enrol enrols a hospital in a federation.
func (c *Client) Enrol(ctx context.Context, req *pb.EnrolRequest) (*pb.Enrolment, error) {
	var out *pb.Enrolment
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewFederationServiceClient(conn).Enrol(ctx, req)
		return err
	})
	return out, err
}

// Round returns a round; r = 0 means the current one.
func (c *Client) Round(ctx context.Context, fed string, r uint64) (*pb.RoundInfo, error) {
	var out *pb.RoundInfo
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewRoundServiceClient(conn).GetRound(ctx, &pb.GetRoundRequest{Federation: fed, Round: r})
		return err
	})
	return out, err
}

// Status returns the cluster's status as one node sees it.
func (c *Client) Status(ctx context.Context) (*pb.ClusterStatus, error) {
	var out *pb.ClusterStatus
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewClusterServiceClient(conn).Status(ctx, &pb.StatusRequest{})
		return err
	})
	return out, err
}

// AddNode adds a voter to the cluster.
func (c *Client) AddNode(ctx context.Context, req *pb.AddNodeRequest) (*pb.ClusterStatus, error) {
	var out *pb.ClusterStatus
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewClusterServiceClient(conn).AddNode(ctx, req)
		return err
	})
	return out, err
}

// RemoveNode removes a node from the cluster.
func (c *Client) RemoveNode(ctx context.Context, id string) (*pb.ClusterStatus, error) {
	var out *pb.ClusterStatus
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewClusterServiceClient(conn).RemoveNode(ctx, &pb.RemoveNodeRequest{Id: id})
		return err
	})
	return out, err
}

// Update is one hospital's submission to a round.
type Update struct {
	Federation   string
	Round        uint64
	ClientID     string
	ModelVersion uint64
	Samples      uint64
	// Data is the little-endian float32 delta (plaintext mode) or the he.Vector wire
	// encoding (secure mode).
	Data []byte
}

// SubmitUpdate uploads an update in chunks and returns the acknowledgement once the cluster
// has committed it. It is safe to call again after a lost acknowledgement: the same bytes
// return the original acknowledgement.
func (c *Client) SubmitUpdate(ctx context.Context, u Update) (*pb.UpdateAck, error) {
	h := &pb.UploadHeader{
		Federation: u.Federation, Round: u.Round, ClientId: u.ClientID, ModelVersion: u.ModelVersion,
		Samples: u.Samples, TotalLength: uint64(len(u.Data)), Sha256: digest(u.Data),
	}
	var out *pb.UpdateAck
	err := c.do(ctx, func(conn *grpc.ClientConn) error {
		stream, err := pb.NewRoundServiceClient(conn).SubmitUpdate(ctx)
		if err != nil {
			return err
		}
		out, err = upload(stream, h, u.Data)
		return err
	})
	return out, err
}

// SubmitDecryptionShare uploads a decryption share (he.DecryptionShare wire encoding).
func (c *Client) SubmitDecryptionShare(ctx context.Context, fed string, round uint64, client string, share []byte) (*pb.ShareAck, error) {
	h := &pb.UploadHeader{Federation: fed, Round: round, ClientId: client, TotalLength: uint64(len(share)), Sha256: digest(share)}
	var out *pb.ShareAck
	err := c.do(ctx, func(conn *grpc.ClientConn) error {
		stream, err := pb.NewRoundServiceClient(conn).SubmitDecryptionShare(ctx)
		if err != nil {
			return err
		}
		out, err = upload(stream, h, share)
		return err
	})
	return out, err
}

type uploader[Resp any] interface {
	Send(*pb.UploadChunk) error
	CloseAndRecv() (*Resp, error)
}

func upload[Resp any](stream uploader[Resp], h *pb.UploadHeader, data []byte) (*Resp, error) {
	if err := stream.Send(&pb.UploadChunk{Msg: &pb.UploadChunk_Header{Header: h}}); err != nil && err != io.EOF {
		return nil, err
	}
	for off := 0; off < len(data); off += ChunkBytes {
		// io.EOF from Send means the server closed the stream (for example with the
		// original ack of a duplicate); CloseAndRecv returns its answer.
		if err := stream.Send(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: data[off:min(off+ChunkBytes, len(data))]}}); err != nil {
			if err == io.EOF {
				break
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}

func digest(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

type downloader interface {
	Recv() (*pb.DownloadChunk, error)
}

// download reads a header and its data, checking length and digest.
func download(stream downloader) (*pb.DownloadHeader, []byte, error) {
	m, err := stream.Recv()
	if err != nil {
		return nil, nil, err
	}
	h := m.GetHeader()
	if h == nil {
		return nil, nil, errors.New("coordclient: download did not start with a header")
	}
	if h.TotalLength > 4<<30 {
		return nil, nil, fmt.Errorf("coordclient: download of %d bytes is too large", h.TotalLength)
	}
	var buf bytes.Buffer
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if uint64(buf.Len()+len(m.GetData())) > h.TotalLength {
			return nil, nil, fmt.Errorf("coordclient: download longer than the announced %d bytes", h.TotalLength)
		}
		buf.Write(m.GetData())
	}
	if uint64(buf.Len()) != h.TotalLength || !bytes.Equal(digest(buf.Bytes()), h.Sha256) {
		return nil, nil, fmt.Errorf("coordclient: download of %d bytes does not match its header (%d bytes, digest)", buf.Len(), h.TotalLength)
	}
	return h, buf.Bytes(), nil
}

// FetchModel downloads a model version (0 = latest) in format "f32" (the little-endian
// float32 flat vector) or "safetensors".
func (c *Client) FetchModel(ctx context.Context, fed string, version uint64, format string) (*pb.DownloadHeader, []byte, error) {
	var h *pb.DownloadHeader
	var data []byte
	err := c.do(ctx, func(conn *grpc.ClientConn) error {
		stream, err := pb.NewRoundServiceClient(conn).FetchModel(ctx, &pb.FetchModelRequest{Federation: fed, Version: version, Format: format})
		if err != nil {
			return err
		}
		h, data, err = download(stream)
		return err
	})
	return h, data, err
}

// FetchAggregate downloads a secure round's encrypted aggregate (he.Vector wire encoding).
func (c *Client) FetchAggregate(ctx context.Context, fed string, round uint64) (*pb.DownloadHeader, []byte, error) {
	var h *pb.DownloadHeader
	var data []byte
	err := c.do(ctx, func(conn *grpc.ClientConn) error {
		stream, err := pb.NewRoundServiceClient(conn).FetchAggregate(ctx, &pb.FetchAggregateRequest{Federation: fed, Round: round})
		if err != nil {
			return err
		}
		h, data, err = download(stream)
		return err
	})
	return h, data, err
}

// WatchRounds calls fn with every change of the federation's rounds (first the current
// state of each) until ctx is done or fn returns an error. It reconnects to another node
// when a node goes away.
func (c *Client) WatchRounds(ctx context.Context, fed string, fn func(*pb.RoundInfo) error) error {
	var fnErr error
	err := c.do(ctx, func(conn *grpc.ClientConn) error {
		stream, err := pb.NewRoundServiceClient(conn).WatchRounds(ctx, &pb.WatchRoundsRequest{Federation: fed})
		if err != nil {
			return err
		}
		for {
			ri, err := stream.Recv()
			if err != nil {
				return err
			}
			if fnErr = fn(ri); fnErr != nil {
				return fnErr
			}
		}
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// Ceremony calls.

// SubmitCeremony sends one key-ceremony message: step is "commitment", "reveal" or
// "public-key-share".
func (c *Client) SubmitCeremony(ctx context.Context, step string, m *pb.CeremonyMessage) (*pb.CeremonyStatus, error) {
	var out *pb.CeremonyStatus
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		cc := pb.NewCeremonyServiceClient(conn)
		switch step {
		case "commitment":
			out, err = cc.SubmitSeedCommitment(ctx, m)
		case "reveal":
			out, err = cc.SubmitSeedReveal(ctx, m)
		case "public-key-share":
			out, err = cc.SubmitPublicKeyShare(ctx, m)
		default:
			return status.Errorf(codes.InvalidArgument, "unknown ceremony step %q", step)
		}
		return err
	})
	return out, err
}

// Ceremony returns a federation's key-ceremony state.
func (c *Client) Ceremony(ctx context.Context, fed string) (*pb.CeremonyStatus, error) {
	var out *pb.CeremonyStatus
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewCeremonyServiceClient(conn).GetCeremony(ctx, &pb.GetCeremonyRequest{Federation: fed})
		return err
	})
	return out, err
}

// SendEnvelope relays a sealed threshold share to another hospital.
func (c *Client) SendEnvelope(ctx context.Context, e *pb.Envelope) error {
	return c.do(ctx, func(conn *grpc.ClientConn) error {
		_, err := pb.NewCeremonyServiceClient(conn).SendEnvelope(ctx, e)
		return err
	})
}

// FetchEnvelopes returns the envelopes addressed to client.
func (c *Client) FetchEnvelopes(ctx context.Context, fed, client string) ([]*pb.Envelope, error) {
	var out *pb.FetchEnvelopesResponse
	err := c.do(ctx, func(conn *grpc.ClientConn) (err error) {
		out, err = pb.NewCeremonyServiceClient(conn).FetchEnvelopes(ctx, &pb.FetchEnvelopesRequest{Federation: fed, ClientId: client})
		return err
	})
	return out.GetEnvelopes(), err
}
