// Package aggregation combines the hospitals' model updates into the next global model: FedAvg
// (in the clear or over ciphertexts), the adaptive server optimizers FedAdam, FedYogi and
// FedAdagrad, the Byzantine-robust aggregators (coordinate-wise median, trimmed mean,
// Multi-Krum) and update norm clipping.
//
// Everything here is a pure function over float32 parameter vectors in the model's flat order
// (model.Sequential.Flat): no I/O, no goroutines, no package state. Sums are accumulated in
// float64. A round in plaintext mode reaches first for WeightedMean and a ServerOptimizer:
//
//	mean, err := aggregation.WeightedMean(updates)  // sum(n_i·delta_i) / sum(n_i)
//	opt, err := aggregation.NewServerOptimizer(aggregation.ServerConfig{Name: "fedadam"}, dim)
//	err = opt.Apply(global, mean)                    // global += step, in place
//	state, err := opt.MarshalBinary()                // for the replicated round state
//
// An Update's Delta is the client's local weights minus the global weights it started from,
// so a server optimizer adds the aggregate (it is a pseudo-gradient with the sign of a step).
// ParseStrategy maps a federation's strategy name to the aggregator and server optimizer it
// uses, and says whether the strategy can run on encrypted updates: the encrypted path yields
// only the weighted sum, so FedAvg, FedProx and the adaptive optimizers qualify, while Median,
// TrimmedMean and Krum need each update in the clear and run in plaintext mode only. In
// encrypted mode the defence against outsized updates is ClipNorm on the client.
//
// EncryptedWeightedSum is FedAvg under encryption: it adds the hospitals' crypto/he
// ciphertexts (each of samples·delta, with its sample count as weight) without any key, and
// CheckEncrypted is the per-update check a coordinator runs before accepting one. The
// result decrypts, with t hospitals' shares, to the same weighted mean WeightedMean
// computes in the clear.
//
// Differential privacy (DPConfig, ClipAndNoise, Accountant) is DP-FedAvg at the hospital
// level: each hospital clips its update to norm C, adds its 1/min_clients share of Gaussian
// noise of total standard deviation z·C and submits it with weight 1, so the decrypted sum is
// the Gaussian mechanism; the Accountant tracks its Rényi DP (Sampled Gaussian Mechanism,
// Mironov et al. 2019), reports epsilon at delta with the improved conversion and refuses
// rounds past the budget.
//
// Choices worth knowing:
//   - WeightedMean weights by Samples, which must be positive. Median, TrimmedMean and Krum
//     ignore Samples: a Byzantine client could otherwise claim a huge count.
//   - Krum's m updates are averaged without weights, as in Blanchard et al. 2017.
//   - The adaptive optimizers follow Reddi et al. 2021, Algorithm 2, exactly: v starts at tau²,
//     m at zero, and there is no bias correction (Flower's FedAdam, for one, starts v at zero
//     and adds it). Defaults are beta1 0.9, beta2 0.99, tau 1e-3 and eta 0.01 (1 for FedAvg).
//   - Zero fields of ServerConfig mean "default", so beta1 = 0 cannot be requested.
//
// Errors wrap the sentinel values in errors.go and name the offending client, what was
// expected and what arrived. Bad input (NaN, mismatched lengths, an impossible parameter,
// corrupted state) returns an error and changes nothing. A ServerOptimizer is not safe for
// concurrent use; the functions are, as long as no one writes the vectors they read.
package aggregation
