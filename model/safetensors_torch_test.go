package model

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSafetensorsTorch saves models and their predictions, then has
// bench/safetensors_torch_check.py rebuild them in PyTorch from the file alone and compare
// outputs. It checks that the tensor names, Keras layouts and flatten order the package doc
// promises are what a PyTorch user needs. Skipped when /usr/bin/python3 cannot import torch
// (Debian: apt-get install python3-torch).
func TestSafetensorsTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Python; skipped with -short")
	}
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import torch").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import torch (%v: %s); install python3-torch to run this check", python, err, out)
	}
	script, err := filepath.Abs(filepath.Join("..", "bench", "safetensors_torch_check.py"))
	if err != nil {
		t.Fatal(err)
	}

	seedCNN, err := Architecture("cnn", []int{28, 28, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Strides, same padding with an odd total (TensorFlow puts the extra row at the end),
	// several channels, a non-square image, dropout between flatten and dense.
	strided, err := ParseSpec([]byte(`{"input":[11,9,3],"layers":[
		{"type":"conv2d","filters":5,"kernel":[3,2],"strides":[2,2],"padding":"same","activation":"tanh"},
		{"type":"maxpool2d","pool":[2,2],"strides":[1,2]},
		{"type":"conv2d","filters":4,"kernel":[2,2],"activation":"sigmoid"},
		{"type":"flatten"},
		{"type":"dropout","rate":0.3},
		{"type":"dense","units":7,"activation":"relu"},
		{"type":"dense","units":3,"activation":"softmax"}]}`))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		spec Spec
	}{{"seed cnn", seedCNN}, {"strided same padding", strided}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Build(tc.spec, 7)
			if err != nil {
				t.Fatal(err)
			}
			const n = 16
			rng := rand.New(rand.NewPCG(1, 2))
			x := make([]float32, n*prod(m.InputShape()))
			for i := range x {
				x[i] = rng.Float32()
			}
			y := m.Predict(x, n)

			dir := t.TempDir()
			modelPath, ioPath := filepath.Join(dir, "model.safetensors"), filepath.Join(dir, "io.json")
			if err := SaveFile(modelPath, m, nil); err != nil {
				t.Fatal(err)
			}
			io, err := json.Marshal(map[string]any{"n": n, "x": x, "y": y})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(ioPath, io, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(python, script, modelPath, ioPath, "--tol", "1e-4").CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Errorf("PyTorch outputs differ from Predict by 1e-4 or more, or the script failed: %v", err)
			}
		})
	}
}
