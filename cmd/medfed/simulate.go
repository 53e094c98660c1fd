package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/medfed/medfed/simulations"
)

const simulateUsage = `Usage: medfed simulate [flags]
       medfed simulate compare --models cnn,mlp,gru [flags]

Runs a whole federation on this machine: virtual hospitals with partitions of a data set,
a Raft coordinator cluster, encrypted aggregation, then predictions through the inference
API, all in one process over loopback with the code of a real deployment. With no flags:
5 hospitals, Dirichlet(0.5) MNIST, 3 coordinator nodes, threshold 3 of 5, the seed CNN,
5 rounds. Results (metrics.csv, summary.json, model.safetensors, PNG plots) go to --out.

A YAML scenario file (--scenario FILE) takes the same names as the flags, for example
  clients: 10
  partition: iid
  secure: false
Flags given on the command line override the file.

Flags:
`

// runSimulate is `medfed simulate`: flags (and an optional scenario file) to a
// simulations.Config, then simulations.Run or simulations.Compare.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	compare := false
	if len(args) > 0 && args[0] == "compare" {
		compare, args = true, args[1:]
	}
	cfg := simulations.DefaultConfig()
	// The scenario file is read first so that flags override it.
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "scenario" {
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "flag needs an argument: -scenario")
				return errUsage
			}
			val = args[i+1]
		}
		var err error
		if cfg, err = simulations.LoadScenario(val, cfg); err != nil {
			return err
		}
	}

	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, simulateUsage)
		fs.PrintDefaults()
	}
	fs.String("scenario", "", "YAML scenario `file` with the same names as these flags")
	models := "cnn,mlp,gru"
	if compare {
		fs.StringVar(&models, "models", models, "compare: comma-separated model architectures")
	}
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "number of virtual hospitals")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "federated rounds")
	fs.StringVar(&cfg.Model, "model", cfg.Model, "architecture: cnn, mlp, rnn, lstm or gru")
	fs.StringVar(&cfg.Dataset, "dataset", cfg.Dataset, "mnist, mnist-seq, fashion-mnist or breast-cancer")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder of the image data set (default: this machine's copy)")
	fs.StringVar(&cfg.Partition, "partition", cfg.Partition, "iid, dirichlet:A, pathological:K or quantity:A")
	fs.StringVar(&cfg.Strategy, "strategy", cfg.Strategy, "fedavg, fedprox, fedadam, fedyogi, fedadagrad, median, trimmed-mean or krum")
	fs.BoolVar(&cfg.Secure, "secure", cfg.Secure, "encrypted aggregation with threshold CKKS (--secure=false for plaintext)")
	fs.StringVar(&cfg.HEProfile, "he-profile", cfg.HEProfile, "CKKS parameters: default (128-bit, 2^-40 flooding) or compact")
	fs.IntVar(&cfg.Threshold, "threshold", cfg.Threshold, "hospitals needed to decrypt an aggregate (0: 60% of clients)")
	fs.IntVar(&cfg.MinClients, "min-clients", cfg.MinClients, "fewest contributions a round closes with (0: the threshold, or 1 in plaintext)")
	fs.IntVar(&cfg.LocalEpochs, "local-epochs", cfg.LocalEpochs, "local epochs per round")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "local batch size")
	fs.Float64Var(&cfg.LR, "lr", cfg.LR, "local learning rate (0: Adam's 0.001)")
	fs.Float64Var(&cfg.ServerLR, "server-lr", cfg.ServerLR, "server learning rate (0: the strategy's default)")
	fs.Float64Var(&cfg.ProximalMu, "proximal-mu", cfg.ProximalMu, "FedProx mu")
	fs.Float64Var(&cfg.FractionFit, "fraction-fit", cfg.FractionFit, "share of hospitals that train each round")
	fs.Float64Var(&cfg.Dropout, "dropout", cfg.Dropout, "probability that a selected hospital misses a round")
	fs.Float64Var(&cfg.Byzantine, "byzantine", cfg.Byzantine, "share of hospitals that send poisoned updates")
	fs.StringVar(&cfg.Attack, "attack", cfg.Attack, "what Byzantine hospitals do: scale:X, signflip or noise[:SIGMA]")
	fs.Float64Var(&cfg.ClipNorm, "clip-norm", cfg.ClipNorm, "client-side L2 clipping of updates (0: off; 1 when --secure with --byzantine)")
	fs.Float64Var(&cfg.DPNoiseMultiplier, "dp-noise-multiplier", cfg.DPNoiseMultiplier, "differential privacy noise multiplier z (0: no DP)")
	fs.Float64Var(&cfg.DPClip, "dp-clip", cfg.DPClip, "differential privacy clipping norm C")
	fs.Float64Var(&cfg.DPDelta, "dp-delta", cfg.DPDelta, "delta at which epsilon is reported")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of partitions, selection, initial weights and training")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "results `folder`")
	fs.BoolVar(&cfg.JSON, "json", cfg.JSON, "print the summary as JSON on stdout (progress goes to stderr)")
	fs.StringVar(&cfg.Mode, "mode", cfg.Mode, "cluster (coordinator cluster over loopback) or inprocess (scale mode, plaintext, no network)")
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "coordinator nodes: 1, 3 or 5")
	fs.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "hospitals training at once")
	fs.IntVar(&cfg.TrainSamples, "train-samples", cfg.TrainSamples, "use a stratified subset of this many training samples (0: all)")
	fs.IntVar(&cfg.TestSamples, "test-samples", cfg.TestSamples, "evaluate on a stratified subset of this many test samples (0: all)")
	fs.IntVar(&cfg.Predictions, "predictions", cfg.Predictions, "test images classified through the inference API at the end")
	fs.DurationVar(&cfg.RoundTimeout, "round-timeout", cfg.RoundTimeout, "how long a round waits for absent hospitals (0: 60s with dropout or fraction-fit, else 10m)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return errUsage
	}

	progress := stdout
	if cfg.JSON {
		progress = stderr
	}
	hooks := simulations.Hooks{
		Step: func(msg string) { fmt.Fprintln(progress, msg) },
		Round: func(m simulations.RoundMetrics) {
			line := fmt.Sprintf("round %d/%d  accuracy %.4f  loss %.4f  train %.1fs  encrypt %.1fs  aggregate %.1fs  decrypt %.1fs  %s  (%.1fs)",
				m.Round, cfg.Rounds, m.Accuracy, m.Loss, m.Train, m.Encrypt, m.Aggregate, m.Decrypt, simulations.FormatBytes(m.Bytes()), m.Seconds)
			if len(m.Dropped) > 0 {
				line += fmt.Sprintf("  dropped %s", strings.Join(m.Dropped, ","))
			}
			if cfg.DPNoiseMultiplier > 0 {
				line += fmt.Sprintf("  epsilon %.3f (delta %g)", m.Epsilon, cfg.DPDelta)
			}
			fmt.Fprintln(progress, line)
		},
	}

	if compare {
		list := strings.Split(models, ",")
		for i := range list {
			list[i] = strings.TrimSpace(list[i])
		}
		cmp, err := simulations.Compare(ctx, cfg, list, hooks)
		if err != nil {
			return err
		}
		if cfg.JSON {
			return writeJSONTo(stdout, cmp)
		}
		fmt.Fprintln(stdout)
		simulations.WriteComparisonTable(stdout, cmp)
		fmt.Fprintf(stdout, "\nresults in %s\n", cfg.Out)
		return nil
	}

	fmt.Fprintf(progress, "medfed simulate: %d hospitals, %s %s, %s, %s, %d rounds, %s\n", cfg.Clients, cfg.Dataset, cfg.Partition,
		cfg.Model, cfg.Strategy, cfg.Rounds, secureString(cfg))
	t0 := time.Now()
	sum, err := simulations.Run(ctx, cfg, hooks)
	if err != nil {
		return err
	}
	if cfg.JSON {
		return writeJSONTo(stdout, sum)
	}
	fmt.Fprintf(stdout, "\ndeployment: %s\nhospitals:  %s\n\n", sum.Deployment, sum.Hospital)
	simulations.WriteTable(stdout, sum)
	if sum.Inference != nil {
		fmt.Fprintf(stdout, "\npredictions through %s (model version %d):\n", sum.Inference.Endpoint, sum.Inference.ModelVersion)
		for _, p := range sum.Inference.Predictions {
			mark := "ok"
			if p.Predicted != p.Label {
				mark = "WRONG"
			}
			fmt.Fprintf(stdout, "  test image %d: label %d, predicted %d  %s\n", p.Index, p.Label, p.Predicted, mark)
		}
	}
	for _, n := range sum.Notes {
		fmt.Fprintf(stdout, "\nnote: %s\n", n)
	}
	fmt.Fprintf(stdout, "\nfinal accuracy %.4f, loss %.4f; %d parameters; %.1fs in all (set-up %.1fs); peak RSS %s\n",
		sum.FinalAccuracy, sum.FinalLoss, sum.Params, time.Since(t0).Seconds(), sum.SetupSeconds, simulations.FormatBytes(sum.PeakRSSBytes))
	if cfg.DPNoiseMultiplier > 0 {
		against := ""
		if !cfg.Secure {
			against = fmt.Sprintf("; against the coordinator, which in plaintext mode sees each update with its share of the noise: z/sqrt(min-clients %d)", cfg.MinClients)
		}
		fmt.Fprintf(stdout, "differential privacy: (%.3f, %g)-DP after %d rounds (hospital level, z=%g, C=%g%s)\n", sum.Epsilon, cfg.DPDelta, len(sum.Rounds), cfg.DPNoiseMultiplier, cfg.DPClip, against)
	}
	fmt.Fprintf(stdout, "results in %s: %s\n", cfg.Out, strings.Join(sum.Files, ", "))
	return nil
}

func secureString(cfg simulations.Config) string {
	if !cfg.Secure {
		return "plaintext aggregation"
	}
	t := cfg.Threshold
	if t == 0 {
		t = cfg.Resolved().Threshold
	}
	return fmt.Sprintf("encrypted aggregation (threshold %d of %d)", t, cfg.Clients)
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
