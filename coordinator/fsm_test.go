package coordinator

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/pb"
)

// fsmHarness applies commands to an FSM the way raft does, with increasing indexes.
type fsmHarness struct {
	t   testing.TB
	f   *FSM
	idx uint64
}

func (h *fsmHarness) apply(c *pb.Command) error {
	b, err := EncodeCommand(c)
	if err != nil {
		h.t.Fatal(err)
	}
	h.idx++
	r := h.f.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: b})
	if err, ok := r.(error); ok {
		return err
	}
	return nil
}

func (h *fsmHarness) must(c *pb.Command) {
	h.t.Helper()
	if err := h.apply(c); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fsmHarness) stage(key string, data []byte) []byte {
	d := digestOf(data)
	for off := 0; off < len(data); off += 50 {
		h.must(&pb.Command{Cmd: &pb.Command_Chunk{Chunk: &pb.ChunkCmd{Blob: key, Digest: d, TotalLength: uint64(len(data)), Offset: uint64(off), Data: data[off:min(off+50, len(data))]}}})
	}
	return d
}

// populate drives an FSM through a federation, enrolment, an open round with two updates
// and a partly staged third, the state a snapshot must capture.
func populate(t testing.TB, h *fsmHarness, strategy string) {
	spec := &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"a", "b", "c"}, MinClients: 2, Rounds: 3, Strategy: strategy}
	w0 := EncodeFloat32s(make([]float32, testNumParams))
	d := h.stage(createBlobKey("f", digestOf(w0)), w0)
	h.must(&pb.Command{TimeUnixNano: 1, Cmd: &pb.Command_CreateFederation{CreateFederation: &pb.CreateFederationCmd{Spec: spec, Blob: createBlobKey("f", d), Digest: d}}})
	for _, c := range spec.Clients {
		h.must(&pb.Command{Cmd: &pb.Command_Enrol{Enrol: &pb.EnrolCmd{Federation: "f", ClientId: c}}})
	}
	h.must(&pb.Command{Cmd: &pb.Command_OpenRound{OpenRound: &pb.OpenRoundCmd{Federation: "f", Round: 1, Selected: spec.Clients, DeadlineUnixNano: 99}}})
	for k, c := range []string{"a", "b"} {
		data := EncodeFloat32s(delta(k))
		h.must(&pb.Command{Cmd: &pb.Command_CommitUpdate{CommitUpdate: &pb.CommitUpdateCmd{Federation: "f", Round: 1, ClientId: c, Samples: uint64(k + 1), Digest: digestOf(data)}}})
	}
	data := EncodeFloat32s(delta(2))
	h.must(&pb.Command{Cmd: &pb.Command_Chunk{Chunk: &pb.ChunkCmd{Blob: partialKey, Digest: digestOf(data), TotalLength: uint64(len(data)), Data: data[:50]}}})
}

// partialKey is a blob populate leaves half staged.
const partialKey = "m/f/1/partial"

// deltaBlobs stands in for the nodes' blob stores: the update bytes populate and
// TestSnapshotRestore commit, by digest.
func deltaBlobs(d blobstore.Digest) ([]byte, error) {
	for k := range 3 {
		if b := EncodeFloat32s(delta(k)); blobstore.Sum(b) == d {
			return b, nil
		}
	}
	return nil, blobstore.ErrNotFound
}

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s.(*fsmSnapshot).data
}

func TestSnapshotRestore(t *testing.T) {
	for _, strategy := range []string{"fedavg", "median"} {
		t.Run(strategy, func(t *testing.T) {
			h := &fsmHarness{t: t, f: NewFSM(nil)}
			populate(t, h, strategy)
			snap := snapshotBytes(t, h.f)

			g := NewFSM(nil)
			if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
				t.Fatal(err)
			}
			want, _ := h.f.Federation("f")
			got, err := g.Federation("f")
			if err != nil || !proto.Equal(got, want) {
				t.Fatalf("restored federation:\n got %v (%v)\nwant %v", got, err, want)
			}
			// Both continue identically: finish the staged update, seal, and compare.
			h2 := &fsmHarness{t: t, f: g, idx: h.idx}
			for _, hh := range []*fsmHarness{h, h2} {
				data := EncodeFloat32s(delta(2))
				hh.must(&pb.Command{Cmd: &pb.Command_Chunk{Chunk: &pb.ChunkCmd{Blob: partialKey, Digest: digestOf(data), TotalLength: uint64(len(data)), Offset: 50, Data: data[50:]}}})
				hh.must(&pb.Command{Cmd: &pb.Command_CommitUpdate{CommitUpdate: &pb.CommitUpdateCmd{Federation: "f", Round: 1, ClientId: "c", Samples: 3, Digest: digestOf(data)}}})
				hh.must(&pb.Command{Cmd: &pb.Command_SealRound{SealRound: &pb.SealRoundCmd{Federation: "f", Round: 1}}})
			}
			p1, err := h.f.publicationInput("f", 1)
			if err != nil {
				t.Fatal(err)
			}
			p2, _ := g.publicationInput("f", 1)
			m1, err := roundMean(p1, deltaBlobs)
			if err != nil {
				t.Fatal(err)
			}
			m2, _ := roundMean(p2, deltaBlobs)
			for i := range m1 {
				if m1[i] != m2[i] {
					t.Fatalf("mean[%d]: %v before snapshot, %v after", i, m1[i], m2[i])
				}
			}
			// Hand-computed check of the weighted mean for fedavg: weights 1, 2, 3.
			if strategy == "fedavg" {
				for i := range m1 {
					want := (1*float64(delta(0)[i]) + 2*float64(delta(1)[i]) + 3*float64(delta(2)[i])) / 6
					if d := float64(m1[i]) - want; d > 1e-6 || d < -1e-6 {
						t.Fatalf("mean[%d] = %v, want %v", i, m1[i], want)
					}
				}
			}
		})
	}
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	populate(t, h, "fedavg")
	snap := snapshotBytes(t, h.f)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": snap[:len(snap)/2],
		"flipped":   append(append([]byte{}, snap[:len(snap)-1]...), snap[len(snap)-1]^1),
		"magic":     append([]byte("XXXX"), snap[4:]...),
	} {
		g := NewFSM(nil)
		if err := g.Restore(io.NopCloser(bytes.NewReader(b))); !errors.Is(err, ErrCommand) {
			t.Errorf("%s: got %v, want ErrCommand", name, err)
		}
	}
}

func TestPublishExactlyOnce(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	populate(t, h, "fedavg")
	if err := h.apply(&pb.Command{Cmd: &pb.Command_SealRound{SealRound: &pb.SealRoundCmd{Federation: "f", Round: 1}}}); err != nil {
		t.Fatal(err)
	}
	publish := func() error { return publishRound1(h) }
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	if err := publish(); !errors.Is(err, ErrRoundState) {
		t.Fatalf("second publication: got %v, want ErrRoundState", err)
	}
	f, _ := h.f.Federation("f")
	if len(f.Models) != 2 || f.Rounds[0].State != pb.RoundState_ROUND_STATE_PUBLISHED {
		t.Fatalf("got %d models, round %v", len(f.Models), f.Rounds[0].State)
	}
}

// TestCreateFederationAgain applies a federation's creation twice, as when a leader
// committed it but its answer was lost and the operator's client tried again on the next
// leader: the same spec succeeds and changes nothing (its staged weights are dropped),
// another spec under the same name is ErrExists.
func TestCreateFederationAgain(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	populate(t, h, "fedavg")
	before, _ := h.f.Federation("f")
	staged := slices.Sorted(maps.Keys(h.f.st.Blobs))
	spec := &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"a", "b", "c"}, MinClients: 2, Rounds: 3, Strategy: "fedavg"}
	create := func(s *pb.FederationSpec) error {
		w := EncodeFloat32s(slices.Repeat([]float32{1}, testNumParams)) // other initial weights (another seed)
		d := h.stage(createBlobKey("f", digestOf(w)), w)
		return h.apply(&pb.Command{TimeUnixNano: 2, Cmd: &pb.Command_CreateFederation{CreateFederation: &pb.CreateFederationCmd{Spec: s, Blob: createBlobKey("f", d), Digest: d}}})
	}
	if err := create(spec); err != nil {
		t.Fatalf("the same spec again: %v", err)
	}
	if after, _ := h.f.Federation("f"); !proto.Equal(after, before) {
		t.Fatalf("creating a federation again with its own spec changed it: %v, was %v", after, before)
	}
	if after := slices.Sorted(maps.Keys(h.f.st.Blobs)); !slices.Equal(after, staged) {
		t.Fatalf("staged blobs %q after creating the federation again, %q before", after, staged)
	}
	other := proto.Clone(spec).(*pb.FederationSpec)
	other.MinClients = 1
	if err := create(other); !errors.Is(err, ErrExists) {
		t.Fatalf("another spec under the same name: got %v, want ErrExists", err)
	}
	if after := slices.Sorted(maps.Keys(h.f.st.Blobs)); !slices.Equal(after, staged) {
		t.Fatalf("staged blobs %q after a refused create, %q before", after, staged)
	}
}

// TestCreateFederationLeftovers: initial weights staged by an attempt to create a
// federation that never reached its create command (its leader was lost between the
// chunks and the command) stay staged until the federation is created, and no longer;
// those of a federation that is never created go abandonedCreate entries later.
func TestCreateFederationLeftovers(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	w := EncodeFloat32s(slices.Repeat([]float32{1}, testNumParams))
	h.must(&pb.Command{Cmd: &pb.Command_Chunk{Chunk: &pb.ChunkCmd{Blob: createBlobKey("g", digestOf(w)), Digest: digestOf(w), TotalLength: uint64(len(w)), Data: w[:50]}}})
	h.stage(createBlobKey("gg", digestOf(w)), w) // another federation's, whose name starts alike
	w0 := EncodeFloat32s(make([]float32, testNumParams))
	d := h.stage(createBlobKey("g", digestOf(w0)), w0)
	spec := &pb.FederationSpec{Name: "g", ModelSpecJson: testModelSpec(t), Clients: []string{"a"}, MinClients: 1}
	h.must(&pb.Command{Cmd: &pb.Command_CreateFederation{CreateFederation: &pb.CreateFederationCmd{Spec: spec, Blob: createBlobKey("g", d), Digest: d}}})
	if got, want := slices.Sorted(maps.Keys(h.f.st.Blobs)), []string{createBlobKey("gg", digestOf(w))}; !slices.Equal(got, want) {
		t.Fatalf("staged after creating g: %q, want %q", got, want)
	}
	// gg is never created: its weights go once a blob starts abandonedCreate entries later.
	h.idx = h.f.st.Blobs[createBlobKey("gg", digestOf(w))].Index + abandonedCreate - 1 // the next entry is abandonedCreate later
	h.must(&pb.Command{Cmd: &pb.Command_Chunk{Chunk: &pb.ChunkCmd{Blob: createBlobKey("h", digestOf(w)), Digest: digestOf(w), TotalLength: uint64(len(w)), Data: w[:50]}}})
	if got := len(h.f.st.Blobs); got != 2 {
		t.Fatalf("%d staged blobs, want gg's and h's: gg's are not old enough to go", got)
	}
	h.idx += 10
	h.must(&pb.Command{Cmd: &pb.Command_Chunk{Chunk: &pb.ChunkCmd{Blob: createBlobKey("i", digestOf(w)), Digest: digestOf(w), TotalLength: uint64(len(w)), Data: w[:50]}}})
	if got, want := slices.Sorted(maps.Keys(h.f.st.Blobs)), []string{createBlobKey("h", digestOf(w)), createBlobKey("i", digestOf(w))}; !slices.Equal(got, want) {
		t.Fatalf("staged %q, want %q: gg's weights were abandoned", got, want)
	}
}

// TestCeremonyResent sends every key-ceremony message of one hospital twice, the second
// time after the others have moved on (as a hospital does whose acknowledgement was lost):
// each is recorded once, the status lists every hospital once at every step, and the
// ceremony completes with the collective key of the three shares.
func TestCeremonyResent(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	names := []string{"a", "b", "c"}
	spec := &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: names, MinClients: 2, Threshold: 2, Secure: true}
	w0 := EncodeFloat32s(make([]float32, testNumParams))
	d := h.stage(createBlobKey("f", digestOf(w0)), w0)
	h.must(&pb.Command{Cmd: &pb.Command_CreateFederation{CreateFederation: &pb.CreateFederationCmd{Spec: spec, Blob: createBlobKey("f", d), Digest: d}}})
	for _, c := range names {
		h.must(&pb.Command{Cmd: &pb.Command_Enrol{Enrol: &pb.EnrolCmd{Federation: "f", ClientId: c}}})
	}
	params, err := he.NewParams(he.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	g := he.Group{Parties: []he.PartyID{1, 2, 3}, Threshold: 2}
	parties := map[string]*he.Party{}
	for i, c := range names {
		if parties[c], err = he.NewParty(params, g, he.PartyID(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	send := func(client string, step pb.CeremonyStep, m interface{ MarshalBinary() ([]byte, error) }) {
		t.Helper()
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := h.apply(&pb.Command{Cmd: &pb.Command_Ceremony{Ceremony: &pb.CeremonyCmd{Federation: "f", ClientId: client, Step: step, Data: b}}}); err != nil {
			t.Fatalf("%v from %s: %v", step, client, err)
		}
	}
	status := func() *pb.CeremonyStatus {
		cs, err := h.f.Ceremony("f")
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	const commitment, reveal, share = pb.CeremonyStep_CEREMONY_STEP_COMMITMENT, pb.CeremonyStep_CEREMONY_STEP_REVEAL, pb.CeremonyStep_CEREMONY_STEP_PUBLIC_KEY_SHARE
	send("a", commitment, parties["a"].SeedCommitment())
	send("a", commitment, parties["a"].SeedCommitment())
	if got := status().CommitmentsFrom; !slices.Equal(got, []string{"a"}) {
		t.Fatalf("commitments from %v after a's was sent twice, want [a]", got)
	}
	for _, c := range names[1:] {
		send(c, commitment, parties[c].SeedCommitment())
	}
	send("a", reveal, parties["a"].SeedReveal())
	send("a", commitment, parties["a"].SeedCommitment()) // after reveals started
	send("a", reveal, parties["a"].SeedReveal())
	for _, c := range names[1:] {
		send(c, reveal, parties[c].SeedReveal())
	}
	cs := status()
	if !slices.Equal(cs.CommitmentsFrom, names) || !slices.Equal(cs.RevealsFrom, names) {
		t.Fatalf("commitments from %v, reveals from %v; want each of %v once", cs.CommitmentsFrom, cs.RevealsFrom, names)
	}
	seed := publishedSeed(t, params, g, cs)
	for i, c := range names {
		s, err := parties[c].PublicKeyShare(seed)
		if err != nil {
			t.Fatal(err)
		}
		send(c, share, s)
		if i == 0 {
			send(c, share, s)
		}
	}
	cs = status()
	if !cs.Complete || !slices.Equal(cs.PublicKeySharesFrom, names) {
		t.Fatalf("complete %v, public key shares from %v; want complete, each of %v once", cs.Complete, cs.PublicKeySharesFrom, names)
	}
	if n := len(h.f.st.Federations["f"].Ceremony.Steps); n != 9 {
		t.Fatalf("%d ceremony steps recorded, want 9 (three per hospital)", n)
	}
}

// publishRound1 publishes sealed round 1 as model version 1, as the leader's driver would.
func publishRound1(h *fsmHarness) error {
	p, err := h.f.publicationInput("f", 1)
	if err != nil {
		return err
	}
	mean, _ := roundMean(p, deltaBlobs)
	o, _ := aggregation.NewServerOptimizer(aggregation.ServerConfig{}, testNumParams)
	o.Apply(p.global, mean)
	st, _ := o.MarshalBinary()
	data := append(EncodeFloat32s(p.global), st...)
	key := modelBlobKey("f", 1, digestOf(data))
	h.stage(key, data)
	return h.apply(&pb.Command{Cmd: &pb.Command_PublishModel{PublishModel: &pb.PublishModelCmd{Federation: "f", Round: 1, Version: 1, Blob: key, Digest: digestOf(data), NumParams: testNumParams}}})
}

// TestPinModel pins and unpins model versions: only published versions (not the initial
// version 0) can be pinned, both commands are idempotent, and pins survive a snapshot.
func TestPinModel(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	populate(t, h, "fedavg")
	h.must(&pb.Command{Cmd: &pb.Command_SealRound{SealRound: &pb.SealRoundCmd{Federation: "f", Round: 1}}})
	if err := publishRound1(h); err != nil {
		t.Fatal(err)
	}
	pin := func(fed string, v uint64, unpin bool) error {
		return h.apply(&pb.Command{Cmd: &pb.Command_PinModel{PinModel: &pb.PinModelCmd{Federation: fed, Version: v, Unpin: unpin}}})
	}
	pinned := func(f *FSM) []uint64 {
		fd, err := f.Federation("f")
		if err != nil {
			t.Fatal(err)
		}
		return fd.PinnedVersions
	}
	for _, tt := range []struct {
		name    string
		fed     string
		version uint64
		unpin   bool
		wantErr error
		want    []uint64
	}{
		{"version 0", "f", 0, false, ErrInvalid, nil},
		{"unpublished version", "f", 2, false, ErrNotFound, nil},
		{"unknown federation", "g", 1, false, ErrNotFound, nil},
		{"unpin unknown federation", "g", 1, true, ErrNotFound, nil},
		{"unpin what is not pinned", "f", 1, true, nil, nil},
		{"pin", "f", 1, false, nil, []uint64{1}},
		{"pin again", "f", 1, false, nil, []uint64{1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := pin(tt.fed, tt.version, tt.unpin); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if got := pinned(h.f); !slices.Equal(got, tt.want) {
				t.Errorf("pinned %v, want %v", got, tt.want)
			}
		})
	}
	g := NewFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	if got := pinned(g); !slices.Equal(got, []uint64{1}) {
		t.Errorf("pinned after restore %v, want [1]", got)
	}
	if got := g.modelHeads()["f"]; got.head != 1 || !slices.Equal(got.pinned, []uint64{1}) {
		t.Errorf("served models after restore %+v, want head 1 pinned [1]", got)
	}
	if err := pin("f", 1, true); err != nil {
		t.Fatal(err)
	}
	if got := pinned(h.f); len(got) != 0 {
		t.Errorf("pinned after unpin %v, want none", got)
	}
}

// FuzzApply feeds arbitrary log entries to an FSM holding a federation with an open round:
// DecodeCommand must refuse garbage with ErrCommand, and Apply must never panic.
func FuzzApply(f *testing.F) {
	seed := func(c *pb.Command) {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	seed(&pb.Command{Cmd: &pb.Command_SealRound{SealRound: &pb.SealRoundCmd{Federation: "f", Round: 1}}})
	seed(&pb.Command{Cmd: &pb.Command_Chunk{Chunk: &pb.ChunkCmd{Blob: "u/f/1/c/00", Digest: make([]byte, 32), TotalLength: 10, Data: []byte("abc")}}})
	seed(&pb.Command{Cmd: &pb.Command_CommitUpdate{CommitUpdate: &pb.CommitUpdateCmd{Federation: "f", Round: 1, ClientId: "c", Samples: 1, Digest: make([]byte, 32)}}})
	seed(&pb.Command{Cmd: &pb.Command_Enrol{Enrol: &pb.EnrolCmd{Federation: "f", ClientId: "zz"}}})
	seed(&pb.Command{Cmd: &pb.Command_OpenRound{OpenRound: &pb.OpenRoundCmd{Federation: "f", Round: 2}}})
	seed(&pb.Command{Cmd: &pb.Command_PinModel{PinModel: &pb.PinModelCmd{Federation: "f", Version: 0}}})
	seed(&pb.Command{Cmd: &pb.Command_SetAggregate{SetAggregate: &pb.SetAggregateCmd{Federation: "f", Round: 1, Digest: make([]byte, 32), HeDigest: make([]byte, 32), Contributions: 2, Weight: 3}}})
	seed(&pb.Command{Cmd: &pb.Command_FinishFederation{FinishFederation: &pb.FinishFederationCmd{Federation: "f", Reason: "budget"}}})
	f.Add([]byte{})
	f.Add([]byte{2, 1, 2, 3})
	base := &fsmHarness{t: f, f: NewFSM(nil)}
	populate(f, base, "median")
	snap, err := base.f.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	data := snap.(*fsmSnapshot).data
	f.Fuzz(func(t *testing.T, entry []byte) {
		c, err := DecodeCommand(entry)
		if err != nil && !errors.Is(err, ErrCommand) {
			t.Fatalf("DecodeCommand error %v does not wrap ErrCommand", err)
		}
		g := NewFSM(nil)
		if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatal(err)
		}
		before, _ := g.Federation("f")
		r := g.Apply(&raft.Log{Index: 1000, Type: raft.LogCommand, Data: entry})
		if err, ok := r.(error); ok && err != nil {
			after, _ := g.Federation("f")
			if !proto.Equal(before, after) {
				t.Fatalf("refused command %v changed the federation", c)
			}
		}
	})
}
