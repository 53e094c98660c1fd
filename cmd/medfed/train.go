package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/localtrain"
	"github.com/medfed/medfed/internal/progress"
	"github.com/medfed/medfed/model"
)

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := localtrain.DefaultConfig()
	fs := flag.NewFlagSet("medfed train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Model, "model", cfg.Model, "architecture: cnn, mlp, rnn, lstm or gru")
	fs.StringVar(&cfg.Dataset, "dataset", cfg.Dataset, "mnist, mnist-seq, fashion-mnist, breast-cancer or csv")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "folder with the IDX files (default: MNIST from the Go module cache, Fashion-MNIST from /usr/share/datasets/fashion-mnist)")
	fs.StringVar(&cfg.CSV, "csv", "", "table file for --dataset csv (header row, numeric features)")
	fs.StringVar(&cfg.Label, "label", "", "label column of the table (default: the last column)")
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "passes over the training data")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "samples per gradient step")
	fs.Float64Var(&cfg.LR, "lr", 0, "learning rate (default: adam 0.001, sgd 0.01)")
	fs.StringVar(&cfg.Optimizer, "optimizer", cfg.Optimizer, "adam or sgd")
	fs.Float64Var(&cfg.Momentum, "momentum", 0, "SGD momentum")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed for initialisation, shuffling and splits")
	fs.IntVar(&cfg.Folds, "folds", 0, fmt.Sprintf("tables: evaluate by k-fold cross-validation (default %d); 1 holds out --test-split instead", localtrain.DefaultFolds))
	fs.Float64Var(&cfg.TestSplit, "test-split", cfg.TestSplit, "tables with --folds 1: share of the rows held out for testing")
	fs.StringVar(&cfg.Out, "out", "", "save the trained model to this .safetensors file (after a cross-validation: trained on every row)")
	jsonOut := fs.Bool("json", false, "print one JSON object with the results on stdout, nothing else")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	splitSet := false
	fs.Visit(func(f *flag.Flag) { splitSet = splitSet || f.Name == "test-split" })
	switch {
	case !splitSet:
	case cfg.Dataset != "breast-cancer" && cfg.Dataset != "csv":
		return fmt.Errorf("--test-split applies to tables with --folds 1; data set %s has a fixed test set", cfg.Dataset)
	case cfg.CVFolds() > 0:
		return fmt.Errorf("--test-split applies to tables with --folds 1; without it a table is cross-validated in %d folds", cfg.CVFolds())
	}
	var bar *progress.Bar
	label := "" // the fold, in a cross-validation
	hooks := localtrain.Hooks{
		Loaded: func(train, test *dataset.Set, params int) {
			switch {
			case *jsonOut:
			case cfg.CVFolds() > 0:
				fmt.Fprintf(stdout, "%s on %s: %d parameters, %d-fold cross-validation over %d samples (%d training and %d test per fold)\n",
					cfg.Model, cfg.Dataset, params, cfg.CVFolds(), train.Len()+test.Len(), train.Len(), test.Len())
			default:
				fmt.Fprintf(stdout, "%s on %s: %d parameters, %d training and %d test samples\n", cfg.Model, cfg.Dataset, params, train.Len(), test.Len())
			}
		},
		Fold: func(fold, k int) {
			label = fmt.Sprintf("fold %d/%d ", fold, k)
			if fold == 0 {
				label = "final model "
				if !*jsonOut {
					fmt.Fprintf(stdout, "final model on every sample, for %s\n", cfg.Out)
				}
			}
		},
		FoldDone: func(f localtrain.FoldResult) {
			if !*jsonOut {
				fmt.Fprintf(stdout, "fold %d/%d: test loss %.4f, test accuracy %.4f (%d samples)\n", f.Fold, cfg.CVFolds(), f.TestLoss, f.TestAccuracy, f.TestSamples)
			}
		},
		Batch: func(epoch, done, total int) {
			if bar == nil {
				bar = progress.New(stderr, fmt.Sprintf("%sepoch %d/%d", label, epoch, cfg.Epochs))
			}
			bar.Update(done, total, "")
		},
		Epoch: func(st model.EpochStats) {
			if bar != nil {
				bar.Done()
				bar = nil
			}
			if !*jsonOut {
				fmt.Fprintf(stdout, "%sepoch %d/%d: loss %.4f, accuracy %.4f, %.1fs\n", label, st.Epoch, cfg.Epochs, st.Loss, st.Accuracy, st.Seconds)
			}
		},
	}
	res, err := localtrain.Run(ctx, cfg, hooks)
	if err != nil {
		return err
	}
	if *jsonOut {
		return writeTrainJSON(stdout, res)
	}
	how := ""
	if len(res.Folds) > 0 {
		how = fmt.Sprintf(", each tested once by %d-fold cross-validation", len(res.Folds))
	}
	fmt.Fprintf(stdout, "test loss %.4f, test accuracy %.4f (%d samples%s), training %.1fs\n", res.TestLoss, res.TestAccuracy, res.TestSamples, how, res.TrainSeconds)
	if cfg.Out != "" {
		fmt.Fprintf(stdout, "model saved to %s\n", cfg.Out)
	}
	return nil
}

// writeTrainJSON prints exactly the documented keys.
func writeTrainJSON(w io.Writer, res localtrain.Result) error {
	type epoch struct {
		Epoch    int     `json:"epoch"`
		Loss     float64 `json:"loss"`
		Accuracy float64 `json:"accuracy"`
		Seconds  float64 `json:"seconds"`
	}
	out := struct {
		Model        string  `json:"model"`
		Dataset      string  `json:"dataset"`
		Params       int     `json:"params"`
		Epochs       []epoch `json:"epochs"`
		TestLoss     float64 `json:"test_loss"`
		TestAccuracy float64 `json:"test_accuracy"`
		TrainSeconds float64 `json:"train_seconds"`
	}{Model: res.Model, Dataset: res.Dataset, Params: res.Params, Epochs: []epoch{}, TestLoss: res.TestLoss, TestAccuracy: res.TestAccuracy, TrainSeconds: res.TrainSeconds}
	for _, e := range res.Epochs {
		out.Epochs = append(out.Epochs, epoch{e.Epoch, e.Loss, e.Accuracy, e.Seconds})
	}
	enc := json.NewEncoder(w)
	return enc.Encode(out)
}
