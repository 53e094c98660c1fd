package dataset

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name           string
		in             string
		opts           CSVOptions
		wantX, wantY   []float32
		wantFeatures   []string
		wantClasses    int
		wantClassNames []string
	}{
		{
			name:         "label last by default",
			in:           "a,b,y\n1,2,0\n3.5,-4,1\n",
			wantX:        []float32{1, 2, 3.5, -4},
			wantY:        []float32{0, 1},
			wantFeatures: []string{"a", "b"},
			wantClasses:  2,
		},
		{
			name:         "label column chosen",
			in:           "y,a,b\n2,1,2\n0,3,4\n",
			opts:         CSVOptions{Label: "y"},
			wantX:        []float32{1, 2, 3, 4},
			wantY:        []float32{2, 0},
			wantFeatures: []string{"a", "b"},
			wantClasses:  3,
		},
		{
			name:         "label in the middle, semicolons, spaces, CRLF, BOM",
			in:           "\ufeff a ; class ; b \r\n1; 1.0 ;2\r\n3;0;4\r\n",
			opts:         CSVOptions{Label: "class", Comma: ';'},
			wantX:        []float32{1, 2, 3, 4},
			wantY:        []float32{1, 0},
			wantFeatures: []string{"a", "b"},
			wantClasses:  2,
		},
		{
			name:           "string labels sorted",
			in:             "x,diagnosis\n1,M\n2,B\n3,M\n4,healthy\n",
			wantX:          []float32{1, 2, 3, 4},
			wantY:          []float32{1, 0, 1, 2},
			wantFeatures:   []string{"x"},
			wantClasses:    3,
			wantClassNames: []string{"B", "M", "healthy"},
		},
		{
			name:           "negative numeric labels are names",
			in:             "x,y\n1,-1\n2,1\n",
			wantX:          []float32{1, 2},
			wantY:          []float32{0, 1},
			wantFeatures:   []string{"x"},
			wantClasses:    2,
			wantClassNames: []string{"-1", "1"},
		},
		{
			name:         "quoted fields and scientific notation",
			in:           "\"a,1\",y\n\"1e-3\",0\n",
			wantX:        []float32{1e-3},
			wantY:        []float32{0},
			wantFeatures: []string{"a,1"},
			wantClasses:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ReadCSV(strings.NewReader(tt.in), tt.opts)
			if err != nil {
				t.Fatalf("ReadCSV: %v", err)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if !slices.Equal(s.X, tt.wantX) || !slices.Equal(s.Y, tt.wantY) {
				t.Errorf("X, Y = %v, %v; want %v, %v", s.X, s.Y, tt.wantX, tt.wantY)
			}
			if !slices.Equal(s.Features, tt.wantFeatures) || !slices.Equal(s.Shape, []int{len(tt.wantFeatures)}) {
				t.Errorf("Features, Shape = %q, %v; want %q, [%d]", s.Features, s.Shape, tt.wantFeatures, len(tt.wantFeatures))
			}
			if s.Classes != tt.wantClasses || !slices.Equal(s.ClassNames, tt.wantClassNames) {
				t.Errorf("Classes, ClassNames = %d, %q; want %d, %q", s.Classes, s.ClassNames, tt.wantClasses, tt.wantClassNames)
			}
		})
	}
}

func TestReadCSVErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		opts    CSVOptions
		want    error
		wantMsg string
	}{
		{"empty file", "", CSVOptions{}, ErrFormat, "empty input, want a header row"},
		{"header only", "a,y\n", CSVOptions{}, ErrFormat, "header but no data rows"},
		{"one column", "y\n1\n", CSVOptions{}, ErrFormat, "header has 1 column, want at least 2"},
		{"unknown label", "a,y\n1,0\n", CSVOptions{Label: "class"}, ErrFormat, `no label column "class"`},
		{"duplicate column", "a,a,y\n1,2,0\n", CSVOptions{}, ErrFormat, `columns 1 and 2 are both named "a"`},
		{"bad number", "a,b,y\n1,2,0\n1,x2,1\n", CSVOptions{}, ErrFormat, `line 3, column "b": got "x2", want a finite number`},
		{"empty cell", "a,b,y\n1,,0\n", CSVOptions{}, ErrFormat, `line 2, column "b": got "", want a finite number`},
		{"NaN", "a,y\nNaN,0\n", CSVOptions{}, ErrFormat, `got "NaN", want a finite number`},
		{"overflow float32", "a,y\n1e39,0\n", CSVOptions{}, ErrFormat, `got "1e39"`},
		{"short row", "a,b,y\n1,2,0\n1,2\n", CSVOptions{}, ErrFormat, "line 3: 2 fields, want 3"},
		{"long row", "a,b,y\n1,2,0,9\n", CSVOptions{}, ErrFormat, "line 2: 4 fields, want 3"},
		{"empty label", "a,y\n1,\n", CSVOptions{}, ErrFormat, `line 2, label column "y": empty`},
		{"bare quote", "a,y\n1,\"0\n", CSVOptions{}, ErrFormat, "extraneous or missing \""},
		{"too many rows", "a,y\n1,0\n2,0\n3,0\n", CSVOptions{MaxRows: 2}, ErrTooLarge, "line 4: more than 2 data rows"},
		{"huge class id", "a,y\n1,100000\n", CSVOptions{}, ErrTooLarge, "class id 100000"},
		{"bad comma", "a,y\n1,0\n", CSVOptions{Comma: '"'}, nil, "Comma"},
		{"negative MaxRows", "a,y\n1,0\n", CSVOptions{MaxRows: -1}, nil, "MaxRows -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ReadCSV(strings.NewReader(tt.in), tt.opts)
			if err == nil {
				t.Fatalf("ReadCSV = %d rows, nil error; want error %q", s.Len(), tt.wantMsg)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("ReadCSV error %q does not wrap %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ReadCSV error = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestLoadCSV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ward7.csv")
	if err := os.WriteFile(path, []byte("hr,bp,outcome\n80,120,ok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadCSV(path, CSVOptions{})
	if err != nil {
		t.Fatalf("LoadCSV: %v", err)
	}
	if got, want := s.Name, "ward7"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("hr,outcome\nfast,ok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCSV(bad, CSVOptions{}); err == nil || !strings.HasPrefix(err.Error(), bad+": ") {
		t.Errorf("LoadCSV(%s) error = %v, want it to start with the path", bad, err)
	}
}

func TestLoadBreastCancer(t *testing.T) {
	embedded, err := LoadBreastCancer("")
	if err != nil {
		t.Fatalf("LoadBreastCancer(\"\"): %v", err)
	}
	fromFile, err := LoadBreastCancer(filepath.Join("testdata", "breast_cancer_wdbc.csv"))
	if err != nil {
		t.Fatalf("LoadBreastCancer(file): %v", err)
	}
	for name, s := range map[string]*Set{"embedded": embedded, "file": fromFile} {
		t.Run(name, func(t *testing.T) {
			if err := s.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if s.Len() != 569 || s.Size() != 30 || len(s.Features) != 30 {
				t.Errorf("got %d rows of %d features (%d names), want 569 rows of 30", s.Len(), s.Size(), len(s.Features))
			}
			if got, want := s.ClassCounts(), []int{357, 212}; !slices.Equal(got, want) {
				t.Errorf("ClassCounts() = %v, want %v (benign, malignant)", got, want)
			}
			if got, want := s.ClassNames, []string{"benign", "malignant"}; !slices.Equal(got, want) {
				t.Errorf("ClassNames = %q, want %q", got, want)
			}
			if got, want := s.Features[0], "radius_mean"; got != want {
				t.Errorf("Features[0] = %q, want %q", got, want)
			}
			if got, want := s.X[0], float32(17.99); got != want {
				t.Errorf("X[0] = %v, want %v", got, want)
			}
		})
	}
	t.Run("wrong label values", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "other.csv")
		if err := os.WriteFile(path, []byte("a,malignant\n1,yes\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadBreastCancer(path); !errors.Is(err, ErrFormat) {
			t.Errorf("LoadBreastCancer(string labels) error = %v, want ErrFormat", err)
		}
	})
}
