// Package cputime reads the CPU time the process has used, for benchmarks that report it
// next to wall time: on a shared machine the wall time includes waiting for a core, and
// CPU time per byte or per operation says what the work itself costs.
package cputime
