package coordinator

import (
	"encoding/binary"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/pb"
)

// Limits enforced by the FSM and the gRPC services. They are constants, not configuration,
// because every replica must apply the same log the same way.
const (
	// MaxChunkBytes bounds the data of one upload or download message and of one Raft chunk
	// entry.
	MaxChunkBytes = 1 << 20
	// MaxBlobBytes bounds one staged payload (an encrypted update, a share, a model).
	MaxBlobBytes = 2 << 30
	// MaxStagedBytes bounds the payloads staged and not yet committed, over all federations.
	MaxStagedBytes = 8 << 30
	// MaxClients bounds a federation's roster.
	MaxClients = 1024
	// MaxEnvelopeBytes bounds one relayed threshold-share envelope.
	MaxEnvelopeBytes = 4 << 20
	// MaxCeremonyBytes bounds one key-ceremony message.
	MaxCeremonyBytes = 4 << 20
	// maxSamples bounds an update's sample count.
	maxSamples = 1 << 40
)

// namePattern is what federation, client and node IDs may look like: they appear in blob
// keys, metrics and certificate URIs.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkName(what, s string) error {
	if !namePattern.MatchString(s) {
		return fmt.Errorf("%w: %s %q must be 1-64 letters, digits or ._- and start with a letter or digit", ErrInvalid, what, s)
	}
	return nil
}

// state is everything the FSM replicates. Snapshots encode it with encoding/gob; derived
// values (lower-case fields) are rebuilt by restore.
type state struct {
	Federations map[string]*federation
	Blobs       map[string]*blob
	NodeAddrs   map[string]string // Raft server ID -> gRPC address
	Applied     uint64
}

type federation struct {
	SpecBytes []byte // pb.FederationSpec, protobuf-encoded
	NumParams int
	Created   int64
	Enrolled  map[string]*enrolment
	Ceremony  ceremonyState
	Rounds    []*round
	Models    []*modelVersion
	OptState  []byte // aggregation.ServerOptimizer state after the latest model
	Envelopes []*envelope
	Pinned    []uint64 // model versions pinned for serving, ascending
	// Missed counts, per hospital, the rounds in a row it was selected for and did not
	// contribute to; one is enough to leave it out of selection until it enrols again.
	Missed map[string]int
	// Aborts counts the rounds aborted in a row; at maxAbortedRounds the federation stops.
	Aborts     int
	Stopped    bool
	StopReason string
	// Finished ends the federation before its last round (FinishReason says why: the
	// privacy budget allows no more); it is then done.
	Finished     bool
	FinishReason string
	// Members are the hospitals in the key ceremony when it was restarted without some
	// of the roster (nil: the whole roster); CeremonyGen counts the restarts,
	// CeremonyStarted is when the current one began (0: at creation).
	Members         []string
	CeremonyGen     int
	CeremonyStarted int64
	RestartReason   string

	spec     *pb.FederationSpec
	strategy aggregation.Strategy
	params   *he.Params // secure mode
	ceremony *he.Ceremony
	pk       *he.PublicKey
}

type enrolment struct {
	ClientID     string
	Party        uint32
	AgeRecipient string
	At           int64
}

type ceremonyState struct {
	// Messages in the order they were applied, replayed into an he.Ceremony on restore.
	Steps     []ceremonyStep
	PublicKey []byte
}

type ceremonyStep struct {
	Client string
	Step   int32
	Data   []byte
}

type envelope struct {
	From, To string
	Sealed   []byte
}

type round struct {
	Number       uint64
	State        pb.RoundState
	ModelVersion uint64
	Selected     []string
	Opened       int64
	Deadline     int64
	Contribs     map[string]*contribution
	Order        []string // clients in commit order
	TotalSamples uint64
	// The contributions' bytes are in the nodes' blob stores, under their digests. Secure
	// mode: the encrypted sum, recorded once the round is sealed (and replaced, rerandomised,
	// with each new active set), by the SHA-256 of its bytes (its blob) and its he digest
	// (what decryption shares name); the shares' bytes are blobs too.
	AggDigest []byte
	AggHE     []byte
	Active    []uint32
	Shares    map[string]*share
	// DecryptStarted is when the current active set was chosen (proposer's clock); the
	// leader picks another set DecryptionTimeout later if shares are missing. Excluded
	// lists the parties of earlier active sets that did not answer, and Reselections
	// counts how often the aggregate was rerandomised for a new set.
	DecryptStarted int64
	Excluded       []uint32
	Reselections   int

	Published uint64
	Reason    string
	Changed   uint64 // log index of the last change, for watchers
}

type contribution struct {
	Client  string
	Samples uint64
	Digest  []byte
	Index   uint64
	At      int64
}

type share struct {
	Digest []byte // SHA-256 of the share's bytes, its blob
}

type modelVersion struct {
	Version      uint64
	Round        uint64
	Contributors []string
	Digest       []byte
	Weights      []float32
	At           int64
}

type blob struct {
	Digest []byte
	Total  uint64
	Data   []byte
	Index  uint64 // log index of the first chunk
}

func newState() *state {
	return &state{
		Federations: map[string]*federation{},
		Blobs:       map[string]*blob{},
		NodeAddrs:   map[string]string{},
	}
}

func (f *federation) current() *round {
	if len(f.Rounds) == 0 {
		return nil
	}
	return f.Rounds[len(f.Rounds)-1]
}

func (f *federation) latest() *modelVersion { return f.Models[len(f.Models)-1] }

func (f *federation) rosterIndex(client string) int {
	return slices.Index(f.spec.Clients, client)
}

func (f *federation) roundsWanted() uint64 {
	if f.spec.Rounds == 0 {
		return 1
	}
	return uint64(f.spec.Rounds)
}

// publishedRounds counts rounds that produced a model.
func (f *federation) publishedRounds() uint64 { return uint64(len(f.Models) - 1) }

func (f *federation) done() bool { return f.Finished || f.publishedRounds() >= f.roundsWanted() }

// suspended reports whether an enrolled hospital is left out of round selection.
func (f *federation) suspended(client string) bool {
	return f.Enrolled[client] != nil && f.Missed[client] >= suspendAfter
}

// suspendAfter is how many selected rounds in a row a hospital may miss before it is left
// out of selection (until it enrols again).
const suspendAfter = 1

// maxAbortedRounds is how many rounds in a row may abort before the federation stops.
func (f *federation) maxAbortedRounds() int {
	if f.spec.MaxAbortedRounds == 0 {
		return 3
	}
	return int(f.spec.MaxAbortedRounds)
}

// selection returns the hospitals a new round selects: every enrolled one on the roster,
// in roster order, except the suspended; if that leaves fewer than min_clients, every
// enrolled one, so that a round still gives the absent a chance (and aborts, counting
// towards maxAbortedRounds, if they stay away).
func (f *federation) selection() []string {
	var all, sel []string
	for _, c := range f.members() {
		if f.Enrolled[c] != nil {
			all = append(all, c)
			if !f.suspended(c) {
				sel = append(sel, c)
			}
		}
	}
	if len(sel) < int(f.spec.MinClients) {
		return all
	}
	return sel
}

// noteAttendance updates Missed once round r's contributions are final.
func (f *federation) noteAttendance(r *round) {
	for _, c := range r.Selected {
		if r.Contribs[c] != nil {
			delete(f.Missed, c)
			continue
		}
		if f.Missed == nil {
			f.Missed = map[string]int{}
		}
		f.Missed[c]++
	}
}

func terminal(s pb.RoundState) bool {
	return s == pb.RoundState_ROUND_STATE_PUBLISHED || s == pb.RoundState_ROUND_STATE_ABORTED
}

// partyOf returns the party ID of an enrolled client, or 0.
func (f *federation) partyOf(client string) uint32 {
	if e := f.Enrolled[client]; e != nil {
		return e.Party
	}
	return 0
}

func (f *federation) clientOfParty(p uint32) string {
	if p == 0 || int(p) > len(f.spec.Clients) {
		return ""
	}
	return f.spec.Clients[p-1]
}

// group is the key ceremony's: the members, each with its roster position as party ID.
func (f *federation) group() he.Group {
	g := he.Group{Threshold: int(f.spec.Threshold)}
	for _, c := range f.members() {
		g.Parties = append(g.Parties, he.PartyID(f.rosterIndex(c)+1))
	}
	return g
}

// members returns the hospitals that may take part: the roster, or the members of a
// restarted key ceremony.
func (f *federation) members() []string {
	if f.Members != nil {
		return f.Members
	}
	return f.spec.Clients
}

// ceremonyQuorum is how many hospitals a restarted key ceremony needs: enough for a
// round (min_clients) and for decryption (the threshold).
func (f *federation) ceremonyQuorum() int {
	return max(int(f.spec.MinClients), int(f.spec.Threshold))
}

func (f *federation) isMember(client string) bool { return slices.Contains(f.members(), client) }

// ---- conversions to the wire types ----

func (r *round) info(fed string, secure bool) *pb.RoundInfo {
	ri := &pb.RoundInfo{
		Federation:       fed,
		Round:            r.Number,
		State:            r.State,
		ModelVersion:     r.ModelVersion,
		Selected:         slices.Clone(r.Selected),
		OpenedUnixNano:   r.Opened,
		DeadlineUnixNano: r.Deadline,
		Secure:           secure,
		TotalSamples:     r.TotalSamples,
		ActiveParties:    slices.Clone(r.Active),
		PublishedVersion: r.Published,
		Reason:           r.Reason,
	}
	for _, c := range r.Order {
		ri.Contributions = append(ri.Contributions, r.Contribs[c].pb())
	}
	for c := range r.Shares {
		ri.SharesFrom = append(ri.SharesFrom, c)
	}
	sort.Strings(ri.SharesFrom)
	return ri
}

func (c *contribution) pb() *pb.Contribution {
	return &pb.Contribution{
		ClientId:          c.Client,
		Samples:           c.Samples,
		Digest:            slices.Clone(c.Digest),
		Index:             c.Index,
		CommittedUnixNano: c.At,
	}
}

func (m *modelVersion) info() *pb.ModelVersionInfo {
	return &pb.ModelVersionInfo{
		Version:         m.Version,
		Round:           m.Round,
		Contributors:    slices.Clone(m.Contributors),
		Digest:          slices.Clone(m.Digest),
		NumParams:       uint64(len(m.Weights)),
		CreatedUnixNano: m.At,
	}
}

func (f *federation) info() *pb.Federation {
	out := &pb.Federation{
		Spec:           cloneSpec(f.spec),
		NumParams:      uint64(f.NumParams),
		Done:           f.done(),
		Ceremony:       f.ceremonyInfo(false),
		PinnedVersions: slices.Clone(f.Pinned),
		Stopped:        f.Stopped,
		StopReason:     f.StopReason,
		DpEpsilon:      f.epsilon(),
		DoneReason:     f.FinishReason,
	}
	for _, c := range f.spec.Clients {
		if e := f.Enrolled[c]; e != nil {
			out.Enrolled = append(out.Enrolled, e.pb(f.spec.Name))
		}
		if f.suspended(c) {
			out.Suspended = append(out.Suspended, c)
		}
	}
	for _, r := range f.Rounds {
		out.Rounds = append(out.Rounds, r.info(f.spec.Name, f.spec.Secure))
	}
	for _, m := range f.Models {
		out.Models = append(out.Models, m.info())
	}
	return out
}

func (e *enrolment) pb(fed string) *pb.Enrolment {
	return &pb.Enrolment{
		Federation:       fed,
		ClientId:         e.ClientID,
		PartyId:          e.Party,
		AgeRecipient:     e.AgeRecipient,
		EnrolledUnixNano: e.At,
	}
}

// ---- float vectors on the wire ----

// EncodeFloat32s returns v as little-endian float32s, the wire form of a plaintext update
// and of model weights.
func EncodeFloat32s(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// DecodeFloat32s decodes little-endian float32s and refuses NaN and infinities.
func DecodeFloat32s(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, notWholeFloat32s(len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		x, err := finiteFloat32(b[4*i:], i)
		if err != nil {
			return nil, err
		}
		v[i] = x
	}
	return v, nil
}

// finiteFloat32 reads value i of an update from the first 4 bytes of b and refuses NaN
// and infinities.
func finiteFloat32(b []byte, i int) (float32, error) {
	x := math.Float32frombits(binary.LittleEndian.Uint32(b))
	if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
		return 0, fmt.Errorf("%w: value %d is %v", ErrInvalid, i, x)
	}
	return x, nil
}

// notWholeFloat32s is the error for n bytes of float32s when n is not a multiple of 4.
func notWholeFloat32s(n int) error {
	return fmt.Errorf("%w: %d bytes is not a whole number of float32s", ErrLength, n)
}
