package aggregation

import "fmt"

// Update is one client's contribution to a round.
type Update struct {
	// Client identifies the sender; it is used only in error messages.
	Client string
	// Delta is the client's local weights minus the global weights the round started from, in
	// the model's flat parameter order (model.Sequential.Flat).
	Delta []float32
	// Samples is the number of training samples behind Delta, the FedAvg weight.
	Samples int
}

// name describes update i of a slice for error messages.
func (u Update) name(i int) string {
	if u.Client == "" {
		return fmt.Sprintf("update %d", i)
	}
	return fmt.Sprintf("update %d (client %q)", i, u.Client)
}

// checkUpdates reports whether updates is a usable, non-empty set of equally long, finite
// deltas, and returns their length.
func checkUpdates(updates []Update) (int, error) {
	if len(updates) == 0 {
		return 0, ErrNoUpdates
	}
	dim := len(updates[0].Delta)
	if dim == 0 {
		return 0, fmt.Errorf("%w: %s has 0 values, want at least 1", ErrLengthMismatch, updates[0].name(0))
	}
	for i, u := range updates {
		if len(u.Delta) != dim {
			return 0, fmt.Errorf("%w: %s has %d values, want %d like %s",
				ErrLengthMismatch, u.name(i), len(u.Delta), dim, updates[0].name(0))
		}
		if j := firstNonFinite(u.Delta); j >= 0 {
			return 0, fmt.Errorf("%w: %s has %v at index %d", ErrNonFinite, u.name(i), u.Delta[j], j)
		}
	}
	return dim, nil
}

// firstNonFinite returns the index of the first NaN or ±Inf in v, or -1.
func firstNonFinite(v []float32) int {
	for i, x := range v {
		if x-x != 0 { // NaN for NaN and ±Inf, 0 for every finite x
			return i
		}
	}
	return -1
}

// WeightedMean returns the FedAvg aggregate sum(n_i·d_i) / sum(n_i) of the updates' deltas d_i,
// weighted by their sample counts n_i, accumulated in float64.
//
// It returns an error wrapping ErrNoUpdates, ErrLengthMismatch, ErrSamples or ErrNonFinite
// for an empty set, deltas of different (or zero) length, a sample count below 1, or a NaN or
// infinite value, naming the offending update.
func WeightedMean(updates []Update) ([]float32, error) {
	dim, err := checkUpdates(updates)
	if err != nil {
		return nil, err
	}
	var total float64
	for i, u := range updates {
		if u.Samples <= 0 {
			return nil, fmt.Errorf("%w: %s has %d samples", ErrSamples, u.name(i), u.Samples)
		}
		total += float64(u.Samples)
	}
	acc := make([]float64, dim)
	for _, u := range updates {
		w := float64(u.Samples)
		d := u.Delta[:dim]
		for j, x := range d {
			acc[j] += w * float64(x)
		}
	}
	out := make([]float32, dim)
	for j, s := range acc {
		out[j] = float32(s / total)
	}
	return out, nil
}
