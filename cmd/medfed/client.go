package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/medfed/medfed/client"
	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/crypto/seal"
)

// runClient runs a hospital's client node until the federation has run all its rounds or
// ctx is cancelled (SIGINT or SIGTERM in main).
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, opts, err := clientConfig(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.level}))
	if cfg.Insecure {
		logger.Warn("talking to the coordinators WITHOUT TLS (--insecure); use only for local experiments")
	}
	n, err := client.New(cfg, logger)
	if err != nil {
		return err
	}
	if !opts.json {
		fmt.Fprintf(stdout, "client %s: federation %q, coordinators %s, state in %s\n", cfg.ClientID, cfg.Federation, strings.Join(cfg.Coordinators, ","), cfg.StateDir)
	}
	runErr := n.Run(ctx)
	reports := n.Reports()
	if opts.json {
		out := struct {
			Client     string               `json:"client"`
			Federation string               `json:"federation"`
			Rounds     []client.RoundReport `json:"rounds"`
			Error      string               `json:"error,omitempty"`
		}{cfg.ClientID, cfg.Federation, reports, ""}
		if out.Rounds == nil {
			out.Rounds = []client.RoundReport{}
		}
		if runErr != nil {
			out.Error = runErr.Error()
		}
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			return err
		}
		return runErr
	}
	if len(reports) > 0 {
		fmt.Fprintf(stdout, "%5s %8s %9s %8s %9s %8s %8s %11s %10s\n", "round", "samples", "train_acc", "train_s", "encrypt_s", "upload_s", "share_s", "update_MB", "published")
		for _, r := range reports {
			pub := "-"
			switch {
			case r.Aborted != "":
				pub = "aborted"
			case r.Published > 0:
				pub = fmt.Sprintf("v%d", r.Published)
			}
			fmt.Fprintf(stdout, "%5d %8d %9.4f %8.2f %9.2f %8.2f %8.2f %11.2f %10s\n", r.Round, r.Samples, r.TrainAcc,
				r.TrainSeconds, r.EncryptSeconds, r.UploadSeconds, r.ShareSeconds, float64(r.UpdateBytes)/1e6, pub)
		}
	}
	if runErr == nil {
		fmt.Fprintln(stdout, "federation done")
	}
	return runErr
}

type clientOpts struct {
	level slog.Level
	json  bool
}

func clientConfig(args []string, stderr io.Writer) (client.Config, clientOpts, error) {
	cfg := client.DefaultConfig()
	var opts clientOpts
	var coords, dataDir, kind, csvLabel, identityFile, passFile, logLevel string
	var tf tlsFlags
	fs := flag.NewFlagSet("medfed client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&coords, "coordinator", "", "comma-separated HOST:PORT gRPC addresses of the coordinator nodes (required)")
	fs.StringVar(&cfg.ClientID, "client-id", "", "this hospital's ID on the federation roster; the ID its certificate binds (required)")
	fs.StringVar(&cfg.Federation, "federation", "", "name of the federation to take part in (required)")
	fs.StringVar(&kind, "dataset", "", "local data format: "+strings.Join(client.Kinds(), ", ")+" (required)")
	fs.StringVar(&dataDir, "data-dir", "", "folder (or file, for csv and breast-cancer) holding the local data; idx: train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] as 'medfed partition' writes them; images: one sub-folder per class")
	fs.StringVar(&csvLabel, "csv-label", "", "label column of a csv table (default: the last column)")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "folder for the node's encrypted state; a restarted node resumes from it (default: ./medfed-state/<federation>/<client-id>)")
	tf.register(fs, "this hospital's")
	fs.StringVar(&identityFile, "age-identity", "", "age identity file (age-keygen) that encrypts the state and opens threshold shares")
	fs.StringVar(&passFile, "passphrase-file", "", "file whose first line is the passphrase that encrypts the state (instead of --age-identity)")
	fs.Float64Var(&cfg.ClipNorm, "clip-norm", 0, "L2 bound on the update when the federation sets no dp_clip_norm (0: none)")
	fs.Float64Var(&cfg.ProximalMu, "proximal-mu", cfg.ProximalMu, "FedProx mu, used when the federation's strategy is fedprox")
	fs.Float64Var(&cfg.EpsilonBudget, "epsilon-budget", 0, "this hospital's own limit on the privacy its updates spend (epsilon at the federation's dp_delta); it sends no update past it or past the federation's budget, and refuses a federation without differential privacy (0: the federation's budget alone)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed for local shuffling and dropout (0: derived from the client ID)")
	fs.DurationVar(&cfg.PollInterval, "poll", cfg.PollInterval, "how often to read the federation's state")
	fs.BoolVar(&opts.json, "json", false, "print one JSON object with the per-round report on stdout")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return cfg, opts, err
	}
	if err := opts.level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, opts, usageError(fs, "--log-level %q: expected debug, info, warn or error", logLevel)
	}
	var missing []string
	for name, v := range map[string]string{"coordinator": coords, "client-id": cfg.ClientID, "federation": cfg.Federation, "dataset": kind} {
		if v == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return cfg, opts, usageError(fs, "missing %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
	}
	if !(cfg.EpsilonBudget >= 0) || math.IsInf(cfg.EpsilonBudget, 1) {
		return cfg, opts, usageError(fs, "--epsilon-budget %v: expected a finite epsilon > 0, or 0 for the federation's budget alone", cfg.EpsilonBudget)
	}
	if !slices.Contains(client.Kinds(), kind) {
		return cfg, opts, usageError(fs, "--dataset %q: expected one of %s", kind, strings.Join(client.Kinds(), ", "))
	}
	needsDir := kind == client.KindIDX || kind == client.KindCSV || kind == client.KindImages
	if needsDir && dataDir == "" {
		return cfg, opts, usageError(fs, "--dataset %s needs --data-dir", kind)
	}
	if csvLabel != "" && kind != client.KindCSV {
		return cfg, opts, usageError(fs, "--csv-label applies to --dataset csv only")
	}
	for _, a := range strings.Split(coords, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Coordinators = append(cfg.Coordinators, a)
		}
	}
	cfg.Data = client.Folder{Kind: kind, Dir: dataDir, CSVLabel: csvLabel}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join("medfed-state", cfg.Federation, cfg.ClientID)
	}

	if err := tf.check(fs); err != nil {
		return cfg, opts, err
	}
	var err error
	cfg.Insecure = tf.insecure
	if !cfg.Insecure {
		// The server name is taken from each coordinator address dialled.
		if cfg.TLS, err = pki.ClientTLSConfig(tf.cert, tf.key, tf.ca, ""); err != nil {
			return cfg, opts, err
		}
	}
	switch {
	case (identityFile == "") == (passFile == ""):
		return cfg, opts, usageError(fs, "give exactly one of --age-identity and --passphrase-file: it encrypts the node's secret-key share at rest")
	case identityFile != "":
		if cfg.AgeIdentity, err = loadAgeIdentity(identityFile); err != nil {
			return cfg, opts, err
		}
	default:
		if cfg.Passphrase, err = readPassphrase(passFile); err != nil {
			return cfg, opts, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, opts, err
	}
	return cfg, opts, nil
}

// loadAgeIdentity reads the first X25519 identity of an age identity file.
func loadAgeIdentity(path string) (*age.X25519Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("--age-identity %s does not exist: create one with 'age-keygen -o %s', or use --passphrase-file", path, path)
		}
		return nil, err
	}
	defer f.Close()
	ids, err := seal.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("--age-identity %s: %w", path, err)
	}
	for _, id := range ids {
		if x, ok := id.(*age.X25519Identity); ok {
			return x, nil
		}
	}
	return nil, fmt.Errorf("--age-identity %s: no X25519 identity (AGE-SECRET-KEY-1...) in the file", path)
}

func readPassphrase(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--passphrase-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if len(line) < 8 {
		return "", fmt.Errorf("--passphrase-file %s: the passphrase has %d characters, want at least 8", path, len(line))
	}
	return line, nil
}
