package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/model"
)

const predictToken = "predict-test-token-0123456789"

// predictServer serves a random seed CNN as "mnist" and a small table model as "table".
func predictServer(t *testing.T) (*httptest.Server, *model.Sequential, *model.Sequential) {
	t.Helper()
	reg, err := inference.NewRegistry(inference.Config{NoRateLimit: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := model.Architecture("cnn", []int{28, 28, 1}, 10)
	cnn, _ := model.Build(spec, 5)
	tspec, _ := model.Architecture("mlp", []int{3}, 2)
	mlp, _ := model.Build(tspec, 5)
	if err := reg.Publish("mnist", 4, cnn, inference.ModelMeta{}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Publish("table", 1, mlp, inference.ModelMeta{FeatureNames: []string{"age", "bmi", "bp"}, ClassNames: []string{"healthy", "ill"}}); err != nil {
		t.Fatal(err)
	}
	tokens, _ := inference.NewTokenSet(map[string]string{predictToken: "cli"})
	hs := httptest.NewServer(inference.NewServer(reg, tokens, nil).Handler())
	t.Cleanup(func() {
		hs.Close()
		reg.Close(context.Background())
	})
	return hs, cnn, mlp
}

func testImages() [][]byte {
	imgs := make([][]byte, 3)
	for k := range imgs {
		imgs[k] = make([]byte, 784)
		for i := range imgs[k] {
			imgs[k][i] = byte((i*(k+3) + k*17) % 256)
		}
	}
	return imgs
}

func runPredictCLI(t *testing.T, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := runPredict(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestPredictImagesIDXAndCSV(t *testing.T) {
	hs, cnn, mlp := predictServer(t)
	dir := t.TempDir()
	imgs := testImages()
	// PNG files and one IDX file holding the same images.
	want := make([]int, len(imgs))
	idx := binary.BigEndian.AppendUint32(nil, 0x803)
	idx = binary.BigEndian.AppendUint32(idx, uint32(len(imgs)))
	idx = binary.BigEndian.AppendUint32(idx, 28)
	idx = binary.BigEndian.AppendUint32(idx, 28)
	for k, px := range imgs {
		g := image.NewGray(image.Rect(0, 0, 28, 28))
		copy(g.Pix, px)
		var buf bytes.Buffer
		png.Encode(&buf, g)
		os.WriteFile(filepath.Join(dir, "digit"+string(rune('0'+k))+".png"), buf.Bytes(), 0o644)
		idx = append(idx, px...)
		x := make([]float32, 784)
		for i, v := range px {
			x[i] = float32(v) / 255
		}
		p := cnn.Predict(x, 1)
		for c := range p {
			if p[c] > p[want[k]] {
				want[k] = c
			}
		}
	}
	idxPath := filepath.Join(t.TempDir(), "images-idx3-ubyte")
	os.WriteFile(idxPath, idx, 0o644)

	type result struct {
		Model       string `json:"model"`
		Version     string `json:"version"`
		Predictions []struct {
			Input       string  `json:"input"`
			Class       int     `json:"class"`
			Probability float32 `json:"probability"`
			Explanation string  `json:"explanation"`
		} `json:"predictions"`
	}
	for _, input := range []string{dir, idxPath} {
		out, errOut, err := runPredictCLI(t, "--coordinator", hs.URL, "--insecure", "--token", predictToken, "--model", "mnist", "--input", input, "--json")
		if err != nil {
			t.Fatalf("%s: %v\n%s", input, err, errOut)
		}
		var res result
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if res.Version != "4" || len(res.Predictions) != len(imgs) {
			t.Fatalf("%s: %+v", input, res)
		}
		for k, p := range res.Predictions {
			if p.Class != want[k] || p.Probability <= 0 {
				t.Errorf("%s: %s class %d (p %v), in process %d", input, p.Input, p.Class, p.Probability, want[k])
			}
		}
	}

	// Text output and --explain heat maps next to the images.
	out, errOut, err := runPredictCLI(t, "--coordinator", hs.URL, "--insecure", "--token", predictToken, "--model", "mnist", "--input", filepath.Join(dir, "digit0.png"), "--explain")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !strings.Contains(out, "class ") || !strings.Contains(out, "digit0.png.explain.png") {
		t.Errorf("output:\n%s", out)
	}
	f, err := os.Open(filepath.Join(dir, "digit0.png.explain.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	heat, err := png.Decode(f)
	if err != nil || heat.Bounds().Dx() < 28 {
		t.Fatalf("heat map: %v %v", heat, err)
	}
	colored := false
	for y := 0; y < heat.Bounds().Dy() && !colored; y++ {
		for x := 0; x < heat.Bounds().Dx(); x++ {
			c := color.RGBAModel.Convert(heat.At(x, y)).(color.RGBA)
			if c.R != c.B {
				colored = true
				break
			}
		}
	}
	if !colored {
		t.Error("heat map has no colour")
	}

	// A CSV table picked by feature names, with an extra column.
	csvPath := filepath.Join(t.TempDir(), "patients.csv")
	os.WriteFile(csvPath, []byte("id,bp,age,bmi\n1,0.5,-1,2\n2,1,0.25,-0.5\n"), 0o644)
	out, errOut, err = runPredictCLI(t, "--coordinator", hs.URL, "--insecure", "--token", predictToken, "--model", "table", "--input", csvPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	p := mlp.Predict([]float32{-1, 2, 0.5}, 1)
	wantName := "healthy"
	if p[1] > p[0] {
		wantName = "ill"
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[0], "("+wantName+")") {
		t.Errorf("table output (want first row %s):\n%s", wantName, out)
	}
	if !strings.Contains(errOut, "--standardize-from") {
		t.Errorf("raw CSV rows sent without a warning; stderr:\n%s", errOut)
	}
}

// TestPredictStandardizeFrom checks that --standardize-from scales CSV rows by the
// reference table's means and population standard deviations (what a hospital's client
// node does to its table before training) before they reach the model.
func TestPredictStandardizeFrom(t *testing.T) {
	hs, _, mlp := predictServer(t)
	dir := t.TempDir()
	// age: mean 1, sd 1; bmi: mean 20, sd 10; bp: mean 120, sd 20; a label column, last.
	ref := filepath.Join(dir, "train.csv")
	os.WriteFile(ref, []byte("age,bmi,bp,label\n0,10,100,0\n2,30,140,1\n"), 0o644)
	in := filepath.Join(dir, "patients.csv")
	os.WriteFile(in, []byte("bp,age,bmi\n80,3,20\n"), 0o644)
	out, errOut, err := runPredictCLI(t, "--coordinator", hs.URL, "--insecure", "--token", predictToken, "--model", "table",
		"--input", in, "--standardize-from", ref, "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if strings.Contains(errOut, "warning") {
		t.Errorf("warned with --standardize-from: %s", errOut)
	}
	var res struct {
		Predictions []struct {
			Class       int     `json:"class"`
			Probability float32 `json:"probability"`
		} `json:"predictions"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Predictions) != 1 {
		t.Fatalf("%v\n%s", err, out)
	}
	got := res.Predictions[0]
	scaled, raw := mlp.Predict([]float32{2, 0, -2}, 1), mlp.Predict([]float32{3, 20, 80}, 1)
	if d := got.Probability - scaled[got.Class]; d > 1e-5 || d < -1e-5 {
		t.Errorf("class %d with probability %v; the model gives %v for the scaled row (%v for the raw one)", got.Class, got.Probability, scaled, raw)
	}

	var png28 bytes.Buffer
	png.Encode(&png28, image.NewGray(image.Rect(0, 0, 28, 28)))
	for _, tt := range []struct {
		name, model, ref, input, msg string
	}{
		{"missing column", "table", writeFile(t, dir, "short.csv", "age,bmi\n1,2\n"), in, `no column "bp"`},
		{"no rows", "table", writeFile(t, dir, "empty.csv", "age,bmi,bp\n"), in, "no rows"},
		{"not a number", "table", writeFile(t, dir, "bad.csv", "age,bmi,bp\n1,x,3\n"), in, `column "bmi" is "x"`},
		{"image inputs", "mnist", ref, writeFile(t, dir, "digit.png", png28.String()), "scales CSV inputs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runPredictCLI(t, "--coordinator", hs.URL, "--insecure", "--token", predictToken, "--model", tt.model,
				"--input", tt.input, "--standardize-from", tt.ref)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want it to mention %q", err, tt.msg)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPredictErrors(t *testing.T) {
	hs, _, _ := predictServer(t)
	big := image.NewGray(image.Rect(0, 0, 32, 32))
	var buf bytes.Buffer
	png.Encode(&buf, big)
	bigPath := filepath.Join(t.TempDir(), "big.png")
	os.WriteFile(bigPath, buf.Bytes(), 0o644)
	small := filepath.Join(t.TempDir(), "ok.png")
	g := image.NewGray(image.Rect(0, 0, 28, 28))
	buf.Reset()
	png.Encode(&buf, g)
	os.WriteFile(small, buf.Bytes(), 0o644)
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"image size", []string{"--token", predictToken, "--model", "mnist", "--input", bigPath}, "image is 32x32, the model takes 28x28"},
		{"bad token", []string{"--token", "wrong-token-wrong-token", "--model", "mnist", "--input", small}, "401"},
		{"unknown model", []string{"--token", predictToken, "--model", "nope", "--input", small}, "404"},
		{"unknown version", []string{"--token", predictToken, "--model", "mnist", "--version", "9", "--input", small}, "no loaded version 9"},
		{"no credentials", []string{"--token", "", "--model", "mnist", "--input", small}, "no credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--coordinator", hs.URL, "--insecure"}, tt.args...)
			_, _, err := runPredictCLI(t, args...)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want it to mention %q", err, tt.msg)
			}
		})
	}
	if _, _, err := runPredictCLI(t, "--coordinator", strings.TrimPrefix(hs.URL, "http://"), "--token", predictToken, "--model", "mnist", "--input", small, "--insecure"); err != nil {
		t.Errorf("host:port with --insecure: %v", err)
	}
	if _, _, err := runPredictCLI(t, "--coordinator", hs.URL, "--token", predictToken, "--model", "mnist", "--input", small); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("plain http without --insecure: %v", err)
	}
}

// TestPredictBreastCancer serves an MLP trained as a hospital trains it on the Breast
// Cancer Wisconsin table (features standardised with the table's own statistics) and
// classifies every raw row of the table through the command: with --standardize-from the
// same table, the answers are as good as in training.
func TestPredictBreastCancer(t *testing.T) {
	s, err := dataset.LoadBreastCancer("")
	if err != nil {
		t.Fatal(err)
	}
	rawPath := filepath.Join(t.TempDir(), "breast_cancer.csv")
	f, err := os.Create(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := dataset.WriteCSV(f, s, dataset.BreastCancerLabel); err != nil {
		t.Fatal(err)
	}
	f.Close()
	scaled := *s
	scaled.X = slices.Clone(s.X)
	if err := dataset.FitStandardizer(&scaled).Apply(&scaled); err != nil {
		t.Fatal(err)
	}
	spec, err := model.Architecture("mlp", []int{s.Size()}, 2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Build(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := model.NewTrainer(m, model.TrainConfig{Epochs: 5})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := tr.Epoch(context.Background(), scaled.X, scaled.Y, nil); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := inference.NewRegistry(inference.Config{NoRateLimit: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Publish("wdbc", 1, m, inference.ModelMeta{FeatureNames: s.Features, ClassNames: s.ClassNames}); err != nil {
		t.Fatal(err)
	}
	tokens, _ := inference.NewTokenSet(map[string]string{predictToken: "cli"})
	hs := httptest.NewServer(inference.NewServer(reg, tokens, nil).Handler())
	defer reg.Close(context.Background())
	defer hs.Close()

	accuracy := func(extra ...string) float64 {
		args := append([]string{"--coordinator", hs.URL, "--insecure", "--token", predictToken, "--model", "wdbc", "--input", rawPath, "--json"}, extra...)
		out, errOut, err := runPredictCLI(t, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		var res struct {
			Predictions []struct {
				Class int `json:"class"`
			} `json:"predictions"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Predictions) != s.Len() {
			t.Fatalf("%d predictions for %d rows (%v)", len(res.Predictions), s.Len(), err)
		}
		right := 0
		for i, p := range res.Predictions {
			if p.Class == int(s.Y[i]) {
				right++
			}
		}
		return float64(right) / float64(s.Len())
	}
	std, raw := accuracy("--standardize-from", rawPath), accuracy()
	t.Logf("accuracy on the 569 rows: %.3f with --standardize-from, %.3f unscaled", std, raw)
	if std < 0.95 {
		t.Errorf("accuracy %.3f with --standardize-from, want at least 0.95", std)
	}
}
