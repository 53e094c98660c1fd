// Package he lets hospitals add encrypted model updates that no single party
// can decrypt: multiparty threshold CKKS (lattigo v5: core/rlwe, he/hefloat,
// mhe) reduced to the three things MedFed needs, a key ceremony, encrypted
// weighted sums and t-out-of-N collective decryption.
//
// It is pure computation over values: no network, no disk, no clock. Every
// object that crosses the network has a compact, versioned wire encoding
// (MarshalBinary / DecodeXxx) whose decoders check exact lengths against the
// parameter profile before allocating or calling lattigo.
//
// # Parameters
//
// Start from DefaultProfile and turn it into Params with NewParams, which
// checks 128-bit security against the HomomorphicEncryption.org table (LogN
// 12 allows 109 bits of modulus, 13 allows 218, 14 allows 438, 15 allows
// 881; uniform ternary secrets, error width 3.2), that there is no special
// modulus P (only additions are needed), and that the scale, the value bound
// and the flooding noise of the largest group fit in the modulus. Values are
// coefficient-packed (IsBatched = false): one ciphertext holds 2^LogN
// values, not 2^(LogN-1).
//
// # Key ceremony
//
// For a Group of N hospitals with threshold t, each hospital makes a Party
// (its secret-key share s_i) and the coordinator a Ceremony:
//
//  1. Seed: every party publishes SeedCommitment (a hash of a secret nonce);
//     once all are in, every party publishes SeedReveal. The seed is the
//     hash of all nonces (JointSeed), so no party, and not the coordinator,
//     chooses it.
//  2. Public key: every party sends PublicKeyShare(seed) (mhe.PublicKeyGenProtocol);
//     the Ceremony aggregates them into the collective PublicKey.
//  3. Threshold: every party sends ThresholdShare(j) to every other party j
//     (mhe.Thresholdizer: Shamir shares of s_i), sealed with crypto/seal so
//     the coordinator relays but cannot read them; each party adds what it
//     receives (AddThresholdShare) and is Ready when it has all N-1.
//
// # Rounds
//
// A hospital encrypts weight*update with an Encryptor (weight is its sample
// count, sent in clear), the coordinator sums the Vectors (Vector.Add,
// Vector.AddBinary straight from the wire), and any t hospitals produce
// DecryptionShares (mhe.Combiner for the active set, then
// mhe.KeySwitchProtocol towards the zero key, plus flooding noise). The
// coordinator feeds them to a Decryption and decodes the weighted Sum or the
// Average (the sum divided by the total weight, folded into the decoding
// scale).
//
// # Flooding
//
// Each decryption share carries noise uniform in [-B, B], with B = 2^LogFloodMargin
// (2^40 by default) times a 10-sigma bound on the aggregate ciphertext's
// noise, computed from the group size and the number of contributions. By the
// smudging lemma, the shares and the decrypted result hide the ciphertext
// noise (and hence the secret key) up to statistical distance 2^-40 per
// coefficient. Uniform noise is sampled by this package (ChaCha8 keyed per
// party and ciphertext) because lattigo's Gaussian sampler panics above
// sigma 2^53. The noise for a ciphertext is a deterministic function of the
// party's secret flood key, the ciphertext digest, the active set and the
// contribution count, and a Party answers each ciphertext for one active set
// only, so repeating a request cannot average the flooding away. The price is
// precision: with the default profile, 100 parties and t = 51, the worst-case
// error of an average is 4.4e-8 at a total weight of 1000 (5e-10 for 10
// parties); Params.ErrorBound gives the bound for any setting.
//
// # What it does not do
//
// It does not decide whether an aggregate may be decrypted: the caller checks
// the contribution count against the round's min_clients before asking a
// Party for a share. With one contribution, the "aggregate" is one
// hospital's update. Parties are honest-but-curious: a malicious party can
// send a wrong share and spoil (not read) a decryption.
package he
