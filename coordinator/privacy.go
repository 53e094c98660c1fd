package coordinator

import (
	"fmt"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/internal/pb"
)

// A federation with differential privacy (spec dp_noise_multiplier z > 0) spends privacy
// with every round it publishes: the clients clip their updates and add shares of Gaussian
// noise, so a published aggregate is one run of the Gaussian mechanism. The accounting is
// against the coordinator, the party that sees the most: it sees who contributed, so each
// round counts with sampling rate 1, and in plaintext mode it sees each update, which
// carries only its own share of the noise, so the noise multiplier counted is
// z/sqrt(min_clients) there and z in secure mode (aggregation.DPConfig.
// CoordinatorNoiseMultiplier). The accountant's state
// follows from the number of published rounds alone, so every replica derives it. Whether
// the next round fits dp_epsilon_budget is a floating-point decision, made by the leader
// (pendingActions) and replicated as the FinishFederation command, not by each replica's
// Apply (aggregation.Accountant says why). The federation is then done.

// dpConfig returns the DP settings of spec, and whether DP is on.
func dpConfig(s *pb.FederationSpec) (aggregation.DPConfig, bool) {
	return aggregation.DPConfig{NoiseMultiplier: s.DpNoiseMultiplier, Clip: s.DpClipNorm, Delta: s.DpDelta, Budget: s.DpEpsilonBudget}, s.DpNoiseMultiplier > 0
}

// accounted returns cfg, valid, resolved, with the noise multiplier that protects a
// hospital against the coordinator of a federation with spec s.
func accounted(cfg aggregation.DPConfig, s *pb.FederationSpec) aggregation.DPConfig {
	z := cfg.CoordinatorNoiseMultiplier(s.Secure, int(max(s.MinClients, 1)))
	cfg = cfg.Resolved()
	cfg.NoiseMultiplier = z
	return cfg
}

// checkDP checks a spec's DP settings when a federation is created: valid values, and a
// budget that allows at least one round.
func checkDP(s *pb.FederationSpec) error {
	cfg, on := dpConfig(s)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: dp settings: %v", ErrInvalid, err)
	}
	if !on {
		return nil
	}
	cfg = accounted(cfg, s)
	var a aggregation.Accountant
	if eps, err := a.Spend(1, cfg); err != nil {
		return fmt.Errorf("%w: dp_epsilon_budget %g allows no round: one round with noise multiplier %.4g (as the coordinator sees it%s) spends epsilon %.4g at delta %g",
			ErrInvalid, cfg.Budget, cfg.NoiseMultiplier, plaintextNote(s), eps, cfg.Delta)
	}
	return nil
}

// accountant returns the privacy spent by f's published rounds, or nil without DP. It
// fails only for settings checkDP refuses (a federation created before it did).
func (f *federation) accountant() (*aggregation.Accountant, aggregation.DPConfig, error) {
	cfg, on := dpConfig(f.spec)
	if !on {
		return nil, cfg, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, cfg, err
	}
	cfg = accounted(cfg, f.spec)
	a := new(aggregation.Accountant)
	if err := a.Compose(1, cfg.NoiseMultiplier, f.publishedRounds()); err != nil {
		return nil, cfg, err
	}
	return a, cfg, nil
}

// epsilon returns the epsilon f's published rounds have spent: 0 without DP, and also if
// its settings are invalid (budgetSpent then ends the federation, saying so).
func (f *federation) epsilon() float64 {
	a, cfg, err := f.accountant()
	if err != nil || a == nil {
		return 0
	}
	eps, _ := a.Epsilon(cfg.Delta)
	return eps
}

// budgetSpent returns why f may open no further round (the next one would spend more
// than its budget, or its DP settings are invalid), or "" if it may.
func (f *federation) budgetSpent() string {
	a, cfg, err := f.accountant()
	switch {
	case err != nil:
		return fmt.Sprintf("differential privacy settings are invalid, so the privacy spent cannot be accounted: %v", err)
	case a == nil || cfg.Budget == 0:
		return ""
	}
	eps, err := a.Spend(1, cfg)
	if err == nil {
		return ""
	}
	was, _ := a.Epsilon(cfg.Delta)
	return fmt.Sprintf("privacy budget spent: %d published rounds have spent epsilon %.4g at delta %g, and round %d would bring it to %.4g, past dp_epsilon_budget %g",
		a.Rounds(), was, cfg.Delta, len(f.Rounds)+1, eps, cfg.Budget)
}

// plaintextNote explains, for a plaintext federation, why the noise multiplier counted is
// below the spec's.
func plaintextNote(s *pb.FederationSpec) string {
	if s.Secure {
		return ""
	}
	return fmt.Sprintf(": in plaintext mode each update carries only its share of the noise, dp_noise_multiplier/sqrt(min_clients %d)", max(s.MinClients, 1))
}
