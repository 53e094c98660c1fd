package inference

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/internal/pb/oip"
)

// RegisterGRPC registers the protocol's inference.GRPCInferenceService on g. ServerLive and
// ServerReady need no authentication; the other methods need a verified client certificate
// (grpc credentials.NewTLS with mutual TLS) or "authorization: Bearer <token>" metadata.
// Set the gRPC server's grpc.MaxRecvMsgSize to at least Config.MaxBodyBytes.
//
// Inputs come either as typed contents or as raw_input_contents (little-endian); the reply
// uses raw_output_contents when the request used raw input, typed contents otherwise.
func (s *Server) RegisterGRPC(g grpc.ServiceRegistrar) {
	oip.RegisterGRPCInferenceServiceServer(g, &grpcService{s: s})
}

type grpcService struct {
	oip.UnimplementedGRPCInferenceServiceServer
	s *Server
}

// grpcStatus maps an error to a status at the boundary.
func grpcStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, ErrRateLimited):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrModelNotFound), errors.Is(err, ErrVersionNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrInvalidInput), errors.Is(err, ErrTooLarge):
		code = codes.InvalidArgument
	case errors.Is(err, ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// call authenticates, rate-limits, runs and counts one RPC.
func (g *grpcService) call(ctx context.Context, endpoint string, f func() (int, error)) error {
	var state *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
	}
	auth := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			auth = v[0]
		}
	}
	caller, wait, err := g.s.admit(state, auth)
	samples := 0
	if err == nil {
		samples, err = f()
	} else if errors.Is(err, ErrRateLimited) {
		grpc.SetTrailer(ctx, metadata.Pairs("retry-after", retryAfter(wait)))
	}
	if caller == "" {
		caller = "anonymous"
	}
	g.s.m.request(requestKey{caller: caller, protocol: "grpc", endpoint: endpoint, code: codeOf(err)}, samples)
	return grpcStatus(err)
}

func (g *grpcService) ServerLive(context.Context, *oip.ServerLiveRequest) (*oip.ServerLiveResponse, error) {
	return &oip.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *oip.ServerReadyRequest) (*oip.ServerReadyResponse, error) {
	return &oip.ServerReadyResponse{Ready: g.s.reg.Ready()}, nil
}

func (g *grpcService) ServerMetadata(ctx context.Context, _ *oip.ServerMetadataRequest) (*oip.ServerMetadataResponse, error) {
	var resp *oip.ServerMetadataResponse
	err := g.call(ctx, "server_metadata", func() (int, error) {
		resp = &oip.ServerMetadataResponse{Name: "medfed", Version: serverVersion(), Extensions: []string{"explain"}}
		return 0, nil
	})
	return resp, err
}

func (g *grpcService) ModelReady(ctx context.Context, req *oip.ModelReadyRequest) (*oip.ModelReadyResponse, error) {
	var resp *oip.ModelReadyResponse
	err := g.call(ctx, "model_ready", func() (int, error) {
		if _, err := g.s.reg.Lookup(req.GetName(), req.GetVersion()); err != nil {
			return 0, err
		}
		resp = &oip.ModelReadyResponse{Ready: true}
		return 0, nil
	})
	return resp, err
}

func (g *grpcService) ModelMetadata(ctx context.Context, req *oip.ModelMetadataRequest) (*oip.ModelMetadataResponse, error) {
	var resp *oip.ModelMetadataResponse
	err := g.call(ctx, "model_metadata", func() (int, error) {
		sm, err := g.s.reg.Lookup(req.GetName(), req.GetVersion())
		if err != nil {
			return 0, err
		}
		versions, err := g.s.reg.Versions(sm.name)
		if err != nil {
			return 0, err
		}
		resp = &oip.ModelMetadataResponse{Name: sm.name, Platform: "medfed"}
		for _, v := range versions {
			resp.Versions = append(resp.Versions, strconv.FormatUint(v, 10))
		}
		inputs, outputs := sm.tensors()
		for _, t := range inputs {
			resp.Inputs = append(resp.Inputs, &oip.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
		}
		for _, t := range outputs {
			resp.Outputs = append(resp.Outputs, &oip.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
		}
		return 0, nil
	})
	return resp, err
}

func (g *grpcService) ModelInfer(ctx context.Context, req *oip.ModelInferRequest) (*oip.ModelInferResponse, error) {
	var resp *oip.ModelInferResponse
	err := g.call(ctx, "infer", func() (int, error) {
		sm, err := g.s.reg.Lookup(req.GetModelName(), req.GetModelVersion())
		if err != nil {
			return 0, err
		}
		if len(req.Inputs) != 1 {
			return 0, fmt.Errorf("%w: request has %d inputs, model %s takes exactly one (%q, shape %v, FP32)", ErrInvalidInput, len(req.Inputs), sm.name, InputName, sm.inShape)
		}
		in := req.Inputs[0]
		if err := checkDatatype(in.Name, in.Datatype); err != nil {
			return 0, err
		}
		n, err := sm.checkShape(in.Name, in.Shape, g.s.cfg.MaxRequestSamples)
		if err != nil {
			return 0, err
		}
		raw := len(req.RawInputContents) > 0
		var x []float32
		switch {
		case raw && len(req.RawInputContents) != 1:
			return 0, fmt.Errorf("%w: %d raw_input_contents for 1 input", ErrInvalidInput, len(req.RawInputContents))
		case raw && in.Contents != nil:
			return 0, fmt.Errorf("%w: input %q has both contents and raw_input_contents, want one", ErrInvalidInput, in.Name)
		case raw:
			x, err = decodeRaw(in.Name, req.RawInputContents[0], in.Datatype, n*sm.inSize)
		default:
			x, err = decodeContents(in.Name, in.Contents, in.Datatype, n*sm.inSize)
		}
		if err != nil {
			return 0, err
		}
		var names []string
		for _, o := range req.Outputs {
			names = append(names, o.Name)
		}
		outs, err := selectOutputs(names, []string{OutputProbabilities, OutputPredictedClass})
		if err != nil {
			return 0, err
		}
		probs, classes, err := g.s.infer(ctx, sm, x, n)
		if err != nil {
			return 0, err
		}
		resp = &oip.ModelInferResponse{ModelName: sm.name, ModelVersion: strconv.FormatUint(sm.version, 10), Id: req.Id}
		for _, o := range outs {
			t := &oip.ModelInferResponse_InferOutputTensor{Name: o}
			var rawOut []byte
			switch o {
			case OutputProbabilities:
				t.Datatype, t.Shape = "FP32", []int64{int64(n), int64(sm.classes)}
				if raw {
					rawOut = make([]byte, 4*len(probs))
					for i, v := range probs {
						binary.LittleEndian.PutUint32(rawOut[4*i:], math.Float32bits(v))
					}
				} else {
					t.Contents = &oip.InferTensorContents{Fp32Contents: probs}
				}
			case OutputPredictedClass:
				t.Datatype, t.Shape = "INT64", []int64{int64(n)}
				if raw {
					rawOut = make([]byte, 8*len(classes))
					for i, v := range classes {
						binary.LittleEndian.PutUint64(rawOut[8*i:], uint64(v))
					}
				} else {
					t.Contents = &oip.InferTensorContents{Int64Contents: classes}
				}
			}
			resp.Outputs = append(resp.Outputs, t)
			if raw {
				resp.RawOutputContents = append(resp.RawOutputContents, rawOut)
			}
		}
		return n, nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
