// Package oip holds the Open Inference Protocol v2 (KServe / Triton / MLServer) gRPC
// messages and service, inference.GRPCInferenceService, generated from the protocol's public
// grpc_predict_v2.proto. Package inference implements the service; this package is only the
// wire format. The Go code is generated and committed; run `go generate ./internal/pb/oip`
// after editing the .proto file (it needs protoc, the Debian protobuf-compiler package, and
// uses the generators pinned as tools in go.mod).
package oip

//go:generate sh -c "protoc -I . --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative grpc_predict_v2.proto"
