package coordinator

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/medfed/medfed/internal/blobstore"
)

// Update bytes travel between nodes on the Raft port, not through gRPC: a node copies an
// upload to its peers while it receives it, and a second gRPC transfer of every byte would
// cost as much CPU as the upload itself (BenchmarkIngest). Over plain TCP the kernel moves
// the bytes: the sender passes each chunk from the copy it has just stored (sendfile(2)),
// the receiver splices it into its file (splice(2)), which costs a fifth to a third less
// CPU per MiB than passing them through buffers on both sides (BenchmarkBlobTransfer). muxLayer wraps the Raft stream
// layer (mutual TLS between coordinator certificates, or plain TCP when insecure) and
// sorts accepted connections by their first byte: Raft's start with an RPC type (0 to 3),
// blob connections with blobMagic. A blob connection then carries any number of puts:
//
//	request:  digest [32]byte | length uint64 | flags byte (1 = durable) | index uint64 | length bytes | verdict byte
//	response: 0 stored | 1 already held | 2, uint16 length, message (refused; the bytes were read)
//
// Integers are big endian. index is the sender's last applied Raft index: the receiver
// pins the blob at least that late (see blobPins). The verdict (blobKeep or blobDrop)
// follows the bytes once the sender has checked them against the digest (and an
// update's content): the receiver names the blob only on blobKeep, so it never keeps
// bytes its sender found not to match the digest (an upload whose bytes did not match
// its header would otherwise stay there, and the node, holding that digest, would take
// no other copy of it).

const (
	blobMagic       byte = 0xB9 // 0xB8 was the format without the verdict, 0xB7 without index
	blobFlagDurable byte = 1

	blobDrop byte = 0
	blobKeep byte = 1

	blobStored byte = 0
	blobHad    byte = 1
	blobFailed byte = 2

	// blobIOTimeout bounds each read or write on a blob connection, and how long an idle
	// one stays open on the accepting side.
	blobIOTimeout = 30 * time.Second
	// blobIdleConns is the number of idle blob connections kept per peer.
	blobIdleConns = 4
	// blobCopyBuffer is the buffer a blob is copied through.
	blobCopyBuffer = 1 << 20
	// blobSplicePiece is the most a receiving node splices from a connection to a file
	// within one blobIOTimeout.
	blobSplicePiece = 8 << 20
)

// muxLayer is a raft.StreamLayer that passes Raft its connections and hands blob
// connections to serve.
type muxLayer struct {
	raft.StreamLayer
	serve func(net.Conn)
	log   *slog.Logger

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newMuxLayer(inner raft.StreamLayer, serve func(net.Conn), log *slog.Logger) *muxLayer {
	m := &muxLayer{StreamLayer: inner, serve: serve, log: log, conns: make(chan net.Conn), done: make(chan struct{})}
	go m.acceptLoop()
	return m
}

func (m *muxLayer) acceptLoop() {
	for {
		c, err := m.StreamLayer.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("raft port accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go m.route(c)
	}
}

// route reads the first byte of c (completing a TLS handshake first) within
// raftHandshakeTimeout and passes c on.
func (m *muxLayer) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(raftHandshakeTimeout))
	br := bufio.NewReaderSize(c, blobCopyBuffer)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	if first[0] == blobMagic {
		br.Discard(1)
		m.serve(pc)
		return
	}
	select {
	case m.conns <- pc:
	case <-m.done:
		c.Close()
	}
}

func (m *muxLayer) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *muxLayer) Close() error {
	m.closeOnce.Do(func() { close(m.done) })
	return m.StreamLayer.Close()
}

// peekedConn reads through the buffered reader that peeked at its first byte.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tcpStreamLayer is the Raft stream layer of an insecure node: plain TCP.
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr
}

func (t *tcpStreamLayer) Addr() net.Addr { return t.advertise }

func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

// deadlineReader renews the read deadline of a connection before every read.
type deadlineReader struct{ c net.Conn }

func (r deadlineReader) Read(p []byte) (int, error) {
	r.c.SetReadDeadline(time.Now().Add(blobIOTimeout))
	return r.c.Read(p)
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, blobCopyBuffer); return &b }}

// serveBlobConn answers the puts on one blob connection until the peer closes it or it
// stays idle for blobIOTimeout.
func (n *Node) serveBlobConn(c net.Conn) {
	defer c.Close()
	if !n.blobConns.serving(c) {
		return
	}
	defer n.blobConns.done(c)
	r := deadlineReader{c}
	var hdr [sizeOfBlobHeader]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		d := blobstore.Digest(hdr[:32])
		size := binary.BigEndian.Uint64(hdr[32:40])
		if size > MaxBlobBytes {
			writeBlobStatus(c, blobFailed, fmt.Sprintf("blob of %d bytes, limit %d", size, int64(MaxBlobBytes)))
			return // the framing is lost
		}
		n.pins.pin(d, binary.BigEndian.Uint64(hdr[41:49]))
		status, msg, err := n.storeFromConn(r, d, int64(size), hdr[40]&blobFlagDurable != 0)
		if err != nil {
			return // the connection failed mid-blob
		}
		if writeBlobStatus(c, status, msg) != nil {
			return
		}
	}
}

const sizeOfBlobHeader = 32 + 8 + 1 + 8

// storeFromConn reads size bytes and the sender's verdict from r into blob d. A failure
// of the store, or a verdict to drop the bytes, is reported in the status (the bytes are
// still read, so the connection stays usable); a failure of r is returned as err.
func (n *Node) storeFromConn(r io.Reader, d blobstore.Digest, size int64, durable bool) (byte, string, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	// discard reads the bytes and the verdict of a put that stores nothing.
	discard := func() error {
		_, err := io.CopyBuffer(io.Discard, io.LimitReader(r, size+1), *bp)
		return err
	}
	if n.blobs.Has(d) {
		return blobHad, "", discard()
	}
	w, err := n.blobs.Create(d, size, false)
	if err != nil {
		return blobFailed, err.Error(), discard()
	}
	if durable {
		w.WriteBehind()
	}
	if k, err := readBlob(w, r, size, *bp); err != nil || k != size {
		w.Abort()
		return blobFailed, "", cmp.Or(err, io.ErrUnexpectedEOF) // r (or the file) failed
	}
	var verdict [1]byte
	if _, err := io.ReadFull(r, verdict[:]); err != nil {
		w.Abort()
		return blobFailed, "", err
	}
	if verdict[0] != blobKeep {
		w.Abort()
		return blobFailed, "dropped by the sender", nil
	}
	if err := w.Commit(durable); err != nil {
		return blobFailed, err.Error(), nil
	}
	return blobStored, "", nil
}

// readBlob reads size bytes of a blob from r into w and returns how many it read. When r
// reads a plain TCP connection (a deadlineReader of a peekedConn), the bytes past those
// its buffer holds go from the socket to the file with splice(2), in pieces of
// blobSplicePiece bytes with blobIOTimeout for each, instead of through buf: the kernel
// copies each byte once, not twice.
func readBlob(w *blobstore.Writer, r io.Reader, size int64, buf []byte) (int64, error) {
	var pc *peekedConn
	var tc *net.TCPConn
	if dr, ok := r.(deadlineReader); ok {
		if pc, ok = dr.c.(*peekedConn); ok {
			tc, _ = pc.Conn.(*net.TCPConn)
		}
	}
	if tc == nil {
		return copyGathered(w, r, size, buf[:min(len(buf), fileBatch)])
	}
	k, err := io.CopyBuffer(onlyWriter{w}, io.LimitReader(pc.r, min(int64(pc.r.Buffered()), size)), buf)
	for err == nil && k < size {
		tc.SetReadDeadline(time.Now().Add(blobIOTimeout))
		var m int64
		m, err = w.ReadFrom(io.LimitReader(tc, min(size-k, blobSplicePiece)))
		k += m
		if m == 0 && err == nil {
			err = io.ErrUnexpectedEOF
		}
	}
	return k, err
}

// fileBatch is the least a receiving node reads from a TLS connection (which returns a
// record, 16 KiB at most, per read) before writing to the blob's file.
const fileBatch = 256 << 10

// copyGathered copies size bytes from r to w, filling buf before each write to w (but the
// last): reads that return a little at a time make writes of len(buf) bytes.
func copyGathered(w io.Writer, r io.Reader, size int64, buf []byte) (int64, error) {
	var k int64
	for k < size {
		m, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-k)])
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return k, werr
			}
			k += int64(m)
		}
		if err != nil {
			return k, err
		}
	}
	return k, nil
}

// onlyWriter hides any ReadFrom of the writer, so that CopyBuffer uses the buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

func writeBlobStatus(c net.Conn, status byte, msg string) error {
	c.SetWriteDeadline(time.Now().Add(blobIOTimeout))
	b := []byte{status}
	if status == blobFailed {
		if len(msg) > 1024 {
			msg = msg[:1024]
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
		b = append(b, msg...)
	}
	_, err := c.Write(b)
	return err
}

// blobConns pools idle outgoing blob connections per peer Raft address, and tracks the
// incoming ones, so that Close ends both.
type blobConns struct {
	mu     sync.Mutex
	idle   map[string][]idleConn
	served map[net.Conn]bool
	closed bool
}

// serving records an incoming connection; false means the node is closing.
func (p *blobConns) serving(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.served == nil {
		p.served = map[net.Conn]bool{}
	}
	p.served[c] = true
	return true
}

func (p *blobConns) done(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.served, c)
}

type idleConn struct {
	c     net.Conn
	since time.Time
}

func (p *blobConns) get(addr string) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := p.idle[addr]; len(l) > 0; l = p.idle[addr] {
		ic := l[len(l)-1]
		p.idle[addr] = l[:len(l)-1]
		if time.Since(ic.since) < blobIOTimeout/2 {
			return ic.c
		}
		ic.c.Close()
	}
	return nil
}

func (p *blobConns) put(addr string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[addr]) >= blobIdleConns {
		c.Close()
		return
	}
	if p.idle == nil {
		p.idle = map[string][]idleConn{}
	}
	p.idle[addr] = append(p.idle[addr], idleConn{c, time.Now()})
}

func (p *blobConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, l := range p.idle {
		for _, ic := range l {
			ic.c.Close()
		}
	}
	for c := range p.served {
		c.Close()
	}
	p.idle, p.served = nil, nil
}

// dialBlob opens a blob connection to the node whose Raft transport listens on addr
// (through the Raft stream layer, so with the same mutual TLS).
func (n *Node) dialBlob(addr string) (net.Conn, error) {
	c, err := n.streams.Dial(raft.ServerAddress(addr), 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(blobIOTimeout))
	if _, err := c.Write([]byte{blobMagic}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sendChunk writes data, the next chunk of a blob, to c. With src, a file that holds the
// blob's bytes from its offset on, it sends len(data) bytes from src and never reads data:
// over a plain TCP connection the kernel sends them with sendfile(2) and copies them to no
// socket buffer.
func sendChunk(c net.Conn, src *os.File, data []byte) error {
	c.SetWriteDeadline(time.Now().Add(blobIOTimeout))
	if src == nil {
		_, err := c.Write(data)
		return err
	}
	k, err := io.Copy(c, io.LimitReader(src, int64(len(data))))
	if err == nil && k != int64(len(data)) {
		err = fmt.Errorf("sent %d of a %d-byte chunk from the stored copy", k, len(data))
	}
	return err
}

// push sends the chunks from ch, size bytes in all, as blob d to peer p, then the verdict
// from keep once ch is closed, and returns once the peer holds the blob (or has failed,
// or dropped it). With src (see startPush), sendChunk may send the chunks from there.
func (n *Node) push(ctx context.Context, p blobPeer, d blobstore.Digest, size uint64, ch <-chan []byte, keep <-chan bool, src *os.File) error {
	var hdr [sizeOfBlobHeader]byte
	copy(hdr[:32], d[:])
	binary.BigEndian.PutUint64(hdr[32:40], size)
	if n.cfg.SyncUpdates {
		hdr[40] = blobFlagDurable
	}
	_, applied := n.fsm.Changed()
	binary.BigEndian.PutUint64(hdr[41:49], applied)
	c := n.blobConns.get(p.raftAddr)
	if c != nil {
		c.SetWriteDeadline(time.Now().Add(blobIOTimeout))
		if _, err := c.Write(hdr[:]); err != nil {
			c.Close() // closed by the peer meanwhile: dial afresh
			c = nil
		}
	}
	if c == nil {
		var err error
		if c, err = n.dialBlob(p.raftAddr); err != nil {
			return err
		}
		if _, err := c.Write(hdr[:]); err != nil {
			c.Close()
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	fail := func(err error) error {
		c.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	var sent uint64
	for data := range ch {
		if err := sendChunk(c, src, data); err != nil {
			return fail(err)
		}
		sent += uint64(len(data))
	}
	if sent != size {
		return fail(fmt.Errorf("upload ended after %d of %d bytes", sent, size))
	}
	verdict := []byte{blobDrop}
	if <-keep {
		verdict[0] = blobKeep
	}
	c.SetWriteDeadline(time.Now().Add(blobIOTimeout))
	if _, err := c.Write(verdict); err != nil {
		return fail(err)
	}
	c.SetReadDeadline(time.Now().Add(blobIOTimeout))
	var st [3]byte
	if _, err := io.ReadFull(c, st[:1]); err != nil {
		return fail(err)
	}
	switch st[0] {
	case blobStored, blobHad:
		if stop() {
			n.blobConns.put(p.raftAddr, c)
		}
		return nil
	case blobFailed:
		if _, err := io.ReadFull(c, st[1:3]); err != nil {
			return fail(err)
		}
		msg := make([]byte, binary.BigEndian.Uint16(st[1:3]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return fail(err)
		}
		if stop() {
			n.blobConns.put(p.raftAddr, c)
		}
		return fmt.Errorf("peer refused the blob: %s", msg)
	}
	return fail(fmt.Errorf("blob connection: unknown status %d", st[0]))
}
