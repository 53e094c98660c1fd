package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/simulations"
)

// Names inside a `medfed partition` output folder.
const (
	partitionManifest = "partition.json" // what the run did: the --json output
	partitionTestDir  = "test"           // the held-out test set, shared by every client
	partitionCSVFile  = "data.csv"       // a table's rows in a client or test folder
	clientDirPrefix   = "client-"
)

func partitionUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: medfed partition --dataset D --clients N --scheme S --out DIR [flags]

Splits a data set among N virtual hospitals so a federation can be rehearsed on one machine.
It writes, under --out:

  client-001/ ... client-N/   one folder per hospital: for image data sets (mnist,
                              fashion-mnist) train-images-idx3-ubyte.gz and
                              train-labels-idx1-ubyte.gz, for tables data.csv
  test/                       the global test set, written once and shared by all hospitals:
                              t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (the data
                              set's own test set), or data.csv (--test-split of the table)
  partition.json              the data set, scheme, seed, class names and label counts

Tables are written with raw feature values (no standardisation: each hospital standardises
its own data) and class indices as labels (class names are in partition.json). Read the
folders back with dataset.LoadIDXFiles or dataset.LoadCSV (medfed client --dataset idx|csv).

Schemes: iid, dirichlet:ALPHA (per-class Dirichlet label skew), pathological:K (K class
shards per hospital), quantity:ALPHA (Dirichlet sizes, IID labels). See package simulations.

Flags:
`)
	fs.PrintDefaults()
}

// partitionConfig is what `medfed partition` does.
type partitionConfig struct {
	Dataset      string  // mnist, fashion-mnist, breast-cancer or csv
	CSV          string  // table file for csv (or another copy of breast-cancer)
	Label        string  // label column of the csv table; "" means the last column
	DataDir      string  // folder with the IDX files of an image data set
	Clients      int     // number of hospitals
	Scheme       string  // partition scheme, parsed by simulations.ParseScheme
	Seed         uint64  // seed of the test split and the partition
	Out          string  // output folder
	TestSplit    float64 // share of a table held out as the global test set
	TestSplitSet bool    // --test-split was given
	Force        bool    // replace an earlier partition in Out
}

var partitionDatasets = []string{"mnist", "fashion-mnist", "breast-cancer", "csv"}

func (c partitionConfig) isTable() bool { return c.Dataset == "breast-cancer" || c.Dataset == "csv" }

// validate reports the first bad flag; it returns the parsed scheme.
func (c partitionConfig) validate() (simulations.Scheme, error) {
	switch {
	case !slices.Contains(partitionDatasets, c.Dataset):
		return simulations.Scheme{}, fmt.Errorf("--dataset %q, want one of %s", c.Dataset, strings.Join(partitionDatasets, ", "))
	case c.Dataset == "csv" && c.CSV == "":
		return simulations.Scheme{}, errors.New("--dataset csv needs --csv FILE")
	case c.CSV != "" && !c.isTable():
		return simulations.Scheme{}, fmt.Errorf("--csv is for tables, not --dataset %s (use --data-dir for IDX files)", c.Dataset)
	case c.Label != "" && c.Dataset != "csv":
		return simulations.Scheme{}, fmt.Errorf("--label is for --dataset csv, not %s", c.Dataset)
	case c.DataDir != "" && c.isTable():
		return simulations.Scheme{}, fmt.Errorf("--data-dir is for image data sets, not %s (use --csv)", c.Dataset)
	case c.TestSplitSet && !c.isTable():
		return simulations.Scheme{}, fmt.Errorf("--test-split is for tables; %s keeps its own test set", c.Dataset)
	case !(c.TestSplit >= 0 && c.TestSplit < 1):
		return simulations.Scheme{}, fmt.Errorf("--test-split %v, want a fraction in [0, 1) (0: no test set)", c.TestSplit)
	case c.Clients < 1:
		return simulations.Scheme{}, fmt.Errorf("--clients %d, want >= 1", c.Clients)
	case c.Out == "":
		return simulations.Scheme{}, errors.New("--out is required: the folder to write the client folders to")
	}
	scheme, err := simulations.ParseScheme(c.Scheme)
	if err != nil {
		return simulations.Scheme{}, fmt.Errorf("--scheme: %w", err)
	}
	return scheme, nil
}

func runPartition(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := partitionConfig{Dataset: "mnist", Clients: 5, Scheme: "dirichlet:0.5", Seed: 1, TestSplit: 0.2}
	fs := flag.NewFlagSet("medfed partition", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { partitionUsage(stderr, fs) }
	fs.StringVar(&cfg.Dataset, "dataset", cfg.Dataset, "mnist, fashion-mnist, breast-cancer or csv")
	fs.StringVar(&cfg.CSV, "csv", "", "table file for --dataset csv (header row, numeric features)")
	fs.StringVar(&cfg.Label, "label", "", "label column of the --csv table (default: the last column)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "folder with the IDX files (default: MNIST from the Go module cache, Fashion-MNIST from /usr/share/datasets/fashion-mnist)")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "number of hospitals")
	fs.StringVar(&cfg.Scheme, "scheme", cfg.Scheme, "iid, dirichlet:ALPHA, pathological:K or quantity:ALPHA")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the partition (and of a table's test split)")
	fs.StringVar(&cfg.Out, "out", "", "output folder (must be empty or missing, unless --force)")
	fs.Float64Var(&cfg.TestSplit, "test-split", cfg.TestSplit, "tables only: share held out as the global test set in OUT/test (0: none)")
	fs.BoolVar(&cfg.Force, "force", false, "replace an earlier partition in --out (removes its client-*, test and partition.json; nothing else)")
	jsonOut := fs.Bool("json", false, "print one JSON object (the same as OUT/partition.json) on stdout, nothing else")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { cfg.TestSplitSet = cfg.TestSplitSet || f.Name == "test-split" })
	res, err := cfg.run(ctx)
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return printPartition(stdout, res)
}

// partitionResult is the --json output and the content of partition.json.
type partitionResult struct {
	Dataset      string           `json:"dataset"`
	Scheme       string           `json:"scheme"`
	Seed         uint64           `json:"seed"`
	Out          string           `json:"out"`
	Format       string           `json:"format"` // idx or csv
	Classes      int              `json:"classes"`
	ClassNames   []string         `json:"class_names"`
	LabelColumn  string           `json:"label_column,omitempty"` // csv only
	TrainSamples int              `json:"train_samples"`
	Clients      []partitionShare `json:"clients"`
	Test         *partitionShare  `json:"test"` // null when a table has no test split
}

// partitionShare is one folder of the output.
type partitionShare struct {
	Name        string   `json:"name"`
	Files       []string `json:"files"` // relative to Out
	Samples     int      `json:"samples"`
	LabelCounts []int    `json:"label_counts"`
}

func (c partitionConfig) run(ctx context.Context) (*partitionResult, error) {
	scheme, err := c.validate()
	if err != nil {
		return nil, err
	}
	if err := prepareOut(c.Out, c.Force, false); err != nil {
		return nil, err
	}
	train, test, labelColumn, err := c.load()
	if err != nil {
		return nil, err
	}
	parts, err := simulations.Partition(train.Y, train.Classes, c.Clients, scheme, c.Seed)
	if err != nil {
		return nil, fmt.Errorf("partition %d %s samples among %d clients with %s: %w", train.Len(), c.Dataset, c.Clients, scheme, err)
	}
	if err := prepareOut(c.Out, c.Force, true); err != nil {
		return nil, err
	}
	res := &partitionResult{
		Dataset: c.Dataset, Scheme: scheme.String(), Seed: c.Seed, Out: c.Out, Format: "idx",
		Classes: train.Classes, ClassNames: train.ClassNames, LabelColumn: labelColumn, TrainSamples: train.Len(),
		Clients: []partitionShare{},
	}
	if res.ClassNames == nil {
		for k := range train.Classes {
			res.ClassNames = append(res.ClassNames, strconv.Itoa(k))
		}
	}
	if c.isTable() {
		res.Format = "csv"
	}
	width := max(3, len(strconv.Itoa(c.Clients)))
	for j, idx := range parts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("%s%0*d", clientDirPrefix, width, j+1)
		share, err := c.writeShare(name, "train", train.Subset(idx), labelColumn)
		if err != nil {
			return nil, err
		}
		res.Clients = append(res.Clients, share)
	}
	if test != nil {
		share, err := c.writeShare(partitionTestDir, "t10k", test, labelColumn)
		if err != nil {
			return nil, err
		}
		res.Test = &share
	}
	manifest, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.Out, partitionManifest), append(manifest, '\n'), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

// load returns the set to partition, the global test set (nil for a table without a test
// split) and, for tables, the label column name.
func (c partitionConfig) load() (train, test *dataset.Set, labelColumn string, err error) {
	switch c.Dataset {
	case "mnist":
		train, test, err = dataset.LoadMNIST(c.DataDir)
		return train, test, "", err
	case "fashion-mnist":
		train, test, err = dataset.LoadFashionMNIST(c.DataDir)
		return train, test, "", err
	}
	var all *dataset.Set
	if c.Dataset == "breast-cancer" {
		all, err = dataset.LoadBreastCancer(c.CSV)
		labelColumn = dataset.BreastCancerLabel
	} else {
		all, err = dataset.LoadCSV(c.CSV, dataset.CSVOptions{Label: c.Label})
		labelColumn = c.Label
		if err == nil && labelColumn == "" {
			labelColumn, err = lastCSVColumn(c.CSV)
		}
	}
	if err != nil {
		return nil, nil, "", err
	}
	if c.TestSplit == 0 {
		return all, nil, labelColumn, nil
	}
	train, test = all.Split(c.TestSplit, int64(c.Seed))
	return train, test, labelColumn, nil
}

// lastCSVColumn returns the name of the last header column of the CSV file at path.
func lastCSVColumn(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	header, err := csv.NewReader(f).Read()
	if err != nil || len(header) == 0 {
		return "", fmt.Errorf("%s: reading the header: %v", path, err)
	}
	return strings.TrimSpace(header[len(header)-1]), nil
}

// writeShare writes s into Out/name: an IDX pair with the given prefix, or data.csv.
func (c partitionConfig) writeShare(name, prefix string, s *dataset.Set, labelColumn string) (partitionShare, error) {
	dir := filepath.Join(c.Out, name)
	share := partitionShare{Name: name, Samples: s.Len(), LabelCounts: s.ClassCounts()}
	if !c.isTable() {
		if err := dataset.SaveIDX(dir, s, prefix); err != nil {
			return share, err
		}
		share.Files = []string{
			filepath.Join(name, prefix+"-images-idx3-ubyte.gz"),
			filepath.Join(name, prefix+"-labels-idx1-ubyte.gz"),
		}
		return share, nil
	}
	ids := *s
	ids.ClassNames = nil // class indices, stable across hospitals that lack some classes
	var b bytes.Buffer
	if err := dataset.WriteCSV(&b, &ids, labelColumn); err != nil {
		return share, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return share, err
	}
	if err := os.WriteFile(filepath.Join(dir, partitionCSVFile), b.Bytes(), 0o644); err != nil {
		return share, err
	}
	share.Files = []string{filepath.Join(name, partitionCSVFile)}
	return share, nil
}

// prepareOut checks that out is missing or empty, or that force is set; with apply it then
// creates out, or with force removes what an earlier partition wrote there (client-*
// folders, test/ and partition.json) and nothing else.
func prepareOut(out string, force, apply bool) error {
	entries, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) {
		if !apply {
			return nil
		}
		return os.MkdirAll(out, 0o755)
	}
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	if !force {
		return fmt.Errorf("--out %s is not empty (%d entries, e.g. %s); pass --force to replace an earlier partition there", out, len(entries), entries[0].Name())
	}
	if !apply {
		return nil
	}
	for _, e := range entries {
		n := e.Name()
		if n == partitionManifest || (e.IsDir() && (n == partitionTestDir || strings.HasPrefix(n, clientDirPrefix))) {
			if err := os.RemoveAll(filepath.Join(out, n)); err != nil {
				return fmt.Errorf("--force: %w", err)
			}
		}
	}
	return nil
}

// printPartition prints the label distribution per client as a table.
func printPartition(w io.Writer, res *partitionResult) error {
	fmt.Fprintf(w, "%s: %d training samples, %d classes, split among %d clients with %s (seed %d) into %s\n",
		res.Dataset, res.TrainSamples, res.Classes, len(res.Clients), res.Scheme, res.Seed, res.Out)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"client", "samples"}
	for k := range res.Classes {
		head = append(head, strconv.Itoa(k))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	row := func(name string, samples int, counts []int) {
		cells := []string{name, strconv.Itoa(samples)}
		for _, n := range counts {
			cells = append(cells, strconv.Itoa(n))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	total := make([]int, res.Classes)
	for _, cl := range res.Clients {
		row(cl.Name, cl.Samples, cl.LabelCounts)
		for k, n := range cl.LabelCounts {
			total[k] += n
		}
	}
	row("total", res.TrainSamples, total)
	if res.Test != nil {
		row(res.Test.Name, res.Test.Samples, res.Test.LabelCounts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !slices.Equal(res.ClassNames, head[2:]) {
		names := make([]string, len(res.ClassNames))
		for k, n := range res.ClassNames {
			names[k] = fmt.Sprintf("%d=%s", k, n)
		}
		fmt.Fprintf(w, "classes: %s\n", strings.Join(names, ", "))
	}
	if res.Test != nil {
		fmt.Fprintf(w, "the test set in %s is shared by all clients; details in %s\n", filepath.Join(res.Out, partitionTestDir), filepath.Join(res.Out, partitionManifest))
	} else {
		fmt.Fprintf(w, "no test set (--test-split 0); details in %s\n", filepath.Join(res.Out, partitionManifest))
	}
	return nil
}
