package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// idxBytes encodes an IDX file: magic number, dimensions, payload.
func idxBytes(magic uint32, dims []uint32, payload []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	binary.Write(&b, binary.BigEndian, dims)
	b.Write(payload)
	return b.Bytes()
}

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// smallIDX returns 3 images of 2×4 pixels with labels 2, 0, 1.
func smallIDX() (images, labels []byte) {
	pixels := []byte{
		0, 255, 51, 102, 0, 0, 0, 0,
		1, 2, 3, 4, 5, 6, 7, 8,
		255, 255, 255, 255, 0, 0, 0, 0,
	}
	return idxBytes(idxImagesMagic, []uint32{3, 2, 4}, pixels),
		idxBytes(idxLabelsMagic, []uint32{3}, []byte{2, 0, 1})
}

func TestReadIDXRoundTrip(t *testing.T) {
	images, labels := smallIDX()
	tests := []struct {
		name           string
		images, labels []byte
	}{
		{"raw", images, labels},
		{"gzip", gzipBytes(t, images), gzipBytes(t, labels)},
		{"gzip images, raw labels", gzipBytes(t, images), labels},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ReadIDX(bytes.NewReader(tt.images), bytes.NewReader(tt.labels))
			if err != nil {
				t.Fatalf("ReadIDX: %v", err)
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got, want := s.Len(), 3; got != want {
				t.Errorf("Len() = %d, want %d", got, want)
			}
			if got, want := s.Shape, []int{2, 4, 1}; !slices.Equal(got, want) {
				t.Errorf("Shape = %v, want %v", got, want)
			}
			if got, want := s.Y, []float32{2, 0, 1}; !slices.Equal(got, want) {
				t.Errorf("Y = %v, want %v", got, want)
			}
			if got, want := s.Classes, 3; got != want {
				t.Errorf("Classes = %d, want %d", got, want)
			}
			wantX := []float32{0, 1, 0.2, 0.4}
			for i, want := range wantX {
				if got := s.X[i]; math.Abs(float64(got-want)) > 1e-6 {
					t.Errorf("X[%d] = %v, want %v", i, got, want)
				}
			}
			if got, want := s.X[16], float32(1); got != want {
				t.Errorf("X[16] = %v, want %v", got, want)
			}
		})
	}
}

func TestReadIDXErrors(t *testing.T) {
	images, labels := smallIDX()
	corruptGzip := gzipBytes(t, images)
	corruptGzip[len(corruptGzip)-6] ^= 0xff // CRC-32 in the gzip trailer
	huge := idxBytes(idxImagesMagic, []uint32{0xffffffff, 0xffffffff, 0xffffffff}, nil)
	tests := []struct {
		name           string
		images, labels []byte
		want           error
		wantMsg        string
	}{
		{"empty images", nil, labels, ErrFormat, "images: malformed data: empty input"},
		{"empty labels", images, nil, ErrFormat, "labels: malformed data: empty input"},
		{"9-byte header", images[:9], labels, ErrFormat, "header truncated: got 9 of 16 bytes"},
		{"wrong images magic", labels, labels, ErrFormat, "magic number 0x00000801, want 0x00000803"},
		{"wrong labels magic", images, images, ErrFormat, "magic number 0x00000803, want 0x00000801"},
		{"non-byte element type", idxBytes(0x00000d03, []uint32{3, 2, 4}, images[16:]), labels, ErrFormat, "magic number 0x00000d03"},
		{"truncated pixels", images[:len(images)-1], labels, ErrFormat, "truncated: got 23 of 24 pixel bytes"},
		{"truncated labels", images, labels[:len(labels)-1], ErrFormat, "truncated: got 2 of 3 label bytes"},
		{"trailing pixels", append(slices.Clone(images), 7), labels, ErrFormat, "trailing data after 24 pixel bytes"},
		{"count mismatch", images, idxBytes(idxLabelsMagic, []uint32{2}, []byte{0, 1}), ErrFormat, "2 labels, want 3"},
		{"zero rows", idxBytes(idxImagesMagic, []uint32{3, 0, 4}, nil), labels, ErrFormat, "image size 0×4"},
		{"huge header", huge, labels, ErrTooLarge, "announce more than"},
		{"huge header gzip", gzipBytes(t, huge), labels, ErrTooLarge, "announce more than"},
		{"just over limit", idxBytes(idxImagesMagic, []uint32{1 << 15, 1 << 8, 1<<8 + 1}, nil), labels, ErrTooLarge, "announce more than"},
		{"header claims 1 GiB, sends 8 bytes", idxBytes(idxImagesMagic, []uint32{1 << 14, 1 << 8, 1 << 8}, make([]byte, 8)), idxBytes(idxLabelsMagic, []uint32{1 << 14}, nil), ErrFormat, "truncated: got 8 of 1073741824 pixel bytes"},
		{"corrupt gzip checksum", corruptGzip, labels, ErrFormat, "gzip: invalid checksum"},
		{"truncated gzip", gzipBytes(t, images)[:30], labels, ErrFormat, "images: malformed data"},
		{"gzip magic, bad header", []byte{0x1f, 0x8b, 0, 0}, labels, ErrFormat, "gzip header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ReadIDX(bytes.NewReader(tt.images), bytes.NewReader(tt.labels))
			if err == nil {
				t.Fatalf("ReadIDX = %d samples, nil error; want error %q", s.Len(), tt.wantMsg)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadIDX error %q does not wrap %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ReadIDX error = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestReadIDXEmptySet(t *testing.T) {
	s, err := ReadIDX(bytes.NewReader(idxBytes(idxImagesMagic, []uint32{0, 28, 28}, nil)),
		bytes.NewReader(idxBytes(idxLabelsMagic, []uint32{0}, nil)))
	if err != nil {
		t.Fatalf("ReadIDX of 0 images: %v", err)
	}
	if got := s.Len(); got != 0 {
		t.Errorf("Len() = %d, want 0", got)
	}
}

func TestLoadIDXFilesNamesFile(t *testing.T) {
	dir := t.TempDir()
	images, labels := smallIDX()
	imagesPath := filepath.Join(dir, "imgs-idx3-ubyte.gz")
	labelsPath := filepath.Join(dir, "labs-idx1-ubyte")
	badLabelsPath := filepath.Join(dir, "bad-labels")
	for path, data := range map[string][]byte{imagesPath: gzipBytes(t, images), labelsPath: labels, badLabelsPath: labels[:5]} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := LoadIDXFiles(imagesPath, labelsPath)
	if err != nil {
		t.Fatalf("LoadIDXFiles: %v", err)
	}
	if got, want := s.Name, "imgs-idx3-ubyte"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	tests := []struct {
		name, images, labels, wantMsg string
	}{
		{"missing images", filepath.Join(dir, "nope"), labelsPath, filepath.Join(dir, "nope")},
		{"bad labels", imagesPath, badLabelsPath, "labels file " + badLabelsPath + ": malformed data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadIDXFiles(tt.images, tt.labels)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("LoadIDXFiles error = %v, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}
