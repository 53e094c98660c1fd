package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"maps"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTrainJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	code, out, errOut := runCLI("train", "--model", "mlp", "--dataset", "breast-cancer", "--epochs", "2", "--json", "--out", path)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("stdout has more than one JSON value:\n%s", out)
	}
	keys := slices.Sorted(maps.Keys(obj))
	want := []string{"dataset", "epochs", "model", "params", "test_accuracy", "test_loss", "train_seconds"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	var epochs []map[string]float64
	if err := json.Unmarshal(obj["epochs"], &epochs); err != nil || len(epochs) != 2 {
		t.Fatalf("epochs %s: %v", obj["epochs"], err)
	}
	ek := slices.Sorted(maps.Keys(epochs[0]))
	if !slices.Equal(ek, []string{"accuracy", "epoch", "loss", "seconds"}) {
		t.Errorf("epoch keys %v", ek)
	}
}

func TestTrainText(t *testing.T) {
	code, out, errOut := runCLI("train", "--model", "mlp", "--dataset", "breast-cancer", "--epochs", "1")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, s := range []string{"mlp on breast-cancer", "5-fold cross-validation over 569 samples", "fold 5/5 epoch 1/1",
		"fold 5/5: test loss", "(569 samples, each tested once by 5-fold cross-validation)"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(errOut, "\r") {
		t.Error("progress bar drawn although stderr is not a terminal")
	}
	code, out, errOut = runCLI("train", "--model", "mlp", "--dataset", "breast-cancer", "--epochs", "1", "--folds", "1", "--test-split", "0.25")
	if code != 0 {
		t.Fatalf("--folds 1: exit %d, stderr %q", code, errOut)
	}
	for _, s := range []string{"427 training and 142 test samples", "epoch 1/1", "(142 samples)"} {
		if !strings.Contains(out, s) {
			t.Errorf("--folds 1: output lacks %q:\n%s", s, out)
		}
	}
}

func TestBadInvocations(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		contains string
	}{
		{nil, 2, "Usage"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"train", "--epochs", "abc"}, 2, "invalid value"},
		{[]string{"train", "--epochs", "-1"}, 1, "epochs = -1"},
		{[]string{"train", "--model", "vit"}, 1, `model "vit"`},
		{[]string{"train", "--dataset", "csv"}, 1, "--csv FILE"},
		{[]string{"train", "--model", "cnn", "--dataset", "breast-cancer"}, 1, "needs images"},
		{[]string{"train", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"train", "--dataset", "mnist", "--folds", "3"}, 1, "folds apply to tables; data set mnist has a fixed test set"},
		{[]string{"train", "--model", "mlp", "--dataset", "breast-cancer", "--folds", "-2"}, 1, "folds -2, want at least 2"},
		{[]string{"train", "--model", "mlp", "--dataset", "breast-cancer", "--test-split", "2"}, 1, "test split 2, want a fraction"},
		{[]string{"train", "--model", "mlp", "--dataset", "breast-cancer", "--test-split", "0.3"}, 1, "--test-split applies to tables with --folds 1"},
		{[]string{"train", "--dataset", "mnist", "--test-split", "0.3"}, 1, "--test-split applies to tables with --folds 1"},
		{[]string{"train", "--model", "mlp", "--dataset", "csv", "--csv", "/nonexistent.csv"}, 1, "/nonexistent.csv"},
		{[]string{"train", "--dataset", "mnist", "--data-dir", "/nonexistent"}, 1, "/nonexistent"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errOut := runCLI(tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.contains) {
				t.Errorf("exit %d with stderr %q, want exit %d mentioning %q", code, errOut, tt.code, tt.contains)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	if code, _, errOut := runCLI("train", "-h"); code != 0 || !strings.Contains(errOut, "-batch-size") {
		t.Errorf("train -h: exit %d, %q", code, errOut)
	}
	if code, out, _ := runCLI("version"); code != 0 || !strings.HasPrefix(out, "medfed ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}
