package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medfed/medfed/model"
)

// shortSimulate is a small federation: few hospitals, a data subset, the MLP.
func shortSimulate(out string, extra ...string) []string {
	args := []string{"--clients", "3", "--rounds", "2", "--model", "mlp", "--train-samples", "1500",
		"--test-samples", "500", "--threshold", "2", "--predictions", "3", "--seed", "7", "--out", out, "--json"}
	return append(args, extra...)
}

func runSim(t *testing.T, args []string) (map[string]any, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := runSimulate(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("simulate %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout.String())
	}
	return got, stderr.String()
}

func TestSimulateShortSecure(t *testing.T) {
	out := t.TempDir()
	got, progress := runSim(t, shortSimulate(out))
	for _, k := range []string{"config", "deployment", "rounds", "final_accuracy", "final_loss", "params", "inference", "peak_rss_bytes", "files"} {
		if _, ok := got[k]; !ok {
			t.Errorf("summary has no %q key", k)
		}
	}
	rounds, _ := got["rounds"].([]any)
	if len(rounds) != 2 {
		t.Fatalf("summary has %d rounds, want 2", len(rounds))
	}
	r0 := rounds[0].(map[string]any)
	for _, k := range []string{"round", "accuracy", "loss", "train_seconds", "encrypt_seconds", "aggregate_seconds", "decrypt_seconds", "upload_bytes", "download_bytes"} {
		if _, ok := r0[k]; !ok {
			t.Errorf("round has no %q key", k)
		}
	}
	if d, _ := r0["decrypt_seconds"].(float64); d <= 0 {
		t.Errorf("secure round has decrypt_seconds %v, want > 0", d)
	}
	if acc, _ := got["final_accuracy"].(float64); acc < 0.5 {
		t.Errorf("final accuracy %v, want >= 0.5 even on a subset", acc)
	}
	if !strings.Contains(progress, "round 2/2") || !strings.Contains(progress, "key ceremony") {
		t.Errorf("progress lacks round lines or the ceremony:\n%s", progress)
	}
	if !strings.Contains(got["deployment"].(string), "loopback") {
		t.Errorf("deployment %q does not say it runs over loopback", got["deployment"])
	}
	inf := got["inference"].(map[string]any)
	if preds, _ := inf["predictions"].([]any); len(preds) != 3 {
		t.Errorf("%d predictions through the inference API, want 3", len(preds))
	}

	for _, f := range []string{"metrics.csv", "summary.json", "model.safetensors", "accuracy_loss.png", "time_split.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("results folder: %v", err)
		}
	}
	csv, _ := os.ReadFile(filepath.Join(out, "metrics.csv"))
	if lines := strings.Split(strings.TrimSpace(string(csv)), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "round,accuracy,loss") {
		t.Errorf("metrics.csv:\n%s", csv)
	}
	var sum map[string]any
	b, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Errorf("summary.json: %v", err)
	}
	for _, f := range []string{"accuracy_loss.png", "time_split.png"} {
		fh, err := os.Open(filepath.Join(out, f))
		if err != nil {
			continue
		}
		if _, err := png.Decode(fh); err != nil {
			t.Errorf("%s is not a valid PNG: %v", f, err)
		}
		fh.Close()
	}
	m, meta, err := model.LoadFile(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatalf("final model: %v", err)
	}
	if int(got["params"].(float64)) != m.NumParams() || meta["federation"] == "" {
		t.Errorf("final model has %d params (summary %v), metadata %v", m.NumParams(), got["params"], meta)
	}
}

// TestSimulateReproducible runs the same plaintext scenario twice: the metrics must be
// bit-for-bit identical.
func TestSimulateReproducible(t *testing.T) {
	var runs [][]any
	for range 2 {
		got, _ := runSim(t, shortSimulate(t.TempDir(), "--secure=false", "--partition", "dirichlet:0.3", "--predictions", "0"))
		runs = append(runs, got["rounds"].([]any))
	}
	for i := range runs[0] {
		a, b := runs[0][i].(map[string]any), runs[1][i].(map[string]any)
		for _, k := range []string{"accuracy", "loss", "train_loss", "contributors"} {
			if a[k] != b[k] {
				t.Errorf("round %d %s: %v then %v", i+1, k, a[k], b[k])
			}
		}
	}
}

func TestSimulateScenarioFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "scenario.yaml")
	os.WriteFile(path, []byte("clients: 3\nrounds: 1\nmodel: mlp\nsecure: false\ntrain-samples: 900\ntest-samples: 300\npredictions: 0\nmode: inprocess\n"), 0o644)
	// A flag overrides the file.
	got, _ := runSim(t, []string{"--scenario", path, "--rounds", "2", "--out", filepath.Join(dir, "out"), "--json"})
	cfg := got["config"].(map[string]any)
	if cfg["clients"] != 3.0 || cfg["rounds"] != 2.0 || cfg["mode"] != "inprocess" || cfg["secure"] != false {
		t.Errorf("config from scenario + flags: %v", cfg)
	}
}

func TestSimulateConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("clientz: 3\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string // in stderr or the error
	}{
		{[]string{"--clients", "0"}, "clients"},
		{[]string{"--partition", "dirichlet:-1"}, "partition"},
		{[]string{"--strategy", "fedfoo"}, "strategy"},
		{[]string{"--strategy", "median"}, "--secure=false"},
		{[]string{"--threshold", "9"}, "threshold"},
		{[]string{"--secure=false", "--byzantine", "0.2", "--attack", "scale"}, "attack"},
		{[]string{"--model", "transformer"}, "model"},
		{[]string{"--dropout", "1"}, "dropout"},
		{[]string{"--scenario", bad}, "clientz"},
		{[]string{"stray"}, "unexpected argument"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runSimulate(context.Background(), append(tc.args, "--out", dir), &stdout, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			msg := stderr.String() + err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("got %q, want it to mention %q", msg, tc.want)
			}
			if !errors.Is(err, errUsage) && !strings.Contains(tc.args[0], "scenario") {
				t.Errorf("error %v is not a usage error", err)
			}
		})
	}
}

// TestSimulateDefault is the acceptance run: `medfed simulate` with no flags.
func TestSimulateDefault(t *testing.T) {
	if os.Getenv("MEDFED_LONG") == "" {
		t.Skip("set MEDFED_LONG=1 for the full default simulation (a few minutes)")
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	t0 := time.Now()
	if err := runSimulate(ctx, []string{"--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	t.Logf("%s\n(%.0fs)", stdout.String(), time.Since(t0).Seconds())
	var sum struct {
		FinalAccuracy float64 `json:"final_accuracy"`
	}
	b, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.FinalAccuracy < 0.97 {
		t.Errorf("final accuracy %.4f, want >= 0.97", sum.FinalAccuracy)
	}
	if !slices.ContainsFunc(strings.Split(stdout.String(), "\n"), func(l string) bool {
		return strings.Contains(l, "Open Inference Protocol") || strings.Contains(l, "/v2/models/")
	}) {
		t.Error("no predictions through the inference API in the output")
	}
}

// TestSimulateAttackAndDropout runs the simulation's own hospitals: a Byzantine hospital
// against the median in plaintext, and a hospital that drops out of a round.
func TestSimulateAttackAndDropout(t *testing.T) {
	got, _ := runSim(t, shortSimulate(t.TempDir(), "--secure=false", "--strategy", "median", "--byzantine", "0.3",
		"--attack", "scale:10", "--dropout", "0.4", "--round-timeout", "3s", "--predictions", "0"))
	if !strings.Contains(got["hospital_code"].(string), "virtual hospital") {
		t.Errorf("hospital code %q", got["hospital_code"])
	}
	if byz, _ := got["byzantine_hospitals"].([]any); len(byz) != 1 {
		t.Errorf("byzantine hospitals %v, want 1", byz)
	}
	if notes, _ := got["notes"].([]any); len(notes) == 0 || !strings.Contains(notes[0].(string), "robust") {
		t.Errorf("notes %v do not explain the defence", notes)
	}
}

// TestSimulateInProcess runs the scale mode with many small hospitals.
func TestSimulateInProcess(t *testing.T) {
	got, _ := runSim(t, []string{"--mode", "inprocess", "--secure=false", "--clients", "200", "--rounds", "2", "--model", "mlp",
		"--train-samples", "6000", "--test-samples", "500", "--partition", "iid", "--local-epochs", "5", "--predictions", "2", "--out", t.TempDir(), "--json"})
	if acc, _ := got["final_accuracy"].(float64); acc < 0.5 {
		t.Errorf("final accuracy %v", acc)
	}
	if !strings.Contains(got["deployment"].(string), "without network") {
		t.Errorf("deployment %q", got["deployment"])
	}
}
