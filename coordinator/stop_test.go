package coordinator

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/pb"
)

// TestCeremonyTimeout: a secure federation whose key ceremony is not complete within
// ceremony_timeout, with too few hospitals present to restart it without the others,
// stops, and the reason names each missing hospital and the step it did not take.
func TestCeremonyTimeout(t *testing.T) {
	tc := startCluster(t, 1)
	ctx := testCtx(t)
	c := newClient(t, tc.addrs())
	tc.leader()
	names := []string{"h1", "h2", "h3"}
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "f", ModelSpecJson: testModelSpec(t), Clients: names, MinClients: 2, Threshold: 2,
		Secure: true, CeremonyTimeoutMs: 1500,
	}); err != nil {
		t.Fatal(err)
	}
	for _, h := range names[:2] { // h3 never comes
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: h, AgeRecipient: testEnrolment(t)}); err != nil {
			t.Fatal(err)
		}
	}
	var f *pb.Federation
	waitFor(t, "the federation to stop", func() bool {
		var err error
		f, err = c.Federation(ctx, "f")
		return err == nil && f.Stopped
	})
	for _, want := range []string{"key ceremony is not complete", "h1 (no seed commitment)", "h2 (no seed commitment)", "h3 (not enrolled)", "2s after the ceremony started", "0 hospitals present are fewer than the 2 a round needs"} {
		if !strings.Contains(f.StopReason, want) {
			t.Errorf("stop reason %q does not say %q", f.StopReason, want)
		}
	}
	if len(f.Rounds) != 0 {
		t.Errorf("%d rounds opened in a stopped federation", len(f.Rounds))
	}
	tc.closeAll()
}

// TestSuspensionAndStop drives the FSM through rounds: a hospital that misses a round is
// left out of the next one's selection until it enrols again, selection falls back to
// every enrolled hospital when too few are left, and max_aborted_rounds aborted rounds in a
// row stop the federation.
func TestSuspensionAndStop(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	spec := &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"a", "b", "c"}, MinClients: 2, Rounds: 10, MaxAbortedRounds: 2}
	w0 := EncodeFloat32s(make([]float32, testNumParams))
	d := h.stage(createBlobKey("f", digestOf(w0)), w0)
	h.must(&pb.Command{Cmd: &pb.Command_CreateFederation{CreateFederation: &pb.CreateFederationCmd{Spec: spec, Blob: createBlobKey("f", d), Digest: d}}})
	enrol := func(c string) {
		h.must(&pb.Command{Cmd: &pb.Command_Enrol{Enrol: &pb.EnrolCmd{Federation: "f", ClientId: c}}})
	}
	for _, c := range spec.Clients {
		enrol(c)
	}
	next := func() action {
		t.Helper()
		for _, a := range h.f.pendingActions() {
			if a.kind == actOpen {
				return a
			}
		}
		t.Fatal("no round to open")
		return action{}
	}
	open := func(r uint64) []string {
		a := next()
		h.must(&pb.Command{Cmd: &pb.Command_OpenRound{OpenRound: &pb.OpenRoundCmd{Federation: "f", Round: r, ModelVersion: a.version, Selected: a.selected}}})
		return a.selected
	}
	submit := func(r uint64, c string) {
		v := uint64(0)
		if r > 1 {
			v = 1
		}
		h.must(&pb.Command{Cmd: &pb.Command_CommitUpdate{CommitUpdate: &pb.CommitUpdateCmd{Federation: "f", Round: r, ClientId: c, ModelVersion: v, Samples: 1, Digest: digestOf([]byte(c))}}})
	}
	suspended := func() []string {
		f, _ := h.f.Federation("f")
		return f.Suspended
	}

	// Round 1: c misses it.
	if sel := open(1); !slices.Equal(sel, []string{"a", "b", "c"}) {
		t.Fatalf("round 1 selects %v", sel)
	}
	submit(1, "a")
	submit(1, "b")
	h.must(&pb.Command{Cmd: &pb.Command_SealRound{SealRound: &pb.SealRoundCmd{Federation: "f", Round: 1}}})
	if got := suspended(); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("suspended %v after round 1, want [c]", got)
	}
	if err := publishRound1(h); err != nil {
		t.Fatal(err)
	}
	// Round 2 leaves c out; c enrols again (it is back) and round 3 selects it.
	if sel := open(2); !slices.Equal(sel, []string{"a", "b"}) {
		t.Fatalf("round 2 selects %v, want [a b]", sel)
	}
	enrol("c")
	if got := suspended(); len(got) != 0 {
		t.Fatalf("suspended %v after c enrolled again", got)
	}
	// Round 2 aborts with only a: b is suspended too, which leaves one hospital, fewer
	// than min_clients, so round 3 selects every enrolled hospital.
	submit(2, "a")
	h.must(&pb.Command{Cmd: &pb.Command_AbortRound{AbortRound: &pb.AbortRoundCmd{Federation: "f", Round: 2, Reason: "deadline passed"}}})
	if got := suspended(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("suspended %v after round 2, want [b]", got)
	}
	h.must(&pb.Command{Cmd: &pb.Command_Enrol{Enrol: &pb.EnrolCmd{Federation: "f", ClientId: "a"}}})
	if sel := open(3); !slices.Equal(sel, []string{"a", "c"}) {
		t.Fatalf("round 3 selects %v, want [a c]", sel)
	}
	h.must(&pb.Command{Cmd: &pb.Command_AbortRound{AbortRound: &pb.AbortRoundCmd{Federation: "f", Round: 3, Reason: "deadline passed with 0 contributions"}}})
	// Two aborted rounds in a row: stopped, and no round opens.
	f, _ := h.f.Federation("f")
	if !f.Stopped || !strings.Contains(f.StopReason, "2 rounds in a row were aborted (rounds 2 to 3") {
		t.Fatalf("stopped=%v (%q), want stopped after rounds 2 and 3", f.Stopped, f.StopReason)
	}
	for _, a := range h.f.pendingActions() {
		t.Errorf("stopped federation still has action %v", a.kind)
	}
	if err := h.apply(&pb.Command{Cmd: &pb.Command_OpenRound{OpenRound: &pb.OpenRoundCmd{Federation: "f", Round: 4, ModelVersion: 1, Selected: []string{"a", "c"}}}}); err == nil {
		t.Fatal("a stopped federation opened a round")
	}
	// The operator resumes it: every enrolled hospital is selected again.
	h.must(&pb.Command{Cmd: &pb.Command_ResumeFederation{ResumeFederation: &pb.ResumeFederationCmd{Federation: "f"}}})
	if f, _ := h.f.Federation("f"); f.Stopped || f.StopReason != "" || len(f.Suspended) != 0 {
		t.Fatalf("after resume: stopped=%v (%q), suspended %v", f.Stopped, f.StopReason, f.Suspended)
	}
	if sel := open(4); !slices.Equal(sel, []string{"a", "b", "c"}) {
		t.Fatalf("round 4 after resume selects %v, want [a b c]", sel)
	}
}

// TestRestartCeremony: the FSM restarts a key ceremony with the hospitals present, refuses
// a restart with fewer than a round needs, and afterwards takes ceremony messages from
// the members only.
func TestRestartCeremony(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	spec := &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"a", "b", "c"}, MinClients: 2, Threshold: 2, Secure: true}
	w0 := EncodeFloat32s(make([]float32, testNumParams))
	d := h.stage(createBlobKey("f", digestOf(w0)), w0)
	h.must(&pb.Command{Cmd: &pb.Command_CreateFederation{CreateFederation: &pb.CreateFederationCmd{Spec: spec, Blob: createBlobKey("f", d), Digest: d}}})
	for _, c := range spec.Clients {
		h.must(&pb.Command{Cmd: &pb.Command_Enrol{Enrol: &pb.EnrolCmd{Federation: "f", ClientId: c}}})
	}
	params, err := he.NewParams(he.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	commit := func(client string, id he.PartyID, g he.Group) error {
		p, err := he.NewParty(params, g, id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := p.SeedCommitment().MarshalBinary()
		return h.apply(&pb.Command{Cmd: &pb.Command_Ceremony{Ceremony: &pb.CeremonyCmd{Federation: "f", ClientId: client, Step: pb.CeremonyStep_CEREMONY_STEP_COMMITMENT, Data: b}}})
	}
	all := he.Group{Parties: []he.PartyID{1, 2, 3}, Threshold: 2}
	for i, c := range []string{"a", "b"} { // c never comes
		if err := commit(c, he.PartyID(i+1), all); err != nil {
			t.Fatal(err)
		}
	}
	fd := h.f.st.Federations["f"]
	if got := fd.ceremonyPresent(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("present %v, want [a b]", got)
	}
	restart := func(members ...string) error {
		return h.apply(&pb.Command{Cmd: &pb.Command_RestartCeremony{RestartCeremony: &pb.RestartCeremonyCmd{Federation: "f", Members: members, Reason: "c missed it"}}})
	}
	if err := restart("a"); err == nil {
		t.Fatal("restarted with 1 member; a round needs 2")
	}
	if err := restart("a", "b"); err != nil {
		t.Fatal(err)
	}
	cs, _ := h.f.Ceremony("f")
	if cs.Generation != 1 || !slices.Equal(cs.Members, []string{"a", "b"}) || len(cs.CommitmentsFrom) != 0 {
		t.Fatalf("after the restart: generation %d, members %v, commitments %v", cs.Generation, cs.Members, cs.CommitmentsFrom)
	}
	two := he.Group{Parties: []he.PartyID{1, 2}, Threshold: 2}
	if err := commit("a", 1, two); err != nil {
		t.Fatalf("member's commitment refused: %v", err)
	}
	if err := commit("c", 3, all); err == nil {
		t.Fatal("a commitment from a hospital left out of the ceremony was accepted")
	}
	if err := restart("a", "b"); err == nil {
		t.Fatal("restarted again with as many members as it has")
	}
}

// TestOperatorStop: an operator stops a federation in the middle of a round. The round is
// aborted with the operator's reason, the federation stops and refuses the update still
// on its way, opens no round, and holds nothing against the hospital that had not sent
// yet; resume opens the next round with both hospitals.
func TestOperatorStop(t *testing.T) {
	tc := startCluster(t, 1)
	tc.leader()
	ctx := testCtx(t)
	c := newClient(t, tc.addrs())
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1", "h2"}, MinClients: 2, Rounds: 3}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: h}); err != nil {
			t.Fatal(err)
		}
	}
	waitRound(t, ctx, c, "f", 1, pb.RoundState_ROUND_STATE_OPEN)
	if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h1", Samples: 1, Data: EncodeFloat32s(delta(0))}); err != nil {
		t.Fatal(err)
	}
	fs := &federationServer{n: tc.nodes[0]}
	for _, bad := range []struct {
		req  *pb.StopFederationRequest
		code codes.Code
	}{
		{&pb.StopFederationRequest{Federation: "f", Reason: strings.Repeat("x", 1025)}, codes.InvalidArgument},
		{&pb.StopFederationRequest{Federation: "f", Reason: "\xff"}, codes.InvalidArgument},
		{&pb.StopFederationRequest{Federation: "nope"}, codes.NotFound},
	} {
		if _, err := fs.StopFederation(ctx, bad.req); status.Code(err) != bad.code {
			t.Errorf("stop %q (%d-byte reason): got %v, want %v", bad.req.Federation, len(bad.req.Reason), err, bad.code)
		}
	}
	f, err := fs.StopFederation(ctx, &pb.StopFederationRequest{Federation: "f", Reason: "ethics review"})
	if err != nil {
		t.Fatal(err)
	}
	const want = "stopped by an operator: ethics review; medfed federation resume lets it go on"
	if !f.Stopped || f.StopReason != want || len(f.Rounds) != 1 || f.Rounds[0].State != pb.RoundState_ROUND_STATE_ABORTED || f.Rounds[0].Reason != want {
		t.Fatalf("after stop: stopped %v %q, rounds %v", f.Stopped, f.StopReason, f.Rounds)
	}
	if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h2", Samples: 1, Data: EncodeFloat32s(delta(1))}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("update to the stopped federation: got %v, want FailedPrecondition", err)
	}
	time.Sleep(5 * tc.cfgs[0].DriverInterval)
	if f, err = c.Federation(ctx, "f"); err != nil || len(f.Rounds) != 1 || len(f.Suspended) != 0 {
		t.Fatalf("stopped federation: %v, rounds %v, suspended %v", err, f.GetRounds(), f.GetSuspended())
	}
	if _, err := fs.StopFederation(ctx, &pb.StopFederationRequest{Federation: "f"}); err != nil {
		t.Errorf("stopping a stopped federation again: %v", err)
	}
	if _, err := fs.ResumeFederation(ctx, &pb.ResumeFederationRequest{Federation: "f"}); err != nil {
		t.Fatal(err)
	}
	if ri := waitRound(t, ctx, c, "f", 2, pb.RoundState_ROUND_STATE_OPEN); len(ri.Selected) != 2 {
		t.Errorf("round 2 after resume selects %v, want both hospitals", ri.Selected)
	}
}

// TestStopSparesRoundWithShares: an operator's stop leaves a decrypting round that holds
// its t decryption shares to be published (the coordinator can decrypt it already) and
// aborts one that does not.
func TestStopSparesRoundWithShares(t *testing.T) {
	for _, shares := range []int{1, 2} {
		h := &fsmHarness{t: t, f: NewFSM(nil)}
		populate(t, h, "fedavg")
		fd := h.f.st.Federations["f"]
		fd.spec.Threshold = 2
		rd := fd.current()
		rd.State, rd.Shares = pb.RoundState_ROUND_STATE_DECRYPTING, map[string]*share{}
		for _, c := range []string{"a", "b"}[:shares] {
			rd.Shares[c] = &share{}
		}
		err := h.apply(&pb.Command{Cmd: &pb.Command_StopFederation{StopFederation: &pb.StopFederationCmd{Federation: "f", Reason: "stop", AbortRound: true}}})
		switch {
		case shares == 2 && (!errors.Is(err, ErrRoundState) || rd.State != pb.RoundState_ROUND_STATE_DECRYPTING || fd.Stopped):
			t.Errorf("with all shares: %v, round %v, stopped %v; want ErrRoundState and nothing changed", err, rd.State, fd.Stopped)
		case shares == 1 && (err != nil || rd.State != pb.RoundState_ROUND_STATE_ABORTED || !fd.Stopped):
			t.Errorf("with 1 of 2 shares: %v, round %v, stopped %v; want it aborted and stopped", err, rd.State, fd.Stopped)
		}
	}
}
