package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/pb"
)

// Update bytes live outside the Raft log, in each node's content-addressed blob store
// (DataDir/blobs). The node that receives an upload writes it to its own store while it
// streams the same chunks to as many peers as a majority needs (blobPush, over the Raft
// port: blobwire.go), checks the digest, and only then commits the digest through Raft.
// The leader reads the contributions of a round when it seals it (Node.blob), fetching
// from a peer, through the gRPC BlobService, any it does not hold.

// blobPushQueue is the number of chunks queued for one peer before the receiving node
// waits for it.
const blobPushQueue = 8

// chunkRings holds rings of blobPushQueue+2 upload messages for receiveReplicated, each
// keeping the data buffer of the chunk it last held: uploads over TLS reuse them instead
// of allocating (and clearing) a MiB per chunk.
var chunkRings = sync.Pool{New: func() any {
	r := make([]*pb.UploadChunk, blobPushQueue+2)
	for i := range r {
		r[i] = new(pb.UploadChunk)
	}
	return &r
}}

type blobServer struct {
	pb.UnimplementedBlobServiceServer
	n *Node
}

// GetBlob streams a stored blob: a header with its length and digest, then chunks.
func (s *blobServer) GetBlob(req *pb.GetBlobRequest, stream grpc.ServerStreamingServer[pb.DownloadChunk]) error {
	if err := s.n.authorize(stream.Context(), pki.RoleCoordinator, ""); err != nil {
		return s.n.toStatus(err)
	}
	d, err := blobstore.ParseDigest(req.Sha256)
	if err != nil {
		return s.n.toStatus(fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	r, size, err := s.n.blobs.Reader(d)
	if err != nil {
		if errors.Is(err, blobstore.ErrNotFound) {
			err = fmt.Errorf("%w: blob %s", ErrNotFound, d)
		}
		return s.n.toStatus(err)
	}
	defer r.Close()
	if err := stream.Send(&pb.DownloadChunk{Msg: &pb.DownloadChunk_Header{Header: &pb.DownloadHeader{TotalLength: uint64(size), Sha256: d[:]}}}); err != nil {
		return err
	}
	buf := make([]byte, MaxChunkBytes)
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			if err := stream.Send(&pb.DownloadChunk{Msg: &pb.DownloadChunk_Data{Data: buf[:k]}}); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return s.n.toStatus(err)
		}
	}
}

// blobPeer is another voting member of the cluster, as a blob destination: its ID, its
// Raft address (blobs are pushed there) and its gRPC address (they are fetched there).
type blobPeer struct {
	id, raftAddr, addr string
}

// blobPeers returns the other voters, the leader first (it is the node that will read
// the blob), then in configuration order; and how many of them must hold a blob besides
// this node for it to be on a majority.
func (n *Node) blobPeers() ([]blobPeer, int, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("%w: raft configuration: %v", ErrNotLeader, err)
	}
	_, leader := n.raft.LeaderWithID()
	voters := 0
	var out []blobPeer
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == n.cfg.NodeID {
			continue
		}
		// The gRPC address (for fetching) may not be known yet; pushing needs only the
		// Raft address.
		p := blobPeer{id: string(s.ID), raftAddr: string(s.Address), addr: n.grpcAddrOf(string(s.ID))}
		if s.ID == leader {
			out = slices.Insert(out, 0, p)
		} else {
			out = append(out, p)
		}
	}
	return out, voters / 2, nil // this node plus voters/2 peers is a majority
}

// blobPush streams one blob to one peer from a goroutine, so that a slow peer delays the
// receiving node only when its queue is full and a failed one not at all.
type blobPush struct {
	peer blobPeer
	ch   chan []byte
	keep chan bool // the verdict, sent once after the last chunk
	done chan struct{}
	err  error
}

// startPush starts pushing blob d, size bytes, to peer p: the chunks queued on the
// push's ch, then the verdict given to end. src, if not nil, is a file that holds each
// chunk, at the offset where it falls in the blob, before the chunk is queued: the chunk
// may be sent from there (see sendChunk). The push closes it.
func (n *Node) startPush(ctx context.Context, p blobPeer, d blobstore.Digest, size uint64, src *os.File) *blobPush {
	b := &blobPush{peer: p, ch: make(chan []byte, blobPushQueue), keep: make(chan bool, 1), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		if src != nil {
			defer src.Close()
		}
		b.err = n.push(ctx, p, d, size, b.ch, b.keep, src)
		for range b.ch { // a failed peer: keep the producer from blocking
		}
	}()
	return b
}

// end gives the verdict on the bytes queued so far, the whole blob: the peer keeps its
// copy only if keep. It does not wait.
func (b *blobPush) end(keep bool) {
	b.keep <- keep
	close(b.ch)
}

// wait returns the peer's answer, after end.
func (b *blobPush) wait() error {
	<-b.done
	return b.err
}

// finish ends the push with keep and waits for the peer's answer.
func (b *blobPush) finish(keep bool) error {
	b.end(keep)
	return b.wait()
}

// pushStored sends blob d from this node's store to peer p, which keeps it only if the
// bytes read have digest d.
func (n *Node) pushStored(ctx context.Context, p blobPeer, d blobstore.Digest) error {
	f, size, err := n.blobs.Reader(d)
	if err != nil {
		return err
	}
	defer f.Close()
	sum := sha256.New()
	r := io.TeeReader(f, sum)
	b := n.startPush(ctx, p, d, uint64(size), nil)
	for {
		buf := make([]byte, MaxChunkBytes)
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			b.ch <- buf[:k]
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			b.finish(false)
			return err
		}
	}
	if !bytes.Equal(sum.Sum(nil), d[:]) {
		b.finish(false)
		return fmt.Errorf("%w: this node's copy of blob %s does not match its digest", blobstore.ErrCorrupt, d)
	}
	return b.finish(true)
}

// receiveReplicated reads the rest of an upload stream whose header h was checked into
// this node's blob store, streaming the chunks on to enough peers for a majority, and
// returns once the digest is checked and a majority holds the blob. check validates the
// bytes as they arrive; its verdict is awaited before the peers' copies are.
func (n *Node) receiveReplicated(stream uploadStream, h *pb.UploadHeader, check byteCheck) (blobstore.Digest, error) {
	ctx := stream.Context()
	d, err := blobstore.ParseDigest(h.Sha256)
	if err != nil {
		return d, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	peers, need, err := n.blobPeers()
	if err != nil {
		return d, err
	}
	n.pins.pin(d, 0)
	pctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	var pushes []*blobPush
	// Even a blob this node already holds (a retried upload) is received and checked in
	// full: the acknowledgement vouches for the stream, not only for the header.
	w, err := n.blobs.Create(d, int64(h.TotalLength), true)
	if err != nil {
		return d, err
	}
	if n.cfg.SyncUpdates {
		w.WriteBehind()
	}
	// Over plain TCP the pushes send the chunks from this node's file (sendChunk), and
	// then nothing reads a chunk once the next one is asked for: its message is reused.
	_, sendfile := n.streams.(*tcpStreamLayer)
	reuse := sendfile
	for _, p := range peers[:min(need, len(peers))] {
		var src *os.File
		if sendfile {
			if src, err = w.Open(); err != nil {
				src, reuse = nil, false // this push sends the chunks from memory
			}
		}
		pushes = append(pushes, n.startPush(pctx, p, d, h.TotalLength, src))
	}
	stop := func() {
		cancel()
		for _, b := range pushes {
			b.finish(false)
		}
	}
	// Otherwise a push may still be sending any of the last blobPushQueue+1 chunks
	// queued when the next one arrives (its queue full, the one it took out last in
	// flight): the messages, and the buffers uploadCodec decodes into, go round a ring
	// one longer than that. Every return below comes after the pushes have ended.
	m := new(pb.UploadChunk)
	var ring []*pb.UploadChunk
	if !reuse {
		r := chunkRings.Get().(*[]*pb.UploadChunk)
		defer chunkRings.Put(r)
		ring = *r
	}
	for i := 0; ; i++ {
		if ring != nil {
			m = ring[i%len(ring)]
		}
		err := stream.RecvMsg(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			w.Abort()
			stop()
			return d, err
		}
		data := m.GetData()
		if m.GetHeader() != nil {
			err = fmt.Errorf("%w: second header in upload stream", ErrInvalid)
		} else if len(data) > MaxChunkBytes {
			err = fmt.Errorf("%w: chunk of %d bytes, limit %d", ErrTooLarge, len(data), MaxChunkBytes)
		} else if uint64(w.Written())+uint64(len(data)) > h.TotalLength {
			err = fmt.Errorf("%w: stream carries more than the %d bytes its header announced", ErrTooLarge, h.TotalLength)
		} else if _, err = w.Write(data); err != nil {
			err = fmt.Errorf("%w: %v", ErrInvalid, err)
		} else {
			_, err = check.Write(data)
		}
		if err != nil {
			w.Abort()
			stop()
			return d, err
		}
		for _, b := range pushes {
			select {
			case b.ch <- data:
			case <-ctx.Done():
			}
		}
	}
	if got := uint64(w.Written()); got != h.TotalLength {
		w.Abort()
		stop()
		return d, fmt.Errorf("%w: stream ended after %d of the %d bytes its header announced", ErrInvalid, got, h.TotalLength)
	}
	held, errs, err := n.settle(w, check, pushes)
	if err != nil {
		return d, err
	}
	// Peers that failed are replaced by the others, from the stored copy.
	return d, n.topUp(peers[min(need, len(peers)):], held, need, errs, func(p blobPeer) error { return n.pushStored(pctx, p, d) })
}

// settle finishes a blob received in full through w: it gives the peers of pushes the
// verdict on the bytes (their digest, then check's on their content), which they need
// to name their copies, and then flushes and names this node's own copy, so that the
// copies are flushed at the same time. A refused blob leaves no copy behind (one already
// held under the same digest, checked when it was stored, stays). It returns the number
// of peers that hold the blob and the failures of the others, and err if the bytes were
// refused or this node's copy failed.
func (n *Node) settle(w *blobstore.Writer, check byteCheck, pushes []*blobPush) (held int, errs []error, err error) {
	err = w.Verify()
	if errors.Is(err, blobstore.ErrCorrupt) {
		err = fmt.Errorf("%w: data does not match the sha256 its header announced", ErrInvalid)
	}
	if err == nil {
		err = check.Close()
	}
	for _, b := range pushes {
		b.end(err == nil)
	}
	if err == nil {
		err = w.Commit(n.cfg.SyncUpdates)
	} else {
		w.Abort()
	}
	for _, b := range pushes {
		if perr := b.wait(); perr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.peer.id, perr))
		} else {
			held++
		}
	}
	return held, errs, err
}

// topUp pushes a blob to peers with push, in order, until need of them hold it besides
// the held ones already; errs are the failures so far, for the message.
func (n *Node) topUp(peers []blobPeer, held, need int, errs []error, push func(blobPeer) error) error {
	for _, p := range peers {
		if held >= need {
			break
		}
		if err := push(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.id, err))
		} else {
			held++
		}
	}
	if held < need {
		return fmt.Errorf("%w: stored on %d of the %d nodes a majority needs (%s)", ErrReplicas, held+1, need+1, oneLine(errs))
	}
	return nil
}

// oneLine joins the messages of errs with semicolons, for an error that reaches a client
// as a gRPC status message.
func oneLine(errs []error) string {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// storeReplicated stores data this node made (an aggregate) in its blob store and on as
// many peers as a majority needs, and returns its digest.
func (n *Node) storeReplicated(ctx context.Context, data []byte) (blobstore.Digest, error) {
	d := blobstore.Sum(data)
	n.pins.pin(d, 0)
	if err := n.blobs.PutDigest(d, data, n.cfg.SyncUpdates); err != nil {
		return d, err
	}
	peers, need, err := n.blobPeers()
	if err != nil {
		return d, err
	}
	// The bytes are in memory and d is their digest: no need to read them back and hash
	// them again, as pushStored does.
	return d, n.topUp(peers, 0, need, nil, func(p blobPeer) error { return n.pushBytes(ctx, p, d, data) })
}

// pushBytes sends data, blob d, to peer p, which keeps it: the caller computed d from data.
func (n *Node) pushBytes(ctx context.Context, p blobPeer, d blobstore.Digest, data []byte) error {
	b := n.startPush(ctx, p, d, uint64(len(data)), nil)
	for off := 0; off < len(data); off += MaxChunkBytes {
		b.ch <- data[off:min(off+MaxChunkBytes, len(data))]
	}
	return b.finish(true)
}

// blob returns blob d from this node's store, fetching it from a peer (and keeping a copy)
// if this node does not hold it.
func (n *Node) blob(ctx context.Context, d blobstore.Digest) ([]byte, error) {
	data, err := n.blobs.Get(d)
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, blobstore.ErrNotFound) && !errors.Is(err, blobstore.ErrCorrupt) {
		return nil, err
	}
	peers, _, perr := n.blobPeers()
	if perr != nil {
		return nil, perr
	}
	errs := []error{err}
	for _, p := range peers {
		data, err := n.fetchBlob(ctx, p, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.id, err))
			continue
		}
		n.blobs.Remove(d) // a corrupt local copy
		// fetchBlob checked the digest: keep the copy without hashing it again.
		if err := n.blobs.PutDigest(d, data, false); err != nil {
			n.log.Warn("keeping a fetched blob failed", "blob", d, "err", err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w: blob %s is on no reachable node (%s)", ErrNotFound, d, oneLine(errs))
}

func (n *Node) fetchBlob(ctx context.Context, p blobPeer, d blobstore.Digest) ([]byte, error) {
	if p.addr == "" {
		return nil, fmt.Errorf("no gRPC address known for node %s", p.id)
	}
	conn, err := n.conn(p.addr)
	if err != nil {
		return nil, err
	}
	stream, err := pb.NewBlobServiceClient(conn).GetBlob(ctx, &pb.GetBlobRequest{Sha256: d[:]})
	if err != nil {
		return nil, err
	}
	m, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	h := m.GetHeader()
	if h == nil || h.TotalLength > MaxBlobBytes {
		return nil, fmt.Errorf("%w: blob download without a valid header", ErrInvalid)
	}
	data := make([]byte, 0, h.TotalLength)
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if uint64(len(data)+len(m.GetData())) > h.TotalLength {
			return nil, fmt.Errorf("%w: blob download longer than announced", ErrInvalid)
		}
		data = append(data, m.GetData()...)
	}
	if blobstore.Sum(data) != d {
		return nil, fmt.Errorf("%w: downloaded blob does not match its digest", ErrInvalid)
	}
	return data, nil
}

// collectBlobs deletes the blobs no round needs any more: those of published or aborted
// rounds as soon as this node applies the end of the round (their page-cache pages are
// then reused by the next round's uploads), unknown ones (an upload in flight, or one
// never committed) after BlobGrace.
func (n *Node) collectBlobs(ctx context.Context) {
	t := time.NewTicker(min(5*time.Second, n.cfg.BlobGrace))
	defer t.Stop()
	ended := 0
	for {
		ch, _ := n.fsm.Changed()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-ch:
			if e := n.fsm.endedRounds(); e != ended {
				ended = e
				break
			}
			continue
		}
		n.collectBlobsOnce(time.Now())
	}
}

func (n *Node) collectBlobsOnce(now time.Time) {
	list, err := n.blobs.List()
	if err != nil {
		n.log.Warn("listing blobs", "err", err)
		return
	}
	live, done := n.fsm.blobRefs()
	n.pins.mu.Lock()
	defer n.pins.mu.Unlock()
	for d, p := range n.pins.m {
		if now.Sub(p.at) > n.cfg.BlobGrace {
			delete(n.pins.m, d)
		}
	}
	for _, b := range list {
		p, pinned := n.pins.m[b.Digest]
		ended, isDone := done[b.Digest]
		switch {
		case live[b.Digest]:
		case pinned && (!isDone || p.index >= ended):
			// Being received, or received for a round after the one that ended with
			// the same bytes (a hospital that sent them again): not yet committed.
		case isDone || now.Sub(b.ModTime) > n.cfg.BlobGrace:
			if err := n.blobs.Remove(b.Digest); err != nil {
				n.log.Warn("removing blob", "blob", b.Digest, "err", err)
			}
		}
	}
}

// blobPins keeps the collector off the blobs a node is receiving or has just received,
// until their digest is committed (they are live then) or BlobGrace passes. A blob whose
// digest an ended round also names is otherwise deleted at once: the same bytes may
// arrive again for a later round (a retried or repeated upload), on this node or pushed
// by a peer, while the end of the earlier round is applied here. A pin records the Raft
// index the bytes arrived at (on the node that received them from the hospital, which
// had applied the round they are for): it outlives the end of a round applied before
// that index and not one applied after it.
type blobPins struct {
	fsm *FSM
	mu  sync.Mutex
	m   map[blobstore.Digest]blobPin
}

type blobPin struct {
	index uint64
	at    time.Time
}

// pin protects blob d from now, as having arrived at index or the node's applied index,
// whichever is later. The caller pins before it looks for d in the store.
func (p *blobPins) pin(d blobstore.Digest, index uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[blobstore.Digest]blobPin{}
	}
	_, applied := p.fsm.Changed()
	p.m[d] = blobPin{index: max(index, applied, p.m[d].index), at: time.Now()}
}
