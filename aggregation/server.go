package aggregation

import (
	"fmt"
	"math"
)

// Server optimizer names, the values of ServerConfig.Name.
const (
	OptimizerFedAvg     = "fedavg"
	OptimizerFedAdam    = "fedadam"
	OptimizerFedYogi    = "fedyogi"
	OptimizerFedAdagrad = "fedadagrad"
)

// Default hyperparameters of the server optimizers. The betas and tau are those of Reddi et
// al. 2021; the adaptive learning rate is a conservative starting point, as the paper tunes
// eta per task on a grid.
const (
	DefaultFedAvgLR   = 1.0
	DefaultAdaptiveLR = 0.01
	DefaultBeta1      = 0.9
	DefaultBeta2      = 0.99
	DefaultTau        = 1e-3
)

type optimizerKind uint8

const (
	kindFedAvg optimizerKind = iota
	kindFedAdam
	kindFedYogi
	kindFedAdagrad
)

var kindNames = [...]string{OptimizerFedAvg, OptimizerFedAdam, OptimizerFedYogi, OptimizerFedAdagrad}

func kindOf(name string) (optimizerKind, bool) {
	if name == "" {
		return kindFedAvg, true
	}
	for k, n := range kindNames {
		if n == name {
			return optimizerKind(k), true
		}
	}
	return 0, false
}

// ServerConfig chooses the server optimizer that applies each round's aggregated update to the
// global model. Zero values mean "default", so ServerConfig{Name: "fedadam"} is usable.
type ServerConfig struct {
	// Name is fedavg (the default), fedadam, fedyogi or fedadagrad.
	Name string
	// LR is the server learning rate eta. Zero means DefaultFedAvgLR (1, plain FedAvg) for
	// fedavg and DefaultAdaptiveLR for the adaptive optimizers.
	LR float64
	// Beta1 is the momentum of the adaptive optimizers, in [0, 1); zero means DefaultBeta1.
	Beta1 float64
	// Beta2 is the second-moment decay of FedAdam and FedYogi, in [0, 1); zero means
	// DefaultBeta2. FedAdagrad ignores it.
	Beta2 float64
	// Tau is the adaptivity constant of the adaptive optimizers, > 0; zero means DefaultTau.
	Tau float64
}

// DefaultServerConfig returns plain FedAvg with the paper's defaults for the adaptive
// hyperparameters. LR is left at zero, meaning the default of whichever optimizer Name
// selects, so changing only Name gives a sensible configuration.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{Name: OptimizerFedAvg, Beta1: DefaultBeta1, Beta2: DefaultBeta2, Tau: DefaultTau}
}

// Validate returns an error wrapping ErrUnknownStrategy or ErrParameter that names the first
// bad field, or nil.
func (c ServerConfig) Validate() error {
	if _, ok := kindOf(c.Name); !ok {
		return fmt.Errorf("%w: ServerConfig.Name is %q, want one of %q", ErrUnknownStrategy, c.Name, kindNames)
	}
	switch {
	case !(c.LR >= 0) || math.IsInf(c.LR, 1):
		return fmt.Errorf("%w: ServerConfig.LR is %v, want a finite value > 0 (0 for the default)", ErrParameter, c.LR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fmt.Errorf("%w: ServerConfig.Beta1 is %v, want 0 <= Beta1 < 1", ErrParameter, c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("%w: ServerConfig.Beta2 is %v, want 0 <= Beta2 < 1", ErrParameter, c.Beta2)
	case !(c.Tau >= 0) || math.IsInf(c.Tau, 1):
		return fmt.Errorf("%w: ServerConfig.Tau is %v, want a finite value > 0 (0 for the default)", ErrParameter, c.Tau)
	}
	return nil
}

// resolved returns c with every zero field replaced by its default. c must be valid.
func (c ServerConfig) resolved() ServerConfig {
	k, _ := kindOf(c.Name)
	c.Name = kindNames[k]
	if c.LR == 0 {
		c.LR = DefaultAdaptiveLR
		if k == kindFedAvg {
			c.LR = DefaultFedAvgLR
		}
	}
	if c.Beta1 == 0 {
		c.Beta1 = DefaultBeta1
	}
	if c.Beta2 == 0 {
		c.Beta2 = DefaultBeta2
	}
	if c.Tau == 0 {
		c.Tau = DefaultTau
	}
	return c
}

// ServerOptimizer applies each round's aggregated update to the global weights, following
// Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2. With Delta the mean
// update of a round:
//
//	fedavg:     x += eta·Delta
//	otherwise:  m = beta1·m + (1-beta1)·Delta
//	            fedadagrad  v = v + Delta²
//	            fedyogi     v = v - (1-beta2)·Delta²·sign(v - Delta²)
//	            fedadam     v = beta2·v + (1-beta2)·Delta²
//	            x += eta·m / (sqrt(v) + tau)
//
// element-wise, with m starting at 0 and v at tau² (the paper's v₋₁ >= tau²), and no bias
// correction, as in the paper. State and arithmetic are float64; the weights stay float32.
//
// The state (configuration, step count, m and v) round-trips through MarshalBinary and
// UnmarshalBinary, so that a replicated coordinator can snapshot and restore it.
// A ServerOptimizer is not safe for concurrent use.
type ServerOptimizer struct {
	cfg   ServerConfig // resolved
	kind  optimizerKind
	dim   int
	steps uint64
	m, v  []float64 // nil for fedavg
}

// NewServerOptimizer returns the optimizer c selects for a model of dim parameters. It returns
// c.Validate's error for a bad configuration and an error wrapping ErrParameter if dim < 1.
func NewServerOptimizer(c ServerConfig, dim int) (*ServerOptimizer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if dim < 1 {
		return nil, fmt.Errorf("%w: optimizer dimension is %d, want at least 1", ErrParameter, dim)
	}
	c = c.resolved()
	k, _ := kindOf(c.Name)
	o := &ServerOptimizer{cfg: c, kind: k, dim: dim}
	if k != kindFedAvg {
		o.m = make([]float64, dim)
		o.v = make([]float64, dim)
		for i := range o.v {
			o.v[i] = c.Tau * c.Tau
		}
	}
	return o, nil
}

// Config returns the optimizer's configuration with every default filled in.
func (o *ServerOptimizer) Config() ServerConfig { return o.cfg }

// Dim returns the number of parameters the optimizer was made for.
func (o *ServerOptimizer) Dim() int { return o.dim }

// Steps returns how many updates Apply has applied since the optimizer was made.
func (o *ServerOptimizer) Steps() uint64 { return o.steps }

// Apply adds the round's step to global in place, given the round's aggregated update
// meanDelta (a weighted mean or robust aggregate of the clients' deltas).
//
// If either slice does not have Dim values, or meanDelta holds NaN or ±Inf, Apply returns an
// error wrapping ErrLengthMismatch or ErrNonFinite and changes neither global nor the state.
func (o *ServerOptimizer) Apply(global, meanDelta []float32) error {
	if o.dim == 0 {
		return fmt.Errorf("%w: optimizer not initialised, use NewServerOptimizer", ErrState)
	}
	if len(global) != o.dim {
		return fmt.Errorf("%w: global weights have %d values, want %d", ErrLengthMismatch, len(global), o.dim)
	}
	if len(meanDelta) != o.dim {
		return fmt.Errorf("%w: aggregated update has %d values, want %d", ErrLengthMismatch, len(meanDelta), o.dim)
	}
	if j := firstNonFinite(meanDelta); j >= 0 {
		return fmt.Errorf("%w: aggregated update has %v at index %d", ErrNonFinite, meanDelta[j], j)
	}
	lr := o.cfg.LR
	if o.kind == kindFedAvg {
		for i, d := range meanDelta {
			global[i] = float32(float64(global[i]) + lr*float64(d))
		}
		o.steps++
		return nil
	}
	b1, b2, tau := o.cfg.Beta1, o.cfg.Beta2, o.cfg.Tau
	m, v := o.m[:o.dim], o.v[:o.dim]
	for i, d32 := range meanDelta {
		d := float64(d32)
		d2 := d * d
		mi := b1*m[i] + (1-b1)*d
		vi := v[i]
		switch o.kind {
		case kindFedAdagrad:
			vi += d2
		case kindFedYogi:
			switch {
			case vi > d2:
				vi -= (1 - b2) * d2
			case vi < d2:
				vi += (1 - b2) * d2
			}
		case kindFedAdam:
			vi = b2*vi + (1-b2)*d2
		}
		m[i], v[i] = mi, vi
		global[i] = float32(float64(global[i]) + lr*mi/(math.Sqrt(vi)+tau))
	}
	o.steps++
	return nil
}
