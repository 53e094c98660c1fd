package dataset

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// WriteIDX writes s as a raw IDX pair that ReadIDX reads back: an idx3-ubyte images file
// (count × rows × cols) to images and an idx1-ubyte labels file to labels. For a compressed
// pair, wrap the writers in gzip.NewWriter (ReadIDX detects gzip) or use SaveIDX.
//
// s must hold grey images, per-sample shape [H W] or [H W 1], with pixel values in [0, 1];
// each is stored as the byte round(v*255), so values k/255 (everything ReadIDX produces)
// round-trip exactly. Labels must be class indices in [0, 255]. Anything else returns an
// error wrapping ErrShape (shape) or ErrInvalid (values) before a byte is written.
func WriteIDX(images, labels io.Writer, s *Set) error {
	rows, cols, err := idxShape(s)
	if err != nil {
		return err
	}
	if err := checkIDXValues(s); err != nil {
		return err
	}
	n := s.Len()
	iw := bufio.NewWriterSize(images, 64<<10)
	var head [16]byte
	binary.BigEndian.PutUint32(head[0:], idxImagesMagic)
	binary.BigEndian.PutUint32(head[4:], uint32(n))
	binary.BigEndian.PutUint32(head[8:], uint32(rows))
	binary.BigEndian.PutUint32(head[12:], uint32(cols))
	if _, err := iw.Write(head[:]); err != nil {
		return fmt.Errorf("idx images: %w", err)
	}
	row := make([]byte, rows*cols)
	for i := range n {
		for j, v := range s.Sample(i) {
			row[j] = byte(math.Round(float64(v) * 255))
		}
		if _, err := iw.Write(row); err != nil {
			return fmt.Errorf("idx images: %w", err)
		}
	}
	if err := iw.Flush(); err != nil {
		return fmt.Errorf("idx images: %w", err)
	}

	lw := bufio.NewWriterSize(labels, 64<<10)
	binary.BigEndian.PutUint32(head[0:], idxLabelsMagic)
	binary.BigEndian.PutUint32(head[4:], uint32(n))
	if _, err := lw.Write(head[:8]); err != nil {
		return fmt.Errorf("idx labels: %w", err)
	}
	for _, y := range s.Y {
		if err := lw.WriteByte(byte(y)); err != nil {
			return fmt.Errorf("idx labels: %w", err)
		}
	}
	if err := lw.Flush(); err != nil {
		return fmt.Errorf("idx labels: %w", err)
	}
	return nil
}

// idxShape returns the image size of s if it can be stored as idx3-ubyte.
func idxShape(s *Set) (rows, cols int, err error) {
	sh := s.Shape
	if !(len(sh) == 2 || (len(sh) == 3 && sh[2] == 1)) || sh[0] <= 0 || sh[1] <= 0 {
		return 0, 0, fmt.Errorf("write idx %q: %w: per-sample shape %v, want grey images [H W] or [H W 1]", s.Name, ErrShape, sh)
	}
	if uint64(sh[0]) > math.MaxUint32 || uint64(sh[1]) > math.MaxUint32 || uint64(s.Len()) > math.MaxUint32 {
		return 0, 0, fmt.Errorf("write idx %q: %w: %d images of %d×%d, want every dimension < 2^32", s.Name, ErrTooLarge, s.Len(), sh[0], sh[1])
	}
	if len(s.X) != s.Len()*s.Size() {
		return 0, 0, fmt.Errorf("write idx %q: %w: len(X) = %d, want %d images × %d values", s.Name, ErrInvalid, len(s.X), s.Len(), s.Size())
	}
	return sh[0], sh[1], nil
}

// checkIDXValues checks pixels in [0, 1] and labels in [0, 255].
func checkIDXValues(s *Set) error {
	size := s.Size()
	for j, v := range s.X {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("write idx %q: %w: sample %d pixel %d is %v, want a value in [0, 1]", s.Name, ErrInvalid, j/size, j%size, v)
		}
	}
	for i, y := range s.Y {
		if !(y >= 0 && y <= 255 && y == float32(int(y))) {
			return fmt.Errorf("write idx %q: %w: sample %d label %v, want a class index in [0, 255]", s.Name, ErrInvalid, i, y)
		}
	}
	return nil
}

// SaveIDX writes s into dir (created if missing) as the gzip-compressed IDX pair
// <prefix>-images-idx3-ubyte.gz and <prefix>-labels-idx1-ubyte.gz, the names LoadMNIST
// expects for prefix "train" or "t10k"; read it back with LoadIDXFiles. It uses gzip's
// fastest level. Each file is written to a temporary name and renamed into place, so a
// failure leaves no partial file under the final name. s must satisfy WriteIDX.
//
// IDX stores no class count: a set read back has Classes = largest label present + 1.
func SaveIDX(dir string, s *Set, prefix string) error {
	if prefix == "" {
		return errors.New("save idx: empty file name prefix, want e.g. train or t10k")
	}
	if _, _, err := idxShape(s); err != nil {
		return err
	}
	if err := checkIDXValues(s); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save idx: %w", err)
	}
	imagesPath := filepath.Join(dir, prefix+"-images-idx3-ubyte.gz")
	labelsPath := filepath.Join(dir, prefix+"-labels-idx1-ubyte.gz")
	img, err := newAtomicFile(imagesPath)
	if err != nil {
		return fmt.Errorf("save idx: %w", err)
	}
	defer img.abort()
	lab, err := newAtomicFile(labelsPath)
	if err != nil {
		return fmt.Errorf("save idx: %w", err)
	}
	defer lab.abort()
	// BestSpeed: 6 times faster than the default level on MNIST, files 7% larger.
	imgZ, _ := gzip.NewWriterLevel(img.f, gzip.BestSpeed)
	labZ, _ := gzip.NewWriterLevel(lab.f, gzip.BestSpeed)
	if err := WriteIDX(imgZ, labZ, s); err != nil {
		return fmt.Errorf("save idx %s: %w", dir, err)
	}
	if err := imgZ.Close(); err != nil {
		return fmt.Errorf("save idx %s: %w", imagesPath, err)
	}
	if err := labZ.Close(); err != nil {
		return fmt.Errorf("save idx %s: %w", labelsPath, err)
	}
	if err := img.commit(); err != nil {
		return fmt.Errorf("save idx: %w", err)
	}
	return lab.commit()
}

// atomicFile is written under a temporary name in the target's folder and renamed to the
// target by commit; abort (a no-op after commit) removes the temporary file.
type atomicFile struct {
	f      *os.File
	target string
	done   bool
}

func newAtomicFile(target string) (*atomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp*")
	if err != nil {
		return nil, err
	}
	return &atomicFile{f: f, target: target}, nil
}

func (a *atomicFile) commit() error {
	if err := a.f.Chmod(0o644); err != nil {
		return err
	}
	if err := a.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(a.f.Name(), a.target); err != nil {
		return err
	}
	a.done = true
	return nil
}

func (a *atomicFile) abort() {
	if !a.done {
		a.f.Close()
		os.Remove(a.f.Name())
	}
}

// WriteCSV writes s as a table that ReadCSV reads back: a header row of the feature names
// followed by labelColumn ("" means "label"), then one row per sample with its values (the
// shortest decimal form that reads back to the same float32) and its label last.
//
// Feature names come from s.Features, or are x1, x2, ... when Features is nil (for example
// for flattened images). The label is written as the class name when s.ClassNames is set,
// else as the class index. Note that ReadCSV maps class names to indices in sorted order and
// only knows the names that occur: to keep class indices stable across files that may lack
// some classes (partitions), clear ClassNames so indices are written.
//
// Errors wrap ErrInvalid (a value that is not finite, a label that is not a class index, a
// name clash between the label column and a feature) and are returned before anything is
// written, or are the writer's.
func WriteCSV(w io.Writer, s *Set, labelColumn string) error {
	if labelColumn == "" {
		labelColumn = "label"
	}
	size := s.Size()
	if len(s.X) != s.Len()*size {
		return fmt.Errorf("write csv %q: %w: len(X) = %d, want %d samples × %d values", s.Name, ErrInvalid, len(s.X), s.Len(), size)
	}
	header := make([]string, 0, size+1)
	if s.Features != nil {
		if len(s.Features) != size {
			return fmt.Errorf("write csv %q: %w: %d feature names, want %d", s.Name, ErrInvalid, len(s.Features), size)
		}
		header = append(header, s.Features...)
	} else {
		for j := range size {
			header = append(header, "x"+strconv.Itoa(j+1))
		}
	}
	if slices.Contains(header, labelColumn) {
		return fmt.Errorf("write csv %q: %w: label column %q is also a feature name", s.Name, ErrInvalid, labelColumn)
	}
	header = append(header, labelColumn)
	for j, v := range s.X {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("write csv %q: %w: sample %d column %q is %v, want a finite number", s.Name, ErrInvalid, j/size, header[j%size], v)
		}
	}
	names := s.ClassNames
	for i, y := range s.Y {
		if !(y >= 0 && y == float32(int(y))) || (names != nil && int(y) >= len(names)) {
			return fmt.Errorf("write csv %q: %w: sample %d label %v, want a class index in [0, %d)", s.Name, ErrInvalid, i, y, max(len(names), s.Classes))
		}
	}

	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	rec := make([]string, size+1)
	for i, y := range s.Y {
		for j, v := range s.Sample(i) {
			rec[j] = strconv.FormatFloat(float64(v), 'g', -1, 32)
		}
		if names != nil {
			rec[size] = names[int(y)]
		} else {
			rec[size] = strconv.Itoa(int(y))
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}
