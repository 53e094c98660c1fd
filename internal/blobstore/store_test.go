package blobstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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

// TestRecycledFiles writes blobs into the files of removed ones: a shorter blob must not
// keep the tail of the longer one it replaces.
func TestRecycledFiles(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	long := bytes.Repeat([]byte("L"), 3<<20)
	dl, err := s.Put(long, false)
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
		d, err := s.Put([]byte{byte(i), byte(i >> 8)}, false)
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
	old, err := s.Put(bytes.Repeat([]byte("o"), 5<<20), false)
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
