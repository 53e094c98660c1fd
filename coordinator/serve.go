package coordinator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/internal/pb/oip"
	"github.com/medfed/medfed/model"
)

// Model as a service. Every node, followers included, serves the federations' committed
// model versions over the Open Inference Protocol v2 (package inference): the REST side
// under /v2/ on the HTTP port, inference.GRPCInferenceService on the gRPC port. The model
// name is the federation name and the version number the model version (the round that
// produced it). Version 0, a federation's initial random weights, is not served: a
// federation's model becomes available when its first round publishes.
//
// A goroutine the node owns (publishModels) watches the FSM: at every applied entry, and
// so also after a Restore from a snapshot and at start-up, it publishes to the registry the
// versions committed since it last looked. Apply itself never waits for it. Of a federation
// that has published many versions, only the newest Inference.Retain are loaded (at
// start-up only those are built) plus the versions an operator pinned (PinModel, a
// replicated command, so every node keeps the same ones); older versions are retired as
// newer ones arrive, and a pinned one when its pin is removed.

// newInference makes the node's registry and OIP server.
func (n *Node) newInference() error {
	reg, err := inference.NewRegistry(n.cfg.Inference, n.log.With("component", "inference"))
	if err != nil {
		return err
	}
	n.reg = reg
	n.inf = inference.NewServer(reg, n.cfg.InferenceTokens, n.log.With("component", "inference"))
	return nil
}

// inferenceDefaults returns the inference settings New serves with, zero fields filled.
func inferenceDefaults(c inference.Config) inference.Config {
	d := inference.DefaultConfig()
	if c.Retain == 0 {
		c.Retain = d.Retain
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	return c
}

// publishModels publishes committed model versions to the registry, and keeps the pinned
// ones loaded, until ctx is done.
func (n *Node) publishModels(ctx context.Context) {
	served := map[string]servedModels{} // federation -> what the registry was handed
	for {
		ch, _ := n.fsm.Changed()
		if err := n.syncModels(served); err != nil {
			return // the registry is closed: the node is shutting down
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// syncModels brings the registry up to the FSM for every federation. First the pins: the
// registry records new pins (also of versions it has not loaded) and drops removed ones,
// retiring an unpinned version outside the retention window. Then the versions newer than
// served[fed], at most the newest Retain of them, in ascending order so the newest becomes
// the default last. Last, newly pinned versions that are not loaded (older than the
// retention window) are published; being older than the default, they do not change it.
// It returns only inference.ErrClosed.
func (n *Node) syncModels(served map[string]servedModels) error {
	retain := uint64(inferenceDefaults(n.cfg.Inference).Retain)
	heads := n.fsm.modelHeads()
	for _, fed := range slices.Sorted(maps.Keys(heads)) {
		want := heads[fed]
		last, seen := served[fed]
		var newPins []uint64
		for _, v := range want.pinned {
			if !slices.Contains(last.pinned, v) {
				if err := n.reg.Pin(fed, v); err != nil {
					return err
				}
				newPins = append(newPins, v)
			}
		}
		for _, v := range last.pinned {
			if !slices.Contains(want.pinned, v) {
				if err := n.reg.Unpin(fed, v); err != nil {
					return err
				}
				n.log.Info("model version unpinned", "federation", fed, "version", v)
			}
		}
		if !seen || want.head > last.head {
			from := uint64(1)
			if seen {
				from = last.head + 1
			}
			if want.head >= retain && want.head-retain+1 > from {
				from = want.head - retain + 1
			}
			for v := from; v <= want.head; v++ {
				if err := n.publishVersion(fed, v); err != nil {
					if errors.Is(err, inference.ErrClosed) {
						return err
					}
					n.log.Error("model version not served", "federation", fed, "version", v, "err", err)
				}
			}
		}
		for _, v := range newPins {
			if _, err := n.reg.Version(fed, v); err == nil || v == 0 || v > want.head {
				continue
			}
			if err := n.publishVersion(fed, v); err != nil {
				if errors.Is(err, inference.ErrClosed) {
					return err
				}
				n.log.Error("pinned model version not served", "federation", fed, "version", v, "err", err)
			}
		}
		if len(newPins) > 0 {
			n.log.Info("model versions pinned", "federation", fed, "versions", newPins)
		}
		served[fed] = want
	}
	return nil
}

// publishVersion builds one committed model version from the federation's model spec and
// its flat weights, and publishes it.
func (n *Node) publishVersion(fed string, v uint64) error {
	_, w, specBytes, err := n.fsm.ModelVersion(fed, v, false)
	if err != nil {
		return err
	}
	var spec pb.FederationSpec
	if err := unmarshalSpec(specBytes, &spec); err != nil {
		return err
	}
	ms, err := model.ParseSpec(spec.ModelSpecJson)
	if err != nil {
		return fmt.Errorf("model spec: %w", err)
	}
	m, err := model.Build(ms, 0)
	if err != nil {
		return fmt.Errorf("model spec: %w", err)
	}
	if err := m.SetFlat(w); err != nil {
		return err
	}
	if err := n.reg.Publish(fed, v, m, servedMeta(spec.Dataset, m)); err != nil && !errors.Is(err, inference.ErrVersionExists) {
		return err
	}
	n.log.Debug("model version served", "federation", fed, "version", v)
	return nil
}

// servedMeta names the inputs and classes of a model trained on one of MedFed's built-in
// data sets, so that explanations of a tabular model come back by feature name. Other data
// sets, or a model whose input does not match, get no names.
func servedMeta(datasetName string, m *model.Sequential) inference.ModelMeta {
	if datasetName != "breast-cancer" {
		return inference.ModelMeta{}
	}
	s, err := dataset.LoadBreastCancer("")
	if err != nil || len(m.InputShape()) != 1 || m.InputShape()[0] != len(s.Features) || len(m.OutputShape()) != 1 || m.OutputShape()[0] != len(s.ClassNames) {
		return inference.ModelMeta{}
	}
	return inference.ModelMeta{FeatureNames: s.Features, ClassNames: s.ClassNames}
}

// Registry returns the node's inference registry: the model versions it serves.
func (n *Node) Registry() *inference.Registry { return n.reg }

// certificateGate refuses calls to the medfed.v1 services from connections without a
// verified client certificate. The services check the caller's certificate themselves;
// this gate guards them again once InferenceTokens lets certificate-less TLS connections
// in for the OIP service.
type certificateGate struct{ insecure bool }

func (g certificateGate) check(ctx context.Context, method string) error {
	if g.insecure || strings.HasPrefix(method, "/"+oip.GRPCInferenceService_ServiceDesc.ServiceName+"/") {
		return nil
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			return nil
		}
	}
	return status.Errorf(codes.Unauthenticated, "%s needs a client certificate from the consortium CA (bearer tokens are for inference only)", method)
}

func (g certificateGate) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := g.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (g certificateGate) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := g.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}
