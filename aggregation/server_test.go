package aggregation_test

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

// handConfig has round numbers so that two steps can be computed by hand: eta 0.1,
// beta1 0.5, beta2 0.75, tau 0.1, so v starts at tau² = 0.01.
func handConfig(name string) aggregation.ServerConfig {
	return aggregation.ServerConfig{Name: name, LR: 0.1, Beta1: 0.5, Beta2: 0.75, Tau: 0.1}
}

func TestServerOptimizerTwoSteps(t *testing.T) {
	// Weights (0, 5); updates (2, 0) then (1, 0). The second coordinate never moves.
	// m: 0.5·0 + 0.5·2 = 1, then 0.5·1 + 0.5·1 = 1, for every adaptive variant.
	sq := math.Sqrt
	tests := []struct {
		name         string
		step1, step2 float64 // first coordinate after each step
	}{
		// x += eta·Delta: 0 + 0.1·2, then + 0.1·1.
		{"fedavg", 0.2, 0.3},
		// v: 0.01 + 4 = 4.01, then 4.01 + 1 = 5.01.
		{"fedadagrad", 0.1 / (sq(4.01) + 0.1), 0.1/(sq(4.01)+0.1) + 0.1/(sq(5.01)+0.1)}, // 0.047562, 0.090329
		// v: 0.01 - 0.25·4·sign(0.01-4) = 1.01, then 1.01 - 0.25·1·sign(1.01-1) = 0.76.
		{"fedyogi", 0.1 / (sq(1.01) + 0.1), 0.1/(sq(1.01)+0.1) + 0.1/(sq(0.76)+0.1)}, // 0.090499, 0.193403
		// v: 0.75·0.01 + 0.25·4 = 1.0075, then 0.75·1.0075 + 0.25·1 = 1.005625.
		{"fedadam", 0.1 / (sq(1.0075) + 0.1), 0.1/(sq(1.0075)+0.1) + 0.1/(sq(1.005625)+0.1)}, // 0.090601, 0.181278
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := aggregation.NewServerOptimizer(handConfig(tt.name), 2)
			if err != nil {
				t.Fatal(err)
			}
			x := []float32{0, 5}
			if err := o.Apply(x, []float32{2, 0}); err != nil {
				t.Fatal(err)
			}
			checkVec(t, x, []float32{float32(tt.step1), 5})
			if err := o.Apply(x, []float32{1, 0}); err != nil {
				t.Fatal(err)
			}
			checkVec(t, x, []float32{float32(tt.step2), 5})
			if o.Steps() != 2 {
				t.Errorf("Steps() = %d, want 2", o.Steps())
			}
		})
	}
}

func TestServerConfigDefaults(t *testing.T) {
	tests := []struct {
		in   aggregation.ServerConfig
		want aggregation.ServerConfig
	}{
		{aggregation.ServerConfig{}, aggregation.ServerConfig{Name: "fedavg", LR: 1, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}},
		{aggregation.DefaultServerConfig(), aggregation.ServerConfig{Name: "fedavg", LR: 1, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}},
		{aggregation.ServerConfig{Name: "fedadam"}, aggregation.ServerConfig{Name: "fedadam", LR: 0.01, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}},
		{aggregation.ServerConfig{Name: "fedyogi", LR: 0.3, Tau: 1e-2}, aggregation.ServerConfig{Name: "fedyogi", LR: 0.3, Beta1: 0.9, Beta2: 0.99, Tau: 1e-2}},
	}
	for _, tt := range tests {
		t.Run(tt.want.Name, func(t *testing.T) {
			if err := tt.in.Validate(); err != nil {
				t.Fatal(err)
			}
			o, err := aggregation.NewServerOptimizer(tt.in, 3)
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Config(); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestServerConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		c       aggregation.ServerConfig
		want    error
		mention string
	}{
		{"unknown name", aggregation.ServerConfig{Name: "sgd"}, aggregation.ErrUnknownStrategy, `Name is "sgd"`},
		{"negative LR", aggregation.ServerConfig{LR: -1}, aggregation.ErrParameter, "LR is -1"},
		{"NaN LR", aggregation.ServerConfig{LR: math.NaN()}, aggregation.ErrParameter, "LR is NaN"},
		{"infinite LR", aggregation.ServerConfig{LR: math.Inf(1)}, aggregation.ErrParameter, "LR is +Inf"},
		{"Beta1 one", aggregation.ServerConfig{Beta1: 1}, aggregation.ErrParameter, "Beta1 is 1"},
		{"Beta2 negative", aggregation.ServerConfig{Beta2: -0.5}, aggregation.ErrParameter, "Beta2 is -0.5"},
		{"Tau negative", aggregation.ServerConfig{Name: "fedadam", Tau: -1e-3}, aggregation.ErrParameter, "Tau is -0.001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("got %v, want %v mentioning %q", err, tt.want, tt.mention)
			}
			if _, err := aggregation.NewServerOptimizer(tt.c, 1); !errors.Is(err, tt.want) {
				t.Errorf("NewServerOptimizer: got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := aggregation.NewServerOptimizer(aggregation.ServerConfig{}, 0); !errors.Is(err, aggregation.ErrParameter) {
		t.Errorf("dim 0: got %v, want %v", err, aggregation.ErrParameter)
	}
}

func TestServerOptimizerApplyErrors(t *testing.T) {
	tests := []struct {
		name          string
		global, delta []float32
		want          error
	}{
		{"short global", []float32{0}, []float32{1, 1}, aggregation.ErrLengthMismatch},
		{"long delta", []float32{0, 0}, []float32{1, 1, 1}, aggregation.ErrLengthMismatch},
		{"NaN delta", []float32{0, 0}, []float32{1, float32(math.NaN())}, aggregation.ErrNonFinite},
	}
	for _, name := range []string{"fedavg", "fedadam"} {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				o, err := aggregation.NewServerOptimizer(aggregation.ServerConfig{Name: name}, 2)
				if err != nil {
					t.Fatal(err)
				}
				before, _ := o.MarshalBinary()
				g := slices.Clone(tt.global)
				if err := o.Apply(g, tt.delta); !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				after, _ := o.MarshalBinary()
				if !slices.Equal(g, tt.global) || !slices.Equal(before, after) {
					t.Errorf("failed Apply changed the weights or the state")
				}
			})
		}
	}
	var zero aggregation.ServerOptimizer
	if err := zero.Apply(nil, nil); !errors.Is(err, aggregation.ErrState) {
		t.Errorf("zero optimizer: got %v, want %v", err, aggregation.ErrState)
	}
}
