package coordinator

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/pb"
)

// Epsilon at delta 1e-5 after k rounds of the Gaussian mechanism with z = 1 (RDP k·alpha/2
// per order, the conversion of Canonne, Kamath and Steinke over TensorFlow Privacy's
// orders), computed apart from the accountant.
var gaussianEpsilon = []float64{0, 4.752728, 7.087862, 9.017593}

func TestPrivacyAccounting(t *testing.T) {
	fed := func(published int, spec *pb.FederationSpec) *federation {
		f := &federation{spec: spec}
		for v := 0; v <= published; v++ {
			f.Models = append(f.Models, &modelVersion{Version: uint64(v)})
			if v > 0 {
				f.Rounds = append(f.Rounds, &round{Number: uint64(v), State: pb.RoundState_ROUND_STATE_PUBLISHED})
			}
		}
		return f
	}
	// Secure mode: the coordinator sees the sum, with noise multiplier z = 1. Plaintext
	// mode with 4 hospitals: it sees each update with its share of z = 2, 2/sqrt(4) = 1.
	dp := &pb.FederationSpec{Name: "dp", DpNoiseMultiplier: 1, DpEpsilonBudget: 8, Secure: true, MinClients: 4}
	plain := &pb.FederationSpec{Name: "dp", DpNoiseMultiplier: 2, DpEpsilonBudget: 8, MinClients: 4}
	for k, want := range gaussianEpsilon {
		for _, s := range []*pb.FederationSpec{dp, plain} {
			if got := fed(k, s).epsilon(); math.Abs(got-want) > 1e-5 {
				t.Errorf("epsilon after %d rounds, secure %v: %v, want %v", k, s.Secure, got, want)
			}
		}
	}
	if got := fed(1, &pb.FederationSpec{Name: "dp", DpNoiseMultiplier: 1, MinClients: 4}).epsilon(); got <= gaussianEpsilon[3] {
		t.Errorf("plaintext, z = 1, 4 hospitals: epsilon %v after one round, want more than three rounds of z = 1 cost", got)
	}
	for k := range 2 {
		if r := fed(k, dp).budgetSpent(); r != "" {
			t.Errorf("after %d rounds, budget 8: %q, want room for round %d", k, r, k+1)
		}
	}
	r := fed(2, dp).budgetSpent()
	for _, want := range []string{"privacy budget spent", "2 published rounds", "epsilon 7.088", "round 3 would bring it to 9.018", "dp_epsilon_budget 8"} {
		if !strings.Contains(r, want) {
			t.Errorf("after 2 rounds, budget 8: %q, want it to say %q", r, want)
		}
	}
	noBudget := &pb.FederationSpec{Name: "dp", DpNoiseMultiplier: 1}
	if r := fed(50, noBudget).budgetSpent(); r != "" {
		t.Errorf("no budget: %q", r)
	}
	noDP := &pb.FederationSpec{Name: "plain", DpEpsilonBudget: 1}
	if f := fed(5, noDP); f.epsilon() != 0 || f.budgetSpent() != "" {
		t.Errorf("without DP: epsilon %v, %q", f.epsilon(), f.budgetSpent())
	}
	bad := &pb.FederationSpec{Name: "bad", DpNoiseMultiplier: 1, DpDelta: 2}
	if r := fed(1, bad).budgetSpent(); !strings.Contains(r, "invalid") {
		t.Errorf("invalid settings: %q, want the federation ended as invalid", r)
	}

	for _, c := range []struct {
		spec *pb.FederationSpec
		want string // "" for valid
	}{
		{dp, ""},
		{noDP, ""},
		{&pb.FederationSpec{DpNoiseMultiplier: 2, DpEpsilonBudget: 2.2, DpDelta: 1e-5, DpClipNorm: 0.5}, ""},
		{&pb.FederationSpec{DpNoiseMultiplier: 1, DpEpsilonBudget: 4, Secure: true}, "allows no round: one round with noise multiplier 1 (as the coordinator sees it) spends epsilon 4.753"},
		{&pb.FederationSpec{DpNoiseMultiplier: 2, DpEpsilonBudget: 4, MinClients: 4}, "noise multiplier 1 (as the coordinator sees it: in plaintext mode each update carries only its share"},
		{&pb.FederationSpec{DpNoiseMultiplier: -1}, "NoiseMultiplier"},
		{&pb.FederationSpec{DpNoiseMultiplier: math.NaN()}, "NoiseMultiplier"},
		{&pb.FederationSpec{DpNoiseMultiplier: 1, DpDelta: 1}, "Delta"},
		{&pb.FederationSpec{DpNoiseMultiplier: 1, DpClipNorm: math.Inf(1)}, "Clip"},
		{&pb.FederationSpec{DpEpsilonBudget: -3}, "Budget"},
	} {
		err := checkDP(c.spec)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("checkDP(%v): %v", c.spec, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || StatusCode(err) != codes.InvalidArgument):
			t.Errorf("checkDP(%v): %v, want InvalidArgument with %q", c.spec, err, c.want)
		}
	}
}

// TestPrivacyBudget runs a plaintext federation of 2 hospitals with differential privacy
// (z = sqrt(2): each update carries noise of multiplier 1 as the coordinator sees it;
// budget epsilon 8 at delta 1e-5; 5 rounds asked for) on a real cluster: after two
// published rounds (epsilon 7.09) a third would spend 9.02, so the federation is done with
// the reason,
// opens no round 3 and reports the epsilon spent. A spec whose budget allows no round,
// or with a noise multiplier or learning rate that is not a number, is refused.
func TestPrivacyBudget(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := testCtx(t)
	l := tc.leader()
	c := newClient(t, tc.addrs())
	spec := &pb.FederationSpec{Name: "dp", ModelSpecJson: testModelSpec(t), Clients: []string{"h1", "h2"}, MinClients: 2, Rounds: 5,
		DpNoiseMultiplier: math.Sqrt2, DpClipNorm: 1, DpEpsilonBudget: 8}
	for _, bad := range []struct {
		budget, z float64
	}{{4, 1}, {8, math.NaN()}} {
		s := cloneSpec(spec)
		s.DpEpsilonBudget, s.DpNoiseMultiplier = bad.budget, bad.z
		if _, err := c.CreateFederation(ctx, s); status.Code(err) != codes.InvalidArgument {
			t.Errorf("budget %v, z %v: got %v, want InvalidArgument", bad.budget, bad.z, err)
		}
	}
	// The training settings are checked at the same boundary (checkTraining).
	s := cloneSpec(spec)
	s.Lr = math.NaN()
	if _, err := c.CreateFederation(ctx, s); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "learning rate") {
		t.Errorf("lr NaN: got %v, want InvalidArgument naming the learning rate", err)
	}
	if _, err := c.CreateFederation(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "dp", ClientId: h}); err != nil {
			t.Fatal(err)
		}
	}
	for r := uint64(1); r <= 2; r++ {
		ri := waitRound(t, ctx, c, "dp", r, pb.RoundState_ROUND_STATE_OPEN)
		for k, h := range []string{"h1", "h2"} {
			if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "dp", Round: r, ClientID: h, ModelVersion: ri.ModelVersion, Samples: 1, Data: EncodeFloat32s(delta(k))}); err != nil {
				t.Fatal(err)
			}
		}
		waitRound(t, ctx, c, "dp", r, pb.RoundState_ROUND_STATE_PUBLISHED)
	}
	var f *pb.Federation
	waitFor(t, "the federation to be done", func() bool {
		var err error
		f, err = c.Federation(ctx, "dp")
		return err == nil && f.Done
	})
	if len(f.Rounds) != 2 || f.Stopped || !strings.Contains(f.DoneReason, "round 3 would bring it to 9.018") {
		t.Errorf("done with %d rounds, stopped %v, reason %q", len(f.Rounds), f.Stopped, f.DoneReason)
	}
	if math.Abs(f.DpEpsilon-gaussianEpsilon[2]) > 1e-5 {
		t.Errorf("epsilon spent %v, want %v", f.DpEpsilon, gaussianEpsilon[2])
	}
	// Nothing more opens, on any node, and resuming changes nothing.
	time.Sleep(5 * tc.cfgs[0].DriverInterval)
	if _, err := (&federationServer{n: tc.nodes[l]}).ResumeFederation(ctx, &pb.ResumeFederationRequest{Federation: "dp"}); err != nil {
		t.Fatal(err)
	}
	for i, n := range tc.nodes {
		waitFor(t, tc.cfgs[i].NodeID+" to apply the end", func() bool {
			g, err := n.FSM().Federation("dp")
			return err == nil && g.Done
		})
		g, _ := n.FSM().Federation("dp")
		if len(g.Rounds) != 2 || g.DoneReason != f.DoneReason {
			t.Errorf("%s: %d rounds, reason %q", tc.cfgs[i].NodeID, len(g.Rounds), g.DoneReason)
		}
	}
}

// TestFinishFederation applies FinishFederation to an FSM: refused while a round is open
// and for an empty reason, then applied between rounds (the federation is done, no round
// opens, the reason survives a snapshot), and applying it again changes nothing.
func TestFinishFederation(t *testing.T) {
	h := &fsmHarness{t: t, f: NewFSM(nil)}
	populate(t, h, "fedavg") // round 1 open
	finish := func(reason string) error {
		return h.apply(&pb.Command{Cmd: &pb.Command_FinishFederation{FinishFederation: &pb.FinishFederationCmd{Federation: "f", Reason: reason}}})
	}
	if err := finish("budget"); !errors.Is(err, ErrRoundState) {
		t.Errorf("finish during an open round: %v, want ErrRoundState", err)
	}
	h.must(&pb.Command{Cmd: &pb.Command_AbortRound{AbortRound: &pb.AbortRoundCmd{Federation: "f", Round: 1, Reason: "test"}}})
	if err := finish(""); !errors.Is(err, ErrInvalid) {
		t.Errorf("finish without a reason: %v, want ErrInvalid", err)
	}
	if err := finish("no budget left"); err != nil {
		t.Fatal(err)
	}
	if err := finish("again"); err != nil {
		t.Errorf("finish again: %v", err)
	}
	if err := h.apply(&pb.Command{Cmd: &pb.Command_OpenRound{OpenRound: &pb.OpenRoundCmd{Federation: "f", Round: 2, Selected: []string{"a", "b"}, DeadlineUnixNano: 99}}}); !errors.Is(err, ErrRoundState) {
		t.Errorf("open a round after finishing: %v, want ErrRoundState", err)
	}
	g := NewFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*FSM{h.f, g} {
		fd, err := f.Federation("f")
		if err != nil || !fd.Done || fd.Stopped || fd.DoneReason != "no budget left" {
			t.Errorf("federation %v (%v): want done with the first reason", fd, err)
		}
		if acts := f.pendingActions(); len(acts) != 0 {
			t.Errorf("pending actions after finishing: %+v", acts)
		}
	}
}
