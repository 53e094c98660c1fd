package aggregation

import (
	"fmt"
	"strings"
)

// Aggregator names, the values of Strategy.Aggregator.
const (
	AggregatorWeightedMean = "weighted-mean" // WeightedMean
	AggregatorMedian       = "median"        // Median
	AggregatorTrimmedMean  = "trimmed-mean"  // TrimmedMean
	AggregatorKrum         = "krum"          // Krum (Multi-Krum)
)

// Strategy is what a federation's strategy name means for a round: how the coordinator
// combines the updates, which server optimizer applies the result, and whether the strategy
// can run on encrypted updates. Get one from ParseStrategy.
type Strategy struct {
	// Name is the canonical strategy name.
	Name string
	// Aggregator is how updates are combined, one of the Aggregator constants.
	Aggregator string
	// Optimizer is the ServerConfig.Name of the server optimizer that applies the aggregate.
	Optimizer string
	// Proximal is true for FedProx: clients add the proximal term (mu/2)·‖w - w_global‖² to
	// their local loss. The server side is FedAvg.
	Proximal bool
	// Encryptable is true if the strategy needs only the weighted sum of the updates, the one
	// aggregate the encrypted path provides. Median, trimmed mean and Krum need the
	// individual updates and run in plaintext mode only.
	Encryptable bool
}

var strategies = []Strategy{
	{Name: "fedavg", Aggregator: AggregatorWeightedMean, Optimizer: OptimizerFedAvg, Encryptable: true},
	{Name: "fedprox", Aggregator: AggregatorWeightedMean, Optimizer: OptimizerFedAvg, Proximal: true, Encryptable: true},
	{Name: "fedadam", Aggregator: AggregatorWeightedMean, Optimizer: OptimizerFedAdam, Encryptable: true},
	{Name: "fedyogi", Aggregator: AggregatorWeightedMean, Optimizer: OptimizerFedYogi, Encryptable: true},
	{Name: "fedadagrad", Aggregator: AggregatorWeightedMean, Optimizer: OptimizerFedAdagrad, Encryptable: true},
	{Name: "median", Aggregator: AggregatorMedian, Optimizer: OptimizerFedAvg},
	{Name: "trimmed-mean", Aggregator: AggregatorTrimmedMean, Optimizer: OptimizerFedAvg},
	{Name: "krum", Aggregator: AggregatorKrum, Optimizer: OptimizerFedAvg},
}

// StrategyNames returns the names ParseStrategy accepts, in a stable order.
func StrategyNames() []string {
	names := make([]string, len(strategies))
	for i, s := range strategies {
		names[i] = s.Name
	}
	return names
}

// ParseStrategy returns the strategy called name (case-insensitive, surrounding spaces
// ignored): fedavg, fedprox, fedadam, fedyogi, fedadagrad, median, trimmed-mean or krum.
// It returns an error wrapping ErrUnknownStrategy for any other name.
func ParseStrategy(name string) (Strategy, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, s := range strategies {
		if s.Name == n {
			return s, nil
		}
	}
	return Strategy{}, fmt.Errorf("%w: %q, want one of %q", ErrUnknownStrategy, name, StrategyNames())
}

// String returns the strategy's name.
func (s Strategy) String() string { return s.Name }
