package simulations

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/model"
)

// predictThroughAPI serves m as version of the federation's model with package inference
// (the coordinator's model-as-a-service code) on a loopback HTTP listener, and classifies
// the first n test samples with one Open Inference Protocol v2 REST request.
func predictThroughAPI(ctx context.Context, m *model.Sequential, version uint64, test *dataset.Set, n int) (*InferenceRun, error) {
	n = min(n, test.Len())
	reg, err := inference.NewRegistry(inference.DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer reg.Close(context.WithoutCancel(ctx))
	if err := reg.Publish(federationName, version, m, inference.ModelMeta{ClassNames: test.ClassNames}); err != nil {
		return nil, err
	}
	// A bearer token made for this run, as an operator issues one to a researcher.
	var tb [16]byte
	rand.Read(tb[:])
	token := hex.EncodeToString(tb[:])
	tokens, err := inference.NewTokenSet(map[string]string{token: "simulate"})
	if err != nil {
		return nil, err
	}
	srv := inference.NewServer(reg, tokens, slog.New(slog.DiscardHandler))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { hs.Serve(l); close(done) }()
	defer func() { hs.Close(); <-done }()

	shape := []int{n, test.Size()} // [N, values per sample] fits every model
	body, err := json.Marshal(map[string]any{
		"id": "medfed-simulate",
		"inputs": []map[string]any{{
			"name": "input", "shape": shape, "datatype": "FP32", "data": test.X[:n*test.Size()],
		}},
	})
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://%s/v2/models/%s/infer", l.Addr(), federationName)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	latency := time.Since(t0)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(rb))
	}
	var out struct {
		Outputs []struct {
			Name  string    `json:"name"`
			Shape []int     `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return nil, fmt.Errorf("decoding the inference response: %w", err)
	}
	run := &InferenceRun{Endpoint: url, ModelVersion: version, LatencySeconds: latency.Seconds()}
	var probs, classes []float64
	for _, o := range out.Outputs {
		switch o.Name {
		case "probabilities":
			probs = o.Data
		case "predicted_class":
			classes = o.Data
		}
	}
	if len(classes) != n {
		return nil, fmt.Errorf("inference response holds %d predicted classes, expected %d", len(classes), n)
	}
	k := 0
	if n > 0 {
		k = len(probs) / n
	}
	for i := range n {
		p := Prediction{Index: i, Label: int(test.Y[i]), Predicted: int(classes[i])}
		if k > 0 {
			for _, v := range probs[i*k : (i+1)*k] {
				p.Prob = append(p.Prob, float32(v))
			}
		}
		run.Predictions = append(run.Predictions, p)
	}
	return run, nil
}
