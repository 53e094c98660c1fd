package aggregation_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

func TestWeightedMean(t *testing.T) {
	tests := []struct {
		name    string
		updates []aggregation.Update
		want    []float32
	}{
		// x: (1·1 + 2·3 + 3·5)/6 = 22/6; y: (1·2 + 2·4 - 3·6)/6 = -8/6.
		{"three weighted", three(), []float32{22.0 / 6, -8.0 / 6}},
		{"one update", []aggregation.Update{{Delta: []float32{0.5, -2}, Samples: 7}}, []float32{0.5, -2}},
		{"equal weights", vectors([]float32{1, 0}, []float32{0, 1}), []float32{0.5, 0.5}},
		// Accumulation in float64: 1e8 + 1 - 1e8 would lose the 1 in float32.
		{"float64 accumulation", vectors([]float32{1e8}, []float32{1}, []float32{-1e8}), []float32{1.0 / 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aggregation.WeightedMean(tt.updates)
			if err != nil {
				t.Fatal(err)
			}
			checkVec(t, got, tt.want)
		})
	}
}

// badInputs are rejected by every aggregator; mention is a substring the message must contain.
type badInput struct {
	name    string
	updates []aggregation.Update
	want    error
	mention string
}

var badInputs = []badInput{
	{"nil", nil, aggregation.ErrNoUpdates, ""},
	{"empty delta", []aggregation.Update{{Client: "a", Samples: 1}}, aggregation.ErrLengthMismatch, `update 0 (client "a") has 0 values, want at least 1`},
	{"length mismatch", []aggregation.Update{
		{Client: "a", Delta: []float32{1, 2}, Samples: 1},
		{Client: "b", Delta: []float32{1, 2, 3}, Samples: 1},
	}, aggregation.ErrLengthMismatch, `update 1 (client "b") has 3 values, want 2`},
	{"NaN", []aggregation.Update{
		{Client: "a", Delta: []float32{1, 2}, Samples: 1},
		{Client: "b", Delta: []float32{1, float32(math.NaN())}, Samples: 1},
	}, aggregation.ErrNonFinite, `update 1 (client "b") has NaN at index 1`},
	{"Inf", []aggregation.Update{{Delta: []float32{float32(math.Inf(-1))}, Samples: 1}},
		aggregation.ErrNonFinite, "update 0 has -Inf at index 0"},
}

func TestWeightedMeanErrors(t *testing.T) {
	tests := append(badInputs[:len(badInputs):len(badInputs)],
		badInput{"zero samples", []aggregation.Update{{Client: "z", Delta: []float32{1}, Samples: 0}}, aggregation.ErrSamples, `update 0 (client "z") has 0 samples`},
		badInput{"negative samples", []aggregation.Update{{Delta: []float32{1}, Samples: 2}, {Delta: []float32{1}, Samples: -1}}, aggregation.ErrSamples, "update 1 has -1 samples"},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aggregation.WeightedMean(tt.updates)
			checkErr(t, got, err, tt.want, tt.mention)
		})
	}
}

func checkErr(t *testing.T, got []float32, err, want error, mention string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got (%v, %v), want error %v", got, err, want)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Errorf("error %q does not mention %q", err, mention)
	}
}
