package aggregation_test

import (
	"fmt"

	"github.com/medfed/medfed/aggregation"
)

// A plaintext FedAvg round: average the clients' deltas weighted by their sample counts, then
// let the server optimizer apply the result to the global weights.
func Example() {
	global := []float32{0.5, -1}
	updates := []aggregation.Update{
		{Client: "st-mary", Delta: []float32{0.1, 0.2}, Samples: 100},
		{Client: "royal-free", Delta: []float32{0.4, -0.4}, Samples: 300},
	}
	mean, err := aggregation.WeightedMean(updates)
	if err != nil {
		fmt.Println(err)
		return
	}
	opt, err := aggregation.NewServerOptimizer(aggregation.DefaultServerConfig(), len(global))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := opt.Apply(global, mean); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("mean update %.3f, new global %.3f\n", mean, global)
	// Output: mean update [0.325 -0.250], new global [0.825 -1.250]
}

func ExampleWeightedMean_error() {
	_, err := aggregation.WeightedMean([]aggregation.Update{
		{Client: "st-mary", Delta: []float32{0.1, 0.2}, Samples: 100},
		{Client: "royal-free", Delta: []float32{0.4}, Samples: 300},
	})
	fmt.Println(err)
	// Output: aggregation: length mismatch: update 1 (client "royal-free") has 1 values, want 2 like update 0 (client "st-mary")
}

// Krum keeps the updates closest to their neighbours and drops the two poisoned ones.
func ExampleKrum() {
	updates := []aggregation.Update{
		{Client: "a", Delta: []float32{1.0, 1.0}},
		{Client: "evil-1", Delta: []float32{50, -40}},
		{Client: "b", Delta: []float32{1.1, 0.9}},
		{Client: "c", Delta: []float32{0.9, 1.1}},
		{Client: "evil-2", Delta: []float32{-60, 70}},
		{Client: "d", Delta: []float32{1.0, 1.2}},
		{Client: "e", Delta: []float32{1.2, 1.0}},
	}
	mean, picked, err := aggregation.Krum(updates, 2, 3) // tolerate 2 Byzantine, average 3
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, i := range picked {
		fmt.Print(updates[i].Client, " ")
	}
	fmt.Printf("-> %.2f\n", mean)
	// Output: a b c -> [1.00 1.00]
}

func ExampleClipNorm() {
	delta := []float32{3, -4} // norm 5
	scale, err := aggregation.ClipNorm(delta, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("scale %.1f, delta %.1f, norm %.1f\n", scale, delta, aggregation.L2Norm(delta))
	// Output: scale 0.2, delta [0.6 -0.8], norm 1.0
}

// FedAdam on the server: the optimizer's state survives a coordinator restart or a Raft
// snapshot through MarshalBinary and UnmarshalBinary.
func ExampleServerOptimizer() {
	opt, err := aggregation.NewServerOptimizer(aggregation.ServerConfig{Name: "fedadam", LR: 0.1}, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	global := []float32{0, 0}
	_ = opt.Apply(global, []float32{0.5, -0.5})
	state, _ := opt.MarshalBinary()

	var restored aggregation.ServerOptimizer
	if err := restored.UnmarshalBinary(state); err != nil {
		fmt.Println(err)
		return
	}
	_ = restored.Apply(global, []float32{0.5, -0.5})
	fmt.Printf("%s after %d steps: %.4f (%d bytes of state)\n",
		restored.Config().Name, restored.Steps(), global, len(state))
	// Output: fedadam after 2 steps: [0.2308 -0.2308] (92 bytes of state)
}

func ExampleParseStrategy() {
	for _, name := range []string{"fedyogi", "krum"} {
		s, err := aggregation.ParseStrategy(name)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: aggregate with %s, apply with %s, encryptable %v\n",
			s, s.Aggregator, s.Optimizer, s.Encryptable)
	}
	// Output:
	// fedyogi: aggregate with weighted-mean, apply with fedyogi, encryptable true
	// krum: aggregate with krum, apply with fedavg, encryptable false
}
