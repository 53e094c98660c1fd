package client

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/model"
)

// DataSource supplies a hospital's training data. Load is called once, after the node has
// read the federation's model spec, so a loader can decode images with the channels the
// model expects.
type DataSource interface {
	Load(spec model.Spec) (*dataset.Set, error)
}

// Static is a DataSource for a set already in memory.
func Static(s *dataset.Set) DataSource { return staticData{s} }

type staticData struct{ s *dataset.Set }

func (d staticData) Load(model.Spec) (*dataset.Set, error) {
	if d.s == nil {
		return nil, fmt.Errorf("%w: no data set", ErrSchema)
	}
	return d.s, nil
}

// Data set kinds a Folder reads.
const (
	KindMNIST        = "mnist"
	KindFashionMNIST = "fashion-mnist"
	KindBreastCancer = "breast-cancer"
	KindIDX          = "idx"
	KindCSV          = "csv"
	KindImages       = "images"
)

// Kinds lists the data set kinds a Folder reads.
func Kinds() []string {
	return []string{KindMNIST, KindFashionMNIST, KindBreastCancer, KindIDX, KindCSV, KindImages}
}

// Folder is a DataSource that reads a hospital's data from disk. What Dir holds depends on
// Kind:
//
//	mnist, fashion-mnist  the four IDX files of the data set; only the training files are
//	                      read ("" means the copy on this machine)
//	breast-cancer         a CSV with the layout of the Breast Cancer Wisconsin table, or a
//	                      folder holding breast_cancer.csv ("" means the embedded copy)
//	idx                   train-images-idx3-ubyte and train-labels-idx1-ubyte, each
//	                      optionally .gz (what dataset.SaveIDX and medfed partition write)
//	csv                   a CSV file with a header row, or a folder with train.csv,
//	                      data.csv (what medfed partition writes) or a single *.csv file;
//	                      the label column is CSVLabel (default last)
//	images                one sub-folder of PNG/JPEG images per class
//
// Table features (breast-cancer, csv) are standardised with the hospital's own statistics,
// so the federation's model sees features of zero mean and unit variance at every site.
type Folder struct {
	Kind     string
	Dir      string
	CSVLabel string
}

// Load reads the data set.
func (f Folder) Load(spec model.Spec) (*dataset.Set, error) {
	var (
		s   *dataset.Set
		err error
	)
	switch f.Kind {
	case KindMNIST:
		s, _, err = dataset.LoadMNIST(f.Dir)
	case KindFashionMNIST:
		s, _, err = dataset.LoadFashionMNIST(f.Dir)
	case KindBreastCancer:
		path := f.Dir
		if fi, e := os.Stat(path); e == nil && fi.IsDir() {
			path = filepath.Join(path, "breast_cancer.csv")
		}
		if s, err = dataset.LoadBreastCancer(path); err == nil {
			err = dataset.FitStandardizer(s).Apply(s)
		}
	case KindIDX:
		var imgs, labels string
		if imgs, err = findFile(f.Dir, "train-images-idx3-ubyte"); err == nil {
			if labels, err = findFile(f.Dir, "train-labels-idx1-ubyte"); err == nil {
				s, err = dataset.LoadIDXFiles(imgs, labels)
			}
		}
	case KindCSV:
		var path string
		if path, err = csvFile(f.Dir); err == nil {
			if s, err = dataset.LoadCSV(path, dataset.CSVOptions{Label: f.CSVLabel}); err == nil {
				err = dataset.FitStandardizer(s).Apply(s)
			}
		}
	case KindImages:
		ch := 1
		if len(spec.Input) == 3 {
			ch = spec.Input[2]
		}
		opts := dataset.ImageOptions{Channels: ch}
		if len(spec.Input) >= 2 {
			opts.Height, opts.Width = spec.Input[0], spec.Input[1]
		}
		s, err = dataset.LoadImageFolder(f.Dir, opts)
	default:
		return nil, fmt.Errorf("data set kind %q: expected one of %s", f.Kind, strings.Join(Kinds(), ", "))
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// findFile returns dir/name or dir/name.gz, whichever exists.
func findFile(dir, name string) (string, error) {
	for _, n := range []string{name, name + ".gz"} {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: neither %s nor %s.gz in %s", dataset.ErrNotFound, name, name, dir)
}

func csvFile(dir string) (string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return dir, nil
	}
	for _, name := range []string{"train.csv", "data.csv"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p, nil
		}
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	if len(matches) != 1 {
		return "", fmt.Errorf("%w: %s holds %d .csv files and neither train.csv nor data.csv; name the file", dataset.ErrNotFound, dir, len(matches))
	}
	return matches[0], nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// CheckSchema checks that the hospital's data fits the federation's model: the per-sample
// shape must be the model's input shape (trailing dimensions of 1 aside, so [28 28 1]
// images feed a model taking [28 28] sequences), and every label must be a class the model
// outputs. It returns the set viewed with the model's input shape, or an error wrapping
// ErrSchema that says what the model expects and what the data holds.
func CheckSchema(spec model.Spec, s *dataset.Set) (*dataset.Set, error) {
	if s == nil || s.Len() == 0 {
		return nil, fmt.Errorf("%w: the hospital's data set is empty", ErrSchema)
	}
	if !slices.Equal(trimOnes(spec.Input), trimOnes(s.Shape)) {
		return nil, fmt.Errorf("%w: the federation's model takes samples of shape %v, the local data has shape %v", ErrSchema, spec.Input, s.Shape)
	}
	out, err := spec.OutputShape()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	classes := 1
	for _, d := range out {
		classes *= d
	}
	if classes == 1 {
		classes = 2 // a single sigmoid output is a binary classifier
	}
	if s.Classes > classes {
		return nil, fmt.Errorf("%w: the federation's model outputs %d classes, the local data has %d", ErrSchema, classes, s.Classes)
	}
	for i, y := range s.Y {
		if y < 0 || int(y) >= classes || float32(int(y)) != y {
			return nil, fmt.Errorf("%w: sample %d has label %v, the model's classes are 0 to %d", ErrSchema, i, y, classes-1)
		}
	}
	v := *s
	v.Shape = slices.Clone(spec.Input)
	return &v, nil
}

func trimOnes(shape []int) []int {
	for len(shape) > 0 && shape[len(shape)-1] == 1 {
		shape = shape[:len(shape)-1]
	}
	return shape
}
