#!/bin/sh
# Runs the protoc-gen-go-grpc version pinned in go.mod (a tool dependency) for protoc.
exec go tool protoc-gen-go-grpc "$@"
