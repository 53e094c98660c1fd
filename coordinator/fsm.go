package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// FSM is the coordinator's replicated state machine (raft.FSM): federations, rosters,
// key-ceremony state, rounds with their contributions and running aggregates, and model
// versions with their lineage. Apply is deterministic: it reads nothing but the log entry
// and the state, so every replica reaches the same state.
//
// FSM is safe for concurrent use: raft calls Apply, Snapshot and Restore from one
// goroutine while gRPC handlers read.
type FSM struct {
	log *slog.Logger

	mu      sync.RWMutex
	st      *state
	changed chan struct{} // closed and replaced on every applied entry
}

// NewFSM returns an empty state machine.
func NewFSM(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{log: logger, st: newState(), changed: make(chan struct{})}
}

// Apply applies one log entry. It returns nil or an error wrapping one of the package's
// sentinel errors; on error the state is unchanged.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := DecodeCommand(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = f.apply(l.Index, c)
	}
	f.st.Applied = l.Index
	close(f.changed)
	f.changed = make(chan struct{})
	if err != nil {
		f.log.Debug("command refused", "index", l.Index, "err", err)
		return err
	}
	return nil
}

// Changed returns a channel closed at the next applied entry, and the last applied index.
func (f *FSM) Changed() (<-chan struct{}, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed, f.st.Applied
}

func (f *FSM) apply(idx uint64, c *pb.Command) error {
	t := c.TimeUnixNano
	switch x := c.Cmd.(type) {
	case *pb.Command_CreateFederation:
		return f.createFederation(idx, t, x.CreateFederation)
	case *pb.Command_Enrol:
		return f.enrol(t, x.Enrol)
	case *pb.Command_Chunk:
		return f.chunk(idx, x.Chunk)
	case *pb.Command_CommitUpdate:
		return f.commitUpdate(idx, t, x.CommitUpdate)
	case *pb.Command_OpenRound:
		return f.openRound(idx, t, x.OpenRound)
	case *pb.Command_SealRound:
		return f.sealRound(idx, x.SealRound)
	case *pb.Command_AbortRound:
		return f.abortRound(idx, x.AbortRound)
	case *pb.Command_StartDecryption:
		return f.startDecryption(idx, t, x.StartDecryption)
	case *pb.Command_CommitShare:
		return f.commitShare(idx, x.CommitShare)
	case *pb.Command_PublishModel:
		return f.publishModel(idx, t, x.PublishModel)
	case *pb.Command_Ceremony:
		return f.ceremonyStep(x.Ceremony)
	case *pb.Command_Envelope:
		return f.envelope(x.Envelope)
	case *pb.Command_PinModel:
		return f.pinModel(x.PinModel)
	case *pb.Command_SetAggregate:
		return f.setAggregate(idx, x.SetAggregate)
	case *pb.Command_StopFederation:
		return f.stopFederation(idx, x.StopFederation)
	case *pb.Command_RestartCeremony:
		return f.restartCeremony(t, x.RestartCeremony)
	case *pb.Command_ResumeFederation:
		return f.resumeFederation(t, x.ResumeFederation)
	case *pb.Command_FinishFederation:
		return f.finishFederation(x.FinishFederation)
	case *pb.Command_SetNodeAddr:
		if err := checkName("node id", x.SetNodeAddr.Id); err != nil {
			return err
		}
		f.st.NodeAddrs[x.SetNodeAddr.Id] = x.SetNodeAddr.GrpcAddr
		return nil
	}
	return fmt.Errorf("%w: unknown command %T", ErrCommand, c.Cmd)
}

func cloneSpec(s *pb.FederationSpec) *pb.FederationSpec { return proto.Clone(s).(*pb.FederationSpec) }

// heProfile returns the CKKS profile a federation names.
func heProfile(name string) (he.Profile, error) {
	p, err := he.ProfileByName(name)
	if err != nil {
		return he.Profile{}, fmt.Errorf("%w: he_profile: %v", ErrInvalid, err)
	}
	return p, nil
}

// validateSpec checks a federation spec and returns its strategy and parameter count.
func validateSpec(s *pb.FederationSpec) (aggregation.Strategy, int, error) {
	var st aggregation.Strategy
	if s == nil {
		return st, 0, fmt.Errorf("%w: missing federation spec", ErrInvalid)
	}
	if err := checkName("federation name", s.Name); err != nil {
		return st, 0, err
	}
	ms, err := model.ParseSpec(s.ModelSpecJson)
	if err != nil {
		return st, 0, fmt.Errorf("%w: model spec: %v", ErrInvalid, err)
	}
	m, err := model.Build(ms, 0)
	if err != nil {
		return st, 0, fmt.Errorf("%w: model spec: %v", ErrInvalid, err)
	}
	n := len(s.Clients)
	if n == 0 || n > MaxClients {
		return st, 0, fmt.Errorf("%w: roster has %d clients, expected 1 to %d", ErrInvalid, n, MaxClients)
	}
	seen := map[string]bool{}
	for _, c := range s.Clients {
		if err := checkName("client id", c); err != nil {
			return st, 0, err
		}
		if seen[c] {
			return st, 0, fmt.Errorf("%w: client %q is on the roster twice", ErrInvalid, c)
		}
		seen[c] = true
	}
	if s.MinClients < 1 || int(s.MinClients) > n {
		return st, 0, fmt.Errorf("%w: min_clients %d, expected 1 to %d (the roster size)", ErrInvalid, s.MinClients, n)
	}
	if s.MaxAbortedRounds > 1000 {
		return st, 0, fmt.Errorf("%w: max_aborted_rounds %d, expected 0 (default 3) to 1000", ErrInvalid, s.MaxAbortedRounds)
	}
	if s.CeremonyTimeoutMs > uint64(30*24*time.Hour/time.Millisecond) {
		return st, 0, fmt.Errorf("%w: ceremony_timeout_ms %d, expected at most 30 days", ErrInvalid, s.CeremonyTimeoutMs)
	}
	if st, err = aggregation.ParseStrategy(strategyName(s)); err != nil {
		return st, 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if s.Secure {
		if s.Threshold < 1 || int(s.Threshold) > n {
			return st, 0, fmt.Errorf("%w: threshold %d, expected 1 to %d (the roster size)", ErrInvalid, s.Threshold, n)
		}
		if s.Threshold > s.MinClients {
			// Not needed for correctness, but a round that may be decrypted must be able to
			// collect t shares from its contributors.
			return st, 0, fmt.Errorf("%w: threshold %d exceeds min_clients %d", ErrInvalid, s.Threshold, s.MinClients)
		}
		if !st.Encryptable {
			return st, 0, fmt.Errorf("%w: strategy %s needs plaintext updates and cannot run in secure mode", ErrInvalid, st.Name)
		}
		if _, err := heProfile(s.HeProfile); err != nil {
			return st, 0, err
		}
	}
	return st, m.NumParams(), nil
}

// checkTraining checks, when a federation is created, the settings the hospitals train
// with and the leader aggregates with, as they will use them; a bad one would otherwise
// fail every round (each aborted, until the federation stops) rather than the creation.
// It is not part of validateSpec, which Apply also runs: a federation an earlier release
// created must still apply from its log.
func checkTraining(s *pb.FederationSpec, st aggregation.Strategy) error {
	tc := model.TrainConfig{Epochs: int(max(s.LocalEpochs, 1)), BatchSize: int(s.BatchSize), Optimizer: model.OptimizerConfig{LearningRate: s.Lr}}
	if s.LocalEpochs > 10000 || s.BatchSize > 1<<16 {
		return fmt.Errorf("%w: local_epochs %d and batch_size %d, expected at most 10000 and 65536", ErrInvalid, s.LocalEpochs, s.BatchSize)
	}
	if err := tc.Validate(); err != nil {
		return fmt.Errorf("%w: training settings (local_epochs, batch_size, lr): %v", ErrInvalid, err)
	}
	if err := (aggregation.ServerConfig{Name: st.Optimizer, LR: s.ServerLr}).Validate(); err != nil {
		return fmt.Errorf("%w: server_lr: %v", ErrInvalid, err)
	}
	if s.RoundTimeoutMs > uint64(30*24*time.Hour/time.Millisecond) {
		return fmt.Errorf("%w: round_timeout_ms %d, expected at most 30 days", ErrInvalid, s.RoundTimeoutMs)
	}
	switch st.Aggregator {
	case aggregation.AggregatorTrimmedMean:
		if !(s.TrimmedBeta >= 0 && s.TrimmedBeta < 0.5) {
			return fmt.Errorf("%w: trimmed_beta %v, expected 0 <= beta < 0.5 (0 for the default, 0.1)", ErrInvalid, s.TrimmedBeta)
		}
	case aggregation.AggregatorKrum:
		f, m := int(s.KrumF), int(max(s.KrumM, 1))
		if n := int(s.MinClients); n <= 2*f+2 || m > n-f {
			return fmt.Errorf("%w: krum_f %d and krum_m %d need every round to have more than %d updates and m <= updates - f; min_clients is %d, so a round with that many would abort: raise min_clients to at least %d",
				ErrInvalid, f, m, 2*f+2, n, max(2*f+3, m+f))
		}
	}
	return nil
}

func strategyName(s *pb.FederationSpec) string {
	if s.Strategy == "" {
		return "fedavg"
	}
	return s.Strategy
}

// initDerived fills a federation's derived fields from SpecBytes.
func (fd *federation) initDerived() error {
	var s pb.FederationSpec
	if err := proto.Unmarshal(fd.SpecBytes, &s); err != nil {
		return fmt.Errorf("%w: federation spec: %v", ErrCommand, err)
	}
	st, err := aggregation.ParseStrategy(strategyName(&s))
	if err != nil {
		return err
	}
	fd.spec, fd.strategy = &s, st
	if s.Secure {
		prof, err := heProfile(s.HeProfile)
		if err != nil {
			return err
		}
		p, err := he.NewParams(prof)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		fd.params = &p
	}
	return nil
}

func (f *FSM) createFederation(idx uint64, t int64, c *pb.CreateFederationCmd) error {
	_, n, err := validateSpec(c.Spec)
	if err != nil {
		return err
	}
	if fd, ok := f.st.Federations[c.Spec.Name]; ok {
		delete(f.st.Blobs, c.Blob) // this create's staged weights are not needed either way
		return createAgain(fd.spec, c.Spec)
	}
	data, err := f.takeBlob(c.Blob, c.Digest)
	if err != nil {
		return err
	}
	if len(data) != 4*n {
		return fmt.Errorf("%w: initial weights have %d bytes, the model needs %d", ErrLength, len(data), 4*n)
	}
	w, err := DecodeFloat32s(data)
	if err != nil {
		return err
	}
	sb, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.Spec)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	fd := &federation{SpecBytes: sb, NumParams: n, Created: t, Enrolled: map[string]*enrolment{}}
	if err := fd.initDerived(); err != nil {
		return err
	}
	fd.Models = []*modelVersion{{Version: 0, Digest: slices.Clone(c.Digest), Weights: w, At: t}}
	// These weights, and any left staged by earlier attempts to create the federation
	// that never reached their command (a leader lost between its chunks and the create).
	f.dropBlobs(createBlobPrefix(c.Spec.Name))
	f.st.Federations[c.Spec.Name] = fd
	_ = idx
	return nil
}

// createAgain answers a create of federation spec want where one with spec have exists:
// nil if the specs are the same (a create retried after its command committed and its
// answer was lost, which changes nothing), ErrExists if not.
func createAgain(have, want *pb.FederationSpec) error {
	if proto.Equal(have, want) {
		return nil
	}
	return fmt.Errorf("%w: federation %q, with another spec", ErrExists, want.Name)
}

func (f *FSM) fed(name string) (*federation, error) {
	fd := f.st.Federations[name]
	if fd == nil {
		return nil, fmt.Errorf("%w: federation %q", ErrNotFound, name)
	}
	return fd, nil
}

func (f *FSM) enrol(t int64, c *pb.EnrolCmd) error {
	fd, err := f.fed(c.Federation)
	if err != nil {
		return err
	}
	i := fd.rosterIndex(c.ClientId)
	if i < 0 {
		return fmt.Errorf("%w: %q is not on the roster of federation %q", ErrUnknownClient, c.ClientId, c.Federation)
	}
	if len(c.AgeRecipient) > 1024 {
		return fmt.Errorf("%w: age recipient of %d bytes", ErrTooLarge, len(c.AgeRecipient))
	}
	if e := fd.Enrolled[c.ClientId]; e != nil {
		if e.AgeRecipient == c.AgeRecipient {
			delete(fd.Missed, c.ClientId) // back: selected again
			return nil
		}
		return fmt.Errorf("%w: client %q enrolled in %q with another age recipient", ErrExists, c.ClientId, c.Federation)
	}
	fd.Enrolled[c.ClientId] = &enrolment{ClientID: c.ClientId, Party: uint32(i + 1), AgeRecipient: c.AgeRecipient, At: t}
	return nil
}

// ---- staged blobs ----

func (f *FSM) stagedBytes() uint64 {
	var n uint64
	for _, b := range f.st.Blobs {
		n += uint64(len(b.Data))
	}
	return n
}

func (f *FSM) chunk(idx uint64, c *pb.ChunkCmd) error {
	if c.Blob == "" || len(c.Blob) > 512 {
		return fmt.Errorf("%w: blob key of %d bytes", ErrInvalid, len(c.Blob))
	}
	if len(c.Digest) != sha256.Size {
		return fmt.Errorf("%w: digest of %d bytes, expected %d", ErrInvalid, len(c.Digest), sha256.Size)
	}
	if c.TotalLength == 0 || c.TotalLength > MaxBlobBytes {
		return fmt.Errorf("%w: payload of %d bytes, limit %d", ErrTooLarge, c.TotalLength, MaxBlobBytes)
	}
	if len(c.Data) == 0 || len(c.Data) > MaxChunkBytes {
		return fmt.Errorf("%w: chunk of %d bytes, expected 1 to %d", ErrInvalid, len(c.Data), MaxChunkBytes)
	}
	b := f.st.Blobs[c.Blob]
	if b == nil {
		if c.Offset != 0 {
			return fmt.Errorf("%w: blob %s starts at offset %d, expected 0", ErrInvalid, c.Blob, c.Offset)
		}
		f.dropAbandoned(idx)
		if f.stagedBytes()+c.TotalLength > MaxStagedBytes {
			return fmt.Errorf("%w: staging %d more bytes exceeds %d", ErrTooLarge, c.TotalLength, MaxStagedBytes)
		}
		b = &blob{Digest: slices.Clone(c.Digest), Total: c.TotalLength, Index: idx}
		f.st.Blobs[c.Blob] = b
	} else if !bytes.Equal(b.Digest, c.Digest) || b.Total != c.TotalLength {
		return fmt.Errorf("%w: blob %s was started with another digest or length", ErrExists, c.Blob)
	}
	have := uint64(len(b.Data))
	end := c.Offset + uint64(len(c.Data))
	if c.Offset == 0 && !bytes.HasPrefix(c.Data, b.Data[:min(have, uint64(len(c.Data)))]) {
		// A new upload under the same key whose bytes differ from a failed earlier one
		// (which could not have matched the digest): start over.
		b.Data, have = b.Data[:0], 0
	}
	switch {
	case end > b.Total:
		return fmt.Errorf("%w: chunk ends at %d, past the announced length %d", ErrTooLarge, end, b.Total)
	case c.Offset > have:
		return fmt.Errorf("%w: chunk at offset %d leaves a gap after %d bytes", ErrInvalid, c.Offset, have)
	case end <= have:
		// A resent chunk (a retried stream): accepted if it matches.
		if !bytes.Equal(b.Data[c.Offset:end], c.Data) {
			return fmt.Errorf("%w: chunk at offset %d differs from the staged bytes", ErrExists, c.Offset)
		}
		return nil
	}
	if c.Offset < have && !bytes.Equal(b.Data[c.Offset:], c.Data[:have-c.Offset]) {
		return fmt.Errorf("%w: chunk at offset %d differs from the staged bytes", ErrExists, c.Offset)
	}
	if b.Data == nil {
		b.Data = make([]byte, 0, min(b.Total, 64<<20))
	}
	b.Data = append(b.Data, c.Data[have-c.Offset:]...)
	if uint64(len(b.Data)) == b.Total {
		if sum := sha256.Sum256(b.Data); !bytes.Equal(sum[:], b.Digest) {
			delete(f.st.Blobs, c.Blob)
			return fmt.Errorf("%w: payload digest %x, header announced %x", ErrInvalid, sum[:8], b.Digest[:8])
		}
	}
	return nil
}

// takeBlob returns a complete staged blob after checking its digest. The caller deletes it
// once its command has succeeded.
func (f *FSM) takeBlob(key string, digest []byte) ([]byte, error) {
	b := f.st.Blobs[key]
	if b == nil {
		return nil, fmt.Errorf("%w: no staged payload %s", ErrInvalid, key)
	}
	if !bytes.Equal(b.Digest, digest) {
		return nil, fmt.Errorf("%w: staged payload %s has digest %x, expected %x", ErrInvalid, key, b.Digest, digest)
	}
	if uint64(len(b.Data)) != b.Total {
		return nil, fmt.Errorf("%w: staged payload %s has %d of %d bytes", ErrInvalid, key, len(b.Data), b.Total)
	}
	return b.Data, nil
}

// abandonedCreate is how many log entries after its first chunk a federation's staged
// initial weights are dropped if no create command has taken them. The leader proposes
// the create moments after the chunks, so only an attempt whose leader was lost in
// between, for a federation nobody created since, leaves them that long. (A round's
// staged blobs go with the round.)
const abandonedCreate = 10000

// dropAbandoned deletes staged initial weights abandonedCreate entries older than idx.
func (f *FSM) dropAbandoned(idx uint64) {
	for k, b := range f.st.Blobs {
		if strings.HasPrefix(k, createBlobsPrefix) && idx-b.Index > abandonedCreate {
			delete(f.st.Blobs, k)
		}
	}
}

// dropBlobs deletes staged blobs whose key starts with prefix.
func (f *FSM) dropBlobs(prefix string) {
	for k := range f.st.Blobs {
		if strings.HasPrefix(k, prefix) {
			delete(f.st.Blobs, k)
		}
	}
}

// Blob keys. Names cannot contain '/', so prefixes are unambiguous.
func modelBlobKey(fed string, round uint64, digest []byte) string {
	return fmt.Sprintf("m/%s/%d/%s", fed, round, hex.EncodeToString(digest))
}
func createBlobKey(fed string, digest []byte) string {
	return createBlobPrefix(fed) + hex.EncodeToString(digest)
}

// createBlobsPrefix starts the keys of every federation's staged initial weights;
// createBlobPrefix those of federation fed.
const createBlobsPrefix = "f/"

func createBlobPrefix(fed string) string { return createBlobsPrefix + fed + "/" }

// roundBlobPrefix is the prefix of a round's staged blobs (its new model's chunks); the
// round's updates, aggregates and shares are in the nodes' blob stores instead.
func roundBlobPrefix(fed string, round uint64) string {
	return fmt.Sprintf("m/%s/%d/", fed, round)
}

// ---- rounds ----

// roundFor returns the federation's current round if it is number r.
func (f *FSM) roundFor(fedName string, r uint64) (*federation, *round, error) {
	fd, err := f.fed(fedName)
	if err != nil {
		return nil, nil, err
	}
	cur := fd.current()
	if cur == nil || cur.Number != r {
		var have uint64
		if cur != nil {
			have = cur.Number
		}
		return nil, nil, fmt.Errorf("%w: federation %q is at round %d, got round %d", ErrWrongRound, fedName, have, r)
	}
	return fd, cur, nil
}

// checkSubmitter checks that client may contribute to round rd.
func checkSubmitter(fd *federation, rd *round, client string) error {
	if fd.rosterIndex(client) < 0 {
		return fmt.Errorf("%w: %q is not on the roster of federation %q", ErrUnknownClient, client, fd.spec.Name)
	}
	if fd.Enrolled[client] == nil {
		return fmt.Errorf("%w: %q has not enrolled in federation %q", ErrNotEnrolled, client, fd.spec.Name)
	}
	if fd.spec.Secure && !fd.isMember(client) {
		return fmt.Errorf("%w: %q is not in the key ceremony of %q (it restarted without it)", ErrUnknownClient, client, fd.spec.Name)
	}
	if !slices.Contains(rd.Selected, client) {
		return fmt.Errorf("%w: %q is not selected for round %d", ErrUnknownClient, client, rd.Number)
	}
	return nil
}

// checkUpdate runs every check of commitUpdate that does not need the payload. It returns
// the existing contribution if the same update was already accepted.
func checkUpdate(fd *federation, rd *round, client string, version, samples uint64, digest []byte) (*contribution, error) {
	if err := checkSubmitter(fd, rd, client); err != nil {
		return nil, err
	}
	if c := rd.Contribs[client]; c != nil {
		if bytes.Equal(c.Digest, digest) {
			return c, nil
		}
		return nil, fmt.Errorf("%w: %q already submitted a different update (digest %x) to round %d", ErrExists, client, c.Digest[:8], rd.Number)
	}
	if rd.State != pb.RoundState_ROUND_STATE_OPEN {
		return nil, fmt.Errorf("%w: round %d is %s, not open", ErrRoundState, rd.Number, stateName(rd.State))
	}
	if version != rd.ModelVersion {
		return nil, fmt.Errorf("%w: round %d trains model version %d, update is from version %d", ErrStaleModel, rd.Number, rd.ModelVersion, version)
	}
	if samples < 1 || samples > maxSamples {
		return nil, fmt.Errorf("%w: sample count %d, expected 1 to %d", ErrInvalid, samples, uint64(maxSamples))
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("%w: digest of %d bytes, expected %d", ErrInvalid, len(digest), sha256.Size)
	}
	return nil, nil
}

// acceptedBefore reports whether client's update with digest is already in round r of fd
// (any round, not only the current one: an acknowledgement may be lost after the round
// moved on). A different update from the same client is ErrExists.
func acceptedBefore(fd *federation, r uint64, client string, digest []byte) (*contribution, error) {
	if r == 0 || r > uint64(len(fd.Rounds)) {
		return nil, nil
	}
	c := fd.Rounds[r-1].Contribs[client]
	if c == nil {
		return nil, nil
	}
	if bytes.Equal(c.Digest, digest) {
		return c, nil
	}
	return nil, fmt.Errorf("%w: %q already submitted a different update (digest %x) to round %d", ErrExists, client, c.Digest[:8], r)
}

func (f *FSM) commitUpdate(idx uint64, t int64, c *pb.CommitUpdateCmd) error {
	if fd := f.st.Federations[c.Federation]; fd != nil {
		if dup, err := acceptedBefore(fd, c.Round, c.ClientId, c.Digest); err != nil || dup != nil {
			return err
		}
	}
	fd, rd, err := f.roundFor(c.Federation, c.Round)
	if err != nil {
		return err
	}
	dup, err := checkUpdate(fd, rd, c.ClientId, c.ModelVersion, c.Samples, c.Digest)
	if err != nil || dup != nil {
		return err
	}
	// The bytes are in the blob stores of a majority of nodes, checked by the node that
	// received them (length, digest, and for ciphertexts CheckEncrypted); the log carries
	// only the digest.
	if rd.Contribs == nil {
		rd.Contribs = map[string]*contribution{}
	}
	rd.Contribs[c.ClientId] = &contribution{Client: c.ClientId, Samples: c.Samples, Digest: slices.Clone(c.Digest), Index: idx, At: t}
	rd.Order = append(rd.Order, c.ClientId)
	rd.TotalSamples += c.Samples
	rd.Changed = idx
	return nil
}

// stopFederation stops a federation with a reason; stopping a stopped federation again
// changes nothing. Without AbortRound it stops only between rounds. With it (an
// operator's stop) a round in progress is aborted with the same reason, without noting
// who missed it or counting towards max_aborted_rounds; a decrypting round that already
// holds its t shares is left to be published (ErrRoundState), since the coordinator can
// decrypt it already.
func (f *FSM) stopFederation(idx uint64, c *pb.StopFederationCmd) error {
	fd, err := f.fed(c.Federation)
	if err != nil {
		return err
	}
	if fd.Stopped {
		return nil
	}
	if len(c.Reason) == 0 || len(c.Reason) > 4096 {
		return fmt.Errorf("%w: stop reason of %d bytes, expected 1 to 4096", ErrInvalid, len(c.Reason))
	}
	cur := fd.current()
	if cur != nil && !terminal(cur.State) {
		switch {
		case !c.AbortRound:
			return fmt.Errorf("%w: round %d is %s", ErrRoundState, cur.Number, stateName(cur.State))
		case cur.State == pb.RoundState_ROUND_STATE_DECRYPTING && len(cur.Shares) >= int(fd.spec.Threshold):
			return fmt.Errorf("%w: round %d holds all %d decryption shares it needs and is being published; stop the federation again once it is",
				ErrRoundState, cur.Number, fd.spec.Threshold)
		}
		cur.State, cur.Reason, cur.Changed = pb.RoundState_ROUND_STATE_ABORTED, c.Reason, idx
		f.dropBlobs(roundBlobPrefix(c.Federation, cur.Number))
	}
	fd.Stopped, fd.StopReason = true, c.Reason
	return nil
}

// finishFederation ends a running federation between rounds, with a reason, as done;
// finishing a finished federation again changes nothing.
func (f *FSM) finishFederation(c *pb.FinishFederationCmd) error {
	fd, err := f.fed(c.Federation)
	if err != nil {
		return err
	}
	switch {
	case fd.Finished:
		return nil
	case fd.Stopped:
		return fmt.Errorf("%w: federation %q is stopped: %s", ErrRoundState, c.Federation, fd.StopReason)
	}
	if cur := fd.current(); cur != nil && !terminal(cur.State) {
		return fmt.Errorf("%w: round %d is %s", ErrRoundState, cur.Number, stateName(cur.State))
	}
	if len(c.Reason) == 0 || len(c.Reason) > 4096 {
		return fmt.Errorf("%w: finish reason of %d bytes, expected 1 to 4096", ErrInvalid, len(c.Reason))
	}
	fd.Finished, fd.FinishReason = true, c.Reason
	return nil
}

// resumeFederation lets a stopped federation go on: the count of aborted rounds and the
// missed rounds are forgotten (every enrolled hospital is selected again), and an
// unfinished key ceremony's deadline starts over. Resuming a running federation changes
// nothing.
func (f *FSM) resumeFederation(t int64, c *pb.ResumeFederationCmd) error {
	fd, err := f.fed(c.Federation)
	if err != nil {
		return err
	}
	if !fd.Stopped {
		return nil
	}
	fd.Stopped, fd.StopReason, fd.Aborts, fd.Missed = false, "", 0, nil
	if fd.spec.Secure && fd.Ceremony.PublicKey == nil {
		fd.CeremonyStarted = t
	}
	return nil
}

// restartCeremony starts a secure federation's key ceremony again with fewer members (the
// hospitals that took part; the others missed the ceremony deadline). Everything of the
// earlier attempt is dropped: no key was made from it, so nothing was encrypted under it.
func (f *FSM) restartCeremony(t int64, c *pb.RestartCeremonyCmd) error {
	fd, err := f.fed(c.Federation)
	if err != nil {
		return err
	}
	if !fd.spec.Secure || fd.Ceremony.PublicKey != nil || fd.Stopped {
		return fmt.Errorf("%w: federation %q has no key ceremony in progress", ErrCeremony, c.Federation)
	}
	need := fd.ceremonyQuorum()
	if len(c.Members) < need || len(c.Members) >= len(fd.members()) {
		return fmt.Errorf("%w: %d members, expected %d to %d", ErrInvalid, len(c.Members), need, len(fd.members())-1)
	}
	var members []string
	for _, m := range fd.members() { // roster order
		if slices.Contains(c.Members, m) {
			if fd.Enrolled[m] == nil {
				return fmt.Errorf("%w: member %q has not enrolled", ErrInvalid, m)
			}
			members = append(members, m)
		}
	}
	if len(members) != len(c.Members) {
		return fmt.Errorf("%w: members %v are not all distinct members of the current ceremony", ErrInvalid, c.Members)
	}
	fd.Members, fd.CeremonyGen, fd.CeremonyStarted, fd.RestartReason = members, fd.CeremonyGen+1, t, c.Reason
	fd.Ceremony, fd.ceremony, fd.Envelopes = ceremonyState{}, nil, nil
	return nil
}

func (f *FSM) openRound(idx uint64, t int64, c *pb.OpenRoundCmd) error {
	fd, err := f.fed(c.Federation)
	if err != nil {
		return err
	}
	if fd.Stopped {
		return fmt.Errorf("%w: federation %q stopped: %s", ErrRoundState, c.Federation, fd.StopReason)
	}
	if cur := fd.current(); cur != nil && !terminal(cur.State) {
		return fmt.Errorf("%w: round %d is still %s", ErrRoundState, cur.Number, stateName(cur.State))
	}
	if want := uint64(len(fd.Rounds)) + 1; c.Round != want {
		return fmt.Errorf("%w: next round of %q is %d, got %d", ErrWrongRound, c.Federation, want, c.Round)
	}
	if fd.done() {
		return fmt.Errorf("%w: federation %q has run all %d rounds", ErrRoundState, c.Federation, fd.roundsWanted())
	}
	if v := fd.latest().Version; c.ModelVersion != v {
		return fmt.Errorf("%w: latest model version is %d, got %d", ErrStaleModel, v, c.ModelVersion)
	}
	if fd.spec.Secure && fd.Ceremony.PublicKey == nil {
		return fmt.Errorf("%w: federation %q has no collective public key yet", ErrCeremony, c.Federation)
	}
	if len(c.Selected) < int(fd.spec.MinClients) {
		return fmt.Errorf("%w: %d clients selected, min_clients is %d", ErrInvalid, len(c.Selected), fd.spec.MinClients)
	}
	seen := map[string]bool{}
	for _, s := range c.Selected {
		if fd.rosterIndex(s) < 0 || seen[s] || !fd.isMember(s) {
			return fmt.Errorf("%w: selected client %q is unknown, repeated or not in the key ceremony", ErrInvalid, s)
		}
		seen[s] = true
	}
	fd.Rounds = append(fd.Rounds, &round{
		Number:       c.Round,
		State:        pb.RoundState_ROUND_STATE_OPEN,
		ModelVersion: c.ModelVersion,
		Selected:     slices.Clone(c.Selected),
		Opened:       t,
		Deadline:     c.DeadlineUnixNano,
		Contribs:     map[string]*contribution{},
		Changed:      idx,
	})
	return nil
}

func (f *FSM) sealRound(idx uint64, c *pb.SealRoundCmd) error {
	fd, rd, err := f.roundFor(c.Federation, c.Round)
	if err != nil {
		return err
	}
	if rd.State != pb.RoundState_ROUND_STATE_OPEN {
		return fmt.Errorf("%w: round %d is %s, not open", ErrRoundState, rd.Number, stateName(rd.State))
	}
	if len(rd.Contribs) < int(fd.spec.MinClients) {
		return fmt.Errorf("%w: round %d has %d contributions, min_clients is %d", ErrRoundState, rd.Number, len(rd.Contribs), fd.spec.MinClients)
	}
	rd.State = pb.RoundState_ROUND_STATE_SEALED
	rd.Changed = idx
	fd.noteAttendance(rd)
	return nil
}

// setAggregate records the encrypted sum of a sealed secure round, which the leader
// computed from the contributions' blobs (aggregation.EncryptedWeightedSum) and stored on
// a majority of nodes. It must hold every contribution: its count and total weight are
// checked.
func (f *FSM) setAggregate(idx uint64, c *pb.SetAggregateCmd) error {
	fd, rd, err := f.roundFor(c.Federation, c.Round)
	if err != nil {
		return err
	}
	if !fd.spec.Secure || rd.State != pb.RoundState_ROUND_STATE_SEALED {
		return fmt.Errorf("%w: round %d is %s; an aggregate is recorded for a sealed secure round", ErrRoundState, rd.Number, stateName(rd.State))
	}
	if len(c.Digest) != sha256.Size || len(c.HeDigest) != sha256.Size {
		return fmt.Errorf("%w: aggregate digests of %d and %d bytes, expected %d", ErrInvalid, len(c.Digest), len(c.HeDigest), sha256.Size)
	}
	if rd.AggDigest != nil {
		if bytes.Equal(rd.AggDigest, c.Digest) {
			return nil
		}
		return fmt.Errorf("%w: round %d already has another aggregate", ErrExists, rd.Number)
	}
	if int(c.Contributions) != len(rd.Contribs) || c.Weight != float64(rd.TotalSamples) {
		return fmt.Errorf("%w: aggregate of round %d holds %d contributions of weight %v; the round has %d of %d",
			ErrInvalid, rd.Number, c.Contributions, c.Weight, len(rd.Contribs), rd.TotalSamples)
	}
	rd.AggDigest, rd.AggHE = slices.Clone(c.Digest), slices.Clone(c.HeDigest)
	rd.Changed = idx
	return nil
}

func (f *FSM) abortRound(idx uint64, c *pb.AbortRoundCmd) error {
	fd, rd, err := f.roundFor(c.Federation, c.Round)
	if err != nil {
		return err
	}
	if terminal(rd.State) {
		return fmt.Errorf("%w: round %d is already %s", ErrRoundState, rd.Number, stateName(rd.State))
	}
	if rd.State == pb.RoundState_ROUND_STATE_OPEN {
		fd.noteAttendance(rd) // a sealed round noted it when it was sealed
	}
	fd.Aborts++
	if fd.Aborts >= fd.maxAbortedRounds() && !fd.done() {
		fd.Stopped = true
		fd.StopReason = fmt.Sprintf("%d rounds in a row were aborted (rounds %d to %d; max_aborted_rounds is %d), the last because %s; once the hospitals are back, an operator can run medfed federation resume",
			fd.Aborts, rd.Number-uint64(fd.Aborts)+1, rd.Number, fd.maxAbortedRounds(), c.Reason)
	}
	rd.State = pb.RoundState_ROUND_STATE_ABORTED
	rd.Reason = c.Reason
	rd.Changed = idx
	f.dropBlobs(roundBlobPrefix(c.Federation, c.Round))
	return nil
}

// startDecryption chooses the round's active set. On a sealed round it starts the
// decryption. On a decrypting round still short of t shares it replaces the active set
// (the leader does so when shares stop arriving): the members of the old set that did not
// answer are excluded for the rest of the round, the new set must be t contributors none
// of whom is excluded, and the aggregate is rerandomised (he.Vector.Rerandomize, seeded
// from the log index) so the new set decrypts a new ciphertext. A hospital never answers
// one ciphertext for two active sets; this is how one that already answered can answer
// again.
func (f *FSM) startDecryption(idx uint64, t int64, c *pb.StartDecryptionCmd) error {
	fd, rd, err := f.roundFor(c.Federation, c.Round)
	if err != nil {
		return err
	}
	if !fd.spec.Secure {
		return fmt.Errorf("%w: federation %q is not in secure mode", ErrRoundState, c.Federation)
	}
	thr := int(fd.spec.Threshold)
	reselect := rd.State == pb.RoundState_ROUND_STATE_DECRYPTING && len(rd.Shares) < thr
	if rd.State != pb.RoundState_ROUND_STATE_SEALED && !reselect {
		return fmt.Errorf("%w: round %d is %s with %d of %d shares; an active set is chosen when it is sealed, or again while shares are missing",
			ErrRoundState, rd.Number, stateName(rd.State), len(rd.Shares), thr)
	}
	if len(c.ActiveParties) != thr {
		return fmt.Errorf("%w: active set of %d parties, threshold is %d", ErrInvalid, len(c.ActiveParties), thr)
	}
	seen := map[uint32]bool{}
	for _, p := range c.ActiveParties {
		cl := fd.clientOfParty(p)
		if cl == "" || fd.Enrolled[cl] == nil || seen[p] {
			return fmt.Errorf("%w: active party %d is unknown, unenrolled or repeated", ErrInvalid, p)
		}
		seen[p] = true
	}
	if !reselect {
		rd.Active = slices.Clone(c.ActiveParties)
		rd.State = pb.RoundState_ROUND_STATE_DECRYPTING
		rd.Shares = map[string]*share{}
		rd.DecryptStarted = t
		rd.Changed = idx
		return nil
	}
	excluded := slices.Clone(rd.Excluded)
	for _, p := range rd.Active {
		if rd.Shares[fd.clientOfParty(p)] == nil && !slices.Contains(excluded, p) {
			excluded = append(excluded, p)
		}
	}
	for _, p := range c.ActiveParties {
		cl := fd.clientOfParty(p)
		if rd.Contribs[cl] == nil {
			return fmt.Errorf("%w: new active party %d (%q) did not contribute to round %d", ErrInvalid, p, cl, rd.Number)
		}
		if slices.Contains(excluded, p) {
			return fmt.Errorf("%w: new active party %d (%q) did not answer an earlier active set of round %d", ErrInvalid, p, cl, rd.Number)
		}
	}
	// The leader rerandomised the aggregate (he.Vector.Rerandomize) for the new set and
	// stored it like an update.
	if len(c.AggregateSha256) != sha256.Size || len(c.AggregateHeDigest) != sha256.Size {
		return fmt.Errorf("%w: a new active set needs the rerandomised aggregate's digests", ErrInvalid)
	}
	if bytes.Equal(c.AggregateHeDigest, rd.AggHE) {
		return fmt.Errorf("%w: the aggregate of round %d was not rerandomised for the new active set", ErrInvalid, rd.Number)
	}
	slices.Sort(excluded)
	for _, p := range excluded {
		if !slices.Contains(rd.Excluded, p) {
			// Silent when asked for its share: left out of the next rounds' selection
			// until it enrols again, like a hospital that missed a round.
			if fd.Missed == nil {
				fd.Missed = map[string]int{}
			}
			cl := fd.clientOfParty(p)
			fd.Missed[cl] = max(fd.Missed[cl], suspendAfter)
		}
	}
	rd.Excluded = excluded
	rd.Active = slices.Clone(c.ActiveParties)
	rd.AggDigest, rd.AggHE = slices.Clone(c.AggregateSha256), slices.Clone(c.AggregateHeDigest)
	rd.Shares = map[string]*share{}
	rd.DecryptStarted = t
	rd.Reselections++
	rd.Changed = idx
	return nil
}

func (f *FSM) commitShare(idx uint64, c *pb.CommitShareCmd) error {
	fd, rd, err := f.roundFor(c.Federation, c.Round)
	if err != nil {
		return err
	}
	_, dup, err := checkSharer(fd, rd, c.ClientId, c.Digest)
	if err != nil || dup {
		return err
	}
	// The receiving node stored the bytes on a majority and checked them (a share from
	// this party for this aggregate, he.DecodeDecryptionShare).
	if len(c.Digest) != sha256.Size {
		return fmt.Errorf("%w: share digest of %d bytes, expected %d", ErrInvalid, len(c.Digest), sha256.Size)
	}
	if !bytes.Equal(c.AggregateHeDigest, rd.AggHE) {
		return fmt.Errorf("%w: the share is for another aggregate than round %d's current one (a new active set was chosen)", ErrRoundState, rd.Number)
	}
	rd.Shares[c.ClientId] = &share{Digest: slices.Clone(c.Digest)}
	rd.Changed = idx
	return nil
}

// checkSharer runs the checks of commitShare that do not need the share: the round is
// decrypting and client's party is in its active set. It returns the party, and dup when
// client already sent this share (digest); a different one is ErrExists.
func checkSharer(fd *federation, rd *round, client string, digest []byte) (party uint32, dup bool, err error) {
	if rd.State != pb.RoundState_ROUND_STATE_DECRYPTING {
		return 0, false, fmt.Errorf("%w: round %d is %s, not decrypting", ErrRoundState, rd.Number, stateName(rd.State))
	}
	party = fd.partyOf(client)
	if party == 0 {
		return 0, false, fmt.Errorf("%w: %q is not an enrolled member of %q", ErrUnknownClient, client, fd.spec.Name)
	}
	if !slices.Contains(rd.Active, party) {
		return 0, false, fmt.Errorf("%w: %q (party %d) is not in the active set %v of round %d", ErrUnknownClient, client, party, rd.Active, rd.Number)
	}
	if s := rd.Shares[client]; s != nil {
		if bytes.Equal(s.Digest, digest) {
			return party, true, nil
		}
		return 0, false, fmt.Errorf("%w: %q already sent a different decryption share for round %d", ErrExists, client, rd.Number)
	}
	return party, false, nil
}

func (f *FSM) publishModel(idx uint64, t int64, c *pb.PublishModelCmd) error {
	fd, rd, err := f.roundFor(c.Federation, c.Round)
	if err != nil {
		return err
	}
	switch {
	case rd.State == pb.RoundState_ROUND_STATE_SEALED && !fd.spec.Secure:
	case rd.State == pb.RoundState_ROUND_STATE_DECRYPTING && len(rd.Shares) >= int(fd.spec.Threshold):
	default:
		return fmt.Errorf("%w: round %d is %s and cannot be published", ErrRoundState, rd.Number, stateName(rd.State))
	}
	if want := fd.latest().Version + 1; c.Version != want {
		return fmt.Errorf("%w: next model version is %d, got %d", ErrStaleModel, want, c.Version)
	}
	key := modelBlobKey(c.Federation, c.Round, c.Digest)
	if c.Blob != key {
		return fmt.Errorf("%w: model blob %q, expected %q", ErrInvalid, c.Blob, key)
	}
	data, err := f.takeBlob(key, c.Digest)
	if err != nil {
		return err
	}
	n := fd.NumParams
	if int(c.NumParams) != n || len(data) < 4*n {
		return fmt.Errorf("%w: published model has %d values, the model has %d", ErrLength, c.NumParams, n)
	}
	w, err := DecodeFloat32s(data[:4*n])
	if err != nil {
		return err
	}
	opt := data[4*n:]
	var o aggregation.ServerOptimizer
	if err := o.UnmarshalBinary(opt); err != nil || o.Dim() != n {
		return fmt.Errorf("%w: server optimizer state: %v", ErrInvalid, err)
	}
	wd := sha256.Sum256(data[:4*n])
	contributors := slices.Clone(rd.Order)
	slices.Sort(contributors)
	fd.Models = append(fd.Models, &modelVersion{
		Version: c.Version, Round: c.Round, Contributors: contributors,
		Digest: wd[:], Weights: w, At: t,
	})
	fd.OptState = slices.Clone(opt)
	fd.Aborts = 0
	rd.State = pb.RoundState_ROUND_STATE_PUBLISHED
	rd.Published = c.Version
	rd.Changed = idx
	delete(f.st.Blobs, key)
	f.dropBlobs(roundBlobPrefix(c.Federation, c.Round))
	return nil
}

// pinModel pins a published model version for serving, or removes the pin. Both are
// idempotent, so a retried command changes nothing.
func (f *FSM) pinModel(c *pb.PinModelCmd) error {
	fd, err := f.fed(c.Federation)
	if err != nil {
		return err
	}
	i, pinned := slices.BinarySearch(fd.Pinned, c.Version)
	if c.Unpin {
		if pinned {
			fd.Pinned = slices.Delete(fd.Pinned, i, i+1)
		}
		return nil
	}
	if c.Version == 0 {
		return fmt.Errorf("%w: model version 0 of %q is the initial random model, which is not served; expected a published version 1 to %d", ErrInvalid, c.Federation, fd.latest().Version)
	}
	if c.Version > fd.latest().Version {
		return fmt.Errorf("%w: federation %q has no model version %d (latest is %d)", ErrNotFound, c.Federation, c.Version, fd.latest().Version)
	}
	if !pinned {
		fd.Pinned = slices.Insert(fd.Pinned, i, c.Version)
	}
	return nil
}

// ---- key ceremony and envelopes ----

func (f *FSM) ceremonyStep(c *pb.CeremonyCmd) error {
	fd, err := f.fed(c.Federation)
	if err != nil {
		return err
	}
	if !fd.spec.Secure {
		return fmt.Errorf("%w: federation %q is not in secure mode", ErrCeremony, c.Federation)
	}
	party := fd.partyOf(c.ClientId)
	if party == 0 {
		return fmt.Errorf("%w: %q has not enrolled in %q", ErrNotEnrolled, c.ClientId, c.Federation)
	}
	if !fd.isMember(c.ClientId) {
		return fmt.Errorf("%w: %q is not in the key ceremony of %q (it restarted without it: %s)", ErrCeremony, c.ClientId, c.Federation, fd.RestartReason)
	}
	if len(c.Data) > MaxCeremonyBytes {
		return fmt.Errorf("%w: ceremony message of %d bytes", ErrTooLarge, len(c.Data))
	}
	for _, s := range fd.Ceremony.Steps {
		if s.Client == c.ClientId && pbStep(s.Step) == c.Step && bytes.Equal(s.Data, c.Data) {
			return nil // resent after a lost acknowledgement: recorded once, at any stage
		}
	}
	if fd.ceremony == nil {
		cer, err := he.NewCeremony(*fd.params, fd.group())
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCeremony, err)
		}
		fd.ceremony = cer
	}
	if err := applyCeremonyStep(fd, party, c.Step, c.Data); err != nil {
		return err
	}
	fd.Ceremony.Steps = append(fd.Ceremony.Steps, ceremonyStep{Client: c.ClientId, Step: int32(c.Step), Data: slices.Clone(c.Data)})
	if c.Step == pb.CeremonyStep_CEREMONY_STEP_PUBLIC_KEY_SHARE && fd.Ceremony.PublicKey == nil {
		if pk, err := fd.ceremony.PublicKey(); err == nil {
			b, err := pk.MarshalBinary()
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCeremony, err)
			}
			fd.Ceremony.PublicKey, fd.pk = b, pk
		}
	}
	return nil
}

// applyCeremonyStep feeds one message into fd.ceremony. Errors leave it unchanged (he's
// Ceremony checks before it records).
func applyCeremonyStep(fd *federation, party uint32, step pb.CeremonyStep, data []byte) error {
	p := *fd.params
	var err error
	switch step {
	case pb.CeremonyStep_CEREMONY_STEP_COMMITMENT:
		var sc he.SeedCommitment
		if sc, err = he.DecodeSeedCommitment(p, data); err == nil {
			if uint32(sc.Party) != party {
				return fmt.Errorf("%w: commitment names party %d, sender is party %d", ErrIdentity, sc.Party, party)
			}
			err = fd.ceremony.AddCommitment(sc)
		}
	case pb.CeremonyStep_CEREMONY_STEP_REVEAL:
		var sr he.SeedReveal
		if sr, err = he.DecodeSeedReveal(p, data); err == nil {
			if uint32(sr.Party) != party {
				return fmt.Errorf("%w: reveal names party %d, sender is party %d", ErrIdentity, sr.Party, party)
			}
			err = fd.ceremony.AddReveal(sr)
		}
	case pb.CeremonyStep_CEREMONY_STEP_PUBLIC_KEY_SHARE:
		var s *he.PublicKeyShare
		if s, err = he.DecodePublicKeyShare(p, data); err == nil {
			if uint32(s.Party) != party {
				return fmt.Errorf("%w: public key share names party %d, sender is party %d", ErrIdentity, s.Party, party)
			}
			err = fd.ceremony.AddPublicKeyShare(s)
		}
	default:
		return fmt.Errorf("%w: unknown ceremony step %v", ErrInvalid, step)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCeremony, err)
	}
	return nil
}

func (f *FSM) envelope(c *pb.EnvelopeCmd) error {
	e := c.Envelope
	if e == nil {
		return fmt.Errorf("%w: missing envelope", ErrInvalid)
	}
	fd, err := f.fed(e.Federation)
	if err != nil {
		return err
	}
	if fd.partyOf(e.FromClient) == 0 || fd.partyOf(e.ToClient) == 0 || e.FromClient == e.ToClient ||
		!fd.isMember(e.FromClient) || !fd.isMember(e.ToClient) {
		return fmt.Errorf("%w: envelope from %q to %q: both must be distinct enrolled members", ErrNotEnrolled, e.FromClient, e.ToClient)
	}
	if len(e.Sealed) == 0 || len(e.Sealed) > MaxEnvelopeBytes {
		return fmt.Errorf("%w: envelope of %d bytes, limit %d", ErrTooLarge, len(e.Sealed), MaxEnvelopeBytes)
	}
	for _, old := range fd.Envelopes {
		if old.From == e.FromClient && old.To == e.ToClient {
			if bytes.Equal(old.Sealed, e.Sealed) {
				return nil
			}
			return fmt.Errorf("%w: %q already sent %q a different envelope", ErrExists, e.FromClient, e.ToClient)
		}
	}
	fd.Envelopes = append(fd.Envelopes, &envelope{From: e.FromClient, To: e.ToClient, Sealed: slices.Clone(e.Sealed)})
	return nil
}

func stateName(s pb.RoundState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ROUND_STATE_"))
}

// ---- snapshots ----

// Snapshot encodes the whole state. It runs on raft's FSM goroutine, so it encodes eagerly
// and Persist only writes bytes.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var buf bytes.Buffer
	if err := encodeState(&buf, f.st); err != nil {
		return nil, err
	}
	return &fsmSnapshot{data: buf.Bytes()}, nil
}

// Restore replaces the state with a snapshot written by Snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := decodeState(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

type fsmSnapshot struct{ data []byte }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
