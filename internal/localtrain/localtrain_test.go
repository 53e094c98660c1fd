package localtrain

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/medfed/medfed/model"
)

// long reports whether the full acceptance runs were asked for (MEDFED_LONG=1). Without it,
// each scenario runs in a short form that CI can afford and that still fails if training
// breaks.
func long() bool { return os.Getenv("MEDFED_LONG") == "1" }

// TestAcceptance trains the acceptance scenarios on the real data sets. The full form
// (MEDFED_LONG=1) is exactly the issue's: the seed CNN for 5 epochs >= 0.985, GRU on
// sequential MNIST for 1 epoch >= 0.95, LSTM for 2 epochs >= 0.97, the MLP on the breast
// cancer table >= 0.95.
func TestAcceptance(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("trains on full data sets: skipped with -short and under the race detector")
	}
	tests := []struct {
		name        string
		cfg         Config
		longEpochs  int
		short, full float64 // minimum test accuracy
	}{
		{"seed cnn", Config{Model: "cnn", Dataset: "mnist"}, 5, 0.97, 0.985},
		{"gru mnist-seq", Config{Model: "gru", Dataset: "mnist-seq", Epochs: 1}, 1, 0.95, 0.95},
		{"lstm mnist-seq", Config{Model: "lstm", Dataset: "mnist-seq", Epochs: 1}, 2, 0.93, 0.97},
		{"mlp breast-cancer", Config{Model: "mlp", Dataset: "breast-cancer"}, 5, 0.93, 0.95},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, want := tt.cfg, tt.short
			if long() {
				cfg.Epochs, want = tt.longEpochs, tt.full
			} else if cfg.Dataset != "breast-cancer" {
				cfg.Epochs = 1
				if cfg.Model != "cnn" {
					t.Skip("recurrent scenarios run with MEDFED_LONG=1 (about a minute each)")
				}
			}
			res, err := Run(context.Background(), cfg, Hooks{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s on %s, %d epochs: test accuracy %.4f, loss %.4f, %.1fs", cfg.Model, cfg.Dataset, len(res.Epochs), res.TestAccuracy, res.TestLoss, res.TrainSeconds)
			if res.TestAccuracy < want {
				t.Errorf("test accuracy %.4f, want >= %.3f", res.TestAccuracy, want)
			}
		})
	}
}

// TestBreastCancerAcrossSeeds checks the table MLP over several single held-out splits:
// with 114 test patients one split moves accuracy by 0.009 per patient (seed 1's split
// gives 0.947, and PyTorch's same network 0.946 on average over ten initialisations on it),
// so the mean is the stable measure.
func TestBreastCancerAcrossSeeds(t *testing.T) {
	var sum float64
	const seeds = 5
	for s := uint64(1); s <= seeds; s++ {
		res, err := Run(context.Background(), Config{Model: "mlp", Dataset: "breast-cancer", Seed: s, Folds: 1}, Hooks{})
		if err != nil {
			t.Fatal(err)
		}
		if res.TestSamples != 114 || res.Folds != nil {
			t.Fatalf("seed %d: %d test samples and %d folds, want a single split of 114", s, res.TestSamples, len(res.Folds))
		}
		sum += res.TestAccuracy
	}
	if mean := sum / seeds; mean < 0.95 {
		t.Errorf("mean test accuracy over %d seeds %.4f, want >= 0.95", seeds, mean)
	}
}

// TestCrossValidation checks that a table is evaluated by 5-fold cross-validation by default:
// every patient tested exactly once, the pooled accuracy the folds' weighted mean, the same
// result from the same seed, and with Out a model trained on every patient.
func TestCrossValidation(t *testing.T) {
	var folds []int
	hooks := Hooks{Fold: func(fold, k int) { folds = append(folds, fold) }}
	out := filepath.Join(t.TempDir(), "mlp.safetensors")
	res, err := Run(context.Background(), Config{Model: "mlp", Dataset: "breast-cancer", Out: out}, hooks)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("5-fold accuracy %.4f, folds %+v", res.TestAccuracy, res.Folds)
	if !slices.Equal(folds, []int{1, 2, 3, 4, 5, 0}) {
		t.Errorf("Fold hook saw %v, want folds 1-5 then 0 (the final model)", folds)
	}
	if len(res.Folds) != DefaultFolds || res.TestSamples != 569 || res.TrainSamples != 455 {
		t.Fatalf("%d folds, %d test and %d training samples; want 5, 569, 455", len(res.Folds), res.TestSamples, res.TrainSamples)
	}
	var n int
	var correct float64
	for _, f := range res.Folds {
		n += f.TestSamples
		correct += f.TestAccuracy * float64(f.TestSamples)
	}
	if n != 569 || math.Abs(correct/569-res.TestAccuracy) > 1e-12 {
		t.Errorf("folds test %d samples with pooled accuracy %.6f, result says 569 and %.6f", n, correct/569, res.TestAccuracy)
	}
	if res.TestAccuracy < 0.95 {
		t.Errorf("cross-validated accuracy %.4f, want >= 0.95", res.TestAccuracy)
	}
	if len(res.Epochs) != 5 || res.Epochs[4].Accuracy < 0.95 {
		t.Errorf("epochs %+v, want 5 with the folds' mean training accuracy >= 0.95", res.Epochs)
	}
	again, err := Run(context.Background(), Config{Model: "mlp", Dataset: "breast-cancer"}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if again.TestAccuracy != res.TestAccuracy || again.TestLoss != res.TestLoss {
		t.Errorf("same seed: accuracy %v then %v", res.TestAccuracy, again.TestAccuracy)
	}
	m, meta, err := model.LoadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if meta["evaluation"] != "5-fold cross-validation" {
		t.Errorf("saved metadata %v, want evaluation 5-fold cross-validation", meta)
	}
	// The final model has seen every patient: on its own (standardised) training data it
	// beats the held-out estimate.
	all, err := loadTable(Config{Dataset: "breast-cancer"})
	if err != nil {
		t.Fatal(err)
	}
	if err := standardise(all); err != nil {
		t.Fatal(err)
	}
	if _, acc, err := m.Evaluate(all.X, all.Y, all.Len(), ""); err != nil || acc < 0.98 {
		t.Errorf("final model on its training rows: accuracy %.4f (%v), want >= 0.98", acc, err)
	}

	if _, err := Run(context.Background(), Config{Model: "mlp", Dataset: "csv", CSV: writeTable(t, 4), Folds: 5}, Hooks{}); err == nil ||
		!strings.Contains(err.Error(), "needs at least 5 rows, the table has 4") {
		t.Errorf("5 folds of 4 rows: %v", err)
	}
}

// TestLoadSplitsTablesStratified checks that a table is split by default as scikit-learn's
// train_test_split(test_size=0.2, stratify=y) would: each class keeps its share in both parts
// to within one sample, and the split depends only on the seed.
func TestLoadSplitsTablesStratified(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		train, test, err := Load(Config{Dataset: "breast-cancer", Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if train.Len() != 455 || test.Len() != 114 {
			t.Errorf("seed %d: %d train, %d test patients; want 455, 114", seed, train.Len(), test.Len())
		}
		for c, n := range []int{357, 212} { // benign, malignant in the whole table
			if got, exact := test.ClassCounts()[c], 0.2*float64(n); math.Abs(float64(got)-exact) > 1 {
				t.Errorf("seed %d: %d test patients of class %d, want within one of %.1f", seed, got, c, exact)
			}
			if got, exact := train.ClassCounts()[c], 0.8*float64(n); math.Abs(float64(got)-exact) > 1 {
				t.Errorf("seed %d: %d training patients of class %d, want within one of %.1f", seed, got, c, exact)
			}
		}
		again, _, err := Load(Config{Dataset: "breast-cancer", Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(train.X, again.X) || !slices.Equal(train.Y, again.Y) {
			t.Errorf("seed %d: two loads gave different training sets", seed)
		}
	}
}

func TestSaveAndReload(t *testing.T) {
	out := filepath.Join(t.TempDir(), "mlp.safetensors")
	res, err := Run(context.Background(), Config{Model: "mlp", Dataset: "breast-cancer", Epochs: 2, Folds: 1, Out: out}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	m, meta, err := model.LoadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.NumParams() != res.Params || meta["dataset"] != "breast-cancer" {
		t.Errorf("reloaded %d parameters with metadata %v, want %d and dataset breast-cancer", m.NumParams(), meta, res.Params)
	}
	_, test, err := Load(Config{Dataset: "breast-cancer"})
	if err != nil {
		t.Fatal(err)
	}
	_, acc, err := m.Evaluate(test.X, test.Y, test.Len(), "")
	if err != nil {
		t.Fatal(err)
	}
	if acc != res.TestAccuracy {
		t.Errorf("reloaded model's accuracy %.4f, trained model's %.4f", acc, res.TestAccuracy)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Model: "transformer"},
		{Dataset: "imagenet"},
		{Dataset: "csv"},
		{Model: "cnn", Dataset: "breast-cancer"},
		{Model: "gru", Dataset: "csv", CSV: "x.csv"},
		{Epochs: -2},
		{BatchSize: -1},
		{Optimizer: "rmsprop"},
		{LR: -0.1},
		{TestSplit: 1.5},
		{Dataset: "mnist", Folds: 5},
		{Dataset: "breast-cancer", Folds: -1},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

// writeTable writes a separable two-class table of n rows and returns its path.
func writeTable(t *testing.T, n int) string {
	path := filepath.Join(t.TempDir(), "t.csv")
	data := "a,b,label\n"
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			data += "1.0,0.1,yes\n"
		} else {
			data += "-1.0,0.2,no\n"
		}
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunCSV(t *testing.T) {
	path := writeTable(t, 200)
	res, err := Run(context.Background(), Config{Model: "mlp", Dataset: "csv", CSV: path, Label: "label", Epochs: 3}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if res.TestAccuracy < 0.99 {
		t.Errorf("separable table: accuracy %.3f, want 1", res.TestAccuracy)
	}
	if _, err := Run(context.Background(), Config{Model: "mlp", Dataset: "csv", CSV: path, Label: "nope"}, Hooks{}); err == nil {
		t.Error("unknown label column accepted")
	}
}
