//go:build !amd64 || purego

package gemm

// defaultImpl returns the fastest implementation for this CPU.
func defaultImpl() impl { return impl{kernel: kernelGo} }

// impls returns every implementation usable on this CPU, by name, for tests and benchmarks.
func impls() map[string]impl { return map[string]impl{"go": {kernel: kernelGo}} }
