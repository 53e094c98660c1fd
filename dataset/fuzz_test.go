package dataset

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// splitFuzzInput splits one fuzz input into an images and a labels file: the first two
// bytes (little-endian) give the length of the labels part, modulo what is left.
func splitFuzzInput(data []byte) (images, labels []byte) {
	if len(data) < 2 {
		return data, nil
	}
	rest := data[2:]
	n := int(binary.LittleEndian.Uint16(data)) % (len(rest) + 1)
	return rest[n:], rest[:n]
}

// joinFuzzInput is the inverse of splitFuzzInput, for seeds.
func joinFuzzInput(images, labels []byte) []byte {
	out := binary.LittleEndian.AppendUint16(nil, uint16(len(labels)))
	return append(append(out, labels...), images...)
}

func FuzzReadIDX(f *testing.F) {
	images, labels := smallIDX()
	f.Add(joinFuzzInput(images, labels))
	f.Add(joinFuzzInput(gzipBytes(f, images), gzipBytes(f, labels)))
	f.Add(joinFuzzInput(images[:7], labels))
	f.Add(joinFuzzInput(idxBytes(idxImagesMagic, []uint32{1 << 30, 1 << 30, 1 << 30}, nil), labels))
	f.Fuzz(func(t *testing.T, data []byte) {
		images, labels := splitFuzzInput(data)
		s, err := ReadIDX(bytes.NewReader(images), bytes.NewReader(labels))
		if err != nil {
			if s != nil {
				t.Fatalf("ReadIDX returned a set and an error %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ReadIDX accepted input but Validate() = %v", err)
		}
		if len(s.Shape) != 3 || s.Shape[2] != 1 {
			t.Fatalf("ReadIDX shape %v, want [rows cols 1]", s.Shape)
		}
		if len(s.X) > len(data)*1100 { // gzip expands at most ~1032×
			t.Fatalf("ReadIDX produced %d values from %d input bytes", len(s.X), len(data))
		}
		for i, v := range s.X {
			if v < 0 || v > 1 {
				t.Fatalf("X[%d] = %v, want in [0, 1]", i, v)
			}
		}
	})
}

func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("a,b,y\n1,2,0\n3,4,1\n"), "")
	f.Add([]byte("y,a\nM,1\nB,2\n"), "y")
	f.Add([]byte("a,y\n1,\"0\n"), "")
	f.Add([]byte("a;y\r\n1e3;x\r\n"), "a")
	f.Fuzz(func(t *testing.T, data []byte, label string) {
		s, err := ReadCSV(bytes.NewReader(data), CSVOptions{Label: label, MaxRows: 1000})
		if err != nil {
			if s != nil {
				t.Fatalf("ReadCSV returned a set and an error %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ReadCSV accepted input but Validate() = %v", err)
		}
		if len(s.Features) != s.Size() || s.Len() == 0 || s.Len() > 1000 {
			t.Fatalf("ReadCSV: %d features named for width %d, %d rows", len(s.Features), s.Size(), s.Len())
		}
	})
}
