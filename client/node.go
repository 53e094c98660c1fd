package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/crypto/seal"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// RoundReport is what a node did in one round: where the time went and what it sent.
type RoundReport struct {
	Round        uint64  `json:"round"`
	ModelVersion uint64  `json:"model_version"`
	Samples      int     `json:"samples"`
	TrainLoss    float64 `json:"train_loss"`
	TrainAcc     float64 `json:"train_accuracy"`
	// Seconds spent training, encrypting (or encoding, in plaintext mode), uploading the
	// update, and making and uploading the decryption share.
	TrainSeconds   float64 `json:"train_seconds"`
	EncryptSeconds float64 `json:"encrypt_seconds"`
	UploadSeconds  float64 `json:"upload_seconds"`
	ShareSeconds   float64 `json:"share_seconds"`
	UpdateBytes    int     `json:"update_bytes"`
	ShareBytes     int     `json:"share_bytes"`
	// ClipFactor is the factor clipping applied to the update (1: untouched).
	ClipFactor float64 `json:"clip_factor"`
	// Resumed is true when the update was restored from the state directory and resent.
	Resumed bool `json:"resumed"`
	// Published is the model version the round produced, once known; Aborted its reason.
	Published uint64 `json:"published_version,omitempty"`
	Aborted   string `json:"aborted,omitempty"`
	// Skipped is why the node sent no update to a round it was selected for.
	Skipped string `json:"skipped,omitempty"`
}

// Node is a hospital's client node. Make one with New and call Run. Reports may be called
// concurrently with Run; nothing else may.
type Node struct {
	cfg Config
	log *slog.Logger
	st  *store

	mu      sync.Mutex
	reports map[uint64]*RoundReport

	// Set up by Run.
	c        *coordclient.Client
	spec     *pb.FederationSpec
	strategy aggregation.Strategy
	mspec    model.Spec
	m        *model.Sequential
	data     *dataset.Set
	state    *state
	envID    *age.X25519Identity
	signer   *seal.Signer
	params   he.Params
	group    he.Group
	party    *he.Party
	pk       *he.PublicKey

	// hook, if set (tests), is called at named points: "update-saved" after an update is
	// on disk and before it is sent, "share-saved" likewise for a decryption share.
	hook func(point string, round uint64)
	// sawUpdate, if set (tests), is called with the locally trained weights and the
	// update (clipped, noised, scaled) just before the update is encrypted or encoded.
	sawUpdate func(round uint64, local, update []float32)
}

func (n *Node) at(point string, round uint64) {
	if n.hook != nil {
		n.hook(point, round)
	}
}

// New checks cfg and returns a node. It does no I/O; Run does.
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Node{cfg: cfg, log: logger.With("client", cfg.ClientID, "federation", cfg.Federation), reports: map[uint64]*RoundReport{}}, nil
}

// Reports returns the node's per-round reports so far, in round order.
func (n *Node) Reports() []RoundReport {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []RoundReport
	for _, r := range n.reports {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b RoundReport) int { return int(a.Round) - int(b.Round) })
	return out
}

func (n *Node) report(r uint64) *RoundReport {
	n.mu.Lock()
	defer n.mu.Unlock()
	rep := n.reports[r]
	if rep == nil {
		rep = &RoundReport{Round: r, ClipFactor: 1}
		n.reports[r] = rep
	}
	return rep
}

// Run takes part in the federation: it enrols, runs the key ceremony (secure
// federations), then trains and contributes to every round it is selected for, and sends
// its decryption shares. It resumes from StateDir after a restart. It returns nil when the
// federation has run all its rounds (unless Config.Exit says otherwise), ctx's error when
// ctx is cancelled, and an error for anything it cannot recover from.
func (n *Node) Run(ctx context.Context) error {
	var err error
	if n.st, err = newStore(n.cfg); err != nil {
		return err
	}
	opts := coordclient.Options{MinBackoff: n.cfg.MinBackoff, MaxBackoff: n.cfg.MaxBackoff, MaxAttempts: n.cfg.MaxAttempts, DialOptions: n.cfg.DialOptions, Logger: n.log}
	if !n.cfg.Insecure {
		opts.Creds = credentials.NewTLS(n.cfg.TLS)
	}
	if n.c, err = coordclient.New(n.cfg.Coordinators, opts); err != nil {
		return err
	}
	defer n.c.Close()

	fed, err := n.waitFederation(ctx)
	if err != nil {
		return err
	}
	if err := n.setup(fed); err != nil {
		return err
	}
	if err := n.loadOrInitState(); err != nil {
		return err
	}
	if err := n.enrol(ctx); err != nil {
		return err
	}
	if n.spec.Secure {
		if err := n.ceremony(ctx); err != nil {
			return err
		}
	}
	return n.loop(ctx)
}

// waitFederation reads the federation, waiting for the operator to create it.
func (n *Node) waitFederation(ctx context.Context) (*pb.Federation, error) {
	logged := false
	for {
		fed, err := n.c.Federation(ctx, n.cfg.Federation)
		if err == nil {
			return fed, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		switch status.Code(err) {
		case codes.NotFound, codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
			if !logged {
				n.log.Info("waiting for the federation", "err", err)
				logged = true
			}
		default:
			return nil, fmt.Errorf("reading federation %q: %w", n.cfg.Federation, err)
		}
		if err := sleep(ctx, n.cfg.PollInterval); err != nil {
			return nil, err
		}
	}
}

// setup reads the federation's spec, builds the model and loads and checks the data.
func (n *Node) setup(fed *pb.Federation) error {
	n.spec = fed.Spec
	if !slices.Contains(n.spec.Clients, n.cfg.ClientID) {
		return fmt.Errorf("%w: %q is not on the roster of %q (%s)", ErrFederation, n.cfg.ClientID, n.cfg.Federation, strings.Join(n.spec.Clients, ", "))
	}
	name := n.spec.Strategy
	if name == "" {
		name = "fedavg"
	}
	var err error
	if n.strategy, err = aggregation.ParseStrategy(name); err != nil {
		return fmt.Errorf("%w: %v", ErrFederation, err)
	}
	if n.cfg.EpsilonBudget > 0 && n.spec.DpNoiseMultiplier <= 0 {
		return fmt.Errorf("%w: this hospital's epsilon budget is %g, and federation %q adds no differential-privacy noise (dp_noise_multiplier 0), so its updates would have no privacy bound",
			ErrFederation, n.cfg.EpsilonBudget, n.cfg.Federation)
	}
	if n.mspec, err = model.ParseSpec(n.spec.ModelSpecJson); err != nil {
		return fmt.Errorf("%w: model spec: %v", ErrFederation, err)
	}
	if n.m, err = model.Build(n.mspec, 0); err != nil {
		return fmt.Errorf("%w: model spec: %v", ErrFederation, err)
	}
	if uint64(n.m.NumParams()) != fed.NumParams {
		return fmt.Errorf("%w: the model spec builds %d parameters, the federation has %d", ErrFederation, n.m.NumParams(), fed.NumParams)
	}
	data, err := n.cfg.Data.Load(n.mspec)
	if err != nil {
		return fmt.Errorf("loading the hospital's data: %w", err)
	}
	if n.data, err = CheckSchema(n.mspec, data); err != nil {
		return err
	}
	if n.spec.Secure {
		prof, err := heProfile(n.spec.HeProfile)
		if err != nil {
			return err
		}
		if n.params, err = he.NewParams(prof); err != nil {
			return fmt.Errorf("%w: %v", ErrFederation, err)
		}
		n.group = groupOf(n.spec, fed.GetCeremony().GetMembers())
	}
	n.log.Info("federation", "model_params", n.m.NumParams(), "samples", n.data.Len(), "secure", n.spec.Secure,
		"strategy", n.strategy.Name, "rounds", n.spec.Rounds, "min_clients", n.spec.MinClients)
	return nil
}

func heProfile(name string) (he.Profile, error) {
	p, err := he.ProfileByName(name)
	if err != nil {
		return he.Profile{}, fmt.Errorf("%w: he_profile: %v", ErrFederation, err)
	}
	return p, nil
}

func (n *Node) loadOrInitState() error {
	st, err := n.st.loadState()
	if err != nil {
		return err
	}
	if st == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		st = &state{Version: stateVersion, Federation: n.cfg.Federation, ClientID: n.cfg.ClientID,
			SigningKey: priv.Seed(), Rounds: map[uint64]*roundState{}}
		if n.cfg.AgeIdentity == nil {
			id, err := age.GenerateX25519Identity()
			if err != nil {
				return err
			}
			st.EnvelopeIdentity = id.String()
		}
		if err := n.st.saveState(st); err != nil {
			return err
		}
	} else {
		n.log.Info("resuming from the state directory", "dir", n.cfg.StateDir, "rounds", len(st.Rounds))
	}
	if st.Federation != n.cfg.Federation || st.ClientID != n.cfg.ClientID {
		return fmt.Errorf("%w: %s holds the state of client %q in federation %q, not %q in %q", ErrState, n.cfg.StateDir, st.ClientID, st.Federation, n.cfg.ClientID, n.cfg.Federation)
	}
	if len(st.SigningKey) != ed25519.SeedSize {
		return fmt.Errorf("%w: signing key of %d bytes", ErrState, len(st.SigningKey))
	}
	n.envID = n.cfg.AgeIdentity
	if n.envID == nil {
		if n.envID, err = age.ParseX25519Identity(st.EnvelopeIdentity); err != nil {
			return fmt.Errorf("%w: envelope identity: %v", ErrState, err)
		}
	}
	if n.signer, err = seal.NewSigner(n.cfg.ClientID, ed25519.NewKeyFromSeed(st.SigningKey)); err != nil {
		return err
	}
	n.state = st
	return nil
}

func (n *Node) save() error { return n.st.saveState(n.state) }

// enrolmentRecipient is this hospital's enrolment string (seal.FormatEnrolment), sent as
// the Enrolment's age_recipient.
func (n *Node) enrolmentRecipient() string {
	return seal.FormatEnrolment(n.envID.Recipient(), n.signer.Public())
}

func (n *Node) enrol(ctx context.Context) error {
	e, err := n.c.Enrol(ctx, &pb.EnrolRequest{Federation: n.cfg.Federation, ClientId: n.cfg.ClientID, AgeRecipient: n.enrolmentRecipient()})
	if err != nil {
		if status.Code(err) == codes.AlreadyExists {
			return fmt.Errorf("%w: %q enrolled in %q with another identity; the state directory %s is not the one it enrolled with: %v", ErrState, n.cfg.ClientID, n.cfg.Federation, n.cfg.StateDir, err)
		}
		return fmt.Errorf("enrolling: %w", err)
	}
	if n.state.PartyID != 0 && n.state.PartyID != e.PartyId {
		return fmt.Errorf("%w: enrolled as party %d, the state says %d", ErrState, e.PartyId, n.state.PartyID)
	}
	if n.state.PartyID == 0 {
		n.state.PartyID = e.PartyId
		if err := n.save(); err != nil {
			return err
		}
	}
	n.log.Info("enrolled", "party", e.PartyId)
	return nil
}

// loop follows the federation's rounds until it is done.
func (n *Node) loop(ctx context.Context) error {
	var lastState pb.RoundState
	var lastRound uint64
	for {
		fed, err := n.c.Federation(ctx, n.cfg.Federation)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n.log.Warn("reading the federation", "err", err)
		} else {
			if fed.Stopped {
				n.noteOutcome(fed)
				return fmt.Errorf("%w: the federation stopped: %s", ErrFederation, fed.StopReason)
			}
			if n.spec.Secure && !n.party.Ready() {
				if err := n.collectThresholdShares(ctx, fed); err != nil {
					return err
				}
			}
			if slices.Contains(fed.Suspended, n.cfg.ClientID) && !n.outOfBudget() {
				// This hospital missed the last round it was selected for (it was down or
				// late), so the coordinator leaves it out of selection until it says it is
				// back.
				n.log.Info("left out of round selection after a missed round; enrolling again")
				if err := n.enrol(ctx); err != nil {
					return err
				}
			}
			if k := len(fed.Rounds); k > 0 {
				ri := fed.Rounds[k-1]
				if ri.Round != lastRound || ri.State != lastState {
					n.log.Debug("round", "round", ri.Round, "state", ri.State)
					lastRound, lastState = ri.Round, ri.State
				}
				if err := n.handleRound(ctx, fed, ri); err != nil {
					return err
				}
				if fed.Done && terminal(ri.State) && n.cfg.Exit == ExitWhenDone {
					n.noteOutcome(fed)
					return n.finalOutcome(fed)
				}
			}
			n.noteOutcome(fed)
		}
		if err := sleep(ctx, n.cfg.PollInterval); err != nil {
			return err
		}
	}
}

func terminal(s pb.RoundState) bool {
	return s == pb.RoundState_ROUND_STATE_PUBLISHED || s == pb.RoundState_ROUND_STATE_ABORTED
}

// noteOutcome records published versions and abort reasons in the reports.
func (n *Node) noteOutcome(fed *pb.Federation) {
	for _, ri := range fed.Rounds {
		rs := n.state.Rounds[ri.Round]
		if rs == nil || !terminal(ri.State) {
			continue
		}
		rep := n.report(ri.Round)
		n.mu.Lock()
		if rep.Published == 0 && rep.Aborted == "" {
			rep.Published, rep.Aborted = ri.PublishedVersion, ri.Reason
			n.mu.Unlock()
			if ri.State == pb.RoundState_ROUND_STATE_ABORTED {
				n.log.Warn("round aborted", "round", ri.Round, "reason", ri.Reason)
			} else {
				n.log.Info("round published", "round", ri.Round, "model_version", ri.PublishedVersion, "contributions", len(ri.Contributions))
			}
			continue
		}
		n.mu.Unlock()
	}
}

// finalOutcome is Run's result once the federation is done: nil if its last round was
// published, an error saying why otherwise.
func (n *Node) finalOutcome(fed *pb.Federation) error {
	last := fed.Rounds[len(fed.Rounds)-1]
	if last.State == pb.RoundState_ROUND_STATE_ABORTED {
		return fmt.Errorf("%w: the federation stopped: its last round %d was aborted: %s", ErrFederation, last.Round, last.Reason)
	}
	if fed.DoneReason != "" {
		n.log.Info("federation done before its last round", "reason", fed.DoneReason)
	}
	n.log.Info("federation done", "rounds", len(fed.Rounds), "model_version", last.PublishedVersion)
	return nil
}

// handleRound does what the current round needs from this node.
func (n *Node) handleRound(ctx context.Context, fed *pb.Federation, ri *pb.RoundInfo) error {
	if !slices.Contains(ri.Selected, n.cfg.ClientID) {
		return nil
	}
	switch ri.State {
	case pb.RoundState_ROUND_STATE_OPEN:
		return n.contribute(ctx, ri)
	case pb.RoundState_ROUND_STATE_DECRYPTING:
		if n.spec.Secure && slices.Contains(ri.ActiveParties, n.state.PartyID) && !slices.Contains(ri.SharesFrom, n.cfg.ClientID) {
			return n.decryptionShare(ctx, ri)
		}
	}
	return nil
}

func contributed(ri *pb.RoundInfo, client string) *pb.Contribution {
	for _, c := range ri.Contributions {
		if c.ClientId == client {
			return c
		}
	}
	return nil
}

// contribute trains on the round's model and submits the update, or resends the update
// saved before a restart.
func (n *Node) contribute(ctx context.Context, ri *pb.RoundInfo) error {
	rs := n.state.Rounds[ri.Round]
	if c := contributed(ri, n.cfg.ClientID); c != nil {
		if rs != nil && rs.AckIndex == 0 {
			rs.AckIndex = c.Index
			return n.save()
		}
		return nil
	}
	if rs != nil && (rs.Skipped != "" || rs.AckIndex != 0) {
		return nil
	}
	rep := n.report(ri.Round)
	var data []byte
	if rs != nil && rs.ModelVersion == ri.ModelVersion && rs.UpdateDigest != nil {
		b, err := n.st.read(updateFile(ri.Round))
		if err != nil {
			return err
		}
		if b != nil && sha256.Sum256(b) == [32]byte(rs.UpdateDigest) {
			data = b
			rep.Resumed = true
			n.log.Info("resending the update saved before a restart", "round", ri.Round, "bytes", len(b))
		}
	}
	if data == nil {
		why, err := n.budgetSpent()
		if err != nil {
			return err
		}
		if why != "" {
			n.log.Warn("no update for this round", "round", ri.Round, "reason", why)
			rep.Skipped = why
			if rs == nil {
				rs = &roundState{ModelVersion: ri.ModelVersion}
				n.state.Rounds[ri.Round] = rs
			}
			rs.Skipped = why // an update made earlier for the round stays counted
			return n.save()
		}
		b, samples, err := n.makeUpdate(ctx, ri, rep)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		d := sha256.Sum256(b)
		// The update is on disk before its first byte leaves, so a restarted node resends
		// these bytes and the coordinator returns the original acknowledgement.
		if err := n.st.write(updateFile(ri.Round), b); err != nil {
			return err
		}
		rs = &roundState{ModelVersion: ri.ModelVersion, Samples: samples, UpdateDigest: d[:]}
		n.state.Rounds[ri.Round] = rs
		if err := n.save(); err != nil {
			return err
		}
		data = b
	}
	n.at("update-saved", ri.Round)
	t0 := time.Now()
	ack, err := n.c.SubmitUpdate(ctx, coordclient.Update{
		Federation: n.cfg.Federation, Round: ri.Round, ClientID: n.cfg.ClientID,
		ModelVersion: ri.ModelVersion, Samples: rs.Samples, Data: data,
	})
	rep.UploadSeconds += time.Since(t0).Seconds()
	rep.UpdateBytes = len(data)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch status.Code(err) {
		case codes.FailedPrecondition, codes.InvalidArgument, codes.ResourceExhausted:
			// The round moved on (sealed, aborted, another model version) or refused the
			// update for good: do not retry it.
			n.log.Warn("update refused", "round", ri.Round, "err", err)
			rs.Skipped = err.Error()
			return n.save()
		case codes.AlreadyExists:
			return fmt.Errorf("%w: the coordinator holds a different update from %q for round %d: %v", ErrState, n.cfg.ClientID, ri.Round, err)
		case codes.PermissionDenied, codes.Unauthenticated:
			return fmt.Errorf("submitting the update: %w", err)
		}
		n.log.Warn("submitting the update; will retry", "round", ri.Round, "err", err)
		return nil
	}
	rs.AckIndex = ack.GetContribution().GetIndex()
	if err := n.save(); err != nil {
		return err
	}
	n.log.Info("update accepted", "round", ri.Round, "samples", rs.Samples, "bytes", len(data), "index", rs.AckIndex,
		"train_s", round2(rep.TrainSeconds), "encrypt_s", round2(rep.EncryptSeconds), "upload_s", round2(rep.UploadSeconds))
	return nil
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// budgetSpent returns why this hospital may send no further update, or "" if it may:
// another update would take the privacy its updates spend past the federation's
// dp_epsilon_budget or the hospital's own Config.EpsilonBudget. It counts every round the
// node made an update for (sent or not: a saved update may have reached the coordinator),
// each one run of the Gaussian mechanism as the coordinator sees it (noise multiplier z in
// secure mode, z/sqrt(min_clients) in plaintext: aggregation.DPConfig.
// CoordinatorNoiseMultiplier), so that the limit holds even against a coordinator that
// keeps opening rounds. A federation without differential privacy has no budget here.
func (n *Node) budgetSpent() (string, error) {
	dp := n.dpConfig()
	if dp.NoiseMultiplier <= 0 {
		return "", nil
	}
	if err := dp.Validate(); err != nil {
		return "", fmt.Errorf("%w: dp settings: %v", ErrFederation, err)
	}
	budget, whose := dp.Budget, "the federation's dp_epsilon_budget"
	if b := n.cfg.EpsilonBudget; b > 0 && (budget == 0 || b < budget) {
		budget, whose = b, "this hospital's epsilon budget"
	}
	if budget == 0 {
		return "", nil
	}
	z := dp.CoordinatorNoiseMultiplier(n.spec.Secure, int(max(n.spec.MinClients, 1)))
	delta := dp.Resolved().Delta
	var sent uint64
	for _, rs := range n.state.Rounds {
		if rs.UpdateDigest != nil {
			sent++
		}
	}
	var a aggregation.Accountant
	if err := a.Compose(1, z, sent); err != nil {
		return "", fmt.Errorf("%w: dp settings: %v", ErrFederation, err)
	}
	if a.CanStep(1, z, delta, budget) {
		return "", nil
	}
	spent, _ := a.Epsilon(delta)
	return fmt.Sprintf("privacy budget spent: the %d updates this hospital made spend epsilon %.4g at delta %g, and another would pass %s, %g",
		sent, spent, delta, whose, budget), nil
}

// dpConfig returns the federation's DP settings.
func (n *Node) dpConfig() aggregation.DPConfig {
	return aggregation.DPConfig{NoiseMultiplier: n.spec.DpNoiseMultiplier, Clip: n.spec.DpClipNorm, Delta: n.spec.DpDelta, Budget: n.spec.DpEpsilonBudget}
}

// outOfBudget reports whether budgetSpent says no further update may go.
func (n *Node) outOfBudget() bool {
	why, err := n.budgetSpent()
	return err == nil && why != ""
}

// makeUpdate downloads the round's model, trains on the local data and returns the
// encoded update (ciphertext in secure mode) and its weight.
func (n *Node) makeUpdate(ctx context.Context, ri *pb.RoundInfo, rep *RoundReport) ([]byte, uint64, error) {
	hdr, wb, err := n.c.FetchModel(ctx, n.cfg.Federation, ri.ModelVersion, "f32")
	if err != nil {
		return nil, 0, fmt.Errorf("downloading model version %d: %w", ri.ModelVersion, err)
	}
	if hdr.Version != ri.ModelVersion {
		return nil, 0, fmt.Errorf("%w: asked for model version %d, got %d", ErrFederation, ri.ModelVersion, hdr.Version)
	}
	global, err := decodeFloat32s(wb, n.m.NumParams())
	if err != nil {
		return nil, 0, err
	}
	if err := n.m.SetFlat(global); err != nil {
		return nil, 0, err
	}
	seed := n.cfg.Seed
	if seed == 0 {
		h := fnv.New64a()
		h.Write([]byte(n.cfg.ClientID))
		seed = h.Sum64()
	}
	tc := model.TrainConfig{
		Epochs:    int(max(n.spec.LocalEpochs, 1)),
		BatchSize: int(n.spec.BatchSize),
		Loss:      lossFor(n.mspec),
		Optimizer: model.OptimizerConfig{LearningRate: n.spec.Lr},
		Seed:      seed ^ ri.Round*0x9e3779b97f4a7c15,
	}
	if n.strategy.Proximal {
		tc.ProximalMu = n.cfg.ProximalMu
	}
	tr, err := model.NewTrainer(n.m, tc)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: training config from the federation spec: %v", ErrFederation, err)
	}
	n.log.Info("training", "round", ri.Round, "model_version", ri.ModelVersion, "epochs", tc.Epochs, "samples", n.data.Len())
	t0 := time.Now()
	for range tc.Epochs {
		st, err := tr.Epoch(ctx, n.data.X, n.data.Y, nil)
		if err != nil {
			return nil, 0, err
		}
		rep.TrainLoss, rep.TrainAcc = st.Loss, st.Accuracy
	}
	rep.TrainSeconds = time.Since(t0).Seconds()
	rep.ModelVersion, rep.Samples = ri.ModelVersion, n.data.Len()

	t0 = time.Now()
	delta := n.m.Flat(nil)
	for i := range delta {
		delta[i] -= global[i]
	}
	weight := uint64(n.data.Len())
	switch {
	case n.spec.DpNoiseMultiplier > 0:
		// DP-FedAvg (aggregation/dp.go): clip to C, add this hospital's 1/min_clients share
		// of the noise, and submit with weight 1, not the sample count.
		f, err := aggregation.ClipAndNoise(delta, n.dpConfig(), int(max(n.spec.MinClients, 1)), aggregation.NewNoiseSource())
		if err != nil {
			return nil, 0, fmt.Errorf("clipping and noising the update: %w", err)
		}
		rep.ClipFactor, weight = f, 1
	default:
		norm := n.spec.DpClipNorm
		if norm == 0 {
			norm = n.cfg.ClipNorm
		}
		f, err := aggregation.ClipNorm(delta, norm)
		if err != nil {
			return nil, 0, fmt.Errorf("clipping the update: %w", err)
		}
		rep.ClipFactor = f
	}
	if n.spec.Secure {
		// The encryption accepts |value| <= MaxAbs: scale an outsized update down rather
		// than fail the round (clip_norm is the proper bound).
		if f := n.params.FitToRange(delta); f != 1 {
			rep.ClipFactor *= float64(f)
			n.log.Warn("update exceeds the encryption profile's value bound; scaled down", "factor", f, "bound", n.params.Profile().MaxAbs)
		}
	}
	if n.sawUpdate != nil {
		n.sawUpdate(ri.Round, n.m.Flat(nil), slices.Clone(delta))
	}
	var out []byte
	if n.spec.Secure {
		v, err := he.NewEncryptor(n.params, n.pk).EncryptFloat32(delta, float64(weight))
		if err != nil {
			return nil, 0, fmt.Errorf("encrypting the update: %w", err)
		}
		if out, err = v.MarshalBinary(); err != nil {
			return nil, 0, err
		}
	} else {
		out = encodeFloat32s(delta)
	}
	rep.EncryptSeconds = time.Since(t0).Seconds()
	return out, weight, nil
}

func lossFor(s model.Spec) string {
	out, err := s.OutputShape()
	if err == nil && len(out) == 1 && out[0] == 1 {
		return model.BinaryCrossentropy
	}
	return model.SparseCategoricalCrossentropy
}

// decryptionShare sends this node's share for the round's sealed aggregate. It refuses
// unless the replicated round state shows a sealed round with at least min_clients
// contributions and the aggregate counts exactly those; a share made before a restart is
// resent byte for byte.
func (n *Node) decryptionShare(ctx context.Context, ri *pb.RoundInfo) error {
	if !n.party.Ready() {
		n.log.Info("waiting for threshold shares before decrypting", "round", ri.Round)
		return nil
	}
	rs := n.state.Rounds[ri.Round]
	if rs == nil {
		rs = &roundState{}
		n.state.Rounds[ri.Round] = rs
	}
	rep := n.report(ri.Round)
	t0 := time.Now()
	var sb []byte
	if rs.ShareDigest != nil && (rs.ShareActive == nil || slices.Equal(rs.ShareActive, ri.ActiveParties)) {
		b, err := n.st.read(shareFile(ri.Round))
		if err != nil {
			return err
		}
		if b == nil || sha256.Sum256(b) != [32]byte(rs.ShareDigest) {
			return fmt.Errorf("%w: the decryption share of round %d is missing or damaged in %s", ErrState, ri.Round, n.cfg.StateDir)
		}
		sb = b
	} else {
		b, err := n.makeShare(ctx, ri)
		if err != nil {
			if errors.Is(err, ErrRefused) {
				n.log.Error("refusing to decrypt", "round", ri.Round, "err", err)
				return nil
			}
			return err
		}
		sb = b
		d := sha256.Sum256(sb)
		pb, err := n.party.MarshalBinary()
		if err != nil {
			return err
		}
		if err := n.st.write(shareFile(ri.Round), sb); err != nil {
			return err
		}
		n.state.Party, rs.ShareDigest, rs.ShareActive = pb, d[:], slices.Clone(ri.ActiveParties)
		rs.ShareAcked = false
		if err := n.save(); err != nil {
			return err
		}
	}
	n.at("share-saved", ri.Round)
	_, err := n.c.SubmitDecryptionShare(ctx, n.cfg.Federation, ri.Round, n.cfg.ClientID, sb)
	rep.ShareSeconds += time.Since(t0).Seconds()
	rep.ShareBytes = len(sb)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n.log.Warn("submitting the decryption share; will retry", "round", ri.Round, "err", err)
		return nil
	}
	rs.ShareAcked = true
	n.log.Info("decryption share accepted", "round", ri.Round, "bytes", len(sb))
	return n.save()
}

func (n *Node) makeShare(ctx context.Context, ri *pb.RoundInfo) ([]byte, error) {
	if ri.State != pb.RoundState_ROUND_STATE_DECRYPTING {
		return nil, fmt.Errorf("%w: round %d is %v, not sealed for decryption", ErrRefused, ri.Round, ri.State)
	}
	k := len(ri.Contributions)
	if k < int(n.spec.MinClients) {
		return nil, fmt.Errorf("%w: round %d has %d contributions, min_clients is %d", ErrRefused, ri.Round, k, n.spec.MinClients)
	}
	hdr, b, err := n.c.FetchAggregate(ctx, n.cfg.Federation, ri.Round)
	if err != nil {
		return nil, fmt.Errorf("downloading the aggregate of round %d: %w", ri.Round, err)
	}
	if int(hdr.Contributions) != k {
		return nil, fmt.Errorf("%w: the aggregate of round %d counts %d contributions, the round records %d", ErrRefused, ri.Round, hdr.Contributions, k)
	}
	agg, err := he.DecodeVector(n.params, b)
	if err != nil {
		return nil, fmt.Errorf("%w: aggregate of round %d: %v", ErrRefused, ri.Round, err)
	}
	if agg.Contributions() != k || agg.Len() != n.m.NumParams() {
		return nil, fmt.Errorf("%w: the aggregate of round %d holds %d contributions of %d values, expected %d of %d", ErrRefused, ri.Round, agg.Contributions(), agg.Len(), k, n.m.NumParams())
	}
	var total uint64
	for _, c := range ri.Contributions {
		total += c.Samples
	}
	if agg.Weight() != float64(total) {
		return nil, fmt.Errorf("%w: the aggregate of round %d has weight %v, the contributions %d samples", ErrRefused, ri.Round, agg.Weight(), total)
	}
	active := make([]he.PartyID, len(ri.ActiveParties))
	for i, p := range ri.ActiveParties {
		active[i] = he.PartyID(p)
	}
	ds, err := n.party.DecryptionShare(agg, active)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return ds.MarshalBinary()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func encodeFloat32s(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func decodeFloat32s(b []byte, n int) ([]float32, error) {
	if len(b) != 4*n {
		return nil, fmt.Errorf("%w: model of %d bytes, expected %d parameters", ErrFederation, len(b), n)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v[i])) || math.IsInf(float64(v[i]), 0) {
			return nil, fmt.Errorf("%w: model parameter %d is %v", ErrFederation, i, v[i])
		}
	}
	return v, nil
}
