// Command cnnspeed times the seed CNN in MedFed's model engine: one training epoch over the
// 60,000 MNIST training images (Adam, batch 32) and inference at batch 256 over the 10,000
// test images. bench/cnn.sh runs it next to the same net in PyTorch and prints the ratios.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/model"
)

func main() {
	epochs := flag.Int("epochs", 1, "training epochs to time")
	batch := flag.Int("batch", 32, "training batch size")
	inferBatch := flag.Int("infer-batch", 256, "inference batch size")
	repeats := flag.Int("repeats", 3, "inference passes over the test set (best is reported)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cnnspeed:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "cnnspeed:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*epochs, *batch, *inferBatch, *repeats); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "cnnspeed:", err)
		os.Exit(1)
	}
}

func run(epochs, batch, inferBatch, repeats int) error {
	train, test, err := dataset.LoadMNIST("")
	if err != nil {
		return err
	}
	spec, err := model.Architecture("cnn", train.Shape, train.Classes)
	if err != nil {
		return err
	}
	m, err := model.Build(spec, 1)
	if err != nil {
		return err
	}
	cfg := model.DefaultTrainConfig()
	cfg.BatchSize = batch
	tr, err := model.NewTrainer(m, cfg)
	if err != nil {
		return err
	}
	var epochSeconds []float64
	for e := 0; e < epochs; e++ {
		st, err := tr.Epoch(context.Background(), train.X, train.Y, nil)
		if err != nil {
			return err
		}
		epochSeconds = append(epochSeconds, st.Seconds)
	}
	size := test.Size()
	best := 0.0
	for r := 0; r < repeats; r++ {
		start := time.Now()
		for lo := 0; lo < test.Len(); lo += inferBatch {
			hi := min(lo+inferBatch, test.Len())
			m.Predict(test.X[lo*size:hi*size], hi-lo)
		}
		best = max(best, float64(test.Len())/time.Since(start).Seconds())
	}
	_, acc, err := m.Evaluate(test.X, test.Y, test.Len(), model.SparseCategoricalCrossentropy)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"engine": "medfed", "threads": runtime.GOMAXPROCS(0), "epoch_seconds": epochSeconds,
		"infer_images_per_second": best, "test_accuracy": acc,
	})
}
