package simulations

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/localtrain"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// Hooks receive progress; nil hooks are skipped. They are called from Run's goroutine.
type Hooks struct {
	// Step reports a set-up step ("data loaded", "coordinator elected n2", ...).
	Step func(msg string)
	// Round reports a finished round.
	Round func(RoundMetrics)
}

func (h Hooks) step(format string, args ...any) {
	if h.Step != nil {
		h.Step(fmt.Sprintf(format, args...))
	}
}

// RoundMetrics is what one round did. Times are seconds: Train and Encrypt are summed over
// the round's hospitals; Aggregate is the wall time from the last local training to the
// coordinator's aggregate (uploads, Raft replication, homomorphic additions, sealing, and
// in plaintext mode publication); Decrypt is the wall time of the collective decryption
// (fetching the aggregate, t decryption shares, combination, publication).
type RoundMetrics struct {
	Round        int      `json:"round"`
	Accuracy     float64  `json:"accuracy"`
	Loss         float64  `json:"loss"`
	TrainLoss    float64  `json:"train_loss"`
	Selected     int      `json:"selected"`
	Contributors int      `json:"contributors"`
	Dropped      []string `json:"dropped,omitempty"`
	// Train, Encrypt and Upload are summed over the round's hospitals (hospitals may work at
	// the same time, so the sum can exceed the round's wall time, Seconds).
	Train     float64 `json:"train_seconds"`
	Encrypt   float64 `json:"encrypt_seconds"`
	Upload    float64 `json:"upload_seconds"`
	Aggregate float64 `json:"aggregate_seconds"`
	Decrypt   float64 `json:"decrypt_seconds"`
	Seconds   float64 `json:"round_seconds"`
	UpBytes   int64   `json:"upload_bytes"`
	DownBytes int64   `json:"download_bytes"`
	ClipMean  float64 `json:"clip_factor_mean"`
	Epsilon   float64 `json:"epsilon,omitempty"`
}

// Bytes is the traffic of the round in both directions.
func (m RoundMetrics) Bytes() int64 { return m.UpBytes + m.DownBytes }

// Prediction is one test image classified through the inference API at the end of a run.
type Prediction struct {
	Index     int       `json:"test_index"`
	Label     int       `json:"label"`
	Predicted int       `json:"predicted"`
	Prob      []float32 `json:"probabilities,omitempty"`
}

// Summary is the result of a simulation: summary.json holds it whole.
type Summary struct {
	Config        Config         `json:"config"`
	Deployment    string         `json:"deployment"`
	Hospital      string         `json:"hospital_code"`
	Params        int            `json:"params"`
	Samples       []int          `json:"samples_per_hospital"`
	LabelCounts   [][]int        `json:"label_counts_per_hospital,omitempty"`
	Byzantine     []string       `json:"byzantine_hospitals,omitempty"`
	Rounds        []RoundMetrics `json:"rounds"`
	FinalAccuracy float64        `json:"final_accuracy"`
	FinalLoss     float64        `json:"final_loss"`
	SetupSeconds  float64        `json:"setup_seconds"`
	TotalSeconds  float64        `json:"total_seconds"`
	Epsilon       float64        `json:"epsilon,omitempty"`
	DPDelta       float64        `json:"dp_delta,omitempty"`
	Inference     *InferenceRun  `json:"inference,omitempty"`
	PeakRSSBytes  int64          `json:"peak_rss_bytes"`
	Notes         []string       `json:"notes,omitempty"`
	Files         []string       `json:"files"`

	final *model.Sequential
}

// InferenceRun records the predictions made through the inference API.
type InferenceRun struct {
	Endpoint       string       `json:"endpoint"`
	ModelVersion   uint64       `json:"model_version"`
	LatencySeconds float64      `json:"latency_seconds"`
	Predictions    []Prediction `json:"predictions"`
}

// Run runs the simulated study cfg describes and writes its results into cfg.Out.
func Run(ctx context.Context, cfg Config, hooks Hooks) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.Resolved()
	start := time.Now()
	train, test, err := loadData(cfg)
	if err != nil {
		return nil, err
	}
	spec, err := model.Architecture(cfg.Model, train.Shape, train.Classes)
	if err != nil {
		return nil, err
	}
	scheme, _ := ParseScheme(cfg.Partition)
	parts, err := Partition(train.Y, train.Classes, cfg.Clients, scheme, cfg.Seed)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Config: cfg}
	for _, p := range parts {
		sum.Samples = append(sum.Samples, len(p))
		if cfg.Clients <= 50 {
			sum.LabelCounts = append(sum.LabelCounts, LabelCounts(train.Y, p, train.Classes))
		}
	}
	byz := byzantineSet(cfg)
	for i := range cfg.Clients {
		if byz[i] {
			sum.Byzantine = append(sum.Byzantine, hospitalID(i))
		}
	}
	hooks.step("data: %s, %d training samples split %s among %d hospitals (sizes %s), %d test samples",
		cfg.Dataset, train.Len(), scheme, cfg.Clients, sizesString(sum.Samples), test.Len())

	switch cfg.Mode {
	case ModeInProcess:
		err = runInProcess(ctx, cfg, spec, train, test, parts, byz, sum, hooks)
	default:
		err = runCluster(ctx, cfg, spec, train, test, parts, byz, sum, hooks)
	}
	if err != nil {
		return sum, err
	}
	if n := len(sum.Rounds); n > 0 {
		sum.FinalAccuracy, sum.FinalLoss = sum.Rounds[n-1].Accuracy, sum.Rounds[n-1].Loss
		sum.Epsilon = sum.Rounds[n-1].Epsilon
	}
	if cfg.DPNoiseMultiplier > 0 {
		sum.DPDelta = cfg.DPDelta
	}
	if cfg.Byzantine > 0 {
		st, _ := aggregation.ParseStrategy(cfg.Strategy)
		switch {
		case cfg.Secure:
			sum.Notes = append(sum.Notes, fmt.Sprintf("encrypted mode: the coordinator sees only the sum, so robust aggregators cannot run; client-side clipping to norm %g is what limits the damage of the %s attack", cfg.ClipNorm, cfg.Attack))
		case st.Encryptable:
			sum.Notes = append(sum.Notes, fmt.Sprintf("%s averages every update: nothing limits the %s attack", st.Name, cfg.Attack))
		default:
			sum.Notes = append(sum.Notes, fmt.Sprintf("%s is a Byzantine-robust aggregator (plaintext mode only)", st.Name))
		}
	}
	sum.PeakRSSBytes = peakRSS()
	sum.TotalSeconds = time.Since(start).Seconds()
	files, err := WriteResults(cfg.Out, sum)
	sum.Files = files
	if err != nil {
		return sum, err
	}
	// summary.json again, now with the file list.
	return sum, writeJSON(filepath.Join(cfg.Out, "summary.json"), sum)
}

func sizesString(s []int) string {
	if len(s) > 8 {
		lo, hi := slices.Min(s), slices.Max(s)
		return fmt.Sprintf("%d to %d", lo, hi)
	}
	return fmt.Sprint(s)
}

// loadData loads the data set cfg names, shaped for cfg.Model, and applies the sample caps.
func loadData(cfg Config) (train, test *dataset.Set, err error) {
	lc := localtrain.DefaultConfig()
	lc.Model, lc.Dataset, lc.DataDir, lc.Seed = cfg.Model, cfg.Dataset, cfg.DataDir, cfg.Seed
	if train, test, err = localtrain.Load(lc); err != nil {
		return nil, nil, err
	}
	if cfg.TrainSamples > 0 && cfg.TrainSamples < train.Len() {
		train, _ = train.Split(1-float64(cfg.TrainSamples)/float64(train.Len()), int64(cfg.Seed))
	}
	if cfg.TestSamples > 0 && cfg.TestSamples < test.Len() {
		_, test = test.Split(float64(cfg.TestSamples)/float64(test.Len()), int64(cfg.Seed))
	}
	return train, test, nil
}

// byzantineSet picks round(byzantine·clients) attackers with the seed.
func byzantineSet(cfg Config) []bool {
	out := make([]bool, cfg.Clients)
	n := int(math.Round(cfg.Byzantine * float64(cfg.Clients)))
	if cfg.Byzantine > 0 && n == 0 {
		n = 1
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 0xb12a))
	perm := r.Perm(cfg.Clients)
	for _, i := range perm[:n] {
		out[i] = true
	}
	return out
}

// selection returns, for a round, which hospitals train (fraction-fit) and which of those
// drop out, both drawn from the seed alone.
func selection(cfg Config, round int) (train []int, dropped []int) {
	r := rand.New(rand.NewPCG(cfg.Seed, uint64(round)<<8|0x5e))
	k := expectedContributors(cfg)
	perm := r.Perm(cfg.Clients)
	sel := slices.Clone(perm[:k])
	slices.Sort(sel)
	for _, i := range sel {
		if cfg.Dropout > 0 && r.Float64() < cfg.Dropout {
			dropped = append(dropped, i)
			continue
		}
		train = append(train, i)
	}
	// Never drop below min_clients: the round could not close.
	for len(train) < cfg.MinClients && len(dropped) > 0 {
		train = append(train, dropped[0])
		dropped = dropped[1:]
	}
	slices.Sort(train)
	return train, dropped
}

// cluster is the in-process coordinator cluster.
type cluster struct {
	nodes []*coordinator.Node
	dir   string
}

func startCluster(cfg Config) (*cluster, error) {
	dir, err := os.MkdirTemp("", "medfed-sim-*")
	if err != nil {
		return nil, err
	}
	cl := &cluster{dir: dir}
	var peers []coordinator.Peer
	for i := range cfg.Nodes {
		ra, err := loopback.FreeAddr()
		if err != nil {
			cl.close()
			return nil, err
		}
		ga, err := loopback.FreeAddr()
		if err != nil {
			cl.close()
			return nil, err
		}
		peers = append(peers, coordinator.Peer{ID: fmt.Sprintf("n%d", i+1), RaftAddr: ra, GRPCAddr: ga})
	}
	for _, p := range peers {
		n, err := coordinator.New(coordinator.Config{
			NodeID: p.ID, DataDir: filepath.Join(dir, p.ID), RaftAddr: p.RaftAddr, GRPCAddr: p.GRPCAddr,
			Peers: peers, Insecure: true, RoundTimeout: cfg.RoundTimeout,
			DriverInterval:   20 * time.Millisecond,
			HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
			LeaderLeaseTimeout: 250 * time.Millisecond, SnapshotThreshold: 1 << 20,
		}, slog.New(slog.DiscardHandler))
		if err != nil {
			cl.close()
			return nil, fmt.Errorf("starting coordinator %s: %w", p.ID, err)
		}
		cl.nodes = append(cl.nodes, n)
	}
	return cl, nil
}

func (cl *cluster) addrs() []string {
	var out []string
	for _, n := range cl.nodes {
		out = append(out, n.GRPCAddr())
	}
	return out
}

func (cl *cluster) leader(ctx context.Context) (string, error) {
	for {
		for _, n := range cl.nodes {
			if n.IsLeader() {
				return n.Leader(), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (cl *cluster) close() {
	for _, n := range cl.nodes {
		n.Close()
	}
	os.RemoveAll(cl.dir)
}

const federationName = "simulation"

func runCluster(ctx context.Context, cfg Config, spec model.Spec, train, test *dataset.Set, parts [][]int, byz []bool, sum *Summary, hooks Hooks) error {
	t0 := time.Now()
	strat, _ := aggregation.ParseStrategy(cfg.Strategy)
	cl, err := startCluster(cfg)
	if err != nil {
		return err
	}
	defer cl.close()
	leader, err := cl.leader(ctx)
	if err != nil {
		return err
	}
	sum.Deployment = fmt.Sprintf("in one process over loopback: %d-node Raft coordinator cluster (package coordinator, gRPC + Raft on 127.0.0.1 TCP, no TLS), %d hospitals each with its own gRPC connection (coordclient)", cfg.Nodes, cfg.Clients)
	hooks.step("coordinator: %d Raft nodes on loopback, leader %s", cfg.Nodes, leader)

	specJSON, _ := json.Marshal(spec)
	names := make([]string, cfg.Clients)
	for i := range names {
		names[i] = hospitalID(i)
	}
	fs := &pb.FederationSpec{
		Name: federationName, ModelSpecJson: specJSON, Dataset: cfg.Dataset, Clients: names,
		Rounds: uint32(cfg.Rounds), MinClients: uint32(cfg.MinClients), Strategy: strat.Name,
		Secure: cfg.Secure, LocalEpochs: uint32(cfg.LocalEpochs), BatchSize: uint32(cfg.BatchSize), Lr: cfg.LR,
		ServerLr: cfg.ServerLR, RoundTimeoutMs: uint64(cfg.RoundTimeout / time.Millisecond), Seed: cfg.Seed,
	}
	if cfg.Secure {
		fs.Threshold, fs.HeProfile = uint32(cfg.Threshold), cfg.HEProfile
	} else {
		// The coordinator opens a plaintext round as soon as min_clients hospitals have
		// enrolled, selecting those. Every round of this scenario has at least minTrain
		// contributors, so min_clients = minTrain is the same study and keeps round 1 from
		// opening before the hospitals that train in it have enrolled.
		minTrain := cfg.Clients
		for r := 1; r <= cfg.Rounds; r++ {
			who, _ := selection(cfg, r)
			minTrain = min(minTrain, len(who))
		}
		fs.MinClients = uint32(max(cfg.MinClients, minTrain))
	}
	nByz := 0
	for _, b := range byz {
		if b {
			nByz++
		}
	}
	switch strat.Aggregator {
	case aggregation.AggregatorTrimmedMean:
		fs.TrimmedBeta = math.Max(0.1, float64(nByz)/float64(expectedContributors(cfg))+1e-9)
		if fs.TrimmedBeta >= 0.5 {
			fs.TrimmedBeta = 0.49
		}
	case aggregation.AggregatorKrum:
		k := expectedContributors(cfg)
		f := max(nByz, 0)
		for f > 0 && k <= 2*f+2 {
			f--
		}
		fs.KrumF, fs.KrumM = uint32(f), uint32(max(1, k-f))
	}
	if cfg.DPNoiseMultiplier > 0 {
		fs.DpClipNorm, fs.DpNoiseMultiplier, fs.DpDelta = cfg.DPClip, cfg.DPNoiseMultiplier, cfg.DPDelta
	}
	op, err := coordclient.New(cl.addrs(), coordclient.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second, MaxAttempts: 100})
	if err != nil {
		return err
	}
	defer op.Close()
	fed, err := op.CreateFederation(ctx, fs)
	if err != nil {
		return fmt.Errorf("creating the federation: %w", err)
	}
	sum.Params = int(fed.NumParams)

	var version uint64
	if useClientNodes(cfg) {
		sum.Hospital = "client.Node (package client: the hospital node of a real deployment, one gRPC connection each)"
		if version, err = runClientNodes(ctx, cfg, op, cl.addrs(), train, test, parts, spec, sum, hooks, filepath.Join(cl.dir, "hospitals"), t0); err != nil {
			return err
		}
	} else if version, err = runVirtualHospitals(ctx, cfg, op, cl, train, test, parts, byz, spec, strat, sum, hooks, t0); err != nil {
		return err
	}
	if cfg.Predictions > 0 && sum.final != nil {
		inf, err := predictThroughAPI(ctx, sum.final, version, test, cfg.Predictions)
		if err != nil {
			return fmt.Errorf("inference: %w", err)
		}
		sum.Inference = inf
		hooks.step("inference: %d test images through the Open Inference Protocol v2 REST API at %s (%.1f ms)", len(inf.Predictions), inf.Endpoint, inf.LatencySeconds*1000)
	}
	return nil
}

// runRound drives one round: the selected hospitals train (at most cfg.Parallel at once)
// and upload in hospital order, the active parties decrypt, and the new global model is
// fetched from the coordinator and evaluated on the test set.
func runRound(ctx context.Context, cfg Config, op *coordclient.Client, hs []*hospital, r int, test *dataset.Set, spec model.Spec, sum *Summary) (RoundMetrics, uint64, error) {
	m := RoundMetrics{Round: r}
	start := time.Now()
	ri, err := waitRound(ctx, op, uint64(r), func(s pb.RoundState) bool { return s != pb.RoundState_ROUND_STATE_UNSPECIFIED })
	if err != nil {
		return m, 0, err
	}
	if ri.State == pb.RoundState_ROUND_STATE_ABORTED {
		return m, 0, fmt.Errorf("aborted: %s", ri.Reason)
	}
	who, dropped := selection(cfg, r)
	// Only hospitals the coordinator selected (enrolled when the round opened) may send.
	who = slices.DeleteFunc(who, func(i int) bool { return !slices.Contains(ri.Selected, hs[i].id) })
	m.Selected = len(who) + len(dropped)
	for _, i := range dropped {
		m.Dropped = append(m.Dropped, hs[i].id)
	}
	reps := make([]hospitalRound, len(hs))

	// Training is CPU-bound and the trainer already uses every core, so at most
	// cfg.Parallel hospitals train at once; uploads go in hospital order (so the
	// coordinator's float64 sums are bit-for-bit reproducible) while the next trains.
	sem := make(chan struct{}, cfg.Parallel)
	type made struct {
		data   []byte
		weight uint64
		err    error
	}
	outs := make([]chan made, len(who))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lastTrained time.Time
	var mu sync.Mutex
	for k, i := range who {
		outs[k] = make(chan made, 1)
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				outs[k] <- made{err: ctx.Err()}
				return
			}
			d, w, rep, err := hs[i].train(ctx, ri)
			<-sem
			mu.Lock()
			reps[i] = rep
			lastTrained = time.Now()
			mu.Unlock()
			outs[k] <- made{d, w, err}
		}()
	}
	for k, i := range who {
		mk := <-outs[k]
		if mk.err != nil {
			return m, 0, mk.err
		}
		if err := hs[i].submit(ctx, ri, mk.data, mk.weight, &reps[i]); err != nil {
			return m, 0, err
		}
	}
	mu.Lock()
	trainedAt := lastTrained
	mu.Unlock()
	ri, err = waitRound(ctx, op, uint64(r), func(s pb.RoundState) bool {
		return s == pb.RoundState_ROUND_STATE_DECRYPTING || s == pb.RoundState_ROUND_STATE_PUBLISHED || s == pb.RoundState_ROUND_STATE_ABORTED
	})
	if err != nil {
		return m, 0, err
	}
	aggregated := time.Now()
	m.Aggregate = aggregated.Sub(trainedAt).Seconds()
	if ri.State == pb.RoundState_ROUND_STATE_DECRYPTING {
		errs := make(chan error, len(ri.ActiveParties))
		for _, p := range ri.ActiveParties {
			h := hs[p-1]
			go func() { errs <- h.share(ctx, ri, &reps[p-1]) }()
		}
		for range ri.ActiveParties {
			if err := <-errs; err != nil {
				return m, 0, err
			}
		}
		if ri, err = waitRound(ctx, op, uint64(r), func(s pb.RoundState) bool {
			return s == pb.RoundState_ROUND_STATE_PUBLISHED || s == pb.RoundState_ROUND_STATE_ABORTED
		}); err != nil {
			return m, 0, err
		}
		m.Decrypt = time.Since(aggregated).Seconds()
	}
	if ri.State == pb.RoundState_ROUND_STATE_ABORTED {
		return m, 0, fmt.Errorf("aborted: %s", ri.Reason)
	}
	m.Contributors = len(ri.Contributions)
	m.Seconds = time.Since(start).Seconds()

	var clip float64
	for _, i := range who {
		rep := reps[i]
		m.Train += rep.Train.Seconds()
		m.Encrypt += rep.Encrypt.Seconds()
		m.Upload += rep.Upload.Seconds()
		m.TrainLoss += rep.Loss / float64(len(who))
		clip += rep.ClipFactor
	}
	m.ClipMean = clip / float64(len(who))
	for _, rep := range reps {
		m.UpBytes += rep.UpBytes
		m.DownBytes += rep.DownBytes
	}

	// The global model, as every coordinator replica now serves it.
	_, wb, err := op.FetchModel(ctx, federationName, ri.PublishedVersion, "f32")
	if err != nil {
		return m, 0, err
	}
	w, err := coordinator.DecodeFloat32s(wb)
	if err != nil {
		return m, 0, err
	}
	if sum.final == nil {
		if sum.final, err = model.Build(spec, 0); err != nil {
			return m, 0, err
		}
	}
	if err := sum.final.SetFlat(w); err != nil {
		return m, 0, err
	}
	if m.Loss, m.Accuracy, err = sum.final.Evaluate(test.X, test.Y, test.Len(), lossFor(spec)); err != nil {
		return m, 0, err
	}
	return m, ri.PublishedVersion, nil
}

func waitRound(ctx context.Context, c *coordclient.Client, r uint64, ok func(pb.RoundState) bool) (*pb.RoundInfo, error) {
	for {
		ri, err := c.Round(ctx, federationName, r)
		switch {
		case err == nil && ok(ri.State):
			return ri, nil
		case err != nil && ctx.Err() == nil && status.Code(err) != codes.NotFound && !coordclient.Retryable(err):
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// runVirtualHospitals runs the rounds with the simulation's own hospitals (attacks,
// dropouts, partial participation, seeded DP noise).
func runVirtualHospitals(ctx context.Context, cfg Config, op *coordclient.Client, cl *cluster, train, test *dataset.Set, parts [][]int, byz []bool, spec model.Spec, strat aggregation.Strategy, sum *Summary, hooks Hooks, t0 time.Time) (uint64, error) {
	var err error
	sum.Hospital = "simulations virtual hospital (coordclient + crypto/he + crypto/seal: the client node's protocol, plus attacks, dropouts and seeded randomness)"
	hs := make([]*hospital, cfg.Clients)
	defer func() {
		for _, h := range hs {
			if h != nil {
				h.close()
			}
		}
	}()
	attack, _ := ParseAttack(cfg.Attack)
	partyOf := map[string]uint32{}
	for i := range hs {
		if hs[i], err = newHospital(ctx, i, federationName, cl.addrs(), train.Subset(parts[i]), spec, cfg, strat); err != nil {
			return 0, err
		}
		hs[i].byzantine, hs[i].attack = byz[i], attack
		if partyOf[hs[i].id], err = hs[i].enrol(ctx); err != nil {
			return 0, err
		}
	}
	if cfg.Secure {
		prof, err := he.ProfileByName(cfg.HEProfile)
		if err != nil {
			return 0, err
		}
		params, err := he.NewParams(prof)
		if err != nil {
			return 0, err
		}
		parties := make([]he.PartyID, cfg.Clients)
		for i := range parties {
			parties[i] = he.PartyID(i + 1)
		}
		tc := time.Now()
		if err := ceremony(ctx, hs, params, he.Group{Parties: parties, Threshold: cfg.Threshold}, partyOf); err != nil {
			return 0, fmt.Errorf("key ceremony: %w", err)
		}
		hooks.step("key ceremony: collective CKKS key of %d hospitals, threshold %d, profile %s (%.1fs)", cfg.Clients, cfg.Threshold, params.Name(), time.Since(tc).Seconds())
	}
	sum.SetupSeconds = time.Since(t0).Seconds()

	var acct aggregation.Accountant
	var version uint64
	for r := 1; r <= cfg.Rounds; r++ {
		m, v, err := runRound(ctx, cfg, op, hs, r, test, spec, sum)
		if err != nil {
			return 0, fmt.Errorf("round %d: %w", r, err)
		}
		version = v
		if cfg.DPNoiseMultiplier > 0 {
			// Against the coordinator, who sees who contributed, account with q = 1.
			if err := acct.Step(1, cfg.coordinatorNoise()); err != nil {
				return 0, err
			}
			m.Epsilon, _ = acct.Epsilon(cfg.DPDelta)
		}
		sum.Rounds = append(sum.Rounds, m)
		if hooks.Round != nil {
			hooks.Round(m)
		}
	}
	return version, nil
}
