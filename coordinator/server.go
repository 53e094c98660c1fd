package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/crypto/seal"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// StatusCode is the gRPC code the services answer err with.
func StatusCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrLength), errors.Is(err, ErrCommand):
		return codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, ErrWrongRound), errors.Is(err, ErrRoundState), errors.Is(err, ErrStaleModel),
		errors.Is(err, ErrNotEnrolled), errors.Is(err, ErrCeremony), errors.Is(err, ErrCatchingUp):
		return codes.FailedPrecondition
	case errors.Is(err, ErrUnknownClient), errors.Is(err, ErrIdentity):
		return codes.PermissionDenied
	case errors.Is(err, ErrTooLarge):
		return codes.ResourceExhausted
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrReplicas):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// toStatus converts err into a gRPC status error at the service boundary. Status errors
// relayed from the leader pass through unchanged. A write that found no leader says which
// leader the node last knew, if any.
func (n *Node) toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := StatusCode(err)
	msg := err.Error()
	if errors.Is(err, ErrNotLeader) {
		if _, id := n.raft.LeaderWithID(); id != "" {
			msg += fmt.Sprintf(" (leader: %s at %s)", id, n.grpcAddrOf(string(id)))
		}
	}
	return status.Error(code, msg)
}

// ---- FederationService ----

type federationServer struct {
	pb.UnimplementedFederationServiceServer
	n *Node
}

func (s *federationServer) CreateFederation(ctx context.Context, req *pb.CreateFederationRequest) (*pb.Federation, error) {
	f, err := s.n.createFederation(ctx, req)
	return f, s.n.toStatus(err)
}

func (n *Node) createFederation(ctx context.Context, req *pb.CreateFederationRequest) (*pb.Federation, error) {
	if err := n.authorize(ctx, pki.RoleOperator, ""); err != nil {
		return nil, err
	}
	spec := req.GetSpec()
	st, _, err := validateSpec(spec)
	if err != nil {
		return nil, err
	}
	if err := checkTraining(spec, st); err != nil {
		return nil, err
	}
	if err := checkDP(spec); err != nil {
		return nil, err
	}
	if f, err := n.fsm.Federation(spec.Name); err == nil {
		if err := createAgain(f.Spec, spec); err != nil {
			return nil, err
		}
		return f, nil // a retry after a lost acknowledgement: the original answer
	}
	ms, err := model.ParseSpec(spec.ModelSpecJson)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	m, err := model.Build(ms, spec.Seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	data := EncodeFloat32s(m.Flat(nil))
	digest := sha(data)
	key := createBlobKey(spec.Name, digest)
	if err := n.stageBlob(ctx, key, data, digest); err != nil {
		return nil, err
	}
	if _, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_CreateFederation{CreateFederation: &pb.CreateFederationCmd{
		Spec: spec, Blob: key, Digest: digest,
	}}}); err != nil {
		return nil, err
	}
	return n.fsm.Federation(spec.Name)
}

func (s *federationServer) GetFederation(ctx context.Context, req *pb.GetFederationRequest) (*pb.Federation, error) {
	if err := s.n.authorize(ctx, "", ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	f, err := s.n.fsm.Federation(req.Name)
	return f, s.n.toStatus(err)
}

func (s *federationServer) ListFederations(ctx context.Context, req *pb.ListFederationsRequest) (*pb.ListFederationsResponse, error) {
	if err := s.n.authorize(ctx, "", ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	return &pb.ListFederationsResponse{Federations: s.n.fsm.Federations()}, nil
}

func (s *federationServer) Enrol(ctx context.Context, req *pb.EnrolRequest) (*pb.Enrolment, error) {
	if err := s.n.authorize(ctx, pki.RoleHospital, req.ClientId); err != nil {
		return nil, s.n.toStatus(err)
	}
	if err := s.n.checkEnrolment(req); err != nil {
		return nil, s.n.toStatus(err)
	}
	if _, err := s.n.propose(ctx, &pb.Command{Cmd: &pb.Command_Enrol{Enrol: &pb.EnrolCmd{
		Federation: req.Federation, ClientId: req.ClientId, AgeRecipient: req.AgeRecipient,
	}}}); err != nil {
		return nil, s.n.toStatus(err)
	}
	f, err := s.n.fsm.Federation(req.Federation)
	if err != nil {
		return nil, s.n.toStatus(err)
	}
	for _, e := range f.Enrolled {
		if e.ClientId == req.ClientId {
			return e, nil
		}
	}
	return nil, status.Error(codes.Internal, "enrolment committed but not found")
}

// checkEnrolment checks a hospital's enrolment string (seal.ParseEnrolment) before it is
// proposed. In a secure federation the other hospitals seal their threshold shares to it
// and check its signatures with it, and a malformed one would stall the key ceremony until
// its timeout; a plaintext federation takes a well-formed one or none. (Apply checks only
// its size, so that older logs still apply.)
func (n *Node) checkEnrolment(req *pb.EnrolRequest) error {
	secure, err := n.fsm.secure(req.Federation)
	if err != nil {
		return err
	}
	if req.AgeRecipient == "" && !secure {
		return nil
	}
	if _, _, err := seal.ParseEnrolment(req.AgeRecipient); err != nil {
		return fmt.Errorf("%w: age_recipient of %q: %v", ErrInvalid, req.ClientId, err)
	}
	return nil
}

// PinModel pins a model version for serving on every node, or removes the pin. Operators
// only.
func (s *federationServer) PinModel(ctx context.Context, req *pb.PinModelRequest) (*pb.Federation, error) {
	if err := s.n.authorize(ctx, pki.RoleOperator, ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	if _, err := s.n.propose(ctx, &pb.Command{Cmd: &pb.Command_PinModel{PinModel: &pb.PinModelCmd{
		Federation: req.Federation, Version: req.Version, Unpin: req.Unpin,
	}}}); err != nil {
		return nil, s.n.toStatus(err)
	}
	f, err := s.n.fsm.Federation(req.Federation)
	return f, s.n.toStatus(err)
}

// ResumeFederation lets a stopped federation go on. Operators only.
func (s *federationServer) ResumeFederation(ctx context.Context, req *pb.ResumeFederationRequest) (*pb.Federation, error) {
	if err := s.n.authorize(ctx, pki.RoleOperator, ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	if _, err := s.n.propose(ctx, &pb.Command{Cmd: &pb.Command_ResumeFederation{ResumeFederation: &pb.ResumeFederationCmd{
		Federation: req.Federation,
	}}}); err != nil {
		return nil, s.n.toStatus(err)
	}
	f, err := s.n.fsm.Federation(req.Federation)
	return f, s.n.toStatus(err)
}

// StopFederation stops a federation now, aborting a round in progress (see the proto).
// Operators only.
func (s *federationServer) StopFederation(ctx context.Context, req *pb.StopFederationRequest) (*pb.Federation, error) {
	if err := s.n.authorize(ctx, pki.RoleOperator, ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	if len(req.Reason) > 1024 || !utf8.ValidString(req.Reason) {
		return nil, status.Errorf(codes.InvalidArgument, "stop reason: expected at most 1024 bytes of UTF-8, got %d bytes", len(req.Reason))
	}
	reason := "stopped by an operator"
	if r := strings.TrimSpace(req.Reason); r != "" {
		reason += ": " + r
	}
	reason += "; medfed federation resume lets it go on"
	if _, err := s.n.propose(ctx, &pb.Command{Cmd: &pb.Command_StopFederation{StopFederation: &pb.StopFederationCmd{
		Federation: req.Federation, Reason: reason, AbortRound: true,
	}}}); err != nil {
		return nil, s.n.toStatus(err)
	}
	f, err := s.n.fsm.Federation(req.Federation)
	return f, s.n.toStatus(err)
}

// ---- CeremonyService ----

type ceremonyServer struct {
	pb.UnimplementedCeremonyServiceServer
	n *Node
}

func (s *ceremonyServer) step(ctx context.Context, m *pb.CeremonyMessage, step pb.CeremonyStep) (*pb.CeremonyStatus, error) {
	if err := s.n.authorize(ctx, pki.RoleHospital, m.ClientId); err != nil {
		return nil, s.n.toStatus(err)
	}
	if _, err := s.n.propose(ctx, &pb.Command{Cmd: &pb.Command_Ceremony{Ceremony: &pb.CeremonyCmd{
		Federation: m.Federation, ClientId: m.ClientId, Step: step, Data: m.Data,
	}}}); err != nil {
		return nil, s.n.toStatus(err)
	}
	cs, err := s.n.fsm.Ceremony(m.Federation)
	return cs, s.n.toStatus(err)
}

func (s *ceremonyServer) SubmitSeedCommitment(ctx context.Context, m *pb.CeremonyMessage) (*pb.CeremonyStatus, error) {
	return s.step(ctx, m, pb.CeremonyStep_CEREMONY_STEP_COMMITMENT)
}

func (s *ceremonyServer) SubmitSeedReveal(ctx context.Context, m *pb.CeremonyMessage) (*pb.CeremonyStatus, error) {
	return s.step(ctx, m, pb.CeremonyStep_CEREMONY_STEP_REVEAL)
}

func (s *ceremonyServer) SubmitPublicKeyShare(ctx context.Context, m *pb.CeremonyMessage) (*pb.CeremonyStatus, error) {
	return s.step(ctx, m, pb.CeremonyStep_CEREMONY_STEP_PUBLIC_KEY_SHARE)
}

func (s *ceremonyServer) GetCeremony(ctx context.Context, req *pb.GetCeremonyRequest) (*pb.CeremonyStatus, error) {
	if err := s.n.authorize(ctx, "", ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	cs, err := s.n.fsm.Ceremony(req.Federation)
	return cs, s.n.toStatus(err)
}

func (s *ceremonyServer) SendEnvelope(ctx context.Context, e *pb.Envelope) (*pb.SendEnvelopeResponse, error) {
	if err := s.n.authorize(ctx, pki.RoleHospital, e.FromClient); err != nil {
		return nil, s.n.toStatus(err)
	}
	if _, err := s.n.propose(ctx, &pb.Command{Cmd: &pb.Command_Envelope{Envelope: &pb.EnvelopeCmd{Envelope: e}}}); err != nil {
		return nil, s.n.toStatus(err)
	}
	return &pb.SendEnvelopeResponse{}, nil
}

func (s *ceremonyServer) FetchEnvelopes(ctx context.Context, req *pb.FetchEnvelopesRequest) (*pb.FetchEnvelopesResponse, error) {
	if err := s.n.authorize(ctx, pki.RoleHospital, req.ClientId); err != nil {
		return nil, s.n.toStatus(err)
	}
	es, err := s.n.fsm.Envelopes(req.Federation, req.ClientId)
	if err != nil {
		return nil, s.n.toStatus(err)
	}
	return &pb.FetchEnvelopesResponse{Envelopes: es}, nil
}

// ---- RoundService ----

type roundServer struct {
	pb.UnimplementedRoundServiceServer
	n *Node
}

func (s *roundServer) WatchRounds(req *pb.WatchRoundsRequest, stream grpc.ServerStreamingServer[pb.RoundInfo]) error {
	ctx := stream.Context()
	if err := s.n.authorize(ctx, "", ""); err != nil {
		return s.n.toStatus(err)
	}
	since := map[uint64]uint64{}
	for {
		ch, _ := s.n.fsm.Changed()
		infos, err := s.n.fsm.roundsChangedSince(req.Federation, since)
		if err != nil {
			return s.n.toStatus(err)
		}
		for _, ri := range infos {
			if err := stream.Send(ri); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.n.ctx.Done():
			return status.Error(codes.Unavailable, "coordinator node shutting down")
		case <-ch:
		}
	}
}

func (s *roundServer) GetRound(ctx context.Context, req *pb.GetRoundRequest) (*pb.RoundInfo, error) {
	if err := s.n.authorize(ctx, "", ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	ri, err := s.n.fsm.Round(req.Federation, req.Round)
	return ri, s.n.toStatus(err)
}

type uploadStream interface {
	Context() context.Context
	Recv() (*pb.UploadChunk, error)
	RecvMsg(m any) error // into m, whose data uploadCodec may reuse
}

// recvHeader reads and checks the header that opens an upload stream.
func (n *Node) recvHeader(stream uploadStream) (*pb.UploadHeader, error) {
	m, err := stream.Recv()
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: empty upload stream", ErrInvalid)
		}
		return nil, err
	}
	h := m.GetHeader()
	if h == nil {
		return nil, fmt.Errorf("%w: an upload stream must start with a header", ErrInvalid)
	}
	if err := checkName("federation", h.Federation); err != nil {
		return nil, err
	}
	if err := checkName("client id", h.ClientId); err != nil {
		return nil, err
	}
	if len(h.Sha256) != sha256.Size {
		return nil, fmt.Errorf("%w: sha256 of %d bytes, expected %d", ErrInvalid, len(h.Sha256), sha256.Size)
	}
	if h.TotalLength == 0 {
		return nil, fmt.Errorf("%w: empty upload", ErrInvalid)
	}
	if h.TotalLength > uint64(n.cfg.MaxUploadBytes) {
		return nil, fmt.Errorf("%w: upload of %d bytes, limit %d", ErrTooLarge, h.TotalLength, n.cfg.MaxUploadBytes)
	}
	return h, nil
}

// openUpload reads a hospital upload's header and checks that the caller's certificate is
// the hospital the header names. The stream has caught up (upToDateStream), so checks against
// the round state see every accepted upload.
func (n *Node) openUpload(stream uploadStream) (*pb.UploadHeader, error) {
	h, err := n.recvHeader(stream)
	if err != nil {
		return nil, err
	}
	if err := n.authorize(stream.Context(), pki.RoleHospital, h.ClientId); err != nil {
		return nil, err
	}
	return h, nil
}

func (s *roundServer) SubmitUpdate(stream grpc.ClientStreamingServer[pb.UploadChunk, pb.UpdateAck]) error {
	ack, err := s.n.submitUpdate(stream)
	if err != nil {
		s.n.metrics.updatesRefused.Add(1)
		return s.n.toStatus(err)
	}
	return stream.SendAndClose(ack)
}

func (n *Node) submitUpdate(stream uploadStream) (*pb.UpdateAck, error) {
	ctx := stream.Context()
	h, err := n.openUpload(stream)
	if err != nil {
		return nil, err
	}
	ack := func(c *pb.Contribution) *pb.UpdateAck {
		return &pb.UpdateAck{Federation: h.Federation, Round: h.Round, Contribution: c}
	}
	dup, check, err := n.fsm.CheckUpload(h)
	if err != nil {
		return nil, err
	}
	if dup != nil {
		return ack(dup), nil
	}
	start := time.Now()
	if _, err := n.receiveReplicated(stream, h, check); err != nil {
		return nil, err
	}
	received := time.Now()
	if _, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_CommitUpdate{CommitUpdate: &pb.CommitUpdateCmd{
		Federation: h.Federation, Round: h.Round, ClientId: h.ClientId, ModelVersion: h.ModelVersion,
		Samples: h.Samples, Digest: h.Sha256,
	}}}); err != nil {
		return nil, err
	}
	committed := time.Now()
	c := n.fsm.Contribution(h.Federation, h.Round, h.ClientId)
	if c == nil {
		return nil, fmt.Errorf("update committed but not found")
	}
	n.metrics.updatesAccepted.Add(1)
	n.metrics.updateBytes.Add(h.TotalLength)
	n.metrics.updateReceiveNanos.Add(uint64(received.Sub(start)))
	n.metrics.updateCommitNanos.Add(uint64(committed.Sub(received)))
	return ack(c), nil
}

func (s *roundServer) SubmitDecryptionShare(stream grpc.ClientStreamingServer[pb.UploadChunk, pb.ShareAck]) error {
	ack, err := s.n.submitShare(stream)
	if err != nil {
		return s.n.toStatus(err)
	}
	return stream.SendAndClose(ack)
}

func (n *Node) submitShare(stream uploadStream) (*pb.ShareAck, error) {
	ctx := stream.Context()
	h, err := n.openUpload(stream)
	if err != nil {
		return nil, err
	}
	check, aggHE, err := n.fsm.shareCheck(h.Federation, h.Round, h.ClientId, h.Sha256)
	if err != nil {
		return nil, err
	}
	if _, err := n.receiveReplicated(stream, h, check); err != nil {
		return nil, err
	}
	if _, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_CommitShare{CommitShare: &pb.CommitShareCmd{
		Federation: h.Federation, Round: h.Round, ClientId: h.ClientId, Digest: h.Sha256, AggregateHeDigest: aggHE,
	}}}); err != nil {
		return nil, err
	}
	n.metrics.sharesAccepted.Add(1)
	ri, err := n.fsm.Round(h.Federation, h.Round)
	if err != nil {
		return nil, err
	}
	return &pb.ShareAck{Federation: h.Federation, Round: h.Round, ClientId: h.ClientId, Shares: uint32(len(ri.SharesFrom))}, nil
}

// sendDownload streams data as a header and chunks of at most MaxChunkBytes.
func sendDownload(stream grpc.ServerStreamingServer[pb.DownloadChunk], h *pb.DownloadHeader, data []byte) error {
	h.TotalLength = uint64(len(data))
	h.Sha256 = sha(data)
	if err := stream.Send(&pb.DownloadChunk{Msg: &pb.DownloadChunk_Header{Header: h}}); err != nil {
		return err
	}
	for off := 0; off < len(data); off += MaxChunkBytes {
		end := min(off+MaxChunkBytes, len(data))
		if err := stream.Send(&pb.DownloadChunk{Msg: &pb.DownloadChunk_Data{Data: data[off:end]}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *roundServer) FetchAggregate(req *pb.FetchAggregateRequest, stream grpc.ServerStreamingServer[pb.DownloadChunk]) error {
	if err := s.n.authorize(stream.Context(), pki.RoleHospital, ""); err != nil {
		return s.n.toStatus(err)
	}
	d, ri, err := s.n.fsm.Aggregate(req.Federation, req.Round)
	if err != nil {
		return s.n.toStatus(err)
	}
	data, err := s.n.blob(stream.Context(), d)
	if err != nil {
		return s.n.toStatus(err)
	}
	return sendDownload(stream, &pb.DownloadHeader{
		Round: ri.Round, Contributions: uint32(len(ri.Contributions)), TotalSamples: ri.TotalSamples, Format: "he-vector",
	}, data)
}

func (s *roundServer) FetchModel(req *pb.FetchModelRequest, stream grpc.ServerStreamingServer[pb.DownloadChunk]) error {
	if err := s.n.authorize(stream.Context(), "", ""); err != nil {
		return s.n.toStatus(err)
	}
	info, w, specBytes, err := s.n.fsm.ModelVersion(req.Federation, req.Version, req.Version == 0)
	if err != nil {
		return s.n.toStatus(err)
	}
	h := &pb.DownloadHeader{Version: info.Version, Round: info.Round, NumParams: info.NumParams, Format: req.Format}
	var data []byte
	switch req.Format {
	case "", "f32":
		h.Format = "f32"
		data = EncodeFloat32s(w)
	case "safetensors":
		data, err = safetensorsOf(req.Federation, info, w, specBytes)
		if err != nil {
			return s.n.toStatus(err)
		}
	default:
		return status.Errorf(codes.InvalidArgument, "format %q: expected f32 or safetensors", req.Format)
	}
	return sendDownload(stream, h, data)
}

func safetensorsOf(fed string, info *pb.ModelVersionInfo, w []float32, specBytes []byte) ([]byte, error) {
	var spec pb.FederationSpec
	if err := unmarshalSpec(specBytes, &spec); err != nil {
		return nil, err
	}
	ms, err := model.ParseSpec(spec.ModelSpecJson)
	if err != nil {
		return nil, err
	}
	m, err := model.Build(ms, 0)
	if err != nil {
		return nil, err
	}
	if err := m.SetFlat(w); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = model.Save(&buf, m, map[string]string{
		"federation":    fed,
		"model_version": strconv.FormatUint(info.Version, 10),
		"round":         strconv.FormatUint(info.Round, 10),
	})
	return buf.Bytes(), err
}

// ---- ClusterService ----

type clusterServer struct {
	pb.UnimplementedClusterServiceServer
	n *Node
}

func (s *clusterServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.ClusterStatus, error) {
	if err := s.n.authorize(ctx, "", ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	if s.n.raft.State() == raft.Leader {
		// A follower of an earlier release waits for the applied index reported here
		// (catchUpWith), which must then cover the earlier terms. Status answers even if
		// that fails (no quorum, say).
		_ = s.n.leaderUpToDate()
	}
	st, err := s.n.clusterStatus()
	return st, s.n.toStatus(err)
}

func (n *Node) clusterStatus() (*pb.ClusterStatus, error) {
	_, leader := n.raft.LeaderWithID()
	st := &pb.ClusterStatus{
		NodeId:         n.cfg.NodeID,
		NodeState:      strings.ToLower(n.raft.State().String()),
		LeaderId:       string(leader),
		LeaderGrpcAddr: n.grpcAddrOf(string(leader)),
		AppliedIndex:   n.fsm.AppliedIndex(),
		LastIndex:      n.raft.LastIndex(),
	}
	if t, err := strconv.ParseUint(n.raft.Stats()["term"], 10, 64); err == nil {
		st.Term = t
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	for _, srv := range f.Configuration().Servers {
		ns := &pb.NodeStatus{
			Id: string(srv.ID), RaftAddr: string(srv.Address), GrpcAddr: n.grpcAddrOf(string(srv.ID)),
			Suffrage: map[raft.ServerSuffrage]string{raft.Voter: "voter", raft.Nonvoter: "nonvoter", raft.Staging: "staging"}[srv.Suffrage],
		}
		switch {
		case srv.ID == leader:
			ns.State = "leader"
		case string(srv.ID) == n.cfg.NodeID:
			ns.State = strings.ToLower(n.raft.State().String())
		default:
			ns.State = "follower"
		}
		st.Nodes = append(st.Nodes, ns)
	}
	return st, nil
}

// leaderCluster returns a ClusterService client for the leader, or nil if this node leads.
func (n *Node) leaderCluster() (pb.ClusterServiceClient, error) {
	if n.raft.State() == raft.Leader {
		return nil, nil
	}
	_, id := n.raft.LeaderWithID()
	addr := n.grpcAddrOf(string(id))
	if id == "" || addr == "" {
		return nil, fmt.Errorf("%w: no known leader", ErrNotLeader)
	}
	c, err := n.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewClusterServiceClient(c), nil
}

// authorizeMembership admits an operator, and on the leader also a coordinator node: a
// follower forwards an operator's AddNode or RemoveNode with its own certificate, having
// checked the operator's, as it forwards other writes through Propose.
func (n *Node) authorizeMembership(ctx context.Context) error {
	err := n.authorize(ctx, pki.RoleOperator, "")
	if err != nil && n.raft.State() == raft.Leader && n.authorize(ctx, pki.RoleCoordinator, "") == nil {
		return nil
	}
	return err
}

func (s *clusterServer) AddNode(ctx context.Context, req *pb.AddNodeRequest) (*pb.ClusterStatus, error) {
	if err := s.n.authorizeMembership(ctx); err != nil {
		return nil, s.n.toStatus(err)
	}
	if err := checkName("node id", req.Id); err != nil || req.RaftAddr == "" || req.GrpcAddr == "" {
		return nil, status.Errorf(codes.InvalidArgument, "add node: need a valid id, raft_addr and grpc_addr (got %q, %q, %q)", req.Id, req.RaftAddr, req.GrpcAddr)
	}
	for _, a := range []struct{ what, addr string }{{"raft_addr", req.RaftAddr}, {"grpc_addr", req.GrpcAddr}} {
		if err := CheckPeerAddr(a.addr); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "add node %s: %s: %v", req.Id, a.what, err)
		}
	}
	lc, err := s.n.leaderCluster()
	if err != nil {
		return nil, s.n.toStatus(err)
	}
	if lc != nil {
		return lc.AddNode(ctx, req)
	}
	if err := s.n.recordAddr(ctx, req.Id, req.GrpcAddr); err != nil {
		return nil, s.n.toStatus(err)
	}
	if err := s.n.addVoter(ctx, req); err != nil {
		return nil, s.n.toStatus(err)
	}
	st, err := s.n.clusterStatus()
	return st, s.n.toStatus(err)
}

func (s *clusterServer) RemoveNode(ctx context.Context, req *pb.RemoveNodeRequest) (*pb.ClusterStatus, error) {
	if err := s.n.authorizeMembership(ctx); err != nil {
		return nil, s.n.toStatus(err)
	}
	lc, err := s.n.leaderCluster()
	if err != nil {
		return nil, s.n.toStatus(err)
	}
	if lc != nil {
		return lc.RemoveNode(ctx, req)
	}
	f := s.n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "remove node %s: %v", req.Id, err)
	}
	servers := f.Configuration().Servers
	var ids []string
	for _, srv := range servers {
		ids = append(ids, string(srv.ID))
	}
	switch {
	case !slices.Contains(ids, req.Id):
		// A node the cluster has recorded (removed already, say by this same request
		// whose answer was lost) is not in the cluster, which is what was asked for.
		if err := s.n.upToDate(ctx); err != nil {
			return nil, s.n.toStatus(err)
		}
		if _, known := s.n.fsm.NodeAddrs()[req.Id]; !known {
			return nil, status.Errorf(codes.NotFound, "remove node: %q is not in the cluster and never was (nodes: %s)", req.Id, strings.Join(ids, ", "))
		}
		st, err := s.n.clusterStatus()
		return st, s.n.toStatus(err)
	case len(ids) == 1:
		return nil, status.Errorf(codes.FailedPrecondition, "remove node: %q is the cluster's only node; removing it would leave no cluster", req.Id)
	}
	if err := s.n.quorumWithout(ctx, servers, req.Id); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	// The record that it was a member, for a repeated request (above). Nodes are recorded
	// with their gRPC addresses as the leader learns them; one it never learnt is
	// recorded without.
	if _, known := s.n.fsm.NodeAddrs()[req.Id]; !known {
		if err := s.n.recordAddr(ctx, req.Id, ""); err != nil {
			return nil, s.n.toStatus(err)
		}
	}
	if err := s.n.raft.RemoveServer(raft.ServerID(req.Id), 0, s.n.cfg.ApplyTimeout).Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "remove server %s: %v", req.Id, err)
	}
	st, err := s.n.clusterStatus()
	return st, s.n.toStatus(err)
}

// ReadIndex answers a follower's catchUp with the leader's read index (Node.readIndex).
func (s *clusterServer) ReadIndex(ctx context.Context, _ *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
	if err := s.n.authorize(ctx, pki.RoleCoordinator, ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	if s.n.raft.State() != raft.Leader {
		return nil, s.n.toStatus(fmt.Errorf("%w: node %s is not the leader", ErrNotLeader, s.n.cfg.NodeID))
	}
	idx, err := s.n.readIndex(ctx)
	if err != nil {
		return nil, s.n.toStatus(err)
	}
	return &pb.ReadIndexResponse{Index: idx}, nil
}

// Propose applies a command forwarded by another coordinator node. Only the leader takes
// it; only coordinator certificates may call it.
func (s *clusterServer) Propose(ctx context.Context, req *pb.ProposeRequest) (*pb.ProposeResponse, error) {
	if err := s.n.authorize(ctx, pki.RoleCoordinator, ""); err != nil {
		return nil, s.n.toStatus(err)
	}
	c, err := DecodeCommand(req.Command)
	if err != nil {
		return nil, s.n.toStatus(err)
	}
	if s.n.raft.State() != raft.Leader {
		return nil, s.n.toStatus(fmt.Errorf("%w: node %s is not the leader", ErrNotLeader, s.n.cfg.NodeID))
	}
	idx, err := s.n.applyLocal(ctx, c)
	if err != nil {
		var r retryable
		if errors.As(err, &r) {
			err = fmt.Errorf("%w: %v", ErrNotLeader, r.err)
		}
		return nil, s.n.toStatus(err)
	}
	return &pb.ProposeResponse{Index: idx}, nil
}
