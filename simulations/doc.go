// Package simulations runs many virtual hospitals on one machine so researchers can compare
// models, data partitions, privacy settings and attacks before a real study.
//
// Reach for [Run] with a [Config] (DefaultConfig is `medfed simulate` with no flags) to run a
// whole federation: a Raft coordinator cluster on loopback, real client.Node hospitals (or
// this package's scripted hospitals when a scenario needs attacks, dropout or seeded DP
// noise), the same crypto/he code as a deployment, and predictions through the inference
// API; Mode "inprocess" trades the network for scale (thousands of hospitals). [Compare]
// runs one scenario for several architectures.
//
// [Partition] it splits a labelled data set among N virtual hospitals with
// one of the standard federated-learning [Scheme]s (IID, Dirichlet label skew, pathological
// label shards, Dirichlet quantity skew), parsed from a string such as "dirichlet:0.5" by
// [ParseScheme]. [LabelCounts] summarises what each hospital received.
//
// Partitioning is a pure function of its inputs: the same labels, scheme and seed give the
// same partition on every run, platform and Go version (the random numbers come from the PCG
// generator of math/rand/v2 through this package's own shuffle, bounded-integer, normal and
// gamma routines, never from rand.Rand's methods, whose output Go may change).
package simulations
