package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/crypto/seal"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// sentMessage is one request message a node sent, as it went on the wire.
type sentMessage struct {
	method string
	stream int // 0 for unary calls; the stream's number otherwise
	msg    proto.Message
	raw    []byte
}

// wireRecorder records every request message of the connections it is installed on, by
// a unary and a stream client interceptor. It is safe for concurrent use.
type wireRecorder struct {
	mu      sync.Mutex
	streams int
	msgs    []sentMessage
}

func (r *wireRecorder) add(method string, stream int, m any) {
	pm, ok := m.(proto.Message)
	if !ok {
		panic(fmt.Sprintf("%s sent a %T, not a protocol buffer", method, m))
	}
	raw, err := proto.Marshal(pm)
	if err != nil {
		panic(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, sentMessage{method: method, stream: stream, msg: proto.Clone(pm), raw: raw})
}

func (r *wireRecorder) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			r.add(method, 0, req)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			r.mu.Lock()
			r.streams++
			id := r.streams
			r.mu.Unlock()
			return &recordingStream{ClientStream: s, method: method, id: id, rec: r}, nil
		}),
	}
}

type recordingStream struct {
	grpc.ClientStream
	method string
	id     int
	rec    *wireRecorder
}

func (s *recordingStream) SendMsg(m any) error {
	s.rec.add(s.method, s.id, m)
	return s.ClientStream.SendMsg(m)
}

// plaintextIndex finds any 64-byte run of a set of plaintext vectors (float32 and float64
// little-endian encodings) inside other bytes. Windows start at every element boundary of
// the plaintext and at every byte offset of the searched bytes. All-zero windows are left
// out: they say nothing about the weights and occur in any padding.
type plaintextIndex struct {
	windows map[[8]byte][][]byte
}

const leakWindow = 64

func newPlaintextIndex(vecs map[string][]float32) *plaintextIndex {
	ix := &plaintextIndex{windows: map[[8]byte][][]byte{}}
	zero := make([]byte, leakWindow)
	for _, v := range vecs {
		f32 := encodeFloat32s(v)
		f64 := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(f64[8*i:], math.Float64bits(float64(x)))
		}
		for _, enc := range []struct {
			b    []byte
			size int
		}{{f32, 4}, {f64, 8}} {
			for off := 0; off+leakWindow <= len(enc.b); off += enc.size {
				w := enc.b[off : off+leakWindow]
				if bytes.Equal(w, zero) {
					continue
				}
				k := [8]byte(w)
				ix.windows[k] = append(ix.windows[k], w)
			}
		}
	}
	return ix
}

// find returns the offset of the first plaintext window in b, or -1.
func (ix *plaintextIndex) find(b []byte) int {
	for i := 0; i+leakWindow <= len(b); i++ {
		for _, w := range ix.windows[[8]byte(b[i:])] {
			if bytes.Equal(b[i:i+leakWindow], w) {
				return i
			}
		}
	}
	return -1
}

func mlpSpec(t *testing.T) []byte {
	b, err := json.Marshal(model.Spec{Input: []int{8}, Layers: []model.LayerSpec{
		{Type: "dense", Units: 32, Activation: "relu"},
		{Type: "dense", Units: 3, Activation: "softmax"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWireCarriesNoPlaintext runs a secure federation of three hospitals for one round,
// records every request message hospital h1 sends (unary requests and every message of
// its streams, through Config.DialOptions interceptors), and checks each against an
// allow-list: queries, enrolment keys, key-ceremony material, age envelopes, upload
// headers (counts) and chunks that decode as a he ciphertext vector or a decryption
// share. No message may hold any 64-byte run of h1's trained weights or of its update,
// as float32 or float64.
func TestWireCarriesNoPlaintext(t *testing.T) {
	addr := startCoordinator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	names := []string{"h1", "h2", "h3"}
	c := createFederation(t, ctx, addr, &pb.FederationSpec{
		Name: "study", ModelSpecJson: mlpSpec(t), Clients: names, Rounds: 1, MinClients: 3, Threshold: 2,
		Secure: true, Strategy: "fedavg", LocalEpochs: 2, BatchSize: 16, Lr: 0.05, Seed: 3,
	})

	rec := &wireRecorder{}
	var local, update []float32
	var seenMu sync.Mutex
	nodes := map[string]*Node{}
	var wg sync.WaitGroup
	for i, h := range names {
		cfg := testNodeConfig(addr, h, filepath.Join(t.TempDir(), h), blobs(uint64(i+1), 90))
		if h == "h1" {
			cfg.DialOptions = rec.dialOptions()
		}
		n, err := New(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if h == "h1" {
			n.sawUpdate = func(_ uint64, l, u []float32) {
				seenMu.Lock()
				local, update = l, u
				seenMu.Unlock()
			}
		}
		nodes[h] = n
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Run(ctx); err != nil {
				t.Errorf("%s: %v", h, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	f, err := c.Federation(ctx, "study")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Done || f.Rounds[0].State != pb.RoundState_ROUND_STATE_PUBLISHED {
		t.Fatalf("federation done=%v, round 1 %v; want a published round", f.Done, f.Rounds[0].State)
	}
	if local == nil || update == nil {
		t.Fatal("h1 never reported its update")
	}
	params := nodes["h1"].params
	numParams := nodes["h1"].m.NumParams()
	samples := nodes["h1"].data.Len()

	ix := newPlaintextIndex(map[string][]float32{"weights": local, "update": update})
	// The detector finds the update when it is sent in the clear.
	if off := ix.find(append([]byte("header"), encodeFloat32s(update)...)); off != 6 {
		t.Fatalf("leak detector: plaintext update found at %d, want 6", off)
	}

	uploads := map[int][]byte{} // stream -> data
	headers := map[int]*pb.UploadHeader{}
	methods := map[int]string{}
	kinds := map[string]int{}
	for i, m := range rec.msgs {
		if off := ix.find(m.raw); off >= 0 {
			t.Errorf("message %d (%s, %d bytes) holds plaintext weights at byte %d", i, m.method, len(m.raw), off)
		}
		kind, err := classify(m, params)
		if err != nil {
			t.Errorf("message %d (%s): %v", i, m.method, err)
			continue
		}
		kinds[kind]++
		if u, ok := m.msg.(*pb.UploadChunk); ok {
			methods[m.stream] = m.method
			if h := u.GetHeader(); h != nil {
				headers[m.stream] = h
			} else {
				uploads[m.stream] = append(uploads[m.stream], u.GetData()...)
			}
		}
	}
	t.Logf("h1 sent %d messages: %v", len(rec.msgs), kinds)

	var updates, shares int
	for s, h := range headers {
		data := uploads[s]
		if uint64(len(data)) != h.TotalLength {
			t.Errorf("stream %d: %d bytes sent, header announces %d", s, len(data), h.TotalLength)
		}
		if len(data) == 4*numParams {
			t.Errorf("stream %d: %d bytes, the size of the plaintext float32 update", s, len(data))
		}
		switch methods[s] {
		case pb.RoundService_SubmitUpdate_FullMethodName:
			v, err := he.DecodeVector(params, data)
			if err != nil {
				t.Errorf("update upload does not decode as a he ciphertext vector: %v", err)
				continue
			}
			if v.Len() != numParams || v.Contributions() != 1 || v.Weight() != float64(samples) || h.Samples != uint64(samples) {
				t.Errorf("update: vector of %d values, %d contributions, weight %v, header samples %d; want %d, 1, %d, %d",
					v.Len(), v.Contributions(), v.Weight(), h.Samples, numParams, samples, samples)
			}
			if got, err := decodeFloat32s(data[:min(len(data), 4*numParams)], numParams); err == nil && slices.Equal(got, update) {
				t.Error("update upload starts with the plaintext update")
			}
			updates++
		case pb.RoundService_SubmitDecryptionShare_FullMethodName:
			if _, err := he.DecodeDecryptionShare(params, data); err != nil {
				t.Errorf("decryption share upload does not decode as one: %v", err)
			}
			shares++
		}
	}
	if updates != 1 || shares != 1 {
		t.Errorf("h1 uploaded %d updates and %d decryption shares, want 1 and 1", updates, shares)
	}
	for _, k := range []string{"ceremony", "envelope", "enrolment", "upload-header", "ciphertext"} {
		if kinds[k] == 0 {
			t.Errorf("no %s message recorded; the run did not exercise it", k)
		}
	}
}

// maxQueryBytes bounds a request that only names what it asks for.
const maxQueryBytes = 256

// classify says what kind of allowed message m is, or why it is not allowed.
func classify(m sentMessage, p he.Params) (string, error) {
	switch x := m.msg.(type) {
	case *pb.GetFederationRequest, *pb.GetCeremonyRequest, *pb.FetchEnvelopesRequest,
		*pb.GetRoundRequest, *pb.FetchModelRequest, *pb.FetchAggregateRequest, *pb.WatchRoundsRequest:
		if len(m.raw) > maxQueryBytes {
			return "", fmt.Errorf("query of %d bytes, want at most %d", len(m.raw), maxQueryBytes)
		}
		return "query", nil
	case *pb.EnrolRequest:
		if _, _, err := seal.ParseEnrolment(x.AgeRecipient); err != nil {
			return "", err
		}
		return "enrolment", nil
	case *pb.CeremonyMessage:
		var err error
		switch m.method {
		case pb.CeremonyService_SubmitSeedCommitment_FullMethodName:
			_, err = he.DecodeSeedCommitment(p, x.Data)
		case pb.CeremonyService_SubmitSeedReveal_FullMethodName:
			_, err = he.DecodeSeedReveal(p, x.Data)
		case pb.CeremonyService_SubmitPublicKeyShare_FullMethodName:
			_, err = he.DecodePublicKeyShare(p, x.Data)
		default:
			err = fmt.Errorf("ceremony message on an unexpected method")
		}
		return "ceremony", err
	case *pb.Envelope:
		h, err := seal.ParseHeader(x.Sealed)
		if err != nil {
			return "", err
		}
		if h.From != x.FromClient || h.To != x.ToClient || !bytes.Contains(x.Sealed, []byte("age-encryption.org/v1")) {
			return "", fmt.Errorf("envelope %+v relayed as %q to %q, or not age-encrypted", h, x.FromClient, x.ToClient)
		}
		return "envelope", nil
	case *pb.UploadChunk:
		if m.method != pb.RoundService_SubmitUpdate_FullMethodName && m.method != pb.RoundService_SubmitDecryptionShare_FullMethodName {
			return "", fmt.Errorf("upload chunk on an unexpected method")
		}
		if x.GetHeader() != nil {
			if len(m.raw) > maxQueryBytes {
				return "", fmt.Errorf("upload header of %d bytes", len(m.raw))
			}
			return "upload-header", nil
		}
		return "ciphertext", nil // decoded once the stream is reassembled
	}
	return "", fmt.Errorf("%T is not on the allow-list of what a client may send", m.msg)
}
