package simulations

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/model"
)

// ErrConfig means a simulation Config (from flags or a scenario file) has a bad field.
var ErrConfig = errors.New("invalid simulation config")

// Modes of a simulation, the values of Config.Mode.
const (
	// ModeCluster runs the real deployment in one process: a Raft coordinator cluster on
	// loopback gRPC and one hospital per client, each with its own gRPC connection.
	ModeCluster = "cluster"
	// ModeInProcess runs many virtual hospitals without any network: shared read-only data,
	// bounded concurrency, aggregation with package aggregation (plaintext only).
	ModeInProcess = "inprocess"
)

// Config is one simulated study. Its YAML keys (a scenario file) are the names of the
// `medfed simulate` flags. Zero values mean "default" where DefaultConfig says so; use
// DefaultConfig as the starting point for everything else (Secure, for one, defaults to
// true, which a zero value cannot say).
type Config struct {
	Clients    int    `yaml:"clients" json:"clients"`
	Rounds     int    `yaml:"rounds" json:"rounds"`
	Model      string `yaml:"model" json:"model"`         // cnn, mlp, rnn, lstm, gru
	Dataset    string `yaml:"dataset" json:"dataset"`     // mnist, mnist-seq, fashion-mnist, breast-cancer
	DataDir    string `yaml:"data-dir" json:"data_dir"`   // where image data sets are found ("" = this machine's copy)
	Partition  string `yaml:"partition" json:"partition"` // iid, dirichlet:A, pathological:K, quantity:A
	Strategy   string `yaml:"strategy" json:"strategy"`   // aggregation.ParseStrategy names
	Secure     bool   `yaml:"secure" json:"secure"`       // encrypted aggregation (threshold CKKS)
	HEProfile  string `yaml:"he-profile" json:"he_profile"`
	Threshold  int    `yaml:"threshold" json:"threshold"`     // t of the t-out-of-N decryption; 0 = ceil(0.6·N)
	MinClients int    `yaml:"min-clients" json:"min_clients"` // 0 = threshold (secure) or 1

	LocalEpochs int     `yaml:"local-epochs" json:"local_epochs"`
	BatchSize   int     `yaml:"batch-size" json:"batch_size"`
	LR          float64 `yaml:"lr" json:"lr"`               // local learning rate; 0 = Adam's 0.001
	ServerLR    float64 `yaml:"server-lr" json:"server_lr"` // 0 = the server optimizer's default
	ProximalMu  float64 `yaml:"proximal-mu" json:"proximal_mu"`

	FractionFit float64 `yaml:"fraction-fit" json:"fraction_fit"` // share of hospitals that train each round
	Dropout     float64 `yaml:"dropout" json:"dropout"`           // probability a selected hospital misses a round
	Byzantine   float64 `yaml:"byzantine" json:"byzantine"`       // share of hospitals that attack
	Attack      string  `yaml:"attack" json:"attack"`             // scale:X, signflip, noise[:SIGMA]
	ClipNorm    float64 `yaml:"clip-norm" json:"clip_norm"`       // client-side update clipping; 0 = off (secure+byzantine: auto)

	DPNoiseMultiplier float64 `yaml:"dp-noise-multiplier" json:"dp_noise_multiplier"` // 0 = no DP
	DPClip            float64 `yaml:"dp-clip" json:"dp_clip"`
	DPDelta           float64 `yaml:"dp-delta" json:"dp_delta"`

	Seed uint64 `yaml:"seed" json:"seed"`
	Out  string `yaml:"out" json:"out"`
	JSON bool   `yaml:"json" json:"-"`

	// Scale and harness.
	Mode         string        `yaml:"mode" json:"mode"`                   // cluster or inprocess
	Nodes        int           `yaml:"nodes" json:"nodes"`                 // coordinator replicas (cluster mode)
	Parallel     int           `yaml:"parallel" json:"parallel"`           // hospitals training at once
	TrainSamples int           `yaml:"train-samples" json:"train_samples"` // use only this many training samples (0 = all)
	TestSamples  int           `yaml:"test-samples" json:"test_samples"`   // evaluate on this many test samples (0 = all)
	Predictions  int           `yaml:"predictions" json:"predictions"`     // test images sent through the inference API at the end
	RoundTimeout time.Duration `yaml:"round-timeout" json:"round_timeout"` // how long a round waits for absent hospitals
}

// DefaultConfig is `medfed simulate` with no flags: 5 hospitals with Dirichlet(0.5) MNIST
// partitions, a 3-node coordinator, encrypted FedAvg with threshold 3 of 5, the seed CNN,
// 5 rounds of 1 local epoch, then 5 predictions through the inference API.
func DefaultConfig() Config {
	return Config{
		Clients:     5,
		Rounds:      5,
		Model:       "cnn",
		Dataset:     "mnist",
		Partition:   "dirichlet:0.5",
		Strategy:    "fedavg",
		Secure:      true,
		HEProfile:   "default",
		LocalEpochs: 1,
		BatchSize:   32,
		FractionFit: 1,
		Attack:      "scale:10",
		DPClip:      1,
		DPDelta:     1e-5,
		ProximalMu:  0.01,
		Seed:        1,
		Out:         "simulation-results",
		Mode:        ModeCluster,
		Nodes:       3,
		Parallel:    1,
		Predictions: 5,
	}
}

// Resolved returns c with derived defaults filled in: the threshold, min_clients and the
// round timeout. Call it on a valid config.
func (c Config) Resolved() Config {
	if c.Threshold == 0 {
		c.Threshold = max(1, int(math.Ceil(0.6*float64(c.Clients))))
	}
	if c.MinClients == 0 {
		if c.Secure {
			c.MinClients = c.Threshold
		} else {
			c.MinClients = 1
		}
	}
	if c.Parallel == 0 {
		c.Parallel = 1
	}
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.RoundTimeout == 0 {
		if c.FractionFit < 1 || c.Dropout > 0 {
			// Absent hospitals never send: the round seals at its deadline.
			c.RoundTimeout = 60 * time.Second
		} else {
			c.RoundTimeout = 10 * time.Minute
		}
	}
	if c.Secure && c.Byzantine > 0 && c.ClipNorm == 0 && c.DPNoiseMultiplier == 0 {
		// Robust aggregators cannot run on ciphertexts; client-side clipping is the defence.
		c.ClipNorm = 1
	}
	return c
}

// Validate names the first bad field, wrapping ErrConfig.
func (c Config) Validate() error {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Clients < 1 || c.Clients > 100_000:
		return bad("clients", "%d, expected 1 to 100000", c.Clients)
	case c.Rounds < 1 || c.Rounds > 10_000:
		return bad("rounds", "%d, expected 1 to 10000", c.Rounds)
	}
	if _, err := model.Architecture(c.Model, []int{28, 28, 1}, 10); err != nil {
		return bad("model", "%q, expected cnn, mlp, rnn, lstm or gru", c.Model)
	}
	switch c.Dataset {
	case "mnist", "mnist-seq", "fashion-mnist", "breast-cancer":
	default:
		return bad("dataset", "%q, expected mnist, mnist-seq, fashion-mnist or breast-cancer", c.Dataset)
	}
	if c.Model == "cnn" && c.Dataset == "breast-cancer" {
		return bad("model", "cnn needs images, dataset breast-cancer is a table (use mlp)")
	}
	if _, err := ParseScheme(c.Partition); err != nil {
		return bad("partition", "%v", err)
	}
	st, err := aggregation.ParseStrategy(c.Strategy)
	if err != nil {
		return bad("strategy", "%q, expected one of %s", c.Strategy, strings.Join(aggregation.StrategyNames(), ", "))
	}
	switch c.Mode {
	case ModeCluster, ModeInProcess:
	default:
		return bad("mode", "%q, expected cluster or inprocess", c.Mode)
	}
	if c.Secure {
		if !st.Encryptable {
			return bad("strategy", "%s needs each update in the clear; use --secure=false (in encrypted mode the defence is client-side clipping)", st.Name)
		}
		if c.Mode == ModeInProcess {
			return bad("secure", "the in-process scale mode runs in plaintext; use --secure=false or --mode cluster")
		}
		switch c.HEProfile {
		case "default", "compact":
		default:
			return bad("he-profile", "%q, expected default or compact", c.HEProfile)
		}
	}
	if c.Threshold < 0 || c.Threshold > c.Clients {
		return bad("threshold", "%d, expected 1 to clients (%d)", c.Threshold, c.Clients)
	}
	if c.Secure && c.Threshold == 1 && c.Clients > 1 {
		return bad("threshold", "1 would let any single hospital decrypt; expected at least 2")
	}
	if c.MinClients < 0 || c.MinClients > c.Clients {
		return bad("min-clients", "%d, expected 1 to clients (%d)", c.MinClients, c.Clients)
	}
	r := c.Resolved()
	if c.Secure && r.MinClients < r.Threshold {
		return bad("min-clients", "%d is below the threshold %d: decryption needs t contributors", r.MinClients, r.Threshold)
	}
	switch {
	case c.LocalEpochs < 1 || c.LocalEpochs > 1000:
		return bad("local-epochs", "%d, expected 1 to 1000", c.LocalEpochs)
	case c.BatchSize < 1 || c.BatchSize > 1<<16:
		return bad("batch-size", "%d, expected 1 to 65536", c.BatchSize)
	case !(c.LR >= 0 && c.LR < 10):
		return bad("lr", "%v, expected 0 (default) to 10", c.LR)
	case !(c.ServerLR >= 0 && c.ServerLR < 100):
		return bad("server-lr", "%v, expected 0 (default) to 100", c.ServerLR)
	case !(c.ProximalMu >= 0 && c.ProximalMu < 100):
		return bad("proximal-mu", "%v, expected 0 to 100", c.ProximalMu)
	case !(c.FractionFit > 0 && c.FractionFit <= 1):
		return bad("fraction-fit", "%v, expected (0, 1]", c.FractionFit)
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return bad("dropout", "%v, expected [0, 1)", c.Dropout)
	case !(c.Byzantine >= 0 && c.Byzantine < 0.5):
		return bad("byzantine", "%v, expected [0, 0.5)", c.Byzantine)
	case !(c.ClipNorm >= 0) || math.IsInf(c.ClipNorm, 0):
		return bad("clip-norm", "%v, expected >= 0", c.ClipNorm)
	case !(c.DPNoiseMultiplier >= 0 && c.DPNoiseMultiplier <= aggregation.MaxNoiseMultiplier):
		return bad("dp-noise-multiplier", "%v, expected 0 (off) to %g", c.DPNoiseMultiplier, aggregation.MaxNoiseMultiplier)
	case !(c.DPClip > 0) || math.IsInf(c.DPClip, 0):
		return bad("dp-clip", "%v, expected > 0", c.DPClip)
	case !(c.DPDelta > 0 && c.DPDelta < 1):
		return bad("dp-delta", "%v, expected (0, 1)", c.DPDelta)
	case c.Out == "":
		return bad("out", "empty, expected a folder for the results")
	case c.Nodes != 0 && c.Nodes != 1 && c.Nodes != 3 && c.Nodes != 5:
		return bad("nodes", "%d, expected 1, 3 or 5", c.Nodes)
	case c.Parallel < 0 || c.Parallel > 4096:
		return bad("parallel", "%d, expected 0 (default 1) to 4096", c.Parallel)
	case c.TrainSamples < 0, c.TestSamples < 0:
		return bad("train-samples", "negative sample count")
	case c.Predictions < 0 || c.Predictions > 1000:
		return bad("predictions", "%d, expected 0 to 1000", c.Predictions)
	case c.RoundTimeout < 0:
		return bad("round-timeout", "%v, expected >= 0", c.RoundTimeout)
	case c.Mode == ModeCluster && c.Clients > 1000:
		return bad("clients", "%d hospitals with one gRPC connection each; use --mode inprocess beyond 1000", c.Clients)
	}
	if c.Byzantine > 0 {
		if _, err := ParseAttack(c.Attack); err != nil {
			return bad("attack", "%v", err)
		}
	}
	if r.MinClients > expectedContributors(r) {
		return bad("min-clients", "%d, but only about %d hospitals contribute per round with fraction-fit %v and dropout %v",
			r.MinClients, expectedContributors(r), c.FractionFit, c.Dropout)
	}
	return nil
}

// expectedContributors is the number of hospitals selected per round.
func expectedContributors(c Config) int {
	return max(1, int(math.Round(c.FractionFit*float64(c.Clients))))
}

// LoadScenario reads a YAML scenario file over base: keys are the flag names (clients,
// rounds, min-clients, dp-noise-multiplier, ...); keys the file does not set keep base's
// value. Unknown keys are an error.
func LoadScenario(path string, base Config) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return base, err
	}
	defer f.Close()
	return ReadScenario(f, base)
}

// ReadScenario is LoadScenario for a reader.
func ReadScenario(r io.Reader, base Config) (Config, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return base, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	c := base
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return base, fmt.Errorf("%w: scenario: %v", ErrConfig, err)
	}
	return c, nil
}

// Attack is what a Byzantine hospital does to its honest update before sending it.
type Attack struct {
	Kind  string  // scale, signflip or noise
	Value float64 // the scale factor, or the noise standard deviation
}

// ParseAttack parses "scale:X", "signflip" or "noise[:SIGMA]" (default sigma 1).
func ParseAttack(s string) (Attack, error) {
	kind, arg, hasArg := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	switch kind {
	case "scale":
		x, err := strconv.ParseFloat(arg, 64)
		if !hasArg || err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x == 0 {
			return Attack{}, fmt.Errorf("attack %q: expected scale:X with a finite, non-zero X", s)
		}
		return Attack{Kind: "scale", Value: x}, nil
	case "signflip":
		if hasArg {
			return Attack{}, fmt.Errorf("attack %q: signflip takes no value", s)
		}
		return Attack{Kind: "signflip", Value: -1}, nil
	case "noise":
		sigma := 1.0
		if hasArg {
			x, err := strconv.ParseFloat(arg, 64)
			if err != nil || !(x > 0) || math.IsInf(x, 0) {
				return Attack{}, fmt.Errorf("attack %q: expected noise:SIGMA with SIGMA > 0", s)
			}
			sigma = x
		}
		return Attack{Kind: "noise", Value: sigma}, nil
	}
	return Attack{}, fmt.Errorf("attack %q: expected scale:X, signflip or noise[:SIGMA]", s)
}

// String returns the attack in the form ParseAttack reads.
func (a Attack) String() string {
	switch a.Kind {
	case "scale":
		return "scale:" + strconv.FormatFloat(a.Value, 'g', -1, 64)
	case "noise":
		return "noise:" + strconv.FormatFloat(a.Value, 'g', -1, 64)
	}
	return a.Kind
}

// coordinatorNoise is the noise multiplier that protects a hospital against the
// coordinator, with which the simulation accounts its privacy: the DP noise multiplier
// in secure mode, where the coordinator sees only the sum, and that divided by
// sqrt(min-clients) in plaintext mode, where it sees each update with its own share of
// the noise (aggregation.DPConfig.CoordinatorNoiseMultiplier; the coordinator accounts
// the same way).
func (c Config) coordinatorNoise() float64 {
	return aggregation.DPConfig{NoiseMultiplier: c.DPNoiseMultiplier, Clip: c.DPClip, Delta: c.DPDelta}.CoordinatorNoiseMultiplier(c.Secure, max(c.MinClients, 1))
}
