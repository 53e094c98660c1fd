// Package pb holds MedFed's medfed.v1 protocol buffers: the gRPC services that hospitals,
// operators and coordinator nodes speak (medfed.proto) and the commands the coordinator's
// Raft log carries (command.proto). The Go code is generated and committed; run
// `go generate ./internal/pb` after editing a .proto file (it needs protoc, the Debian
// protobuf-compiler package, and uses the generators pinned as tools in go.mod).
package pb

//go:generate protoc -I . --plugin=protoc-gen-go=./run-protoc-gen-go.sh --go_out=. --go_opt=paths=source_relative --plugin=protoc-gen-go-grpc=./run-protoc-gen-go-grpc.sh --go-grpc_out=. --go-grpc_opt=paths=source_relative medfed.proto command.proto
