package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// benchTune gives a benchmark cluster production-like chunking and snapshot settings (the
// test defaults snapshot every few entries).
func benchTune(c *Config) {
	c.ChunkBytes = MaxChunkBytes
	c.SnapshotInterval, c.SnapshotThreshold, c.TrailingLogs = 0, 0, 0
}

// BenchmarkCommitLatency measures one small entry (a node address record, about 40 bytes)
// proposed on the leader of a 3-node loopback cluster, until it is committed (stored by a
// quorum, with bolt's fsync) and applied by the leader's FSM. The tls variant runs Raft
// over the mutual-TLS transport.
func BenchmarkCommitLatency(b *testing.B) {
	for _, mode := range []string{"tcp", "tls"} {
		b.Run(mode, func(b *testing.B) {
			tune := benchTune
			if mode == "tls" {
				ca := newTestPKI(b)
				tune = func(c *Config) { benchTune(c); ca.serverNode(c) }
			}
			tc := startClusterWith(b, 3, tune)
			n := tc.nodes[tc.leader()]
			ctx := testCtx(b)
			cmd := &pb.Command{Cmd: &pb.Command_SetNodeAddr{SetNodeAddr: &pb.SetNodeAddrCmd{Id: "bench", GrpcAddr: "127.0.0.1:1"}}}
			b.ResetTimer()
			for b.Loop() {
				if _, err := n.propose(ctx, cmd); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/commit")
			tc.closeAll()
		})
	}
}

// sinkServer is the baseline of BenchmarkIngest: a RoundService that reads an upload
// stream and throws the bytes away.
type sinkServer struct {
	pb.UnimplementedRoundServiceServer
}

func (sinkServer) SubmitUpdate(stream grpc.ClientStreamingServer[pb.UploadChunk, pb.UpdateAck]) error {
	for {
		if _, err := stream.Recv(); err == io.EOF {
			return stream.SendAndClose(&pb.UpdateAck{})
		} else if err != nil {
			return err
		}
	}
}

// BenchmarkIngest measures the ingest throughput of encrypted updates: each operation is
// one round in which 4 hospitals upload, concurrently, a 65,536-value CKKS update (16
// ciphertexts, 2 MiB) to the leader of a 3-node loopback cluster, until every upload is
// acknowledged, that is committed by a quorum and added to the round's encrypted sum.
// The rounds are then decrypted and published with the timer stopped. Afterwards the same
// uploads (same client code, bytes, chunking and concurrency) go to a trivial gRPC sink on
// loopback. It reports both rates in MiB/s and their ratio (target >= 0.5). Both sides
// run without TLS.
func BenchmarkIngest(b *testing.B) {
	const hospitals = 4
	tc := startClusterWith(b, 3, benchTune)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	leader := tc.leader()
	c := newClient(b, []string{tc.cfgs[leader].GRPCAddr})
	spec, err := json.Marshal(model.Spec{Input: []int{511}, Layers: []model.LayerSpec{{Type: "dense", Units: 128, Activation: "softmax"}}})
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for i := range hospitals {
		names = append(names, fmt.Sprintf("h%d", i+1))
	}
	f, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "bench", ModelSpecJson: spec, Clients: names, MinClients: hospitals, Threshold: 2,
		Secure: true, Strategy: "fedavg", Rounds: uint32(b.N),
	})
	if err != nil {
		b.Fatal(err)
	}
	params, pk, parties := runCeremony(b, ctx, c, "bench", names, 2)
	updates := make([][]byte, hospitals)
	for k := range updates {
		d := make([]float32, f.NumParams)
		for i := range d {
			d[i] = float32((i+k)%13) * 1e-3
		}
		v, err := he.NewEncryptor(params, pk).EncryptFloat32(d, float64(k+1))
		if err != nil {
			b.Fatal(err)
		}
		if updates[k], err = v.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
	size := len(updates[0])
	b.SetBytes(int64(hospitals * size))

	// submitAll uploads every update concurrently and returns how long it took.
	submitAll := func(c *coordclient.Client, round, version uint64) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, hospitals)
		for k := range hospitals {
			wg.Go(func() {
				_, errs[k] = c.SubmitUpdate(ctx, coordclient.Update{Federation: "bench", Round: round, ClientID: names[k],
					ModelVersion: version, Samples: uint64(k + 1), Data: updates[k]})
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}

	b.ResetTimer()
	b.StopTimer()
	var cluster time.Duration
	for i := range b.N {
		r := uint64(i + 1)
		ri := waitRound(b, ctx, c, "bench", r, pb.RoundState_ROUND_STATE_OPEN)
		b.StartTimer()
		cluster += submitAll(c, r, ri.ModelVersion)
		b.StopTimer()
		// Decrypt and publish, so the next round opens.
		ri = waitRound(b, ctx, c, "bench", r, pb.RoundState_ROUND_STATE_DECRYPTING)
		var active []he.PartyID
		for _, p := range ri.ActiveParties {
			active = append(active, he.PartyID(p))
		}
		_, aggb, err := c.FetchAggregate(ctx, "bench", r)
		if err != nil {
			b.Fatal(err)
		}
		agg, err := he.DecodeVector(params, aggb)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range ri.ActiveParties {
			h := names[p-1]
			ds, err := parties[h].DecryptionShare(agg, active)
			if err != nil {
				b.Fatal(err)
			}
			sb, err := ds.MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.SubmitDecryptionShare(ctx, "bench", r, h, sb); err != nil {
				b.Fatal(err)
			}
		}
		waitRound(b, ctx, c, "bench", r, pb.RoundState_ROUND_STATE_PUBLISHED)
	}
	tc.closeAll()

	// The baseline: the same uploads into a sink.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterRoundServiceServer(srv, sinkServer{})
	go srv.Serve(ln)
	defer srv.Stop()
	sink := newClient(b, []string{ln.Addr().String()})
	submitAll(sink, 1, 0) // warm up the connection
	var raw time.Duration
	for i := range b.N {
		raw += submitAll(sink, uint64(i+1), 0)
	}

	const mib = 1 << 20
	total := float64(b.N * hospitals * size)
	clusterRate := total / mib / cluster.Seconds()
	rawRate := total / mib / raw.Seconds()
	b.ReportMetric(clusterRate, "MiB/s")
	b.ReportMetric(rawRate, "raw-MiB/s")
	b.ReportMetric(clusterRate/rawRate, "ratio")
}
