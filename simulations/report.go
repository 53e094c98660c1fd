package simulations

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/medfed/medfed/model"
)

// Files WriteResults writes into the results folder.
const (
	MetricsFile     = "metrics.csv"
	SummaryFile     = "summary.json"
	ModelFile       = "model.safetensors"
	AccuracyPlot    = "accuracy_loss.png"
	TimeSplitPlot   = "time_split.png"
	ComparisonFile  = "comparison.json"
	ComparisonPlot  = "comparison.png"
	ComparisonTable = "comparison.csv"
)

// metricsHeader is the header row of metrics.csv.
var metricsHeader = []string{
	"round", "accuracy", "loss", "train_loss", "selected", "contributors",
	"train_seconds", "encrypt_seconds", "upload_seconds", "aggregate_seconds", "decrypt_seconds", "round_seconds",
	"upload_bytes", "download_bytes", "clip_factor_mean", "epsilon",
}

func metricsRow(m RoundMetrics) []string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return []string{
		strconv.Itoa(m.Round), f(m.Accuracy), f(m.Loss), f(m.TrainLoss), strconv.Itoa(m.Selected), strconv.Itoa(m.Contributors),
		f(m.Train), f(m.Encrypt), f(m.Upload), f(m.Aggregate), f(m.Decrypt), f(m.Seconds),
		strconv.FormatInt(m.UpBytes, 10), strconv.FormatInt(m.DownBytes, 10), f(m.ClipMean), f(m.Epsilon),
	}
}

// WriteMetricsCSV writes one row per round.
func WriteMetricsCSV(w io.Writer, rounds []RoundMetrics) error {
	cw := csv.NewWriter(w)
	cw.Write(metricsHeader)
	for _, m := range rounds {
		cw.Write(metricsRow(m))
	}
	cw.Flush()
	return cw.Error()
}

// WriteResults writes the results folder: metrics.csv, summary.json, the final model as
// safetensors and the PNG plots. It returns the names of the files it wrote.
func WriteResults(dir string, s *Summary) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	f, err := os.Create(filepath.Join(dir, MetricsFile))
	if err != nil {
		return nil, err
	}
	err = WriteMetricsCSV(f, s.Rounds)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return files, err
	}
	files = append(files, MetricsFile)
	if s.final != nil {
		meta := map[string]string{
			"federation": federationName, "rounds": strconv.Itoa(len(s.Rounds)),
			"dataset": s.Config.Dataset, "partition": s.Config.Partition, "strategy": s.Config.Strategy,
			"test_accuracy": strconv.FormatFloat(s.FinalAccuracy, 'f', 4, 64),
		}
		if err := model.SaveFile(filepath.Join(dir, ModelFile), s.final, meta); err != nil {
			return files, err
		}
		files = append(files, ModelFile)
	}
	if len(s.Rounds) > 0 {
		if err := plotAccuracyLoss(filepath.Join(dir, AccuracyPlot), s.Rounds); err != nil {
			return files, fmt.Errorf("plotting: %w", err)
		}
		if err := plotTimeSplit(filepath.Join(dir, TimeSplitPlot), s.Rounds); err != nil {
			return files, fmt.Errorf("plotting: %w", err)
		}
		files = append(files, AccuracyPlot, TimeSplitPlot)
	}
	files = append(files, SummaryFile)
	s.Files = files
	return files, writeJSON(filepath.Join(dir, SummaryFile), s)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteTable prints the per-round table: round, accuracy, loss, the time split and bytes.
func WriteTable(w io.Writer, s *Summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	dp := s.Config.DPNoiseMultiplier > 0
	head := "round\taccuracy\tloss\ttrain s\tencrypt s\taggregate s\tdecrypt s\tround s\tbytes\t"
	if dp {
		head += "epsilon\t"
	}
	fmt.Fprintln(tw, head)
	for _, m := range s.Rounds {
		line := fmt.Sprintf("%d\t%.4f\t%.4f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t", m.Round, m.Accuracy, m.Loss,
			m.Train, m.Encrypt, m.Aggregate, m.Decrypt, m.Seconds, FormatBytes(m.Bytes()))
		if dp {
			line += fmt.Sprintf("%.3f\t", m.Epsilon)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// FormatBytes prints a byte count with a binary unit.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// peakRSS returns the process's peak resident set size (VmHWM), or 0 where unknown.
func peakRSS() int64 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		return ru.Maxrss << 10
	}
	return 0
}
