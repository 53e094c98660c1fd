package blobstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/medfed/medfed/internal/atomicfile"
)

// Digest is the SHA-256 of a blob's bytes, its name in the store.
type Digest [sha256.Size]byte

// ParseDigest converts a 32-byte slice to a Digest.
func ParseDigest(b []byte) (Digest, error) {
	var d Digest
	if len(b) != len(d) {
		return d, fmt.Errorf("blobstore: digest of %d bytes, expected %d", len(b), len(d))
	}
	copy(d[:], b)
	return d, nil
}

// Sum returns the digest of data.
func Sum(data []byte) Digest { return sha256.Sum256(data) }

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Errors. Test with errors.Is.
var (
	// ErrNotFound reports a blob the store does not hold.
	ErrNotFound = errors.New("blobstore: no such blob")
	// ErrCorrupt reports bytes that do not match their digest or announced length.
	ErrCorrupt = errors.New("blobstore: blob does not match its digest or length")
	// ErrClosed reports use of a closed store.
	ErrClosed = errors.New("blobstore: store is closed")
)

// Info describes one stored blob.
type Info struct {
	Digest  Digest
	Size    int64
	ModTime time.Time
}

// Store is a directory of blobs. The zero value is not usable; call Open.
type Store struct {
	dir, tmp string

	mu     sync.Mutex
	closed bool
	free   []string // removed blob files kept for reuse, in tmp
	seq    int      // names free files
	// flushed holds the blobs this Store committed durably and has not removed.
	flushed map[Digest]struct{}
}

// maxFree is the number of removed blob files a Store keeps to write new blobs into.
// Reusing a file skips creating one, which costs far more than writing megabytes into
// pages the file already has (450 µs against 100 µs for 2 MiB on the ext4 of our CI
// machines), and spares freeing and faulting in those pages again: a round's uploads
// land in the files of the previous round's, as a database recycles its log segments.
//
// Only blobs committed durably are recycled: their pages are clean. The pages of one
// committed without a flush may still be dirty, and removing its file lets the kernel
// drop them unwritten, where a recycled file keeps them for the disk. Rounds that end
// within the kernel's 30 seconds of write-back delay would otherwise send every byte of
// every update to the disk, and the Raft log's fsyncs would queue behind it
// (BenchmarkIngest, 64 MiB updates from 16 hospitals in page-cache mode: 13.8 GB written
// during one run recycling every blob, 1.9 GB deleting them).
const maxFree = 32

// Open opens (creating it if needed) the store in dir and removes the partial files a
// crash may have left behind.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir, tmp: filepath.Join(dir, "tmp"), flushed: map[Digest]struct{}{}}
	if err := os.MkdirAll(s.tmp, 0o700); err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	for _, e := range ents {
		os.Remove(filepath.Join(s.tmp, e.Name()))
	}
	return s, nil
}

// Close closes the store: Create fails afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *Store) path(d Digest) string { return filepath.Join(s.dir, d.String()) }

// Has reports whether the store holds a complete blob d.
func (s *Store) Has(d Digest) bool {
	_, err := os.Stat(s.path(d))
	return err == nil
}

// Size returns the size of blob d.
func (s *Store) Size(d Digest) (int64, error) {
	fi, err := os.Stat(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return 0, fmt.Errorf("blobstore: %w", err)
	}
	return fi.Size(), nil
}

// Get reads blob d and checks its digest.
func (s *Store) Get(d Digest) ([]byte, error) {
	data, err := os.ReadFile(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	if Sum(data) != d {
		return nil, fmt.Errorf("%w: file %s has another digest", ErrCorrupt, d)
	}
	return data, nil
}

// Reader opens blob d for streaming, without checking its digest (the caller does, or the
// receiver of the stream), and returns its size.
func (s *Store) Reader(d Digest) (io.ReadCloser, int64, error) {
	f, err := os.Open(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blobstore: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("blobstore: %w", err)
	}
	return f, fi.Size(), nil
}

// Remove deletes blob d; removing a missing blob is not an error. The file of a blob
// committed durably is kept, up to maxFree of them, for Create to write a later blob into.
func (s *Store) Remove(d Digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, flushed := s.flushed[d]
	delete(s.flushed, d)
	if flushed && !s.closed && len(s.free) < maxFree {
		s.seq++
		free := filepath.Join(s.tmp, fmt.Sprintf("free-%d", s.seq))
		err := os.Rename(s.path(d), free)
		if err == nil {
			s.free = append(s.free, free)
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	if err := os.Remove(s.path(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobstore: %w", err)
	}
	return nil
}

// openFile returns a file to write a new blob into: a recycled one, or a new one.
func (s *Store) openFile(d Digest) (*os.File, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	var free string
	if n := len(s.free); n > 0 {
		free, s.free = s.free[n-1], s.free[:n-1]
	}
	s.mu.Unlock()
	if free != "" {
		if f, err := os.OpenFile(free, os.O_WRONLY, 0); err == nil {
			return f, nil
		}
		os.Remove(free)
	}
	f, err := os.CreateTemp(s.tmp, d.String()+".*")
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	return f, nil
}

// List returns every complete blob.
func (s *Store) List() ([]Info, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	var out []Info
	for _, e := range ents {
		b, err := hex.DecodeString(e.Name())
		if err != nil || len(b) != sha256.Size || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, Info{Digest: Digest(b), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return out, nil
}

// Put stores data and returns its digest.
func (s *Store) Put(data []byte, durable bool) (Digest, error) {
	d := Sum(data)
	return d, s.PutDigest(d, data, durable)
}

// PutDigest stores data under d, its digest, which the caller has computed (or checked)
// already: the bytes are not hashed again.
func (s *Store) PutDigest(d Digest, data []byte, durable bool) error {
	if s.Has(d) {
		return nil
	}
	w, err := s.Create(d, int64(len(data)), false)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return err
	}
	return w.Commit(durable)
}

// Writer writes one blob. It is not safe for concurrent use.
type Writer struct {
	s    *Store
	d    Digest
	size int64
	n    int64
	f    *os.File
	h    hash.Hash // nil when the caller checks the digest itself
	err  error
	// behind: each write starts the kernel's write-back of its bytes (WriteBehind)
	behind bool
}

// Create starts writing blob d of size bytes. With verify, Commit checks the bytes
// against d; without it the caller vouches for them (it hashed them on the way in, or it
// is a peer that trusts the sender's check). Get always checks.
func (s *Store) Create(d Digest, size int64, verify bool) (*Writer, error) {
	if size < 0 {
		return nil, fmt.Errorf("blobstore: negative size %d", size)
	}
	f, err := s.openFile(d)
	if err != nil {
		return nil, err
	}
	w := &Writer{s: s, d: d, size: size, f: f}
	if verify {
		w.h = sha256.New()
	}
	return w, nil
}

// Write appends p. Writing past the announced size is ErrCorrupt.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.n+int64(len(p)) > w.size {
		w.err = fmt.Errorf("%w: %d bytes written to a blob announced as %d", ErrCorrupt, w.n+int64(len(p)), w.size)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	if w.behind && n > 0 {
		startWriteback(w.f, w.n, int64(n))
	}
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("blobstore: %w", err)
		return n, w.err
	}
	if w.h != nil {
		w.h.Write(p)
	}
	return n, nil
}

// ReadFrom appends the bytes of r until r ends or the blob has its announced size; it
// never reads past that size. A writer that does not check the digest lets its file read
// r (os.File.ReadFrom), so that bytes from a TCP connection go to the file with splice(2)
// instead of through a buffer in this process; r must then be the connection itself, or
// an *io.LimitedReader of it, for the kernel to see the socket. A failure of r and one of
// the file are not told apart: either fails the writer.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	rest := w.size - w.n
	lr, ok := r.(*io.LimitedReader)
	if !ok || lr.N > rest {
		lr = &io.LimitedReader{R: r, N: rest}
	}
	var k int64
	var err error
	if w.h != nil {
		k, err = io.Copy(onlyWriter{w}, lr) // through Write: the hash sees every byte
	} else {
		k, err = w.f.ReadFrom(lr)
		if w.behind && k > 0 {
			startWriteback(w.f, w.n, k)
		}
		w.n += k
	}
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("blobstore: %w", err)
	}
	return k, w.err
}

// onlyWriter hides a writer's ReadFrom from io.Copy.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// Open opens the blob's file for reading from its start, with a file offset of its own,
// for the caller to close: the bytes written so far can be read from it, and those
// written later once they are, so that a sender can pass them on from the file (with
// sendfile(2)) instead of from memory. A recycled file holds an older blob's bytes past
// those written.
func (w *Writer) Open() (*os.File, error) {
	if w.f == nil {
		return nil, fmt.Errorf("blobstore: writer already finished")
	}
	f, err := os.Open(w.f.Name())
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	return f, nil
}

// WriteBehind makes each later Write start the write-back of its bytes to the disk right
// away (sync_file_range on Linux; nothing elsewhere), for a blob that Commit will flush:
// the flush then finds most of the blob on its way to the disk already, instead of all of
// it still in memory. Without it, dirty pages wait for the kernel's own write-back, which
// a blob deleted soon after never needs. It is a hint: a failure to start the write-back
// is ignored, and Commit(true) still flushes everything.
func (w *Writer) WriteBehind() { w.behind = true }

// Written returns the number of bytes written so far.
func (w *Writer) Written() int64 { return w.n }

// Commit completes the blob: it checks the length (and digest) and makes it visible
// under its digest. Durable flushes file and directory to stable storage before
// returning; otherwise the operating system writes them back in its own time (about 30
// seconds on Linux), and a blob deleted before then may never reach the disk. On error the
// partial file is removed.
func (w *Writer) Commit(durable bool) error {
	err := w.Verify()
	if w.f == nil {
		return err
	}
	if err == nil {
		// A recycled file may be longer than this blob.
		if fi, e := w.f.Stat(); e != nil {
			err = fmt.Errorf("blobstore: %w", e)
		} else if fi.Size() > w.n {
			if e := w.f.Truncate(w.n); e != nil {
				err = fmt.Errorf("blobstore: %w", e)
			}
		}
	}
	if err == nil && durable {
		if e := w.f.Sync(); e != nil {
			err = fmt.Errorf("blobstore: %w", e)
		}
	}
	name := w.f.Name()
	if e := w.f.Close(); e != nil && err == nil {
		err = fmt.Errorf("blobstore: %w", e)
	}
	w.f = nil
	if err != nil {
		os.Remove(name)
		return err
	}
	if err := os.Rename(name, w.s.path(w.d)); err != nil {
		os.Remove(name)
		return fmt.Errorf("blobstore: %w", err)
	}
	if !durable {
		return nil
	}
	if err := atomicfile.SyncDir(w.s.dir); err != nil {
		return err
	}
	w.s.mu.Lock()
	w.s.flushed[w.d] = struct{}{}
	w.s.mu.Unlock()
	return nil
}

// Verify returns the error Commit would find in the bytes: a failed write, fewer bytes
// than announced, or (for a writer that checks them) bytes of another digest. It leaves
// the blob unfinished, so that a caller can act on the verdict (tell a peer to keep or
// drop its copy) before Commit flushes and names the blob.
func (w *Writer) Verify() error {
	if w.f == nil {
		return fmt.Errorf("blobstore: writer already finished")
	}
	if w.err != nil {
		return w.err
	}
	if w.n != w.size {
		return fmt.Errorf("%w: %d of the %d announced bytes", ErrCorrupt, w.n, w.size)
	}
	if w.h != nil {
		if got := w.h.Sum(nil); !bytes.Equal(got, w.d[:]) {
			return fmt.Errorf("%w: bytes have digest %x, announced %s", ErrCorrupt, got[:8], w.d.String()[:16])
		}
	}
	return nil
}

// Abort discards the partial blob.
func (w *Writer) Abort() {
	if w.f == nil {
		return
	}
	name := w.f.Name()
	w.f.Close()
	w.f = nil
	os.Remove(name)
}
