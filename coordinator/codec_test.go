package coordinator

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// pieces splits b into a BufferSlice of buffers of at most size bytes, as gRPC hands a
// message to its codec (one buffer per HTTP/2 data frame).
func pieces(b []byte, size int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(size, len(b))
		s = append(s, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return s
}

// uploadEncodings are UploadChunk encodings, the stock encoder's and hand-made ones that
// the data-only path must leave to the stock decoder.
func uploadEncodings(t testing.TB) map[string][]byte {
	enc := func(m *pb.UploadChunk) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	data := make([]byte, 300)
	for i := range data {
		data[i] = byte(i * 7)
	}
	dataMsg := enc(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: data}})
	return map[string][]byte{
		"header":      enc(&pb.UploadChunk{Msg: &pb.UploadChunk_Header{Header: &pb.UploadHeader{Federation: "f", ClientId: "h1", Round: 3, TotalLength: 9}}}),
		"data":        dataMsg,
		"small data":  enc(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: []byte("abc")}}),
		"empty data":  enc(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: []byte{}}}),
		"empty":       {},
		"data twice":  append(enc(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: []byte("first")}}), dataMsg...),
		"then header": append(slices.Clone(dataMsg), enc(&pb.UploadChunk{Msg: &pb.UploadChunk_Header{Header: &pb.UploadHeader{Round: 1}}})...),
		"unknown":     protowire.AppendVarint(protowire.AppendTag(slices.Clone(dataMsg), 9, protowire.VarintType), 5),
		"long tag":    append([]byte{0x92, 0x00, 3}, "xyz"...), // field 2 in a two-byte varint
		"short":       dataMsg[:len(dataMsg)-1],
		"long length": append([]byte{0x12, 0x84, 0x00}, "abcd"...),
		"wrong type":  {0x10, 0x05}, // field 2 as a varint
	}
}

// TestUploadCodec decodes UploadChunk encodings, whole and split into buffers of several
// sizes, with uploadCodec and with gRPC's stock codec: the same messages, the same
// refusals. Other messages go through unchanged.
func TestUploadCodec(t *testing.T) {
	stock := encoding.GetCodecV2(gproto.Name)
	c := newUploadCodec()
	for name, b := range uploadEncodings(t) {
		for _, size := range []int{1, 3, 16 << 10, len(b) + 1} {
			want, got := new(pb.UploadChunk), new(pb.UploadChunk)
			werr := stock.Unmarshal(pieces(b, size), want)
			gerr := c.Unmarshal(pieces(b, size), got)
			if (werr == nil) != (gerr == nil) {
				t.Errorf("%s in %d-byte buffers: error %v, stock codec %v", name, size, gerr, werr)
			} else if werr == nil && !proto.Equal(got, want) {
				t.Errorf("%s in %d-byte buffers: decoded %v, stock codec %v", name, size, abbrev(got), abbrev(want))
			}
		}
	}
	req := &pb.GetRoundRequest{Federation: "f", Round: 4}
	bs, err := c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back pb.GetRoundRequest
	if err := c.Unmarshal(bs, &back); err != nil || !proto.Equal(&back, req) {
		t.Fatalf("GetRoundRequest round trip: %v, %v", abbrev(&back), err)
	}
}

func abbrev(m proto.Message) string {
	s := fmt.Sprint(m)
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TestUploadCodecReuse: a data message decoded into a message that holds data with room
// enough reuses that room; one with less room, or a header, does not leave stale bytes.
func TestUploadCodecReuse(t *testing.T) {
	c := newUploadCodec()
	chunk := func(s string) mem.BufferSlice {
		b, err := proto.Marshal(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: []byte(s)}})
		if err != nil {
			t.Fatal(err)
		}
		return pieces(b, 4)
	}
	m := new(pb.UploadChunk)
	if err := c.Unmarshal(chunk("0123456789"), m); err != nil {
		t.Fatal(err)
	}
	first := &m.GetData()[0]
	if err := c.Unmarshal(chunk("abc"), m); err != nil || string(m.GetData()) != "abc" {
		t.Fatalf("second chunk decoded as %q, %v; want abc", m.GetData(), err)
	}
	if &m.GetData()[0] != first {
		t.Error("a shorter chunk did not reuse the message's data")
	}
	if err := c.Unmarshal(chunk("a chunk longer than ten"), m); err != nil || string(m.GetData()) != "a chunk longer than ten" {
		t.Fatalf("longer chunk decoded as %q, %v", m.GetData(), err)
	}
	b, _ := proto.Marshal(&pb.UploadChunk{Msg: &pb.UploadChunk_Header{Header: &pb.UploadHeader{Round: 2}}})
	if err := c.Unmarshal(pieces(b, 4), m); err != nil || m.GetData() != nil || m.GetHeader().GetRound() != 2 {
		t.Fatalf("header after data decoded as %v, %v", m, err)
	}
}

// FuzzUploadCodec checks that uploadCodec decodes any bytes, in any split, as the stock
// codec does (go test -fuzz FuzzUploadCodec ./coordinator).
func FuzzUploadCodec(f *testing.F) {
	for _, b := range uploadEncodings(f) {
		f.Add(b, uint16(5))
	}
	stock := encoding.GetCodecV2(gproto.Name)
	c := newUploadCodec()
	f.Fuzz(func(t *testing.T, b []byte, size uint16) {
		split := max(int(size%4096)+1, len(b)/256) // at most 256 buffers
		want := new(pb.UploadChunk)
		werr := stock.Unmarshal(pieces(b, split), want)
		// Into a fresh message and into one that holds data (reused).
		for _, got := range []*pb.UploadChunk{new(pb.UploadChunk), {Msg: &pb.UploadChunk_Data{Data: make([]byte, 8, 1<<10)}}} {
			gerr := c.Unmarshal(pieces(b, split), got)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("error %v, stock codec %v", gerr, werr)
			}
			if werr == nil && !proto.Equal(got, want) {
				t.Fatalf("decoded %v, stock codec %v", abbrev(got), abbrev(want))
			}
		}
	})
}

// BenchmarkUploadCodec decodes a 1 MiB data chunk split into 16 KiB buffers (gRPC's
// HTTP/2 frames) with the stock codec and with uploadCodec, into a fresh message each
// time as the stock codec does in a server, and into the same message as
// receiveReplicated passes it over plain TCP.
func BenchmarkUploadCodec(b *testing.B) {
	enc, err := proto.Marshal(&pb.UploadChunk{Msg: &pb.UploadChunk_Data{Data: make([]byte, MaxChunkBytes)}})
	if err != nil {
		b.Fatal(err)
	}
	data := pieces(enc, 16<<10)
	for _, bc := range []struct {
		name  string
		codec encoding.CodecV2
		reuse bool
	}{{"stock", encoding.GetCodecV2(gproto.Name), false}, {"upload", newUploadCodec(), false}, {"upload-reused", newUploadCodec(), true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			m := new(pb.UploadChunk)
			for b.Loop() {
				if !bc.reuse {
					m = new(pb.UploadChunk)
				}
				if err := bc.codec.Unmarshal(data, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUploadCopies uploads an update of several chunks to a 3-node cluster, over plain
// TCP (the leader reuses each chunk's message and copies the update to its follower from
// its file) and with mutual TLS (it copies the chunks from memory, and so does not reuse
// their messages): every copy the cluster holds has the update's digest.
func TestUploadCopies(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", secure), func(t *testing.T) {
			var ca *testPKI
			if secure {
				ca = newTestPKI(t)
			}
			tc := startClusterWith(t, 3, func(c *Config) {
				c.ChunkBytes = MaxChunkBytes // the initial model in 1 MiB Raft entries, not 64-byte ones
				if secure {
					ca.serverNode(c)
				}
			})
			ctx := testCtx(t)
			addr := []string{tc.cfgs[tc.leader()].GRPCAddr}
			op, h1, h2 := newClient(t, addr), newClient(t, addr), newClient(t, addr)
			if secure {
				op, h1, h2 = ca.client(addr, pki.RoleOperator, "operator"), ca.client(addr, pki.RoleHospital, "h1"), ca.client(addr, pki.RoleHospital, "h2")
			}
			// A dense layer from 16383 inputs to 128 units: 2097152 parameters, 8 MiB as float32.
			spec, err := json.Marshal(model.Spec{Input: []int{16383}, Layers: []model.LayerSpec{{Type: "dense", Units: 128, Activation: "softmax"}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := op.CreateFederation(ctx, &pb.FederationSpec{Name: "f", ModelSpecJson: spec, Clients: []string{"h1", "h2"}, MinClients: 2, Rounds: 1, Strategy: "fedavg"}); err != nil {
				t.Fatal(err)
			}
			for id, h := range map[string]*coordclient.Client{"h1": h1, "h2": h2} {
				if _, err := h.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: id}); err != nil {
					t.Fatal(err)
				}
			}
			waitRound(t, ctx, op, "f", 1, pb.RoundState_ROUND_STATE_OPEN)
			u := make([]float32, 2097152)
			for i := range u {
				u[i] = float32(i%251) * 1e-4
			}
			data := EncodeFloat32s(u)
			if _, err := h1.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h1", Samples: 1, Data: data}); err != nil {
				t.Fatal(err)
			}
			d := blobstore.Sum(data)
			held := tc.holders(d)
			if len(held) < 2 {
				t.Fatalf("update held by nodes %v only; a majority is 2", held)
			}
			for _, i := range held {
				if _, err := tc.nodes[i].blobs.Get(d); err != nil {
					t.Errorf("node %d's copy: %v", i, err)
				}
			}
			tc.closeAll()
		})
	}
}
