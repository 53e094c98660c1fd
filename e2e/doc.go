// Package e2e holds MedFed's multi-process tests: a coordinator cluster and hospital
// client nodes run as separate `medfed` processes on loopback with mutual TLS, the way a
// consortium deploys them, and a Docker Compose stack built from deploy/.
//
// The tests build the binary with `go build` (or use MEDFED_E2E_BINARY). The default forms
// are sized for CI on two cores; MEDFED_LONG=1 runs the full acceptance runs of issue 5.
package e2e
