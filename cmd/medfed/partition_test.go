package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/medfed/medfed/dataset"
)

func partitionCLI(args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = runPartition(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

// parseTable reads the rows of the printed table: name -> [samples, count per class...].
func parseTable(t *testing.T, out string) map[string][]int {
	t.Helper()
	rows := map[string][]int{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !(strings.HasPrefix(f[0], "client-") || f[0] == "total" || f[0] == "test") {
			continue
		}
		for _, s := range f[1:] {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("table row %q: %v", line, err)
			}
			rows[f[0]] = append(rows[f[0]], n)
		}
	}
	return rows
}

func TestPartitionMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 70000 MNIST images; skipped with -short")
	}
	full, fullTest, err := dataset.LoadMNIST("")
	if errors.Is(err, dataset.ErrNotFound) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hospitals")
	stdout, stderr, err := partitionCLI("--dataset", "mnist", "--clients", "5", "--scheme", "dirichlet:0.5", "--seed", "3", "--out", out)
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, stderr)
	}
	t.Logf("output:\n%s", stdout)
	rows := parseTable(t, stdout)
	if len(rows) != 7 {
		t.Fatalf("table has %d rows (want 5 clients, total, test):\n%s", len(rows), stdout)
	}

	total := 0
	classTotals := make([]int, 10)
	var joined []float32
	for j := 1; j <= 5; j++ {
		name := "client-00" + strconv.Itoa(j)
		dir := filepath.Join(out, name)
		s, err := dataset.LoadIDXFiles(filepath.Join(dir, "train-images-idx3-ubyte.gz"), filepath.Join(dir, "train-labels-idx1-ubyte.gz"))
		if err != nil {
			t.Fatal(err)
		}
		s.Classes = 10
		counts := s.ClassCounts()
		if want := append([]int{s.Len()}, counts...); !slices.Equal(rows[name], want) {
			t.Errorf("%s: printed %v, files hold %v", name, rows[name], want)
		}
		total += s.Len()
		for k, n := range counts {
			classTotals[k] += n
		}
		joined = append(joined, s.X[:784]...)
	}
	if total != 60000 || !slices.Equal(classTotals, full.ClassCounts()) {
		t.Errorf("clients hold %d samples, per class %v; want 60000, %v", total, classTotals, full.ClassCounts())
	}
	if want := append([]int{60000}, full.ClassCounts()...); !slices.Equal(rows["total"], want) {
		t.Errorf("total row %v, want %v", rows["total"], want)
	}
	// Pixels are the original ones: client-001's first image is some MNIST training image.
	found := false
	for i := range full.Len() {
		if slices.Equal(full.Sample(i), joined[:784]) {
			found = true
			break
		}
	}
	if !found {
		t.Error("client-001's first image is not an MNIST training image")
	}

	test, err := dataset.LoadIDXFiles(filepath.Join(out, "test", "t10k-images-idx3-ubyte.gz"), filepath.Join(out, "test", "t10k-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(test.X, fullTest.X) || !slices.Equal(test.Y, fullTest.Y) {
		t.Error("test/ differs from the MNIST test set")
	}

	// The manifest matches the table.
	var res partitionResult
	b, err := os.ReadFile(filepath.Join(out, partitionManifest))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.TrainSamples != 60000 || len(res.Clients) != 5 || res.Scheme != "dirichlet:0.5" || res.Test.Samples != 10000 {
		t.Errorf("manifest %+v", res)
	}
	for _, cl := range res.Clients {
		if want := append([]int{cl.Samples}, cl.LabelCounts...); !slices.Equal(rows[cl.Name], want) {
			t.Errorf("manifest %s %v, table %v", cl.Name, want, rows[cl.Name])
		}
	}

	// A second run into the same folder is refused, unless --force.
	if _, _, err := partitionCLI("--dataset", "mnist", "--clients", "2", "--scheme", "iid", "--out", out); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second run into %s: %v, want a refusal mentioning --force", out, err)
	}
}

func TestPartitionBreastCancerCSV(t *testing.T) {
	all, err := dataset.LoadBreastCancer("")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "keep.txt"), []byte("mine"), 0o644)
	args := []string{"--dataset", "breast-cancer", "--clients", "3", "--scheme", "iid", "--seed", "9", "--out", out, "--json"}
	if _, _, err := partitionCLI(args...); err == nil {
		t.Fatal("partition into a non-empty folder without --force succeeded")
	}
	stdout, stderr, err := partitionCLI(append(args, "--force")...)
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, stderr)
	}
	var res partitionResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "keep.txt")); err != nil {
		t.Errorf("--force removed a file that is not part of a partition: %v", err)
	}
	if res.Format != "csv" || res.TrainSamples != 455 || res.Test == nil || res.Test.Samples != 114 || !slices.Equal(res.ClassNames, []string{"benign", "malignant"}) {
		t.Errorf("result %+v", res)
	}

	// Every row of the table is in exactly one folder, with its raw values.
	rowKey := func(s *dataset.Set, i int) string {
		return strings.Trim(strings.Join(strings.Fields(strings.Trim(fmtFloats(s.Sample(i)), "[]")), ","), ",") + "|" + strconv.Itoa(int(s.Y[i]))
	}
	want := map[string]int{}
	for i := range all.Len() {
		want[rowKey(all, i)]++
	}
	got := map[string]int{}
	folders := []string{"client-001", "client-002", "client-003", "test"}
	for k, name := range folders {
		s, err := dataset.LoadCSV(filepath.Join(out, name, "data.csv"), dataset.CSVOptions{Label: dataset.BreastCancerLabel})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.Features, all.Features) {
			t.Errorf("%s: features %v", name, s.Features)
		}
		if k < 3 {
			if s.Len() != res.Clients[k].Samples || s.Len() < 151 || s.Len() > 152 {
				t.Errorf("%s: %d rows, manifest says %d, want 151 or 152 (IID)", name, s.Len(), res.Clients[k].Samples)
			}
		}
		if _, err := dataset.LoadBreastCancer(filepath.Join(out, name, "data.csv")); err != nil {
			t.Errorf("%s: LoadBreastCancer: %v", name, err)
		}
		for i := range s.Len() {
			got[rowKey(s, i)]++
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d distinct rows in the folders, want %d", len(got), len(want))
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("row %s appears %d times, want %d", k, got[k], n)
		}
	}
}

func fmtFloats(v []float32) string {
	var b strings.Builder
	for _, x := range v {
		b.WriteString(strconv.FormatFloat(float64(x), 'g', -1, 32))
		b.WriteByte(' ')
	}
	return b.String()
}

func TestPartitionCSVStringLabels(t *testing.T) {
	dir := t.TempDir()
	table := "age,bp,diagnosis\n"
	for i := range 40 {
		table += strconv.Itoa(30+i) + "," + strconv.Itoa(110+i) + "," + []string{"healthy", "sick", "unsure"}[i%3] + "\n"
	}
	path := filepath.Join(dir, "t.csv")
	os.WriteFile(path, []byte(table), 0o644)
	out := filepath.Join(dir, "out")
	stdout, stderr, err := partitionCLI("--dataset", "csv", "--csv", path, "--clients", "2", "--scheme", "pathological:2", "--test-split", "0", "--out", out)
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, stderr)
	}
	if !strings.Contains(stdout, "0=healthy, 1=sick, 2=unsure") || !strings.Contains(stdout, "no test set") {
		t.Errorf("output lacks the class names or the note on the test set:\n%s", stdout)
	}
	rows := parseTable(t, stdout)
	for _, name := range []string{"client-001", "client-002"} {
		s, err := dataset.LoadCSV(filepath.Join(out, name, "data.csv"), dataset.CSVOptions{Label: "diagnosis"})
		if err != nil {
			t.Fatal(err)
		}
		s.Classes = 3
		if want := append([]int{s.Len()}, s.ClassCounts()...); !slices.Equal(rows[name], want) {
			t.Errorf("%s: printed %v, file holds %v", name, rows[name], want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "test")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--test-split 0 wrote a test folder: %v", err)
	}
}

func TestPartitionBadFlags(t *testing.T) {
	out := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--dataset", "imagenet", "--out", out}, `--dataset "imagenet"`},
		{[]string{"--dataset", "csv", "--out", out}, "needs --csv"},
		{[]string{"--dataset", "mnist", "--csv", "x.csv", "--out", out}, "--csv is for tables"},
		{[]string{"--dataset", "breast-cancer", "--label", "y", "--out", out}, "--label is for --dataset csv"},
		{[]string{"--dataset", "mnist", "--test-split", "0.1", "--out", out}, "--test-split is for tables"},
		{[]string{"--dataset", "breast-cancer", "--test-split", "1", "--out", out}, "--test-split 1"},
		{[]string{"--dataset", "breast-cancer", "--clients", "0", "--out", out}, "--clients 0"},
		{[]string{"--dataset", "breast-cancer"}, "--out is required"},
		{[]string{"--dataset", "breast-cancer", "--scheme", "dirichlet:0", "--out", out}, "alpha 0"},
		{[]string{"--dataset", "breast-cancer", "--scheme", "pathological:0", "--out", out}, "K = 0"},
		{[]string{"--dataset", "breast-cancer", "--scheme", "zipf", "--out", out}, `unknown kind "zipf"`},
		{[]string{"--dataset", "breast-cancer", "--clients", "1000", "--out", out}, "455 samples for 1000 clients"},
		{[]string{"--dataset", "csv", "--csv", filepath.Join(out, "missing.csv"), "--out", filepath.Join(out, "o")}, "missing.csv"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := partitionCLI(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			t.Log(err)
		})
	}
	if _, stderr, err := partitionCLI("--clients", "x"); !errors.Is(err, errUsage) || !strings.Contains(stderr, "invalid value") {
		t.Errorf("--clients x: %v, stderr %q; want a usage error", err, stderr)
	}
	if _, stderr, err := partitionCLI("-h"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "client-001/") {
		t.Errorf("-h: %v, stderr %q; want help describing the output folders", err, stderr)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("failed runs left %d entries in --out", len(entries))
	}
}
