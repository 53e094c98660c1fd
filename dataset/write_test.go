package dataset

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// byteImages returns n images of h×w pixels with values k/255 (as ReadIDX makes them) and
// labels i % classes.
func byteImages(n, h, w, classes int, shape []int) *Set {
	s := &Set{Name: "bytes", Shape: shape, Classes: classes, X: make([]float32, n*h*w), Y: make([]float32, n)}
	for i := range s.X {
		s.X[i] = float32((i*37+i/7)%256) / 255
	}
	for i := range s.Y {
		s.Y[i] = float32(i % classes)
	}
	return s
}

func TestWriteIDXRoundTrip(t *testing.T) {
	for _, shape := range [][]int{{3, 5}, {3, 5, 1}} {
		s := byteImages(7, 3, 5, 4, shape)
		for _, compress := range []bool{false, true} {
			var img, lab bytes.Buffer
			var iw, lw io.Writer = &img, &lab
			var zi, zl *gzip.Writer
			if compress {
				zi, zl = gzip.NewWriter(&img), gzip.NewWriter(&lab)
				iw, lw = zi, zl
			}
			if err := WriteIDX(iw, lw, s); err != nil {
				t.Fatal(err)
			}
			if compress {
				zi.Close()
				zl.Close()
			}
			got, err := ReadIDX(&img, &lab)
			if err != nil {
				t.Fatalf("shape %v gzip %v: ReadIDX: %v", shape, compress, err)
			}
			if !slices.Equal(got.X, s.X) || !slices.Equal(got.Y, s.Y) {
				t.Errorf("shape %v gzip %v: values differ after round trip", shape, compress)
			}
			if !slices.Equal(got.Shape, []int{3, 5, 1}) || got.Classes != 4 {
				t.Errorf("shape %v gzip %v: got shape %v, %d classes; want [3 5 1], 4", shape, compress, got.Shape, got.Classes)
			}
		}
	}
}

func TestWriteIDXRounds(t *testing.T) {
	s := &Set{Shape: []int{1, 4}, Classes: 1, X: []float32{0, 0.5, 0.999, 1}, Y: []float32{0}}
	var img, lab bytes.Buffer
	if err := WriteIDX(&img, &lab, s); err != nil {
		t.Fatal(err)
	}
	if got, want := img.Bytes()[16:], []byte{0, 128, 255, 255}; !bytes.Equal(got, want) {
		t.Errorf("pixel bytes %v, want %v", got, want)
	}
}

func TestWriteIDXErrors(t *testing.T) {
	tests := []struct {
		name string
		s    *Set
		want error
	}{
		{"table shape", &Set{Shape: []int{30}, Classes: 2, X: make([]float32, 30), Y: []float32{0}}, ErrShape},
		{"rgb images", &Set{Shape: []int{2, 2, 3}, Classes: 2, X: make([]float32, 12), Y: []float32{0}}, ErrShape},
		{"pixel above one", &Set{Shape: []int{1, 2}, Classes: 2, X: []float32{0, 1.5}, Y: []float32{0}}, ErrInvalid},
		{"negative pixel", &Set{Shape: []int{1, 2}, Classes: 2, X: []float32{-0.1, 0}, Y: []float32{0}}, ErrInvalid},
		{"NaN pixel", &Set{Shape: []int{1, 2}, Classes: 2, X: []float32{float32(math.NaN()), 0}, Y: []float32{0}}, ErrInvalid},
		{"label 256", &Set{Shape: []int{1, 2}, Classes: 300, X: []float32{0, 0}, Y: []float32{256}}, ErrInvalid},
		{"fractional label", &Set{Shape: []int{1, 2}, Classes: 2, X: []float32{0, 0}, Y: []float32{0.5}}, ErrInvalid},
		{"short X", &Set{Shape: []int{1, 2}, Classes: 2, X: []float32{0}, Y: []float32{0}}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var img, lab bytes.Buffer
			err := WriteIDX(&img, &lab, tt.s)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if img.Len() != 0 || lab.Len() != 0 {
				t.Errorf("wrote %d and %d bytes before failing, want none", img.Len(), lab.Len())
			}
			t.Log(err)
		})
	}
}

func TestSaveIDX(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "client-001")
	s := byteImages(11, 4, 4, 3, []int{4, 4, 1})
	if err := SaveIDX(dir, s, "train"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}; !slices.Equal(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	got, err := LoadIDXFiles(filepath.Join(dir, names[0]), filepath.Join(dir, names[1]))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.X, s.X) || !slices.Equal(got.Y, s.Y) {
		t.Error("values differ after SaveIDX and LoadIDXFiles")
	}

	bad := &Set{Shape: []int{2}, Classes: 1, X: []float32{0, 0}, Y: []float32{0}}
	empty := t.TempDir()
	if err := SaveIDX(empty, bad, "train"); !errors.Is(err, ErrShape) {
		t.Errorf("SaveIDX of a table: %v, want ErrShape", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("failed SaveIDX left %d files", len(entries))
	}
}

func TestSaveIDXMNISTRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 10000 MNIST images; skipped with -short")
	}
	_, test := loadMNISTOrSkip(t)
	dir := t.TempDir()
	if err := SaveIDX(dir, test, "t10k"); err != nil {
		t.Fatal(err)
	}
	got, err := LoadIDXFiles(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.X, test.X) || !slices.Equal(got.Y, test.Y) || !slices.Equal(got.Shape, test.Shape) {
		t.Error("MNIST test set differs after SaveIDX and LoadIDXFiles")
	}
}

func TestWriteCSVRoundTrip(t *testing.T) {
	bc, err := LoadBreastCancer("")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("class indices", func(t *testing.T) {
		ids := *bc
		ids.ClassNames = nil
		var b bytes.Buffer
		if err := WriteCSV(&b, &ids, BreastCancerLabel); err != nil {
			t.Fatal(err)
		}
		got, err := ReadCSV(&b, CSVOptions{Label: BreastCancerLabel})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.X, bc.X) || !slices.Equal(got.Y, bc.Y) || !slices.Equal(got.Features, bc.Features) || got.Classes != 2 {
			t.Error("breast cancer table differs after WriteCSV and ReadCSV")
		}
		// LoadBreastCancer accepts the written file too.
		path := filepath.Join(t.TempDir(), "data.csv")
		if err := os.WriteFile(path, []byte(mustCSV(t, &ids, BreastCancerLabel)), 0o644); err != nil {
			t.Fatal(err)
		}
		if again, err := LoadBreastCancer(path); err != nil || !slices.Equal(again.Y, bc.Y) {
			t.Errorf("LoadBreastCancer of the written file: %v", err)
		}
	})
	t.Run("class names", func(t *testing.T) {
		var b bytes.Buffer
		if err := WriteCSV(&b, bc, "diagnosis"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), ",malignant\n") || !strings.HasSuffix(strings.SplitN(b.String(), "\n", 2)[0], ",diagnosis") {
			t.Errorf("want class names and a diagnosis column, got %.200q", b.String())
		}
		got, err := ReadCSV(&b, CSVOptions{Label: "diagnosis"})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.X, bc.X) || !slices.Equal(got.Y, bc.Y) || !slices.Equal(got.ClassNames, bc.ClassNames) {
			t.Error("breast cancer table with class names differs after WriteCSV and ReadCSV")
		}
	})
	t.Run("awkward floats", func(t *testing.T) {
		s := &Set{Shape: []int{3}, Classes: 1, Features: []string{"a", "b,c", `"q"`},
			X: []float32{1e-38, -3.4028235e38, 0.1, float32(math.SmallestNonzeroFloat32), 1.0000001, -0}, Y: []float32{0, 0}}
		got, err := ReadCSV(strings.NewReader(mustCSV(t, s, "")), CSVOptions{Label: "label"})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.X, s.X) || !slices.Equal(got.Features, s.Features) {
			t.Errorf("got %v %q, want %v %q", got.X, got.Features, s.X, s.Features)
		}
	})
	t.Run("no feature names", func(t *testing.T) {
		s := byteImages(2, 1, 3, 2, []int{1, 3, 1})
		head, _, _ := strings.Cut(mustCSV(t, s, ""), "\n")
		if head != "x1,x2,x3,label" {
			t.Errorf("header %q, want x1,x2,x3,label", head)
		}
	})
}

func mustCSV(t *testing.T, s *Set, label string) string {
	t.Helper()
	var b strings.Builder
	if err := WriteCSV(&b, s, label); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestWriteCSVErrors(t *testing.T) {
	tests := []struct {
		name  string
		s     *Set
		label string
	}{
		{"label clashes with feature", &Set{Shape: []int{1}, Classes: 1, Features: []string{"label"}, X: []float32{1}, Y: []float32{0}}, ""},
		{"infinite value", &Set{Shape: []int{1}, Classes: 1, X: []float32{float32(math.Inf(1))}, Y: []float32{0}}, ""},
		{"negative label", &Set{Shape: []int{1}, Classes: 1, X: []float32{1}, Y: []float32{-1}}, ""},
		{"label without name", &Set{Shape: []int{1}, Classes: 1, ClassNames: []string{"a"}, X: []float32{1}, Y: []float32{1}}, ""},
		{"feature count", &Set{Shape: []int{2}, Classes: 1, Features: []string{"a"}, X: []float32{1, 2}, Y: []float32{0}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := WriteCSV(&b, tt.s, tt.label)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			if b.Len() != 0 {
				t.Errorf("wrote %q before failing", b.String())
			}
			t.Log(err)
		})
	}
}

func ExampleWriteCSV() {
	s := &Set{
		Shape: []int{2}, Classes: 2, Features: []string{"age", "systolic_bp"}, ClassNames: []string{"healthy", "sick"},
		X: []float32{63, 145, 41, 120.5}, Y: []float32{1, 0},
	}
	if err := WriteCSV(os.Stdout, s, "diagnosis"); err != nil {
		panic(err)
	}
	s.ClassNames = nil // write class indices instead
	if err := WriteCSV(os.Stdout, s, "diagnosis"); err != nil {
		panic(err)
	}
	// Output:
	// age,systolic_bp,diagnosis
	// 63,145,sick
	// 41,120.5,healthy
	// age,systolic_bp,diagnosis
	// 63,145,1
	// 41,120.5,0
}
