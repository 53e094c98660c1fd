package coordinator

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/pb"
)

// holders returns the indexes of the running nodes whose blob store holds d.
func (tc *testCluster) holders(d blobstore.Digest) []int {
	var out []int
	for i, n := range tc.nodes {
		if n != nil && n.blobs.Has(d) {
			out = append(out, i)
		}
	}
	return out
}

// TestUpdateBlobs follows update bytes outside the Raft log on a 3-node cluster: an
// acknowledged update is on a majority of nodes whichever node received it; a leader that
// lacks a contribution fetches it from a peer when it aggregates the round; and once the
// round is published every node deletes the round's blobs. With and without
// Config.SyncUpdates.
func TestUpdateBlobs(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) { testUpdateBlobs(t, sync) })
	}
}

func testUpdateBlobs(t *testing.T, sync bool) {
	tc := startClusterWith(t, 3, func(c *Config) { c.SyncUpdates = sync })
	ctx := testCtx(t)
	leader := tc.leader()
	follower := (leader + 1) % 3
	clients := []string{"h1", "h2", "h3"}
	c := newClient(t, tc.addrs())
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "f", ModelSpecJson: testModelSpec(t), Clients: clients, MinClients: 3, Rounds: 1, Strategy: "fedavg",
	}); err != nil {
		t.Fatal(err)
	}
	for _, h := range clients {
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: h}); err != nil {
			t.Fatal(err)
		}
	}
	waitRound(t, ctx, c, "f", 1, pb.RoundState_ROUND_STATE_OPEN)
	_, w0b, err := c.FetchModel(ctx, "f", 0, "f32") // version 0 is the latest, here the initial model
	if err != nil {
		t.Fatal(err)
	}

	// h1 uploads through the leader, h2 through a follower.
	var digests []blobstore.Digest
	for k, node := range []int{leader, follower} {
		data := EncodeFloat32s(delta(k))
		d := blobstore.Sum(data)
		digests = append(digests, d)
		cn := newClient(t, []string{tc.cfgs[node].GRPCAddr})
		if _, err := cn.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: clients[k], Samples: uint64(k + 1), Data: data}); err != nil {
			t.Fatal(err)
		}
		if h := tc.holders(d); len(h) < 2 {
			t.Fatalf("update received by node %d is acknowledged but held by nodes %v only; a majority is 2", node, h)
		}
	}
	// The leader loses its copy of h1's update (a disk replaced, say): it must fetch it.
	if err := tc.nodes[leader].blobs.Remove(digests[0]); err != nil {
		t.Fatal(err)
	}
	if len(tc.holders(digests[0])) == 0 {
		t.Fatal("no copy of h1's update left")
	}
	data := EncodeFloat32s(delta(2))
	if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h3", Samples: 3, Data: data}); err != nil {
		t.Fatal(err)
	}
	digests = append(digests, blobstore.Sum(data))
	ri := waitRound(t, ctx, c, "f", 1, pb.RoundState_ROUND_STATE_PUBLISHED)
	if len(ri.Contributions) != 3 {
		t.Fatalf("published with %d contributions, want 3", len(ri.Contributions))
	}
	_, wb, err := c.FetchModel(ctx, "f", 1, "f32")
	if err != nil {
		t.Fatal(err)
	}
	w, _ := DecodeFloat32s(wb)
	w0, _ := DecodeFloat32s(w0b)
	for i := range w {
		want := float64(w0[i]) + (1*float64(delta(0)[i])+2*float64(delta(1)[i])+3*float64(delta(2)[i]))/6
		if d := float64(w[i]) - want; d > 1e-5 || d < -1e-5 {
			t.Fatalf("w[%d] = %v, want %v: a contribution is missing or wrong", i, w[i], want)
		}
	}
	waitFor(t, "every node to delete the published round's blobs", func() bool {
		for _, d := range digests {
			if len(tc.holders(d)) > 0 {
				return false
			}
		}
		return true
	})
	tc.closeAll()
}

// TestRepeatedBytesSurviveCollection sends the same update bytes in two rounds. Once the
// first round ends its blobs are garbage, but the same digest arriving for the second
// round (from the hospital on the receiving node, pushed by a peer on another) must
// survive the collector until it is committed: a blob is pinned at the Raft index it
// arrived at, and the end of a round applied before that index does not release it.
func TestRepeatedBytesSurviveCollection(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tc := startCluster(t, 3)
	ctx := testCtx(t)
	leader := tc.leader()
	follower := (leader + 1) % 3
	c := newClient(t, []string{tc.cfgs[leader].GRPCAddr})
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1, Rounds: 2, Strategy: "fedavg",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: "h1"}); err != nil {
		t.Fatal(err)
	}
	data := EncodeFloat32s(delta(0))
	d := blobstore.Sum(data)
	submit := func(r uint64) {
		t.Helper()
		ri := waitRound(t, ctx, c, "f", r, pb.RoundState_ROUND_STATE_OPEN)
		if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: r, ClientID: "h1", ModelVersion: ri.ModelVersion, Samples: 1, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	submit(1)
	waitRound(t, ctx, c, "f", 1, pb.RoundState_ROUND_STATE_PUBLISHED)
	waitFor(t, "every node to delete round 1's blob", func() bool { return len(tc.holders(d)) == 0 })
	waitRound(t, ctx, c, "f", 2, pb.RoundState_ROUND_STATE_OPEN)

	// The same bytes arrive again, before their commit: on the leader from the hospital
	// (as receiveReplicated pins them), on the follower from a peer over the blob port,
	// naming an index later than the follower's own.
	ln, fn := tc.nodes[leader], tc.nodes[follower]
	ln.pins.pin(d, 0)
	if _, err := ln.blobs.Put(data, false); err != nil {
		t.Fatal(err)
	}
	_, applied := fn.fsm.Changed()
	conn, err := net.DialTimeout("tcp", tc.cfgs[follower].RaftAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := append([]byte{blobMagic}, d[:]...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(len(data)))
	hdr = append(hdr, 0)
	hdr = binary.BigEndian.AppendUint64(hdr, applied+1000)
	if _, err := conn.Write(append(append(hdr, data...), blobKeep)); err != nil {
		t.Fatal(err)
	}
	var st [1]byte
	if _, err := io.ReadFull(conn, st[:]); err != nil || st[0] != blobStored {
		t.Fatalf("push to the follower: status %d, %v", st[0], err)
	}
	fn.pins.mu.Lock()
	got := fn.pins.m[d].index
	fn.pins.mu.Unlock()
	if got != applied+1000 {
		t.Errorf("follower pinned the pushed blob at index %d, want the sender's %d", got, applied+1000)
	}
	for _, n := range []*Node{ln, fn} {
		n.collectBlobsOnce(time.Now())
	}
	if h := tc.holders(d); len(h) != 2 {
		t.Fatalf("after collection the repeated bytes are on nodes %v, want the leader and the follower", h)
	}
	submit(2)
	waitRound(t, ctx, c, "f", 2, pb.RoundState_ROUND_STATE_PUBLISHED)
	waitFor(t, "the leader to delete round 2's blob", func() bool { return !ln.blobs.Has(d) })
	waitFor(t, "the follower to apply the end of round 2", func() bool {
		ri, err := fn.fsm.Round("f", 2)
		return err == nil && ri.State == pb.RoundState_ROUND_STATE_PUBLISHED
	})
	// The follower's pin named an index past the round's end: it holds until BlobGrace.
	fn.collectBlobsOnce(time.Now())
	if !fn.blobs.Has(d) {
		t.Fatal("follower dropped a blob pinned past the end of its round before BlobGrace")
	}
	fn.collectBlobsOnce(time.Now().Add(fn.cfg.BlobGrace + time.Second))
	if fn.blobs.Has(d) {
		t.Fatal("follower kept an ended round's blob after its pin expired")
	}

	// Without a pin, or with one from before the round's end, ended bytes go at once.
	for _, pin := range []*blobPin{nil, {index: 1, at: time.Now()}} {
		if _, err := fn.blobs.Put(data, false); err != nil {
			t.Fatal(err)
		}
		fn.pins.mu.Lock()
		delete(fn.pins.m, d)
		if pin != nil {
			fn.pins.m[d] = *pin
		}
		fn.pins.mu.Unlock()
		fn.collectBlobsOnce(time.Now())
		if fn.blobs.Has(d) {
			t.Errorf("pin %+v: an ended round's blob survived collection", pin)
		}
	}
	tc.closeAll()
}

// TestBlobConnRefusals sends bad blob requests to a node's Raft port: an oversized blob
// is refused with a message, a blob its sender drops (or gives no valid verdict) is not
// stored, bytes that are not Raft's are dropped, and the node keeps serving Raft and
// blobs.
func TestBlobConnRefusals(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tc := startCluster(t, 1)
	n := tc.nodes[tc.leader()]
	addr := tc.cfgs[0].RaftAddr
	req := func(d blobstore.Digest, size uint64, body []byte) (byte, string) {
		t.Helper()
		return putBlob(t, addr, d, size, body)
	}
	if st, msg := req(blobstore.Digest{}, MaxBlobBytes+1, nil); st != blobFailed || msg == "" {
		t.Fatalf("oversized blob: status %d %q, want a refusal with a message", st, msg)
	}
	// Garbage that is neither Raft nor a blob connection.
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		conn.Close()
	}
	// A blob whose sender drops it, or sends no valid verdict, is not stored.
	body := []byte("encrypted update bytes")
	d := blobstore.Sum(body)
	for _, verdict := range []byte{blobDrop, 7} {
		if st, msg := req(d, uint64(len(body)), append(body, verdict)); st != blobFailed || msg != "dropped by the sender" || n.blobs.Has(d) {
			t.Fatalf("verdict %d: status %d %q, stored %v; want it dropped", verdict, st, msg, n.blobs.Has(d))
		}
	}
	// A good blob still goes in, and a second copy is recognised.
	if st, msg := req(d, uint64(len(body)), append(body, blobKeep)); st != blobStored {
		t.Fatalf("blob: status %d %q, want stored", st, msg)
	}
	if st, _ := req(d, uint64(len(body)), append(body, blobKeep)); st != blobHad {
		t.Fatalf("second copy: status %d, want already held", st)
	}
	if got, err := n.blobs.Get(d); err != nil || string(got) != string(body) {
		t.Fatalf("stored blob: %q, %v", got, err)
	}
	if _, err := n.propose(testCtx(t), &pb.Command{Cmd: &pb.Command_SetNodeAddr{SetNodeAddr: &pb.SetNodeAddrCmd{Id: "x", GrpcAddr: "127.0.0.1:1"}}}); err != nil {
		t.Fatalf("raft stopped working: %v", err)
	}
	tc.closeAll()
}

// putBlob opens a blob connection to the node at addr, sends one put of blob d, size
// bytes announced, whose body (the bytes, then the verdict) is body, and returns the
// node's status and message. A node that closes the connection instead is status 255.
func putBlob(t *testing.T, addr string, d blobstore.Digest, size uint64, body []byte) (byte, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := append([]byte{blobMagic}, d[:]...)
	hdr = binary.BigEndian.AppendUint64(hdr, size)
	hdr = append(hdr, 0)
	hdr = binary.BigEndian.AppendUint64(hdr, 0) // index
	if _, err := conn.Write(append(hdr, body...)); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	var st [1]byte
	if _, err := io.ReadFull(conn, st[:]); err == io.EOF {
		return 255, ""
	} else if err != nil {
		t.Fatal(err)
	}
	if st[0] != blobFailed {
		return st[0], ""
	}
	var l [2]byte
	io.ReadFull(conn, l[:])
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	io.ReadFull(conn, msg)
	return st[0], string(msg)
}

// TestBlobConnLargeBlobs puts blobs larger than what the receiving node buffers in
// reading the header, so that the node takes the rest of each from the socket with
// splice(2): a whole one is stored intact, one whose sender stops halfway is not stored
// at all, and the node goes on serving.
func TestBlobConnLargeBlobs(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tc := startCluster(t, 1)
	n := tc.nodes[tc.leader()]
	addr := tc.cfgs[0].RaftAddr
	body := make([]byte, 3*blobCopyBuffer+5)
	for i := range body {
		body[i] = byte(i * 7)
	}
	d := blobstore.Sum(body)
	if st, msg := putBlob(t, addr, d, uint64(len(body)), body[:len(body)/2]); st != 255 || n.blobs.Has(d) {
		t.Fatalf("half a blob: status %d %q, stored %v; want the connection closed and nothing stored", st, msg, n.blobs.Has(d))
	}
	if st, msg := putBlob(t, addr, d, uint64(len(body)), append(slices.Clip(body), blobKeep)); st != blobStored {
		t.Fatalf("whole blob: status %d %q, want stored", st, msg)
	}
	if got, err := n.blobs.Get(d); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("stored blob differs from the one sent (%v)", err)
	}
	tc.closeAll()
}

// TestPushStoredChecksDigest pushes a blob from the leader's store to a follower: a
// stored copy whose bytes do not match its digest (bit rot, say) is refused and the
// follower keeps nothing; an intact copy arrives intact.
func TestPushStoredChecksDigest(t *testing.T) {
	tc := startCluster(t, 3)
	n := tc.nodes[tc.leader()]
	ctx := testCtx(t)
	peers, _, err := n.blobPeers()
	if err != nil || len(peers) == 0 {
		t.Fatalf("peers %v, %v", peers, err)
	}
	var follower *Node
	for _, m := range tc.nodes {
		if string(m.cfg.NodeID) == peers[0].id {
			follower = m
		}
	}
	data := bytes.Repeat([]byte("stored update "), 200000) // several chunks
	d := blobstore.Sum(data)
	w, err := n.blobs.Create(d, int64(len(data)), false)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.ToUpper(data))
	if err := w.Commit(false); err != nil {
		t.Fatal(err)
	}
	if err := n.pushStored(ctx, peers[0], d); !errors.Is(err, blobstore.ErrCorrupt) {
		t.Fatalf("push of a corrupt copy: %v, want ErrCorrupt", err)
	}
	if follower.blobs.Has(d) {
		t.Fatal("the follower kept a copy that does not match its digest")
	}
	if err := n.blobs.Remove(d); err != nil {
		t.Fatal(err)
	}
	if _, err := n.blobs.Put(data, false); err != nil {
		t.Fatal(err)
	}
	if err := n.pushStored(ctx, peers[0], d); err != nil {
		t.Fatalf("push of an intact copy: %v", err)
	}
	if got, err := follower.blobs.Get(d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("follower's copy: %d bytes, %v", len(got), err)
	}
	tc.closeAll()
}

// TestStoreReplicated stores bytes the leader made (as it does an aggregate), several
// chunks long: they end up intact on a majority, the leader included.
func TestStoreReplicated(t *testing.T) {
	tc := startCluster(t, 3)
	leader := tc.leader()
	data := bytes.Repeat([]byte("aggregate "), 300000)
	d, err := tc.nodes[leader].storeReplicated(testCtx(t), data)
	if err != nil {
		t.Fatal(err)
	}
	h := tc.holders(d)
	if len(h) < 2 || !slices.Contains(h, leader) {
		t.Fatalf("blob on nodes %v, want the leader (%d) and at least one more", h, leader)
	}
	for _, i := range h {
		if got, err := tc.nodes[i].blobs.Get(d); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("node %d's copy: %d bytes, %v", i, len(got), err)
		}
	}
	tc.closeAll()
}

// FuzzBlobConn feeds arbitrary bytes, as they would follow the marker byte on the Raft
// port, to a node's blob-connection server: it must not panic, must return once the peer
// is gone, and must name a blob only for a whole put (header, the announced bytes, a keep
// verdict), however the bytes around it are mangled.
func FuzzBlobConn(f *testing.F) {
	put := func(d blobstore.Digest, size uint64, body []byte, verdict ...byte) []byte {
		b := append([]byte{}, d[:]...)
		b = binary.BigEndian.AppendUint64(b, size)
		b = append(b, 0)
		b = binary.BigEndian.AppendUint64(b, 7) // index
		return append(append(b, body...), verdict...)
	}
	body := []byte("encrypted update bytes")
	d := blobstore.Sum(body)
	f.Add(put(d, uint64(len(body)), body, blobKeep))
	f.Add(put(d, uint64(len(body)), body, blobDrop))
	f.Add(append(put(d, uint64(len(body)), body, blobKeep), put(blobstore.Sum(nil), 0, nil, blobKeep)...))
	f.Add(put(d, MaxBlobBytes+1, nil))
	f.Add(put(d, 100, body))
	f.Add([]byte{})
	tc := startCluster(f, 1)
	n := tc.nodes[0]
	f.Fuzz(func(t *testing.T, in []byte) {
		infos, err := n.blobs.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range infos {
			n.blobs.Remove(b.Digest)
		}
		// The puts the input holds whole, with a keep verdict: the only blobs it may name.
		allowed := map[blobstore.Digest]bool{}
		for r := in; len(r) >= sizeOfBlobHeader; {
			size := binary.BigEndian.Uint64(r[32:40])
			if size > MaxBlobBytes || uint64(len(r)-sizeOfBlobHeader) < size+1 {
				break
			}
			if r[sizeOfBlobHeader+size] == blobKeep {
				allowed[blobstore.Digest(r[:32])] = true
			}
			r = r[sizeOfBlobHeader+size+1:]
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.serveBlobConn(server)
		}()
		go io.Copy(io.Discard, client) // the answers
		client.Write(in)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the blob server did not return after its peer closed")
		}
		infos, err = n.blobs.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range infos {
			if !allowed[b.Digest] {
				t.Fatalf("named blob %s, which no whole put with a keep verdict carried", b.Digest)
			}
		}
	})
	tc.closeAll()
}

// TestTooFewReplicas: when the peers refuse a blob, the write fails with ErrReplicas, an
// Unavailable status that a client retries, whose message says how many nodes hold the
// bytes and why the others do not, and does not point at a missing leader.
func TestTooFewReplicas(t *testing.T) {
	tc := startCluster(t, 3)
	leader := tc.leader()
	for i, n := range tc.nodes {
		if i != leader {
			n.blobs.Close() // Create fails on the followers; Raft goes on
		}
	}
	n := tc.nodes[leader]
	_, err := n.storeReplicated(testCtx(t), bytes.Repeat([]byte("aggregate "), 300000))
	if !errors.Is(err, ErrReplicas) || errors.Is(err, ErrNotLeader) {
		t.Fatalf("store with both peers refusing: %v, want ErrReplicas", err)
	}
	st := status.Convert(n.toStatus(err))
	for _, want := range []string{"too few replicas", "stored on 1 of the 2 nodes a majority needs", blobstore.ErrClosed.Error()} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("message %q does not say %q", st.Message(), want)
		}
	}
	if st.Code() != codes.Unavailable || strings.Contains(st.Message(), "leader") {
		t.Errorf("status %v %q, want Unavailable without a leader hint", st.Code(), st.Message())
	}
	tc.closeAll()
}

// pieceReader returns at most piece bytes per Read, as a TLS connection returns a record.
type pieceReader struct {
	r     io.Reader
	piece int
}

func (p pieceReader) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), p.piece)]) }

// sizesWriter records the size of each write.
type sizesWriter struct {
	bytes.Buffer
	sizes []int
}

func (w *sizesWriter) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.Buffer.Write(p)
}

// TestCopyGathered: a receiving node that reads a TLS connection a record at a time
// writes the blob's file in writes of a whole buffer (all but the last), copies exactly
// the blob's bytes (leaving what follows it, the verdict, unread), and reports a stream
// that ends early.
func TestCopyGathered(t *testing.T) {
	body := make([]byte, 5*fileBatch+123)
	for i := range body {
		body[i] = byte(i * 13)
	}
	src := bytes.NewReader(append(slices.Clip(body), blobKeep))
	var w sizesWriter
	k, err := copyGathered(&w, pieceReader{src, 16 << 10}, int64(len(body)), make([]byte, fileBatch))
	if err != nil || k != int64(len(body)) || !bytes.Equal(w.Bytes(), body) {
		t.Fatalf("copied %d bytes (%v), equal %v; want the %d bytes of the blob", k, err, bytes.Equal(w.Bytes(), body), len(body))
	}
	if want := []int{fileBatch, fileBatch, fileBatch, fileBatch, fileBatch, 123}; !slices.Equal(w.sizes, want) {
		t.Errorf("writes of %v bytes, want %v", w.sizes, want)
	}
	if rest, _ := io.ReadAll(src); !bytes.Equal(rest, []byte{blobKeep}) {
		t.Errorf("left %v unread, want the verdict alone", rest)
	}

	w = sizesWriter{}
	k, err = copyGathered(&w, pieceReader{bytes.NewReader(body[:fileBatch+7]), 16 << 10}, int64(len(body)), make([]byte, fileBatch))
	if !errors.Is(err, io.ErrUnexpectedEOF) || k != fileBatch+7 || !bytes.Equal(w.Bytes(), body[:fileBatch+7]) {
		t.Errorf("a stream ending after %d bytes: copied %d (%v); want them all and io.ErrUnexpectedEOF", fileBatch+7, k, err)
	}
}

// TestChunkRing: receiveReplicated's ring of upload messages is long enough that no
// chunk is overwritten while a push still needs it. The chunks are decoded as over TLS
// (uploadCodec, into the ring's messages) and queued as for a push (blobPushQueue deep,
// taken out in order by one goroutine, which sends a chunk before taking the next); the
// consumer is slow, so the queue stays full, and finds each chunk as it was decoded.
// (With a ring one message shorter, the chunk a push is sending is overwritten.)
func TestChunkRing(t *testing.T) {
	codec := newUploadCodec()
	ch := make(chan []byte, blobPushQueue)
	bad := make(chan string, 1)
	done := make(chan struct{})
	const chunks, size = 60, 4096
	go func() {
		defer close(done)
		i := 0
		for data := range ch {
			time.Sleep(time.Millisecond) // sending
			if want := bytes.Repeat([]byte{byte(i)}, size); !bytes.Equal(data, want) {
				select {
				case bad <- fmt.Sprintf("chunk %d was overwritten while queued or in flight (now starts %d)", i, data[0]):
				default:
				}
			}
			i++
		}
	}()
	r := chunkRings.Get().(*[]*pb.UploadChunk)
	ring := *r
	for i := range chunks {
		m := ring[i%len(ring)]
		b, err := proto.Marshal(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: bytes.Repeat([]byte{byte(i)}, size)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := codec.Unmarshal(pieces(b, 1000), m); err != nil {
			t.Fatal(err)
		}
		ch <- m.GetData()
	}
	close(ch)
	<-done
	chunkRings.Put(r)
	select {
	case msg := <-bad:
		t.Fatal(msg)
	default:
	}
	// The buffers were reused, not allocated per chunk.
	seen := map[*byte]bool{}
	for _, m := range ring {
		seen[&m.GetData()[0]] = true
	}
	if len(seen) != len(ring) {
		t.Errorf("%d distinct buffers in a ring of %d", len(seen), len(ring))
	}
}

// chunkStream is an upload stream of data chunks that decodes each into the caller's
// message with uploadCodec, as a node's gRPC server does.
type chunkStream struct {
	ctx    context.Context
	chunks [][]byte
	codec  uploadCodec
}

func (s *chunkStream) Context() context.Context { return s.ctx }

func (s *chunkStream) Recv() (*pb.UploadChunk, error) {
	m := new(pb.UploadChunk)
	return m, s.RecvMsg(m)
}

func (s *chunkStream) RecvMsg(v any) error {
	if len(s.chunks) == 0 {
		return io.EOF
	}
	b, err := proto.Marshal(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: s.chunks[0]}})
	if err != nil {
		return err
	}
	s.chunks = s.chunks[1:]
	return s.codec.Unmarshal(pieces(b, 16<<10), v)
}

// acceptAll is a content check that accepts any bytes.
type acceptAll struct{}

func (acceptAll) Write(b []byte) (int, error) { return len(b), nil }
func (acceptAll) Close() error                { return nil }

// TestReceiveOverTLSRing: a node with mutual TLS receives an upload of many more chunks
// than its ring of messages holds, of sizes that are not multiples of a TLS record,
// copying each to a follower from memory as it comes (the follower gathering the records
// into larger file writes): every copy is the upload, byte for byte. Here the copy keeps
// up with the upload, so a ring too short would seldom show; TestChunkRing holds a push
// back on purpose.
func TestReceiveOverTLSRing(t *testing.T) {
	ca := newTestPKI(t)
	tc := startClusterWith(t, 3, ca.serverNode)
	leader := tc.leader()
	n := tc.nodes[leader]
	var data []byte
	var chunks [][]byte
	for i := range 5 * (blobPushQueue + 2) {
		c := make([]byte, 64<<10+i)
		for k := range c {
			c[k] = byte(i*31 + k*7)
		}
		chunks = append(chunks, c)
		data = append(data, c...)
	}
	sum := blobstore.Sum(data)
	h := &pb.UploadHeader{Sha256: sum[:], TotalLength: uint64(len(data))}
	d, err := n.receiveReplicated(&chunkStream{ctx: testCtx(t), chunks: chunks, codec: newUploadCodec()}, h, acceptAll{})
	if err != nil {
		t.Fatal(err)
	}
	holders := tc.holders(d)
	if len(holders) < 2 {
		t.Fatalf("blob on nodes %v, want the leader and a follower", holders)
	}
	for _, i := range holders {
		if got, err := tc.nodes[i].blobs.Get(d); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("node %d's copy (%d bytes, %v) differs from the upload", i, len(got), err)
		}
	}
	tc.closeAll()
}
