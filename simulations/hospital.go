package simulations

import (
	"context"
	"crypto/ed25519"
	"encoding"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/crypto/seal"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// hospital is one virtual hospital of a cluster-mode simulation: its own gRPC client of
// the coordinator cluster, its data shard, its model replica and, in secure mode, its
// he.Party with the age and Ed25519 keys of the key ceremony. It speaks to the coordinator
// exactly as a hospital's client node does (enrol, ceremony, download, train, clip, noise,
// encrypt, upload, decryption share), and adds what a simulation needs on top: attacks,
// dropouts and deterministic randomness. It is not safe for concurrent use.
type hospital struct {
	id    string
	index int
	fed   string
	c     *coordclient.Client
	data  *dataset.Set
	m     *model.Sequential
	cfg   Config
	strat aggregation.Strategy
	loss  string

	byzantine bool
	attack    Attack

	// Secure mode.
	params he.Params
	party  *he.Party
	pk     *he.PublicKey
	ageID  *age.X25519Identity
	signer *seal.Signer
}

// hospitalRound is what a hospital did in one round.
type hospitalRound struct {
	Train, Encrypt, Upload, Share time.Duration
	UpBytes, DownBytes            int64
	Loss, Accuracy                float64
	ClipFactor                    float64
}

func newHospital(ctx context.Context, index int, fed string, addrs []string, data *dataset.Set, spec model.Spec, cfg Config, strat aggregation.Strategy) (*hospital, error) {
	c, err := coordclient.New(addrs, coordclient.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second, MaxAttempts: 100})
	if err != nil {
		return nil, err
	}
	m, err := model.Build(spec, 0)
	if err != nil {
		c.Close()
		return nil, err
	}
	h := &hospital{id: hospitalID(index), index: index, fed: fed, c: c, data: data, m: m, cfg: cfg, strat: strat, loss: lossFor(spec)}
	return h, nil
}

func hospitalID(i int) string { return fmt.Sprintf("hospital-%03d", i+1) }

func lossFor(s model.Spec) string {
	out, err := s.OutputShape()
	if err == nil && len(out) == 1 && out[0] == 1 {
		return model.BinaryCrossentropy
	}
	return model.SparseCategoricalCrossentropy
}

func (h *hospital) close() { h.c.Close() }

// enrol enrols the hospital; in secure mode it first makes its age identity and signing
// key, and publishes both in its enrolment.
func (h *hospital) enrol(ctx context.Context) (uint32, error) {
	req := &pb.EnrolRequest{Federation: h.fed, ClientId: h.id}
	if h.cfg.Secure {
		var err error
		if h.ageID, err = age.GenerateX25519Identity(); err != nil {
			return 0, err
		}
		// Deterministic signing keys keep the simulation reproducible; they protect nothing
		// real here (every party lives in this process).
		seed := make([]byte, ed25519.SeedSize)
		r := rand.NewChaCha8(derive(h.cfg.Seed, "sign", uint64(h.index)))
		r.Read(seed)
		if h.signer, err = seal.NewSigner(h.id, ed25519.NewKeyFromSeed(seed)); err != nil {
			return 0, err
		}
		req.AgeRecipient = seal.FormatEnrolment(h.ageID.Recipient(), h.signer.Public())
	}
	e, err := h.c.Enrol(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("%s: enrol: %w", h.id, err)
	}
	return e.PartyId, nil
}

func derive(seed uint64, what string, i uint64) [32]byte {
	var s [32]byte
	copy(s[:], what)
	for k := range 8 {
		s[16+k] = byte(seed >> (8 * k))
		s[24+k] = byte(i >> (8 * k))
	}
	return s
}

func (h *hospital) rng(what string, round int) *rand.Rand {
	return rand.New(rand.NewChaCha8(derive(h.cfg.Seed^uint64(round)<<32, what, uint64(h.index))))
}

// train downloads the round's model, trains locally, and returns the wire bytes of the
// update (ciphertext in secure mode) and its weight.
func (h *hospital) train(ctx context.Context, ri *pb.RoundInfo) ([]byte, uint64, hospitalRound, error) {
	var rep hospitalRound
	_, wb, err := h.c.FetchModel(ctx, h.fed, ri.ModelVersion, "f32")
	if err != nil {
		return nil, 0, rep, fmt.Errorf("%s: download model %d: %w", h.id, ri.ModelVersion, err)
	}
	rep.DownBytes += int64(len(wb))
	global, err := coordinator.DecodeFloat32s(wb)
	if err != nil {
		return nil, 0, rep, err
	}
	if err := h.m.SetFlat(global); err != nil {
		return nil, 0, rep, fmt.Errorf("%s: model of %d values, expected %d", h.id, len(global), h.m.NumParams())
	}
	tc := model.TrainConfig{
		Epochs: h.cfg.LocalEpochs, BatchSize: h.cfg.BatchSize, Loss: h.loss,
		Optimizer: model.OptimizerConfig{LearningRate: h.cfg.LR},
		Seed:      h.cfg.Seed*0x9e3779b97f4a7c15 ^ uint64(h.index)<<20 ^ ri.Round,
	}
	if h.strat.Proximal {
		tc.ProximalMu = h.cfg.ProximalMu
	}
	tr, err := model.NewTrainer(h.m, tc)
	if err != nil {
		return nil, 0, rep, err
	}
	t0 := time.Now()
	for range tc.Epochs {
		st, err := tr.Epoch(ctx, h.data.X, h.data.Y, nil)
		if err != nil {
			return nil, 0, rep, err
		}
		rep.Loss, rep.Accuracy = st.Loss, st.Accuracy
	}
	rep.Train = time.Since(t0)

	t0 = time.Now()
	delta := h.m.Flat(nil)
	for i := range delta {
		delta[i] -= global[i]
	}
	if h.byzantine {
		applyAttack(delta, h.attack, h.rng("attack", int(ri.Round)))
	}
	weight := uint64(h.data.Len())
	rep.ClipFactor = 1
	if h.cfg.DPNoiseMultiplier > 0 {
		dp := aggregation.DPConfig{NoiseMultiplier: h.cfg.DPNoiseMultiplier, Clip: h.cfg.DPClip, Delta: h.cfg.DPDelta}
		if rep.ClipFactor, err = aggregation.ClipAndNoise(delta, dp, h.cfg.MinClients, h.rng("dp", int(ri.Round))); err != nil {
			return nil, 0, rep, err
		}
		weight = 1
	} else if h.cfg.ClipNorm > 0 {
		if rep.ClipFactor, err = aggregation.ClipNorm(delta, h.cfg.ClipNorm); err != nil {
			return nil, 0, rep, err
		}
	}
	var out []byte
	if h.cfg.Secure {
		rep.ClipFactor *= float64(h.params.FitToRange(delta))
		v, err := he.NewEncryptor(h.params, h.pk).EncryptFloat32(delta, float64(weight))
		if err != nil {
			return nil, 0, rep, fmt.Errorf("%s: encrypt: %w", h.id, err)
		}
		if out, err = v.MarshalBinary(); err != nil {
			return nil, 0, rep, err
		}
	} else {
		out = coordinator.EncodeFloat32s(delta)
	}
	rep.Encrypt = time.Since(t0)
	return out, weight, rep, nil
}

// submit uploads an update made by train.
func (h *hospital) submit(ctx context.Context, ri *pb.RoundInfo, data []byte, weight uint64, rep *hospitalRound) error {
	t0 := time.Now()
	_, err := h.c.SubmitUpdate(ctx, coordclient.Update{
		Federation: h.fed, Round: ri.Round, ClientID: h.id, ModelVersion: ri.ModelVersion, Samples: weight, Data: data,
	})
	rep.Upload = time.Since(t0)
	rep.UpBytes += int64(len(data))
	if err != nil {
		return fmt.Errorf("%s: submit round %d: %w", h.id, ri.Round, err)
	}
	return nil
}

// share makes and uploads the hospital's decryption share of the round's aggregate, after
// checking the contributor count against min_clients (guarantee 2).
func (h *hospital) share(ctx context.Context, ri *pb.RoundInfo, rep *hospitalRound) error {
	t0 := time.Now()
	hdr, b, err := h.c.FetchAggregate(ctx, h.fed, ri.Round)
	if err != nil {
		return fmt.Errorf("%s: fetch aggregate: %w", h.id, err)
	}
	rep.DownBytes += int64(len(b))
	if int(hdr.Contributions) < h.cfg.MinClients || int(hdr.Contributions) != len(ri.Contributions) {
		return fmt.Errorf("%s: refusing to decrypt an aggregate of %d contributions (round records %d, min_clients %d)",
			h.id, hdr.Contributions, len(ri.Contributions), h.cfg.MinClients)
	}
	agg, err := he.DecodeVector(h.params, b)
	if err != nil {
		return err
	}
	active := make([]he.PartyID, len(ri.ActiveParties))
	for i, p := range ri.ActiveParties {
		active[i] = he.PartyID(p)
	}
	ds, err := h.party.DecryptionShare(agg, active)
	if err != nil {
		return fmt.Errorf("%s: decryption share: %w", h.id, err)
	}
	sb, err := ds.MarshalBinary()
	if err != nil {
		return err
	}
	h.party.ForgetShares()
	if _, err := h.c.SubmitDecryptionShare(ctx, h.fed, ri.Round, h.id, sb); err != nil {
		return fmt.Errorf("%s: submit decryption share: %w", h.id, err)
	}
	rep.UpBytes += int64(len(sb))
	rep.Share = time.Since(t0)
	return nil
}

// applyAttack turns an honest update into a Byzantine one.
func applyAttack(delta []float32, a Attack, r *rand.Rand) {
	switch a.Kind {
	case "scale", "signflip":
		f := float32(a.Value)
		for i := range delta {
			delta[i] *= f
		}
	case "noise":
		for i := range delta {
			delta[i] = float32(r.NormFloat64() * a.Value)
		}
	}
}

// ceremony runs the key ceremony for hs through the coordinator: seed commitments and
// reveals, public-key shares, then the threshold shares sealed (crypto/seal, age + Ed25519)
// for each recipient and relayed by the coordinator. Afterwards every hospital holds the
// collective public key and can take part in decryption.
func ceremony(ctx context.Context, hs []*hospital, params he.Params, group he.Group, partyOf map[string]uint32) error {
	keys := seal.Keys{}
	recipients := map[string]age.Recipient{}
	for _, h := range hs {
		var err error
		h.params = params
		if h.party, err = he.NewParty(params, group, he.PartyID(partyOf[h.id])); err != nil {
			return err
		}
		keys[h.id] = h.signer.Public()
		recipients[h.id] = h.ageID.Recipient()
	}
	send := func(h *hospital, step string, msg encoding.BinaryMarshaler) (*pb.CeremonyStatus, error) {
		b, err := msg.MarshalBinary()
		if err != nil {
			return nil, err
		}
		st, err := h.c.SubmitCeremony(ctx, step, &pb.CeremonyMessage{Federation: h.fed, ClientId: h.id, Data: b})
		if err != nil {
			return nil, fmt.Errorf("%s: ceremony %s: %w", h.id, step, err)
		}
		return st, nil
	}
	for _, h := range hs {
		if _, err := send(h, "commitment", h.party.SeedCommitment()); err != nil {
			return err
		}
	}
	var st *pb.CeremonyStatus
	for _, h := range hs {
		var err error
		if st, err = send(h, "reveal", h.party.SeedReveal()); err != nil {
			return err
		}
	}
	var commits []he.SeedCommitment
	var reveals []he.SeedReveal
	for i := range st.Commitments {
		sc, err := he.DecodeSeedCommitment(params, st.Commitments[i])
		if err != nil {
			return err
		}
		sr, err := he.DecodeSeedReveal(params, st.Reveals[i])
		if err != nil {
			return err
		}
		commits, reveals = append(commits, sc), append(reveals, sr)
	}
	seed, err := he.JointSeed(params, group, commits, reveals)
	if err != nil {
		return err
	}
	for _, h := range hs {
		s, err := h.party.PublicKeyShare(seed)
		if err != nil {
			return err
		}
		if st, err = send(h, "public-key-share", s); err != nil {
			return err
		}
	}
	if !st.Complete {
		return fmt.Errorf("key ceremony incomplete: public-key shares from %s", strings.Join(st.PublicKeySharesFrom, ", "))
	}
	pk, err := he.DecodePublicKey(params, st.CollectivePublicKey)
	if err != nil {
		return err
	}
	label := "medfed threshold share " + hs[0].fed
	for _, from := range hs {
		from.pk = pk
		for _, to := range hs {
			if from == to {
				continue
			}
			s, err := from.party.ThresholdShare(to.party.ID())
			if err != nil {
				return err
			}
			b, err := s.MarshalBinary()
			if err != nil {
				return err
			}
			env, err := seal.Seal(from.signer, to.id, recipients[to.id], label, b)
			if err != nil {
				return err
			}
			if err := from.c.SendEnvelope(ctx, &pb.Envelope{Federation: from.fed, FromClient: from.id, ToClient: to.id, Sealed: env}); err != nil {
				return fmt.Errorf("%s: envelope for %s: %w", from.id, to.id, err)
			}
		}
	}
	for _, h := range hs {
		envs, err := h.c.FetchEnvelopes(ctx, h.fed, h.id)
		if err != nil {
			return err
		}
		for _, e := range envs {
			l, err := seal.Open(e.Sealed, h.id, h.ageID, keys)
			if err != nil {
				return fmt.Errorf("%s: open envelope from %s: %w", h.id, e.FromClient, err)
			}
			s, err := he.DecodeThresholdShare(params, l.Payload)
			if err != nil {
				return err
			}
			if err := h.party.AddThresholdShare(s); err != nil {
				return err
			}
		}
		if !h.party.Ready() {
			return fmt.Errorf("%s: %d threshold shares arrived, expected %d", h.id, len(envs), len(hs)-1)
		}
	}
	return nil
}
