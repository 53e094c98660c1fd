package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// runFederation creates or shows a federation (a named study) on a coordinator cluster.
func runFederation(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runSubcommand(ctx, "federation", args, stdout, stderr, federationUsage, map[string]subcommand{
		"create": runFederationCmd,
		"show":   runFederationCmd,
		"pin":    runFederationPin,
		"unpin":  runFederationPin,
		"resume": runFederationRunning,
		"stop":   runFederationRunning,
	})
}

func federationUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  medfed federation create --coordinator ADDR[,ADDR...] --spec FILE [TLS flags] [--json]
  medfed federation show   --coordinator ADDR[,ADDR...] (--name NAME | --spec FILE) [TLS flags] [--json]
  medfed federation pin    --coordinator ADDR[,ADDR...] --name NAME --version V [TLS flags] [--json]
  medfed federation unpin  --coordinator ADDR[,ADDR...] --name NAME --version V [TLS flags] [--json]
  medfed federation resume --coordinator ADDR[,ADDR...] --name NAME [TLS flags] [--json]
  medfed federation stop   --coordinator ADDR[,ADDR...] --name NAME [--reason TEXT] [TLS flags] [--json]

create may be run again with the same spec (it then shows the federation as it stands);
another spec under an existing name is refused. pin keeps a published model version
served on every coordinator node (Open Inference Protocol, /v2/models/NAME/versions/V)
however many newer rounds publish; unpin lets it be retired. resume lets a federation
the coordinator stopped (its key ceremony timed out, or max_aborted_rounds rounds in a
row aborted) go on once its hospitals are back: rounds open again with every enrolled
hospital, an unfinished key ceremony gets a new ceremony_timeout. stop stops a
federation now: a round in progress is aborted (its hospitals are not held to it), no
round opens until resume, and the hospitals' nodes end, reporting the reason. All need
an operator certificate.

The spec is YAML or JSON, for example:

  name: study
  model: cnn              # cnn, mlp, rnn, lstm, gru, or a full architecture {input, layers}
  dataset: mnist          # mnist, fashion-mnist, breast-cancer, or {shape: [30], classes: 2}
  clients: [h1, h2, h3]   # the roster of hospital IDs
  rounds: 5
  min_clients: 2
  threshold: 2            # decryption threshold t (secure mode)
  strategy: fedavg
  secure: true
  local_epochs: 1
  batch_size: 32
  lr: 0.01
  dp: {clip_norm: 1.0, noise_multiplier: 1.1, epsilon_budget: 8, delta: 1e-5}

Run 'medfed federation create -h' (or pin -h) for the flags.
`)
}

func runFederationCmd(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	var specFile, name string
	fs, cf, jsonOut := coordinatorCommand("medfed federation "+sub, "print one JSON object on stdout, nothing else", stderr)
	fs.StringVar(&specFile, "spec", "", "the federation spec, YAML or JSON (see 'medfed federation help')")
	if sub == "show" {
		fs.StringVar(&name, "name", "", "the federation to show (default: the name in --spec)")
	}
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	var spec *pb.FederationSpec
	switch {
	case sub == "create" && specFile == "":
		return usageError(fs, "missing --spec")
	case sub == "show" && name == "" && specFile == "":
		return usageError(fs, "missing --name or --spec")
	case sub == "show" && name != "" && specFile != "":
		return usageError(fs, "--name and --spec exclude each other")
	}
	if specFile != "" {
		data, err := os.ReadFile(specFile)
		if err != nil {
			return err
		}
		if spec, err = parseFederationSpec(data); err != nil {
			return fmt.Errorf("%s: %w", specFile, err)
		}
		name = spec.Name
	}
	c, err := cf.dial(stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	var f *pb.Federation
	existed := false
	if sub == "create" {
		// Creating again with the same spec is safe (the coordinator returns the
		// federation as it stands); say so rather than "created".
		old, gerr := c.Federation(ctx, name)
		if existed = gerr == nil && proto.Equal(old.Spec, spec); existed {
			f = old
		} else {
			f, err = c.CreateFederation(ctx, spec)
		}
	} else {
		f, err = c.Federation(ctx, name)
	}
	if err != nil {
		return err
	}
	view := federationViewOf(f)
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(view)
	}
	switch {
	case existed:
		fmt.Fprintf(stdout, "federation %s exists already, with this spec\n", view.Name)
	case sub == "create":
		fmt.Fprintf(stdout, "federation %s created\n", view.Name)
	}
	printFederation(stdout, view)
	return nil
}

// federationView is what `medfed federation show` prints: the spec without the
// architecture, then the federation's progress.
type federationView struct {
	Name         string      `json:"name"`
	Dataset      string      `json:"dataset"`
	NumParams    uint64      `json:"num_params"`
	Clients      []string    `json:"clients"`
	Enrolled     []string    `json:"enrolled"`
	Rounds       uint32      `json:"rounds"`
	MinClients   uint32      `json:"min_clients"`
	Threshold    uint32      `json:"threshold,omitempty"`
	Strategy     string      `json:"strategy"`
	Secure       bool        `json:"secure"`
	CeremonyDone bool        `json:"ceremony_complete"`
	Done         bool        `json:"done"`
	ModelVersion uint64      `json:"model_version"`
	Pinned       []uint64    `json:"pinned_versions"`
	RoundStates  []roundView `json:"round_states"`
	// Why it is done before its last round, or stopped.
	DoneReason string `json:"done_reason,omitempty"`
	Stopped    bool   `json:"stopped,omitempty"`
	StopReason string `json:"stop_reason,omitempty"`
	// With differential privacy: the noise multiplier, and the epsilon spent and allowed
	// (0: no limit) at delta.
	DPNoiseMultiplier float64 `json:"dp_noise_multiplier,omitempty"`
	DPEpsilon         float64 `json:"dp_epsilon,omitempty"`
	DPEpsilonBudget   float64 `json:"dp_epsilon_budget,omitempty"`
	DPDelta           float64 `json:"dp_delta,omitempty"`
}

func federationViewOf(f *pb.Federation) federationView {
	s := f.GetSpec()
	v := federationView{
		Name: s.GetName(), Dataset: s.GetDataset(), NumParams: f.NumParams, Clients: s.GetClients(),
		Enrolled: []string{}, Rounds: max(s.GetRounds(), 1), MinClients: s.GetMinClients(), Threshold: s.GetThreshold(),
		Strategy: cmpOr(s.GetStrategy(), "fedavg"), Secure: s.GetSecure(), CeremonyDone: f.GetCeremony().GetComplete(),
		Done: f.Done, RoundStates: roundViews(f), ModelVersion: latestVersion(f), Pinned: append([]uint64{}, f.PinnedVersions...),
		DoneReason: f.DoneReason, Stopped: f.Stopped, StopReason: f.StopReason,
	}
	if z := s.GetDpNoiseMultiplier(); z > 0 {
		v.DPNoiseMultiplier, v.DPEpsilon, v.DPEpsilonBudget = z, f.DpEpsilon, s.GetDpEpsilonBudget()
		v.DPDelta = s.GetDpDelta()
		if v.DPDelta == 0 {
			v.DPDelta = aggregation.DefaultDPDelta
		}
	}
	for _, e := range f.Enrolled {
		v.Enrolled = append(v.Enrolled, e.ClientId)
	}
	return v
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func printFederation(w io.Writer, v federationView) {
	fmt.Fprintf(w, "federation %s: %d parameters, dataset %s, strategy %s", v.Name, v.NumParams, cmpOr(v.Dataset, "-"), v.Strategy)
	if v.Secure {
		fmt.Fprintf(w, ", secure (threshold %d, key ceremony %s)", v.Threshold, map[bool]string{true: "complete", false: "pending"}[v.CeremonyDone])
	} else {
		fmt.Fprint(w, ", plaintext")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  roster   %s (min_clients %d)\n", strings.Join(v.Clients, ", "), v.MinClients)
	fmt.Fprintf(w, "  enrolled %d of %d: %s\n", len(v.Enrolled), len(v.Clients), strings.Join(v.Enrolled, ", "))
	done := ""
	if v.Done {
		done = ", done"
	}
	switch {
	case v.Stopped:
		done = ", stopped: " + v.StopReason
	case v.DoneReason != "":
		done += ": " + v.DoneReason
	}
	fmt.Fprintf(w, "  rounds   %d planned, model version %d%s\n", v.Rounds, v.ModelVersion, done)
	if v.DPNoiseMultiplier > 0 {
		budget := "no budget"
		if v.DPEpsilonBudget > 0 {
			budget = fmt.Sprintf("budget %g", v.DPEpsilonBudget)
		}
		fmt.Fprintf(w, "  privacy  noise multiplier %g, epsilon %.3g spent at delta %g (%s)\n", v.DPNoiseMultiplier, v.DPEpsilon, v.DPDelta, budget)
	}
	if len(v.Pinned) > 0 {
		fmt.Fprintf(w, "  pinned   model versions %s (served beside the newest)\n", joinVersions(v.Pinned))
	}
	for _, r := range v.RoundStates {
		fmt.Fprintf(w, "    round %d: %s, %d contributors %s\n", r.Round, r.State, len(r.Contributors), strings.Join(r.Contributors, ", "))
	}
}

func joinVersions(vs []uint64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatUint(v, 10)
	}
	return strings.Join(s, ", ")
}

// runFederationPin pins (sub "pin") or unpins a model version of a federation for serving.
func runFederationPin(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	var name string
	var version uint64
	fs, cf, jsonOut := coordinatorCommand("medfed federation "+sub, "print the federation as one JSON object on stdout, nothing else", stderr)
	fs.StringVar(&name, "name", "", "the federation (the served model's name) (required)")
	fs.Uint64Var(&version, "version", 0, "the model version, a published round's number from 1 (required)")
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	switch {
	case name == "":
		return usageError(fs, "missing --name")
	case version == 0:
		return usageError(fs, "missing --version: a published model version, 1 or more (version 0, the initial model, is not served)")
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	f, err := operatorCall(ctx, cf, stderr, func(c pb.FederationServiceClient) (*pb.Federation, error) {
		return c.PinModel(ctx, &pb.PinModelRequest{Federation: name, Version: version, Unpin: sub == "unpin"})
	})
	if err != nil {
		return err
	}
	view := federationViewOf(f)
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(view)
	}
	fmt.Fprintf(stdout, "federation %s: model version %d %sned; pinned versions: %s\n", name, version, sub, cmpOr(joinVersions(view.Pinned), "none"))
	return nil
}

// runFederationRunning lets a stopped federation go on (sub "resume") or stops a running
// one (sub "stop").
func runFederationRunning(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	var name, reason string
	fs, cf, jsonOut := coordinatorCommand("medfed federation "+sub, "print the federation as one JSON object on stdout, nothing else", stderr)
	fs.StringVar(&name, "name", "", "the federation (required)")
	if sub == "stop" {
		fs.StringVar(&reason, "reason", "", "why, for the hospitals (at most 1024 bytes)")
	}
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	switch {
	case name == "":
		return usageError(fs, "missing --name")
	case len(reason) > 1024:
		return usageError(fs, "--reason of %d bytes, expected at most 1024", len(reason))
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	f, err := operatorCall(ctx, cf, stderr, func(c pb.FederationServiceClient) (*pb.Federation, error) {
		if sub == "stop" {
			return c.StopFederation(ctx, &pb.StopFederationRequest{Federation: name, Reason: reason})
		}
		return c.ResumeFederation(ctx, &pb.ResumeFederationRequest{Federation: name})
	})
	if err != nil {
		return err
	}
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(federationViewOf(f))
	}
	if f.Stopped {
		fmt.Fprintf(stdout, "federation %s: stopped after %d rounds: %s\n", name, len(f.Rounds), f.StopReason)
		return nil
	}
	fmt.Fprintf(stdout, "federation %s: running (%d rounds so far)\n", name, len(f.Rounds))
	return nil
}

// operatorCall makes an operator's FederationService call on the first node that takes
// it, moving on to the next address (with a growing pause after each full pass) while
// nodes are unreachable or have no leader, until ctx is done.
func operatorCall(ctx context.Context, cf *coordinatorFlags, stderr io.Writer, call func(pb.FederationServiceClient) (*pb.Federation, error)) (*pb.Federation, error) {
	creds, err := cf.tls.clientCreds()
	if err != nil {
		return nil, err
	}
	if creds == nil {
		fmt.Fprintln(stderr, "warning: talking to the coordinator WITHOUT TLS (--insecure)")
		creds = insecure.NewCredentials()
	}
	backoff := 100 * time.Millisecond
	var last error
	for {
		for _, addr := range cf.list() {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				return nil, fmt.Errorf("coordinator %s: %w", addr, err)
			}
			f, err := call(pb.NewFederationServiceClient(conn))
			conn.Close()
			if err == nil {
				return f, nil
			}
			if !coordclient.Retryable(err) || ctx.Err() != nil {
				return nil, err
			}
			last = fmt.Errorf("coordinator %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// ---- The spec file ----

// federationFile is the operator's spec file. Field names are the file's keys.
type federationFile struct {
	Name         string       `json:"name" yaml:"name"`
	Model        modelField   `json:"model" yaml:"model"`
	Dataset      datasetField `json:"dataset" yaml:"dataset"`
	Clients      []string     `json:"clients" yaml:"clients"`
	Rounds       uint32       `json:"rounds" yaml:"rounds"`
	MinClients   uint32       `json:"min_clients" yaml:"min_clients"`
	Threshold    uint32       `json:"threshold" yaml:"threshold"`
	Strategy     string       `json:"strategy" yaml:"strategy"`
	Secure       bool         `json:"secure" yaml:"secure"`
	HEProfile    string       `json:"he_profile" yaml:"he_profile"`
	LocalEpochs  uint32       `json:"local_epochs" yaml:"local_epochs"`
	BatchSize    uint32       `json:"batch_size" yaml:"batch_size"`
	LR           float64      `json:"lr" yaml:"lr"`
	ServerLR     float64      `json:"server_lr" yaml:"server_lr"`
	RoundTimeout string       `json:"round_timeout" yaml:"round_timeout"`
	// CeremonyTimeout bounds the key ceremony (secure mode); MaxAbortedRounds the aborted
	// rounds in a row before the federation stops.
	CeremonyTimeout  string  `json:"ceremony_timeout" yaml:"ceremony_timeout"`
	MaxAbortedRounds uint32  `json:"max_aborted_rounds" yaml:"max_aborted_rounds"`
	Seed             uint64  `json:"seed" yaml:"seed"`
	TrimmedBeta      float64 `json:"trimmed_beta" yaml:"trimmed_beta"`
	KrumF            uint32  `json:"krum_f" yaml:"krum_f"`
	KrumM            uint32  `json:"krum_m" yaml:"krum_m"`
	DP               dpField `json:"dp" yaml:"dp"`
}

// dpField holds the differential-privacy settings the hospitals apply.
type dpField struct {
	ClipNorm        float64 `json:"clip_norm" yaml:"clip_norm"`
	NoiseMultiplier float64 `json:"noise_multiplier" yaml:"noise_multiplier"`
	EpsilonBudget   float64 `json:"epsilon_budget" yaml:"epsilon_budget"`
	Delta           float64 `json:"delta" yaml:"delta"`
}

// modelField is a built-in architecture name or a full architecture spec (model.Spec).
type modelField struct {
	Name string
	Spec json.RawMessage
}

func (m *modelField) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &m.Name)
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("model: expected a name such as \"cnn\" or an architecture {\"input\": ..., \"layers\": ...}, got %s", b)
	}
	m.Spec = append(json.RawMessage(nil), b...)
	return nil
}

func (m *modelField) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Decode(&m.Name)
	case yaml.MappingNode:
		var v map[string]any
		if err := n.Decode(&v); err != nil {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("model (line %d): %v", n.Line, err)
		}
		m.Spec = b
		return nil
	}
	return fmt.Errorf("model (line %d): expected a name such as cnn or an architecture mapping with input and layers", n.Line)
}

// datasetField is a data set name or an explicit input schema.
type datasetField struct {
	Name    string
	Shape   []int
	Classes int
}

func (d *datasetField) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &d.Name)
	}
	var s struct {
		Shape   []int `json:"shape"`
		Classes int   `json:"classes"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("dataset: expected a name (mnist, fashion-mnist, breast-cancer) or {\"shape\": [...], \"classes\": N}: %v", err)
	}
	d.Shape, d.Classes = s.Shape, s.Classes
	return nil
}

func (d *datasetField) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Decode(&d.Name)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			var err error
			switch k.Value {
			case "shape":
				err = v.Decode(&d.Shape)
			case "classes":
				err = v.Decode(&d.Classes)
			default:
				return fmt.Errorf("line %d: dataset: unknown key %q, expected shape and classes", k.Line, k.Value)
			}
			if err != nil {
				return fmt.Errorf("dataset: %s: %v", k.Value, err)
			}
		}
		return nil
	}
	return fmt.Errorf("line %d: dataset: expected a name (mnist, fashion-mnist, breast-cancer) or a mapping with shape and classes", n.Line)
}

// builtinDatasets are the input schemas of the data sets MedFed ships loaders for.
var builtinDatasets = map[string]struct {
	shape   []int
	classes int
}{
	"mnist":         {[]int{28, 28, 1}, 10},
	"fashion-mnist": {[]int{28, 28, 1}, 10},
	"breast-cancer": {[]int{30}, 2},
}

// parseFederationSpec reads a spec file, YAML or JSON (JSON when it starts with '{'),
// refusing unknown keys, and turns it into the federation spec the coordinator takes.
func parseFederationSpec(data []byte) (*pb.FederationSpec, error) {
	var f federationFile
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("empty spec")
	}
	if trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("json spec: %w", err)
		}
		if dec.More() {
			return nil, errors.New("json spec: trailing data after the object")
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(trimmed))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("yaml spec: %w", err)
		}
		var extra any
		if err := dec.Decode(&extra); err != io.EOF {
			return nil, errors.New("yaml spec: expected one document")
		}
	}
	return f.toProto()
}

func (f *federationFile) toProto() (*pb.FederationSpec, error) {
	if f.Name == "" {
		return nil, errors.New("name is required")
	}
	if len(f.Clients) == 0 {
		return nil, errors.New("clients is required: the roster of hospital IDs")
	}
	if f.MinClients == 0 {
		return nil, fmt.Errorf("min_clients is required: 1 to %d (the roster size)", len(f.Clients))
	}
	var shape []int
	var classes int
	dsName := f.Dataset.Name
	switch {
	case f.Dataset.Name != "":
		d, ok := builtinDatasets[f.Dataset.Name]
		if !ok {
			return nil, fmt.Errorf("dataset %q: expected one of %s, or an explicit {shape, classes}", f.Dataset.Name, strings.Join(slices.Sorted(maps.Keys(builtinDatasets)), ", "))
		}
		shape, classes = d.shape, d.classes
	case f.Dataset.Shape != nil || f.Dataset.Classes != 0:
		if len(f.Dataset.Shape) == 0 || slices.ContainsFunc(f.Dataset.Shape, func(n int) bool { return n <= 0 }) {
			return nil, fmt.Errorf("dataset shape %v: expected positive dimensions, such as [30] or [28, 28, 1]", f.Dataset.Shape)
		}
		if f.Dataset.Classes < 2 {
			return nil, fmt.Errorf("dataset classes %d: expected at least 2", f.Dataset.Classes)
		}
		shape, classes = f.Dataset.Shape, f.Dataset.Classes
		dsName = fmt.Sprintf("custom %v, %d classes", shape, classes)
	}
	var spec model.Spec
	var err error
	switch {
	case f.Model.Name != "" && f.Model.Spec != nil:
		return nil, errors.New("model: give a name or an architecture, not both")
	case f.Model.Name != "":
		if shape == nil {
			return nil, fmt.Errorf("model %q needs dataset: the input shape and classes it is built for", f.Model.Name)
		}
		if spec, err = model.Architecture(f.Model.Name, shape, classes); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
	case f.Model.Spec != nil:
		if spec, err = model.ParseSpec(f.Model.Spec); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		if shape != nil && !slices.Equal(spec.Input, shape) {
			return nil, fmt.Errorf("model input %v does not match the dataset shape %v", spec.Input, shape)
		}
	default:
		return nil, errors.New("model is required: a name (cnn, mlp, rnn, lstm, gru) or an architecture")
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var timeoutMs, ceremonyMs uint64
	for _, x := range []struct {
		name, v string
		ms      *uint64
	}{{"round_timeout", f.RoundTimeout, &timeoutMs}, {"ceremony_timeout", f.CeremonyTimeout, &ceremonyMs}} {
		if x.v == "" {
			continue
		}
		d, err := time.ParseDuration(x.v)
		if err != nil || d < time.Millisecond {
			return nil, fmt.Errorf("%s %q: expected a positive duration such as 10m", x.name, x.v)
		}
		*x.ms = uint64(d.Milliseconds())
	}
	for _, x := range []struct {
		name string
		v    float64
	}{{"lr", f.LR}, {"server_lr", f.ServerLR}, {"trimmed_beta", f.TrimmedBeta}, {"dp.clip_norm", f.DP.ClipNorm},
		{"dp.noise_multiplier", f.DP.NoiseMultiplier}, {"dp.epsilon_budget", f.DP.EpsilonBudget}, {"dp.delta", f.DP.Delta}} {
		if x.v < 0 || x.v != x.v {
			return nil, fmt.Errorf("%s %v: expected a non-negative number", x.name, x.v)
		}
	}
	if f.DP.Delta >= 1 {
		return nil, fmt.Errorf("dp.delta %v: expected less than 1", f.DP.Delta)
	}
	return &pb.FederationSpec{
		Name: f.Name, ModelSpecJson: specJSON, Dataset: dsName, Clients: f.Clients, Rounds: f.Rounds,
		MinClients: f.MinClients, Threshold: f.Threshold, Strategy: f.Strategy, Secure: f.Secure,
		HeProfile: f.HEProfile, LocalEpochs: f.LocalEpochs, BatchSize: f.BatchSize, Lr: f.LR, ServerLr: f.ServerLR,
		RoundTimeoutMs: timeoutMs, CeremonyTimeoutMs: ceremonyMs, MaxAbortedRounds: f.MaxAbortedRounds, Seed: f.Seed, TrimmedBeta: f.TrimmedBeta, KrumF: f.KrumF, KrumM: f.KrumM,
		DpClipNorm: f.DP.ClipNorm, DpNoiseMultiplier: f.DP.NoiseMultiplier, DpEpsilonBudget: f.DP.EpsilonBudget, DpDelta: f.DP.Delta,
	}, nil
}
