// Package simulations runs many virtual hospitals on one machine so researchers can compare
// models, data partitions, privacy settings and attacks before a real study.
//
// Reach for [Partition] first: it splits a labelled data set among N virtual hospitals with
// one of the standard federated-learning [Scheme]s (IID, Dirichlet label skew, pathological
// label shards, Dirichlet quantity skew), parsed from a string such as "dirichlet:0.5" by
// [ParseScheme]. [LabelCounts] summarises what each hospital received.
//
// Partitioning is a pure function of its inputs: the same labels, scheme and seed give the
// same partition on every run, platform and Go version (the random numbers come from the PCG
// generator of math/rand/v2 through this package's own shuffle, bounded-integer, normal and
// gamma routines, never from rand.Rand's methods, whose output Go may change).
package simulations
