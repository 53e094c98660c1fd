package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/pb"
)

// rawUpload sends a header and the given data messages on one SubmitUpdate stream.
func rawUpload(ctx context.Context, conn *grpc.ClientConn, h *pb.UploadHeader, chunks ...[]byte) (*pb.UpdateAck, error) {
	stream, err := pb.NewRoundServiceClient(conn).SubmitUpdate(ctx)
	if err != nil {
		return nil, err
	}
	if h != nil {
		if err := stream.Send(&pb.UploadChunk{Msg: &pb.UploadChunk_Header{Header: h}}); err != nil {
			return stream.CloseAndRecv()
		}
	}
	for _, c := range chunks {
		if err := stream.Send(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: c}}); err != nil {
			break
		}
	}
	return stream.CloseAndRecv()
}

// TestSubmitRefusals checks that every bad submission is refused with its own code and
// message, and leaves the round and the node as they were.
func TestSubmitRefusals(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tc := startCluster(t, 1)
	tc.cfgs[0].MaxUploadBytes = 4096
	ctx := testCtx(t)
	c := newClient(t, tc.addrs())
	tc.leader()
	spec := &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1", "h2", "h3"}, MinClients: 2}
	created, err := c.CreateFederation(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// The same spec again (a retry whose answer was lost): the federation as created.
	if again, err := c.CreateFederation(ctx, spec); err != nil {
		t.Errorf("the same create again: %v", err)
	} else if !proto.Equal(again, created) {
		t.Errorf("the same create again returned %v, first %v", again, created)
	}
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1,
	}); status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "another spec") {
		t.Errorf("second create with another spec: got %v, want AlreadyExists", err)
	}
	for _, h := range []string{"h1", "h2"} { // h3 stays unenrolled
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: h}); err != nil {
			t.Fatal(err)
		}
	}
	waitRound(t, ctx, c, "f", 1, pb.RoundState_ROUND_STATE_OPEN)

	good := EncodeFloat32s(delta(0))
	first, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h1", Samples: 5, Data: good})
	if err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(tc.addrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hdr := func(client string, round, version uint64, data []byte) *pb.UploadHeader {
		return &pb.UploadHeader{Federation: "f", Round: round, ClientId: client, ModelVersion: version, Samples: 5,
			TotalLength: uint64(len(data)), Sha256: digestOf(data)}
	}
	other := EncodeFloat32s(delta(1))
	short := EncodeFloat32s(delta(0)[:testNumParams-1])
	nan := EncodeFloat32s(append(delta(0)[:testNumParams-1], float32(math.NaN())))
	tests := []struct {
		name   string
		header *pb.UploadHeader
		chunks [][]byte
		code   codes.Code
	}{
		{"conflicting update", hdr("h1", 1, 0, other), [][]byte{other}, codes.AlreadyExists},
		{"wrong round", hdr("h2", 2, 0, good), [][]byte{good}, codes.FailedPrecondition},
		{"stale model version", hdr("h2", 1, 3, good), [][]byte{good}, codes.FailedPrecondition},
		{"wrong vector length", hdr("h2", 1, 0, short), [][]byte{short}, codes.InvalidArgument},
		{"non-finite value", hdr("h2", 1, 0, nan), [][]byte{nan}, codes.InvalidArgument},
		{"unknown client", hdr("mallory", 1, 0, good), [][]byte{good}, codes.PermissionDenied},
		{"unenrolled client", hdr("h3", 1, 0, good), [][]byte{good}, codes.FailedPrecondition},
		{"unknown federation", &pb.UploadHeader{Federation: "nope", Round: 1, ClientId: "h2", Samples: 1, TotalLength: 108, Sha256: digestOf(good)}, [][]byte{good}, codes.NotFound},
		{"stream longer than header", hdr("h2", 1, 0, good), [][]byte{good, good}, codes.ResourceExhausted},
		{"announced size over limit", &pb.UploadHeader{Federation: "f", Round: 1, ClientId: "h2", Samples: 1, TotalLength: 1 << 40, Sha256: digestOf(good)}, nil, codes.ResourceExhausted},
		{"chunk over limit", hdr("h2", 1, 0, good), [][]byte{make([]byte, MaxChunkBytes+1)}, codes.ResourceExhausted},
		{"digest mismatch", hdr("h2", 1, 0, other), [][]byte{good}, codes.InvalidArgument},
		{"truncated stream", hdr("h2", 1, 0, good), [][]byte{good[:50]}, codes.InvalidArgument},
		{"no header", nil, [][]byte{good}, codes.InvalidArgument},
		{"zero samples", &pb.UploadHeader{Federation: "f", Round: 1, ClientId: "h2", TotalLength: 108, Sha256: digestOf(good)}, [][]byte{good}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rawUpload(ctx, conn, tt.header, tt.chunks...)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("got %v, want %v", err, tt.code)
			}
			t.Logf("%v", err)
			ri, err := c.Round(ctx, "f", 1)
			if err != nil {
				t.Fatalf("node stopped serving: %v", err)
			}
			if ri.State != pb.RoundState_ROUND_STATE_OPEN || len(ri.Contributions) != 1 || !proto.Equal(ri.Contributions[0], first.Contribution) {
				t.Fatalf("round changed: %v", ri)
			}
		})
	}

	// The same bytes again: the original acknowledgement.
	again, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h1", Samples: 5, Data: good})
	if err != nil || !proto.Equal(again, first) {
		t.Fatalf("duplicate: got %v, %v; want %v", again, err, first)
	}
	// The round still works: h2's update seals and publishes it.
	if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h2", Samples: 5, Data: other}); err != nil {
		t.Fatal(err)
	}
	waitRound(t, ctx, c, "f", 1, pb.RoundState_ROUND_STATE_PUBLISHED)
	// Late submissions to a published round are refused.
	if _, err := rawUpload(ctx, conn, hdr("h2", 1, 0, good), good); status.Code(err) != codes.AlreadyExists {
		t.Errorf("late conflicting update: got %v, want AlreadyExists", err)
	}
	tc.closeAll()
}

// TestFiniteCheckAcrossWrites feeds a plaintext update to its streaming check in pieces
// that split float32s: a NaN split across two writes is refused with its index, and a
// finite update passes.
func TestFiniteCheckAcrossWrites(t *testing.T) {
	good := EncodeFloat32s(delta(0))
	bad := EncodeFloat32s(append(delta(0)[:testNumParams-1], float32(math.NaN())))
	for _, piece := range []int{1, 3, 5, 7, 4096} {
		feed := func(b []byte) error {
			c := &finiteCheck{}
			for off := 0; off < len(b); off += piece {
				if _, err := c.Write(b[off:min(off+piece, len(b))]); err != nil {
					return err
				}
			}
			return c.Close()
		}
		if err := feed(good); err != nil {
			t.Errorf("pieces of %d: finite update refused: %v", piece, err)
		}
		want := fmt.Sprintf("value %d is NaN", testNumParams-1)
		if err := feed(bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("pieces of %d: %v, want ErrInvalid naming %q", piece, err, want)
		}
	}
	c := &finiteCheck{}
	c.Write(good[:6])
	if err := c.Close(); !errors.Is(err, ErrLength) {
		t.Errorf("6 bytes: %v, want ErrLength", err)
	}
}

// TestRefusedUploadLeavesNoCopy sends uploads whose bytes do not match the digest their
// header announces to the leader of a 3-node cluster, which copies the bytes to a
// follower while they arrive: each is refused, and no node, the follower included, holds
// a blob under the announced digest (a blob that did not match its address would stand
// in for the real bytes when they came: a node that has a blob takes no second copy).
func TestRefusedUploadLeavesNoCopy(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := testCtx(t)
	leader := tc.leader()
	c := newClient(t, []string{tc.cfgs[leader].GRPCAddr})
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1", "h2"}, MinClients: 2,
	}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: h}); err != nil {
			t.Fatal(err)
		}
	}
	waitRound(t, ctx, c, "f", 1, pb.RoundState_ROUND_STATE_OPEN)
	conn, err := grpc.NewClient(tc.cfgs[leader].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good := EncodeFloat32s(delta(0))
	for k := range 20 {
		claimed := EncodeFloat32s(delta(k + 1))
		h := &pb.UploadHeader{Federation: "f", Round: 1, ClientId: "h1", Samples: 5, TotalLength: uint64(len(good)), Sha256: digestOf(claimed)}
		if _, err := rawUpload(ctx, conn, h, good); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("upload %d: got %v, want InvalidArgument", k, err)
		}
		if h := tc.holders(blobstore.Digest(digestOf(claimed))); len(h) > 0 {
			t.Fatalf("upload %d: nodes %v hold a blob under the digest the bytes did not match", k, h)
		}
	}
	// The real bytes of that digest are then taken, and stored intact on a majority.
	genuine := EncodeFloat32s(delta(1))
	if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h1", Samples: 5, Data: genuine}); err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, n := range tc.nodes {
		if got, err := n.blobs.Get(blobstore.Digest(digestOf(genuine))); err == nil && bytes.Equal(got, genuine) {
			held++
		}
	}
	if held < 2 {
		t.Fatalf("the accepted update is intact on %d nodes, want at least 2", held)
	}
	// By now every copy of the refused uploads has ended one way or the other. (Upload 0
	// claimed the digest of genuine, which the nodes now rightly hold.)
	for k := 1; k < 20; k++ {
		if h := tc.holders(blobstore.Digest(digestOf(EncodeFloat32s(delta(k + 1))))); len(h) > 0 {
			t.Errorf("refused upload %d: nodes %v hold a blob under the digest the bytes did not match", k, h)
		}
	}
	tc.closeAll()
}
