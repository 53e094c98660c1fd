package simulations

import (
	"context"
	"encoding/csv"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// ModelResult is one architecture's line of a comparison.
type ModelResult struct {
	Model             string  `json:"model"`
	Accuracy          float64 `json:"accuracy"`
	Loss              float64 `json:"loss"`
	Params            int     `json:"params"`
	TrainSecondsRound float64 `json:"train_seconds_per_round"`
	RoundSeconds      float64 `json:"round_seconds"`
	InferenceSeconds  float64 `json:"inference_latency_seconds"`
	BytesPerRound     int64   `json:"bytes_per_round"`
	Out               string  `json:"out"`
}

// Comparison is the result of Compare; comparison.json holds it.
type Comparison struct {
	Config  Config        `json:"config"`
	Results []ModelResult `json:"results"`
	Files   []string      `json:"files"`
}

// Compare runs the scenario cfg once per architecture in models, each into
// cfg.Out/<model>, and writes comparison.json, comparison.csv and comparison.png into
// cfg.Out: accuracy, parameter count, training time per round, inference latency and
// bytes per round side by side.
func Compare(ctx context.Context, cfg Config, models []string, hooks Hooks) (*Comparison, error) {
	if len(models) == 0 {
		return nil, fmt.Errorf("%w: models: empty list", ErrConfig)
	}
	for _, m := range models {
		c := cfg
		c.Model = m
		if err := c.Validate(); err != nil {
			return nil, err
		}
	}
	cmp := &Comparison{Config: cfg}
	for _, m := range models {
		c := cfg
		c.Model, c.Out = m, filepath.Join(cfg.Out, m)
		if c.Predictions == 0 {
			c.Predictions = 1 // for the latency
		}
		hooks.step("== model %s", m)
		s, err := Run(ctx, c, hooks)
		if err != nil {
			return cmp, fmt.Errorf("model %s: %w", m, err)
		}
		r := ModelResult{Model: m, Accuracy: s.FinalAccuracy, Loss: s.FinalLoss, Params: s.Params, Out: c.Out}
		for _, rm := range s.Rounds {
			r.TrainSecondsRound += rm.Train / float64(len(s.Rounds))
			r.RoundSeconds += rm.Seconds / float64(len(s.Rounds))
			r.BytesPerRound += rm.Bytes() / int64(len(s.Rounds))
		}
		if s.Inference != nil {
			r.InferenceSeconds = s.Inference.LatencySeconds
		}
		cmp.Results = append(cmp.Results, r)
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return cmp, err
	}
	f, err := os.Create(filepath.Join(cfg.Out, ComparisonTable))
	if err != nil {
		return cmp, err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"model", "accuracy", "loss", "params", "train_seconds_per_round", "round_seconds", "inference_latency_seconds", "bytes_per_round"})
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	for _, r := range cmp.Results {
		cw.Write([]string{r.Model, g(r.Accuracy), g(r.Loss), strconv.Itoa(r.Params), g(r.TrainSecondsRound), g(r.RoundSeconds), g(r.InferenceSeconds), strconv.FormatInt(r.BytesPerRound, 10)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return cmp, err
	}
	if err := f.Close(); err != nil {
		return cmp, err
	}
	if err := plotComparison(filepath.Join(cfg.Out, ComparisonPlot), cmp.Results); err != nil {
		return cmp, err
	}
	cmp.Files = []string{ComparisonTable, ComparisonPlot, ComparisonFile}
	return cmp, writeJSON(filepath.Join(cfg.Out, ComparisonFile), cmp)
}

// WriteComparisonTable prints a comparison side by side.
func WriteComparisonTable(w io.Writer, c *Comparison) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\taccuracy\tparams\ttrain s/round\tround s\tinference ms\tbytes/round\t")
	for _, r := range c.Results {
		fmt.Fprintf(tw, "%s\t%.4f\t%d\t%.2f\t%.2f\t%.2f\t%s\t\n", r.Model, r.Accuracy, r.Params, r.TrainSecondsRound, r.RoundSeconds, r.InferenceSeconds*1000, FormatBytes(r.BytesPerRound))
	}
	tw.Flush()
}

// plotComparison draws one bar chart per measure, side by side.
func plotComparison(path string, rs []ModelResult) error {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Model
	}
	measures := []struct {
		title, unit string
		get         func(ModelResult) float64
	}{
		{"Final accuracy", "accuracy", func(r ModelResult) float64 { return r.Accuracy }},
		{"Parameters", "thousands", func(r ModelResult) float64 { return float64(r.Params) / 1000 }},
		{"Training time per round", "seconds", func(r ModelResult) float64 { return r.TrainSecondsRound }},
		{"Inference latency", "milliseconds", func(r ModelResult) float64 { return r.InferenceSeconds * 1000 }},
		{"Traffic per round", "MiB", func(r ModelResult) float64 { return float64(r.BytesPerRound) / (1 << 20) }},
	}
	var plots []*plot.Plot
	for _, m := range measures {
		p := plot.New()
		p.Title.Text = m.title
		p.X.Label.Text = "model"
		p.Y.Label.Text = m.unit
		vals := make(plotter.Values, len(rs))
		for i, r := range rs {
			vals[i] = m.get(r)
		}
		b, err := plotter.NewBarChart(vals, vg.Points(20))
		if err != nil {
			return err
		}
		b.Color = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
		p.Add(b)
		p.NominalX(names...)
		plots = append(plots, p)
	}
	return saveRow(path, plots...)
}
