package dataset

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte) and the number
// of dimensions.
const (
	idxImagesMagic = 0x00000803 // idx3-ubyte: count, rows, cols
	idxLabelsMagic = 0x00000801 // idx1-ubyte: count
)

// MaxIDXBytes is the largest payload (product of the header's dimensions) that ReadIDX
// accepts in one IDX file. A header claiming more is rejected with ErrTooLarge before
// anything is allocated; below the limit, memory grows only with bytes that actually arrive.
const MaxIDXBytes = min(1<<31, math.MaxInt)

// ReadIDX reads a labelled image set from an IDX images file (idx3-ubyte, magic 0x00000803,
// dimensions count×rows×cols) and an IDX labels file (idx1-ubyte, magic 0x00000801), each
// raw or gzip-compressed (detected by the gzip magic 0x1f8b). Pixel bytes are scaled to
// [0, 1]; the per-sample shape is [rows cols 1] and Classes is the largest label plus one.
//
// Both files must hold exactly what their headers announce, with matching counts. Malformed
// input returns an error wrapping ErrFormat, and a header announcing more than MaxIDXBytes
// returns ErrTooLarge; neither panics.
func ReadIDX(images, labels io.Reader) (*Set, error) {
	return readIDX(images, labels, "images", "labels")
}

// LoadIDXFiles reads a labelled image set from an IDX images file and an IDX labels file
// (raw or gzip) as ReadIDX does; errors name the file at fault. The set's Name is the base
// name of the images file.
func LoadIDXFiles(imagesPath, labelsPath string) (*Set, error) {
	img, err := os.Open(imagesPath)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	defer img.Close()
	lab, err := os.Open(labelsPath)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	defer lab.Close()
	s, err := readIDX(img, lab, "images file "+imagesPath, "labels file "+labelsPath)
	if err != nil {
		return nil, err
	}
	s.Name = strings.TrimSuffix(filepath.Base(imagesPath), ".gz")
	return s, nil
}

// readIDX does the work of ReadIDX; imagesName and labelsName start its error messages.
func readIDX(images, labels io.Reader, imagesName, labelsName string) (*Set, error) {
	imgFile, err := openIDX(images, imagesName, idxImagesMagic)
	if err != nil {
		return nil, err
	}
	labFile, err := openIDX(labels, labelsName, idxLabelsMagic)
	if err != nil {
		return nil, err
	}
	n, rows, cols := imgFile.dims[0], imgFile.dims[1], imgFile.dims[2]
	if labFile.dims[0] != n {
		return nil, fmt.Errorf("%s: %w: %d labels, want %d (one per image in %s)", labelsName, ErrFormat, labFile.dims[0], n, imagesName)
	}
	if rows == 0 || cols == 0 {
		return nil, fmt.Errorf("%s: %w: image size %d×%d, want both dimensions > 0", imagesName, ErrFormat, rows, cols)
	}
	pixels, err := imgFile.payload("pixel")
	if err != nil {
		return nil, err
	}
	labelBytes, err := labFile.payload("label")
	if err != nil {
		return nil, err
	}

	var scale [256]float32
	for b := range scale {
		scale[b] = float32(b) / 255
	}
	s := &Set{
		X:     make([]float32, len(pixels)),
		Y:     make([]float32, len(labelBytes)),
		Shape: []int{int(rows), int(cols), 1},
	}
	for i, b := range pixels {
		s.X[i] = scale[b]
	}
	for i, b := range labelBytes {
		s.Y[i] = float32(b)
		s.Classes = max(s.Classes, int(b)+1)
	}
	return s, nil
}

// idxFile is an IDX stream whose header has been read.
type idxFile struct {
	name string
	r    io.Reader // positioned at the payload, decompressing if needed
	dims []uint64
	size uint64 // product of dims, at most MaxIDXBytes
}

// openIDX detects gzip, reads and checks the header (magic number and dimensions).
func openIDX(r io.Reader, name string, magic uint32) (*idxFile, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	f := &idxFile{name: name, r: br}
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: gzip header: %w", name, ErrFormat, err)
		}
		f.r = zr
	}
	ndims := int(magic & 0xff)
	header := make([]byte, 4+4*ndims)
	// The magic number first, so a wrong kind of file is named as such even when short.
	if got, err := io.ReadFull(f.r, header[:4]); err != nil {
		if got == 0 && err == io.EOF {
			return nil, fmt.Errorf("%s: %w: empty input, want an idx%d-ubyte file", name, ErrFormat, ndims)
		}
		return nil, f.readError(err, fmt.Sprintf("header truncated: got %d of %d bytes", got, len(header)))
	}
	if got := binary.BigEndian.Uint32(header); got != magic {
		return nil, fmt.Errorf("%s: %w: magic number 0x%08x, want 0x%08x (idx%d-ubyte)", name, ErrFormat, got, magic, ndims)
	}
	if got, err := io.ReadFull(f.r, header[4:]); err != nil {
		return nil, f.readError(err, fmt.Sprintf("header truncated: got %d of %d bytes", 4+got, len(header)))
	}
	f.size = 1
	for i := range ndims {
		d := uint64(binary.BigEndian.Uint32(header[4+4*i:]))
		f.dims = append(f.dims, d)
		if d != 0 && f.size > MaxIDXBytes/d {
			return nil, fmt.Errorf("%s: %w: header dimensions %v announce more than %d bytes", name, ErrTooLarge, headerDims(header, ndims), uint64(MaxIDXBytes))
		}
		f.size *= d
	}
	return f, nil
}

func headerDims(header []byte, ndims int) []uint32 {
	dims := make([]uint32, ndims)
	for i := range dims {
		dims[i] = binary.BigEndian.Uint32(header[4+4*i:])
	}
	return dims
}

// payload reads exactly the f.size bytes the header announced and checks that nothing
// follows them (for gzip this also verifies the checksum). Memory grows with the bytes that
// arrive, so a header that lies about its size cannot make it allocate much.
func (f *idxFile) payload(what string) ([]byte, error) {
	const chunk = 1 << 20
	buf := make([]byte, 0, min(f.size, chunk))
	for uint64(len(buf)) < f.size {
		if len(buf) == cap(buf) {
			grow := min(f.size-uint64(len(buf)), uint64(max(len(buf), chunk)))
			buf = slices.Grow(buf, int(grow))
		}
		want := min(uint64(cap(buf)), f.size)
		n, err := io.ReadFull(f.r, buf[len(buf):want])
		buf = buf[:len(buf)+n]
		if err != nil {
			return nil, f.readError(err, fmt.Sprintf("truncated: got %d of %d %s bytes (header dimensions %v)", len(buf), f.size, what, f.dims))
		}
	}
	var extra [1]byte
	n, err := io.ReadFull(f.r, extra[:])
	switch {
	case n > 0:
		return nil, fmt.Errorf("%s: %w: trailing data after %d %s bytes (header dimensions %v)", f.name, ErrFormat, f.size, what, f.dims)
	case err != io.EOF:
		return nil, f.readError(err, "")
	}
	return buf, nil
}

// readError wraps an error from reading the stream. Premature end of input becomes ErrFormat
// with the message truncated; gzip and deflate corruption become ErrFormat; other read errors
// (I/O) are wrapped as they are.
func (f *idxFile) readError(err error, truncated string) error {
	var corrupt flate.CorruptInputError
	switch {
	case (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) && truncated != "":
		return fmt.Errorf("%s: %w: %s", f.name, ErrFormat, truncated)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.As(err, &corrupt):
		return fmt.Errorf("%s: %w: %w", f.name, ErrFormat, err)
	default:
		return fmt.Errorf("%s: %w", f.name, err)
	}
}
