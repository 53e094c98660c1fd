package blobstore

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPutGetRemove(t *testing.T) {
	for _, durable := range []bool{false, true} {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("medfed"), 100_000)
		d, err := s.Put(data, durable)
		if err != nil {
			t.Fatal(err)
		}
		if d != Sum(data) || !s.Has(d) {
			t.Fatalf("durable=%v: blob not stored under its digest", durable)
		}
		got, err := s.Get(d)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get: %v", err)
		}
		if n, err := s.Size(d); err != nil || n != int64(len(data)) {
			t.Fatalf("Size = %d, %v", n, err)
		}
		l, err := s.List()
		if err != nil || len(l) != 1 || l[0].Digest != d {
			t.Fatalf("List = %v, %v", l, err)
		}
		if err := s.Remove(d); err != nil || s.Has(d) {
			t.Fatalf("Remove: %v", err)
		}
		if _, err := s.Get(d); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Remove: %v, want ErrNotFound", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriterChecks(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := []byte("an encrypted update")
	d := Sum(data)

	// Too many bytes.
	w, _ := s.Create(d, 4, true)
	if _, err := w.Write(data); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("overlong write: %v, want ErrCorrupt", err)
	}
	if err := w.Commit(false); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("commit after overlong write: %v", err)
	}
	// Too few.
	w, _ = s.Create(d, int64(len(data)), true)
	w.Write(data[:5])
	if err := w.Commit(false); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short commit: %v, want ErrCorrupt", err)
	}
	// Wrong bytes, verified: Verify finds it before Commit, and leaves the blob unnamed.
	w, _ = s.Create(d, int64(len(data)), true)
	w.Write(bytes.ToUpper(data))
	if err := w.Verify(); !errors.Is(err, ErrCorrupt) || s.Has(d) {
		t.Fatalf("Verify of wrong bytes: %v (visible %v), want ErrCorrupt", err, s.Has(d))
	}
	if err := w.Commit(false); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong digest: %v, want ErrCorrupt", err)
	}
	if s.Has(d) {
		t.Fatal("a refused blob became visible")
	}
	// Abort leaves nothing, after a Verify that passed too.
	w, _ = s.Create(d, int64(len(data)), true)
	w.Write(data)
	if err := w.Verify(); err != nil {
		t.Fatalf("Verify of the right bytes: %v", err)
	}
	w.Abort()
	if err := w.Verify(); err == nil {
		t.Fatal("Verify of an aborted writer passed")
	}
	if s.Has(d) {
		t.Fatal("an aborted blob became visible")
	}
	if ents, _ := os.ReadDir(filepath.Join(s.dir, "tmp")); len(ents) != 0 {
		t.Fatalf("%d temporary files left", len(ents))
	}
	// Unverified wrong bytes are stored, and Get refuses them.
	w, _ = s.Create(d, int64(len(data)), false)
	w.Write(bytes.ToUpper(data))
	if err := w.Commit(false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(d); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of a corrupt file: %v, want ErrCorrupt", err)
	}
}

func TestOpenClearsPartialFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := s.Create(Sum([]byte("x")), 1, true) // never committed: a crash
	_ = w
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("%d partial files survived Open", len(ents))
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Fatalf("List = %v", l)
	}
	if _, err := s.Create(Sum(nil), 0, true); err != nil {
		t.Fatal(err)
	}
}

func TestClosedStore(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Create(Sum(nil), 0, true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Create on closed store: %v", err)
	}
	if _, err := ParseDigest([]byte{1, 2}); err == nil {
		t.Fatal("short digest accepted")
	}
}

// TestRecycledFiles writes blobs into the files of removed ones, which were flushed (one
// that was not is deleted instead): a shorter blob must not keep the tail of the longer
// one it replaces.
func TestRecycledFiles(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	long := bytes.Repeat([]byte("L"), 3<<20)
	// A blob committed without a flush is deleted: its dirty pages go unwritten.
	dn, err := s.Put([]byte("not flushed"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(dn); err != nil || s.Has(dn) || len(s.free) != 0 {
		t.Fatalf("Remove of a blob not flushed: %v; %d free files, want 0", err, len(s.free))
	}
	dl, err := s.Put(long, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(dl); err != nil || s.Has(dl) {
		t.Fatalf("Remove: %v", err)
	}
	if len(s.free) != 1 {
		t.Fatalf("%d free files after Remove, want 1", len(s.free))
	}
	short := []byte("a short blob")
	ds, err := s.Put(short, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.free) != 0 {
		t.Fatal("the free file was not reused")
	}
	if got, err := s.Get(ds); err != nil || !bytes.Equal(got, short) {
		t.Fatalf("Get of a blob in a recycled file: %q, %v", got, err)
	}
	if n, _ := s.Size(ds); n != int64(len(short)) {
		t.Fatalf("size %d, want %d", n, len(short))
	}
	// Removing more blobs than maxFree deletes the rest.
	var ds2 []Digest
	for i := range maxFree + 3 {
		d, err := s.Put([]byte{byte(i), byte(i >> 8)}, true)
		if err != nil {
			t.Fatal(err)
		}
		ds2 = append(ds2, d)
	}
	for _, d := range ds2 {
		s.Remove(d)
	}
	ents, _ := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if len(s.free) != maxFree || len(ents) != maxFree {
		t.Fatalf("%d free files, %d in tmp; want %d", len(s.free), len(ents), maxFree)
	}
}

// TestWriteBehind writes a blob in pieces with write-behind into a recycled, longer file
// and flushes it: the stored blob is exactly the bytes written, under their digest.
func TestWriteBehind(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old, err := s.Put(bytes.Repeat([]byte("o"), 5<<20), true)
	if err != nil {
		t.Fatal(err)
	}
	s.Remove(old)
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	d := Sum(data)
	w, err := s.Create(d, int64(len(data)), true)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteBehind()
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := w.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(true); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after a write-behind blob: %d bytes, %v; want %d", len(got), err, len(data))
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestWriterReadFrom reads blobs from a TCP connection, the way a follower receives
// them: whether the file reads the socket itself (no digest check) or the writer hashes
// the bytes, ReadFrom stops at the announced size, leaving what follows in the
// connection, and a short stream leaves a blob that Commit refuses.
func TestWriterReadFrom(t *testing.T) {
	data := make([]byte, 3<<20+17) // more than one splice
	rand.NewChaCha8([32]byte{1}).Read(data)
	d := Sum(data)
	for _, verify := range []bool{false, true} {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		client, server := tcpPair(t)
		go func() { client.Write(append(slices.Clip(data), "next"...)) }()
		w, err := s.Create(d, int64(len(data)), verify)
		if err != nil {
			t.Fatal(err)
		}
		if k, err := w.ReadFrom(server); err != nil || k != int64(len(data)) || w.Written() != k {
			t.Fatalf("verify=%v: ReadFrom = %d, %v (written %d), want %d", verify, k, err, w.Written(), len(data))
		}
		next := make([]byte, 4)
		if _, err := io.ReadFull(server, next); err != nil || string(next) != "next" {
			t.Fatalf("verify=%v: after the blob the connection holds %q, %v; want \"next\"", verify, next, err)
		}
		if err := w.Commit(false); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(d); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("verify=%v: stored blob differs (%v)", verify, err)
		}

		// Half the bytes, then the sender goes away.
		s.Remove(d)
		client, server = tcpPair(t)
		go func() { client.Write(data[:len(data)/2]); client.Close() }()
		w, _ = s.Create(d, int64(len(data)), verify)
		if k, err := w.ReadFrom(server); err != nil || k != int64(len(data)/2) {
			t.Fatalf("verify=%v: ReadFrom of a cut stream = %d, %v; want %d, nil", verify, k, err, len(data)/2)
		}
		if err := w.Commit(false); !errors.Is(err, ErrCorrupt) || s.Has(d) {
			t.Fatalf("verify=%v: Commit of a short blob: %v, stored %v; want ErrCorrupt", verify, err, s.Has(d))
		}
		s.Close()
	}
}

// TestWriterOpen reads a blob's bytes through Open while it is written, from a recycled
// file that still holds a longer blob's bytes.
func TestWriterOpen(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := bytes.Repeat([]byte("x"), 100)
	od, _ := s.Put(old, true)
	s.Remove(od) // its file is recycled
	data := []byte("an encrypted update")
	w, err := s.Create(Sum(data), int64(len(data)), true)
	if err != nil || len(s.free) != 0 {
		t.Fatalf("Create: %v, %d free files left; want the one reused", err, len(s.free))
	}
	f, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(data))
	for _, part := range [][]byte{data[:5], data[5:]} {
		w.Write(part)
		if _, err := io.ReadFull(f, got[:len(part)]); err != nil || !bytes.Equal(got[:len(part)], part) {
			t.Fatalf("read %q, %v; want %q", got[:len(part)], err, part)
		}
	}
	if err := w.Commit(false); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Open(); err == nil {
		t.Fatal("Open after Commit succeeded")
	}
}
