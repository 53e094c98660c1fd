package aggregation_test

import (
	"errors"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

func TestParseStrategy(t *testing.T) {
	tests := []struct {
		in   string
		want aggregation.Strategy
	}{
		{"fedavg", aggregation.Strategy{Name: "fedavg", Aggregator: "weighted-mean", Optimizer: "fedavg", Encryptable: true}},
		{"FedProx", aggregation.Strategy{Name: "fedprox", Aggregator: "weighted-mean", Optimizer: "fedavg", Proximal: true, Encryptable: true}},
		{"fedadam", aggregation.Strategy{Name: "fedadam", Aggregator: "weighted-mean", Optimizer: "fedadam", Encryptable: true}},
		{"fedyogi", aggregation.Strategy{Name: "fedyogi", Aggregator: "weighted-mean", Optimizer: "fedyogi", Encryptable: true}},
		{" fedadagrad ", aggregation.Strategy{Name: "fedadagrad", Aggregator: "weighted-mean", Optimizer: "fedadagrad", Encryptable: true}},
		{"median", aggregation.Strategy{Name: "median", Aggregator: "median", Optimizer: "fedavg"}},
		{"trimmed-mean", aggregation.Strategy{Name: "trimmed-mean", Aggregator: "trimmed-mean", Optimizer: "fedavg"}},
		{"KRUM", aggregation.Strategy{Name: "krum", Aggregator: "krum", Optimizer: "fedavg"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := aggregation.ParseStrategy(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			// Every strategy's optimizer is a valid ServerConfig.Name.
			if err := (aggregation.ServerConfig{Name: got.Optimizer}).Validate(); err != nil {
				t.Error(err)
			}
		})
	}
	if n := len(aggregation.StrategyNames()); n != len(tests) {
		t.Errorf("StrategyNames has %d names, want %d", n, len(tests))
	}
	for _, bad := range []string{"", "fedsgd", "trimmed_mean", "multi-krum"} {
		if _, err := aggregation.ParseStrategy(bad); !errors.Is(err, aggregation.ErrUnknownStrategy) {
			t.Errorf("ParseStrategy(%q): got %v, want %v", bad, err, aggregation.ErrUnknownStrategy)
		}
	}
}
