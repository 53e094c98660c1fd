package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/pb"
)

// Read accessors. Each takes the read lock and returns copies, so callers never share
// memory with the state Apply mutates.

func pbStep(s int32) pb.CeremonyStep { return pb.CeremonyStep(s) }

// AppliedIndex returns the index of the last applied log entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Applied
}

// secure reports whether a federation runs in secure mode.
func (f *FSM) secure(name string) (bool, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, err := f.fed(name)
	if err != nil {
		return false, err
	}
	return fd.spec.Secure, nil
}

// Federation returns a federation's state.
func (f *FSM) Federation(name string) (*pb.Federation, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, err := f.fed(name)
	if err != nil {
		return nil, err
	}
	return fd.info(), nil
}

// Federations returns every federation, sorted by name.
func (f *FSM) Federations() []*pb.Federation {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*pb.Federation
	for _, name := range slices.Sorted(maps.Keys(f.st.Federations)) {
		out = append(out, f.st.Federations[name].info())
	}
	return out
}

// Round returns round r of a federation; r = 0 means the current round.
func (f *FSM) Round(fed string, r uint64) (*pb.RoundInfo, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, err := f.fed(fed)
	if err != nil {
		return nil, err
	}
	if r == 0 {
		if cur := fd.current(); cur != nil {
			return cur.info(fed, fd.spec.Secure), nil
		}
		return nil, fmt.Errorf("%w: federation %q has no round yet", ErrNotFound, fed)
	}
	if r > uint64(len(fd.Rounds)) {
		return nil, fmt.Errorf("%w: federation %q has no round %d", ErrNotFound, fed, r)
	}
	return fd.Rounds[r-1].info(fed, fd.spec.Secure), nil
}

// roundsChangedSince returns the federation's rounds changed after index since.
func (f *FSM) roundsChangedSince(fed string, since map[uint64]uint64) ([]*pb.RoundInfo, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, err := f.fed(fed)
	if err != nil {
		return nil, err
	}
	var out []*pb.RoundInfo
	for _, r := range fd.Rounds {
		if last, ok := since[r.Number]; !ok || r.Changed > last {
			since[r.Number] = r.Changed
			out = append(out, r.info(fed, fd.spec.Secure))
		}
	}
	return out, nil
}

// Contribution returns the accepted contribution of client to a round, or nil.
func (f *FSM) Contribution(fed string, r uint64, client string) *pb.Contribution {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd := f.st.Federations[fed]
	if fd == nil || r == 0 || r > uint64(len(fd.Rounds)) {
		return nil
	}
	if c := fd.Rounds[r-1].Contribs[client]; c != nil {
		return c.pb()
	}
	return nil
}

// CheckUpload runs the checks an update would meet at commit that do not need its bytes, on
// this replica's state, and returns the check the bytes must pass (updateCheck). It
// returns the existing contribution, and no check, for a resubmission of the same update.
func (f *FSM) CheckUpload(h *pb.UploadHeader) (*pb.Contribution, byteCheck, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if fd := f.st.Federations[h.Federation]; fd != nil {
		if dup, err := acceptedBefore(fd, h.Round, h.ClientId, h.Sha256); err != nil || dup != nil {
			if dup != nil {
				return dup.pb(), nil, nil
			}
			return nil, nil, err
		}
	}
	fd, rd, err := f.roundFor(h.Federation, h.Round)
	if err != nil {
		return nil, nil, err
	}
	dup, err := checkUpdate(fd, rd, h.ClientId, h.ModelVersion, h.Samples, h.Sha256)
	if err != nil {
		return nil, nil, err
	}
	if dup != nil {
		return dup.pb(), nil, nil
	}
	if !fd.spec.Secure && h.TotalLength != 4*uint64(fd.NumParams) {
		return nil, nil, fmt.Errorf("%w: update of %d bytes (%d float32 values), the model has %d values", ErrLength, h.TotalLength, h.TotalLength/4, fd.NumParams)
	}
	if fd.spec.Secure && h.TotalLength > uint64(fd.params.MaxWireSize()) {
		return nil, nil, fmt.Errorf("%w: encrypted update of %d bytes, limit %d", ErrTooLarge, h.TotalLength, fd.params.MaxWireSize())
	}
	return nil, updateCheck(fd, h.ClientId, h.Samples, h.TotalLength), nil
}

// shareCheck checks that client may send a decryption share for round r now, and returns
// the check the share's bytes must pass (a share from the client's party, for the round's
// current aggregate and its contributions) and the he digest of that aggregate. The same
// share again passes (it is acknowledged again); a different one from the same client is
// ErrExists.
func (f *FSM) shareCheck(fed string, r uint64, client string, digest []byte) (byteCheck, []byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, rd, err := f.roundFor(fed, r)
	if err != nil {
		return nil, nil, err
	}
	party, _, err := checkSharer(fd, rd, client, digest)
	if err != nil {
		return nil, nil, err
	}
	p, contributions, aggHE := *fd.params, len(rd.Contribs), slices.Clone(rd.AggHE)
	check := func(b []byte) error {
		ds, err := he.DecodeDecryptionShare(p, b)
		if err != nil {
			return fmt.Errorf("%w: decryption share from %q: %v", ErrInvalid, client, err)
		}
		if uint32(ds.Party) != party {
			return fmt.Errorf("%w: share is from party %d, %q is party %d", ErrIdentity, ds.Party, client, party)
		}
		if ds.Contributions != contributions || !bytes.Equal(ds.Digest[:], aggHE) {
			return fmt.Errorf("%w: share is for another aggregate (%d contributions, digest %x)", ErrInvalid, ds.Contributions, ds.Digest[:8])
		}
		return nil
	}
	return wholeCheck(check), aggHE, nil
}

// updateCheck returns the check an update's size bytes must pass before a node accepts
// it into a round of fd: finite float32 values in plaintext mode, and in secure mode a
// well-formed ciphertext of the model's length with one contribution weighted by
// samples, checked as it streams in.
func updateCheck(fd *federation, client string, samples, size uint64) byteCheck {
	if !fd.spec.Secure {
		return &finiteCheck{}
	}
	u := aggregation.EncryptedUpdate{Client: client, Samples: int(samples)}
	return encryptedCheck{aggregation.NewEncryptedChecker(*fd.params, fd.NumParams, u, int(size))}
}

// A byteCheck validates bytes as they arrive: Write them in order, then Close for the
// verdict. Write may refuse early. Close returns the buffers it holds; a check abandoned
// without Close leaves them to the garbage collector.
type byteCheck interface {
	Write(b []byte) (int, error)
	Close() error
}

// encryptedCheck is a ciphertext update's check, with the node's error class.
type encryptedCheck struct{ c *aggregation.EncryptedChecker }

func (e encryptedCheck) Write(b []byte) (int, error) {
	k, err := e.c.Write(b)
	if err != nil {
		return k, fmt.Errorf("%w: encrypted update: %v", ErrInvalid, err)
	}
	return k, nil
}

func (e encryptedCheck) Close() error {
	if err := e.c.Close(); err != nil {
		return fmt.Errorf("%w: encrypted update: %v", ErrInvalid, err)
	}
	return nil
}

// finiteCheck is a plaintext update's check as it streams in: every float32 finite, as
// DecodeFloat32s checks, without keeping the bytes. CheckUpload has matched the length to
// the model already, and receiveReplicated the stream to the length.
type finiteCheck struct {
	values int     // values checked
	carry  [4]byte // a value split across writes
	k      int     // bytes in carry
}

func (c *finiteCheck) Write(b []byte) (int, error) {
	n := len(b)
	if c.k > 0 {
		m := copy(c.carry[c.k:], b)
		c.k, b = c.k+m, b[m:]
		if c.k < 4 {
			return n, nil
		}
		if err := c.value(c.carry[:]); err != nil {
			return 0, err
		}
		c.k = 0
	}
	for ; len(b) >= 4; b = b[4:] {
		if err := c.value(b); err != nil {
			return 0, err
		}
	}
	c.k = copy(c.carry[:], b)
	return n, nil
}

func (c *finiteCheck) value(b []byte) error {
	if _, err := finiteFloat32(b, c.values); err != nil {
		return err
	}
	c.values++
	return nil
}

func (c *finiteCheck) Close() error {
	if c.k != 0 {
		return notWholeFloat32s(4*c.values + c.k)
	}
	return nil
}

// wholeCheck runs check on all the bytes at once, gathered in a pooled buffer.
func wholeCheck(check func([]byte) error) byteCheck {
	return &gathered{check: check, buf: checkBuffers.Get().(*[]byte)}
}

type gathered struct {
	check func([]byte) error
	buf   *[]byte
}

// checkBuffers hold the bytes of uploads being checked whole.
var checkBuffers = sync.Pool{New: func() any { return new([]byte) }}

func (g *gathered) Write(b []byte) (int, error) {
	*g.buf = append(*g.buf, b...)
	return len(b), nil
}

func (g *gathered) Close() error {
	if g.buf == nil {
		return errors.New("byte check closed twice")
	}
	err := g.check(*g.buf)
	*g.buf = (*g.buf)[:0]
	checkBuffers.Put(g.buf)
	g.buf = nil
	return err
}

// ModelVersion returns a model version's lineage and weights; version 0 is the initial
// model, and latest selects the newest.
func (f *FSM) ModelVersion(fed string, version uint64, latest bool) (*pb.ModelVersionInfo, []float32, []byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, err := f.fed(fed)
	if err != nil {
		return nil, nil, nil, err
	}
	if latest {
		version = fd.latest().Version
	}
	if version >= uint64(len(fd.Models)) {
		return nil, nil, nil, fmt.Errorf("%w: federation %q has no model version %d (latest is %d)", ErrNotFound, fed, version, fd.latest().Version)
	}
	m := fd.Models[version]
	return m.info(), m.Weights, slices.Clone(fd.SpecBytes), nil
}

// NodeAddrs returns the gRPC addresses the cluster has recorded for its nodes.
func (f *FSM) NodeAddrs() map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.st.NodeAddrs)
}

// Ceremony returns a federation's key-ceremony state, with the messages parties need.
func (f *FSM) Ceremony(fed string) (*pb.CeremonyStatus, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, err := f.fed(fed)
	if err != nil {
		return nil, err
	}
	return fd.ceremonyInfo(true), nil
}

func (fd *federation) ceremonyInfo(withData bool) *pb.CeremonyStatus {
	cs := &pb.CeremonyStatus{Federation: fd.spec.Name, Complete: fd.Ceremony.PublicKey != nil,
		Members: slices.Clone(fd.members()), Generation: uint32(fd.CeremonyGen), RestartedBecause: fd.RestartReason}
	for _, s := range fd.Ceremony.Steps {
		switch pbStep(s.Step) {
		case pb.CeremonyStep_CEREMONY_STEP_COMMITMENT:
			cs.CommitmentsFrom = append(cs.CommitmentsFrom, s.Client)
			if withData {
				cs.Commitments = append(cs.Commitments, slices.Clone(s.Data))
			}
		case pb.CeremonyStep_CEREMONY_STEP_REVEAL:
			cs.RevealsFrom = append(cs.RevealsFrom, s.Client)
			if withData {
				cs.Reveals = append(cs.Reveals, slices.Clone(s.Data))
			}
		case pb.CeremonyStep_CEREMONY_STEP_PUBLIC_KEY_SHARE:
			cs.PublicKeySharesFrom = append(cs.PublicKeySharesFrom, s.Client)
		}
	}
	if withData {
		cs.CollectivePublicKey = slices.Clone(fd.Ceremony.PublicKey)
	}
	return cs
}

// Envelopes returns the envelopes addressed to client.
func (f *FSM) Envelopes(fed, client string) ([]*pb.Envelope, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, err := f.fed(fed)
	if err != nil {
		return nil, err
	}
	var out []*pb.Envelope
	for _, e := range fd.Envelopes {
		if e.To == client {
			out = append(out, &pb.Envelope{Federation: fed, FromClient: e.From, ToClient: e.To, Sealed: slices.Clone(e.Sealed)})
		}
	}
	return out, nil
}

// Aggregate returns the blob digest of a secure round's encrypted sum, once the round is
// sealed, aggregated and holds at least min_clients contributions (guarantee 2: hospitals
// decrypt only such aggregates, and the coordinator hands out no other).
func (f *FSM) Aggregate(fed string, r uint64) (blobstore.Digest, *pb.RoundInfo, error) {
	var none blobstore.Digest
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, err := f.fed(fed)
	if err != nil {
		return none, nil, err
	}
	if !fd.spec.Secure {
		return none, nil, fmt.Errorf("%w: federation %q is not in secure mode", ErrRoundState, fed)
	}
	if r == 0 || r > uint64(len(fd.Rounds)) {
		return none, nil, fmt.Errorf("%w: federation %q has no round %d", ErrNotFound, fed, r)
	}
	rd := fd.Rounds[r-1]
	if rd.State != pb.RoundState_ROUND_STATE_SEALED && rd.State != pb.RoundState_ROUND_STATE_DECRYPTING {
		return none, nil, fmt.Errorf("%w: round %d is %s; its aggregate is available while sealed or decrypting", ErrRoundState, r, stateName(rd.State))
	}
	if rd.AggDigest == nil {
		return none, nil, fmt.Errorf("%w: round %d is sealed; its aggregate is being computed", ErrRoundState, r)
	}
	if len(rd.Contribs) < int(fd.spec.MinClients) {
		return none, nil, fmt.Errorf("%w: round %d has %d contributions, min_clients is %d", ErrRoundState, r, len(rd.Contribs), fd.spec.MinClients)
	}
	d, err := blobstore.ParseDigest(rd.AggDigest)
	if err != nil {
		return none, nil, err
	}
	return d, rd.info(fed, true), nil
}

// ---- what the leader needs to drive rounds ----

// action is one step the leader's driver should propose.
type action struct {
	fed   string
	round uint64
	kind  actionKind
	// for open
	version  uint64
	selected []string
	timeout  int64 // round_timeout_ms; for the ceremony deadline ceremony_timeout_ms
	// for seal/abort/decrypt decisions
	deadline      int64
	contributions int
	minClients    int
	allIn         bool
	active        []uint32
	// for reselect: when the current active set was chosen (for the ceremony deadline:
	// when the current ceremony started), which of its parties answered, the round's
	// contributors in roster order and the parties excluded so far
	started      int64
	answered     []uint32
	contributors []uint32
	excluded     []uint32
	threshold    int
	// for finish: why
	reason string
}

type actionKind int

const (
	actOpen actionKind = iota + 1
	actSealOrAbort
	actStartDecryption
	actPublish
	actReselect
	actAggregate
	actCeremonyDeadline
	actFinish
)

// pendingActions lists, for every federation, what should happen next.
func (f *FSM) pendingActions() []action {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []action
	for _, name := range slices.Sorted(maps.Keys(f.st.Federations)) {
		fd := f.st.Federations[name]
		cur := fd.current()
		switch {
		case cur == nil || terminal(cur.State):
			if fd.done() || fd.Stopped {
				continue
			}
			if fd.spec.Secure && fd.Ceremony.PublicKey == nil {
				started := fd.Created
				if fd.CeremonyStarted != 0 {
					started = fd.CeremonyStarted
				}
				out = append(out, action{fed: name, kind: actCeremonyDeadline, started: started, timeout: int64(fd.spec.CeremonyTimeoutMs)})
				continue
			}
			if reason := fd.budgetSpent(); reason != "" {
				out = append(out, action{fed: name, kind: actFinish, reason: reason})
				continue
			}
			sel := fd.selection()
			if len(sel) < int(fd.spec.MinClients) {
				continue
			}
			var next uint64 = 1
			if cur != nil {
				next = cur.Number + 1
			}
			out = append(out, action{fed: name, round: next, kind: actOpen, version: fd.latest().Version, selected: sel, timeout: int64(fd.spec.RoundTimeoutMs)})
		case cur.State == pb.RoundState_ROUND_STATE_OPEN:
			out = append(out, action{fed: name, round: cur.Number, kind: actSealOrAbort, deadline: cur.Deadline,
				contributions: len(cur.Contribs), minClients: int(fd.spec.MinClients), allIn: len(cur.Contribs) == len(cur.Selected)})
		case cur.State == pb.RoundState_ROUND_STATE_SEALED && fd.spec.Secure && cur.AggDigest == nil:
			out = append(out, action{fed: name, round: cur.Number, kind: actAggregate})
		case cur.State == pb.RoundState_ROUND_STATE_SEALED && fd.spec.Secure:
			// The active set: the first t contributors, in roster order; they were online
			// moments ago.
			var active []uint32
			for _, c := range fd.spec.Clients {
				if cur.Contribs[c] != nil && len(active) < int(fd.spec.Threshold) {
					active = append(active, fd.partyOf(c))
				}
			}
			out = append(out, action{fed: name, round: cur.Number, kind: actStartDecryption, active: active})
		case cur.State == pb.RoundState_ROUND_STATE_SEALED,
			cur.State == pb.RoundState_ROUND_STATE_DECRYPTING && len(cur.Shares) >= int(fd.spec.Threshold):
			out = append(out, action{fed: name, round: cur.Number, kind: actPublish})
		case cur.State == pb.RoundState_ROUND_STATE_DECRYPTING:
			a := action{fed: name, round: cur.Number, kind: actReselect, started: cur.DecryptStarted,
				active: slices.Clone(cur.Active), excluded: slices.Clone(cur.Excluded), threshold: int(fd.spec.Threshold)}
			for _, p := range cur.Active {
				if cur.Shares[fd.clientOfParty(p)] != nil {
					a.answered = append(a.answered, p)
				}
			}
			for _, c := range fd.spec.Clients {
				if cur.Contribs[c] != nil {
					a.contributors = append(a.contributors, fd.partyOf(c))
				}
			}
			out = append(out, a)
		}
	}
	return out
}

// publication is what the leader needs to compute a round's model.
type publication struct {
	numParams int
	global    []float32
	version   uint64
	strategy  aggregation.Strategy
	spec      *pb.FederationSpec
	optState  []byte
	// plaintext: the contributions, by client ID
	total    uint64
	contribs []contribRef
	// secure
	params *he.Params
	group  he.Group
	enc    blobstore.Digest // the aggregate's blob
	active []he.PartyID
	shares []blobstore.Digest
}

func (f *FSM) publicationInput(fed string, r uint64) (*publication, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, rd, err := f.roundFor(fed, r)
	if err != nil {
		return nil, err
	}
	p := &publication{
		numParams: fd.NumParams,
		global:    slices.Clone(fd.latest().Weights),
		version:   fd.latest().Version + 1,
		strategy:  fd.strategy,
		spec:      cloneSpec(fd.spec),
		optState:  slices.Clone(fd.OptState),
		total:     rd.TotalSamples,
	}
	if !fd.spec.Secure {
		p.contribs = contribRefs(rd)
		return p, nil
	}
	p.params, p.group = fd.params, fd.group()
	if rd.AggDigest == nil {
		return nil, fmt.Errorf("%w: round %d has no aggregate", ErrRoundState, r)
	}
	p.enc, _ = blobstore.ParseDigest(rd.AggDigest)
	for _, a := range rd.Active {
		p.active = append(p.active, he.PartyID(a))
	}
	for _, c := range slices.Sorted(maps.Keys(rd.Shares)) {
		d, _ := blobstore.ParseDigest(rd.Shares[c].Digest)
		p.shares = append(p.shares, d)
	}
	return p, nil
}

func unmarshalSpec(b []byte, s *pb.FederationSpec) error {
	if err := proto.Unmarshal(b, s); err != nil {
		return fmt.Errorf("%w: federation spec: %v", ErrCommand, err)
	}
	return nil
}

// servedModels is what a node serves of one federation: its latest model version and the
// versions pinned for serving.
type servedModels struct {
	head   uint64
	pinned []uint64
}

// modelHeads returns the latest model version and the pinned versions of every federation.
func (f *FSM) modelHeads() map[string]servedModels {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]servedModels, len(f.st.Federations))
	for name, fd := range f.st.Federations {
		out[name] = servedModels{head: fd.latest().Version, pinned: slices.Clone(fd.Pinned)}
	}
	return out
}

// contribRef names one contribution's blob.
type contribRef struct {
	client  string
	samples uint64
	digest  blobstore.Digest
}

// contribRefs lists a round's contributions by client ID.
func contribRefs(rd *round) []contribRef {
	var out []contribRef
	for _, c := range slices.Sorted(maps.Keys(rd.Contribs)) {
		ct := rd.Contribs[c]
		d, _ := blobstore.ParseDigest(ct.Digest) // checked when committed
		out = append(out, contribRef{client: c, samples: ct.Samples, digest: d})
	}
	return out
}

// aggregationInput is what the leader needs to compute a sealed secure round's encrypted
// sum.
type aggregationInput struct {
	params    he.Params
	numParams int
	contribs  []contribRef
}

func (f *FSM) aggregationInput(fed string, r uint64) (*aggregationInput, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, rd, err := f.roundFor(fed, r)
	if err != nil {
		return nil, err
	}
	if !fd.spec.Secure || rd.State != pb.RoundState_ROUND_STATE_SEALED {
		return nil, fmt.Errorf("%w: round %d is %s", ErrRoundState, r, stateName(rd.State))
	}
	return &aggregationInput{params: *fd.params, numParams: fd.NumParams, contribs: contribRefs(rd)}, nil
}

// endedRounds counts the published and aborted rounds of every federation.
func (f *FSM) endedRounds() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, fd := range f.st.Federations {
		if cur := fd.current(); cur != nil {
			n += len(fd.Rounds)
			if !terminal(cur.State) {
				n--
			}
		}
	}
	return n
}

// blobRefs returns the digests of the blobs (contributions, aggregates, decryption shares)
// of rounds still in progress (live) and of published or aborted rounds (done, with the
// log index of the latest such round's end), over every federation.
func (f *FSM) blobRefs() (live map[blobstore.Digest]bool, done map[blobstore.Digest]uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	live, done = map[blobstore.Digest]bool{}, map[blobstore.Digest]uint64{}
	for _, fd := range f.st.Federations {
		for _, rd := range fd.Rounds {
			note := func(b []byte) {
				d, err := blobstore.ParseDigest(b)
				switch {
				case err != nil:
				case terminal(rd.State):
					done[d] = max(done[d], rd.Changed)
				default:
					live[d] = true
				}
			}
			for _, c := range rd.Contribs {
				note(c.Digest)
			}
			for _, sh := range rd.Shares {
				note(sh.Digest)
			}
			note(rd.AggDigest)
		}
	}
	return live, done
}

// ceremonySteps returns, per client, the key-ceremony steps it has sent.
func (fd *federation) ceremonySteps() map[string]map[pb.CeremonyStep]bool {
	done := map[string]map[pb.CeremonyStep]bool{}
	for _, st := range fd.Ceremony.Steps {
		if done[st.Client] == nil {
			done[st.Client] = map[pb.CeremonyStep]bool{}
		}
		done[st.Client][pbStep(st.Step)] = true
	}
	return done
}

// ceremonyOrder is the order of the key-ceremony steps, with what a missing one is called.
var ceremonyOrder = []struct {
	step    pb.CeremonyStep
	missing string
}{
	{pb.CeremonyStep_CEREMONY_STEP_COMMITMENT, "no seed commitment"},
	{pb.CeremonyStep_CEREMONY_STEP_REVEAL, "no seed reveal"},
	{pb.CeremonyStep_CEREMONY_STEP_PUBLIC_KEY_SHARE, "no public key share"},
}

// ceremonyStall is what the leader needs to act on a key ceremony past its deadline:
// what it waits for, the members that took the step it waits at (present), how many a
// round needs and how many members the federation has.
type ceremonyStall struct {
	waitingFor    string
	present       []string
	need, members int
}

// stalledCeremony describes federation fed's incomplete key ceremony; ok is false once the
// ceremony is complete or the federation has stopped. The leader asks only when the
// ceremony's deadline has passed, not on every tick of its wait.
func (f *FSM) stalledCeremony(fed string) (st ceremonyStall, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd := f.st.Federations[fed]
	if fd == nil || fd.Stopped || !fd.spec.Secure || fd.Ceremony.PublicKey != nil {
		return st, false
	}
	return ceremonyStall{waitingFor: fd.ceremonyWaitingFor(), present: fd.ceremonyPresent(),
		need: fd.ceremonyQuorum(), members: len(fd.members())}, true
}

// ceremonyWaitingFor names the members the key ceremony waits for and the step each has
// not taken, for example "h3 (not enrolled), h5 (no public key share)".
func (fd *federation) ceremonyWaitingFor() string {
	done := fd.ceremonySteps()
	var out []string
	for _, c := range fd.members() {
		missing := ""
		if fd.Enrolled[c] == nil {
			missing = "not enrolled"
		} else {
			for _, o := range ceremonyOrder {
				if !done[c][o.step] {
					missing = o.missing
					break
				}
			}
		}
		if missing != "" {
			out = append(out, fmt.Sprintf("%s (%s)", c, missing))
		}
	}
	if len(out) == 0 {
		return "nobody (the public key is being computed)"
	}
	return strings.Join(out, ", ")
}

// reselectInput is what the leader needs to rerandomise a decrypting round's aggregate
// for a new active set.
type reselectInput struct {
	params       he.Params
	pk           *he.PublicKey
	agg          blobstore.Digest
	reselections int
}

func (f *FSM) reselectInput(fed string, r uint64) (*reselectInput, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fd, rd, err := f.roundFor(fed, r)
	if err != nil {
		return nil, err
	}
	if !fd.spec.Secure || fd.pk == nil || rd.State != pb.RoundState_ROUND_STATE_DECRYPTING {
		return nil, fmt.Errorf("%w: round %d is %s", ErrRoundState, r, stateName(rd.State))
	}
	d, err := blobstore.ParseDigest(rd.AggDigest)
	if err != nil {
		return nil, fmt.Errorf("%w: round %d has no aggregate", ErrRoundState, r)
	}
	return &reselectInput{params: *fd.params, pk: fd.pk, agg: d, reselections: rd.Reselections}, nil
}

// ceremonyPresent lists the members that took the step the key ceremony waits at (the
// first that not every member has sent), in roster order: they were up when it mattered;
// the others are what it waits for.
func (fd *federation) ceremonyPresent() []string {
	done := fd.ceremonySteps()
	for _, o := range ceremonyOrder {
		var out []string
		for _, c := range fd.members() {
			if done[c][o.step] {
				out = append(out, c)
			}
		}
		if len(out) < len(fd.members()) {
			return out
		}
	}
	return fd.members()
}
