package coordinator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/callbench"
	"github.com/medfed/medfed/internal/cputime"
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

// BenchmarkRead measures one GetFederation call answered by the leader and by a follower
// of a 3-node loopback cluster (insecure), each through its own client connection. Every
// call first makes sure the node's state is current (upToDate): on the leader that is
// free after the first call of a term, on a follower it is one call to the leader for the
// index to wait for.
func BenchmarkRead(b *testing.B) {
	tc := startClusterWith(b, 3, benchTune)
	l := tc.leader()
	ctx := testCtx(b)
	c := newClient(b, tc.addrs())
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "read", ModelSpecJson: testModelSpec(b), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		b.Fatal(err)
	}
	for _, who := range []string{"leader", "follower"} {
		i := l
		if who == "follower" {
			i = (l + 1) % 3
		}
		b.Run(who, func(b *testing.B) {
			one := newClient(b, []string{tc.cfgs[i].GRPCAddr})
			for b.Loop() {
				if _, err := one.Federation(ctx, "read"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIngest measures the ingest throughput of encrypted updates: each operation is
// one round in which 4 or 16 hospitals upload, 4 at a time, a CKKS update to the leader of
// a 3-node loopback cluster, until every upload is acknowledged: checked (digest,
// aggregation.CheckEncrypted), stored on a majority of nodes (the leader and one follower,
// copied over the Raft port while it arrives) and its digest committed through Raft. The
// rounds are then aggregated, decrypted and published with the timer stopped. The
// baseline is the same uploads (same client code, bytes, chunking and concurrency) into a
// trivial gRPC sink on loopback, in the same process: after each timed cluster round, as
// many sink rounds as bring the sink's timed total up to the cluster's, so that both
// sides run for about as long, interleaved, under the same conditions (the kernel
// writing the cluster's blobs back to disk, another tenant of the host, the clock
// speed). Each configuration starts once the disk has written back what the one before
// left (settleDisk), and each side first runs one untimed round, so neither pays for
// dialling, creating its first files or growing its pools in the timed ones. Short configurations (2 MiB
// with 4 hospitals) time only a few hundred milliseconds at -benchtime 10x; give them
// more rounds for a steady figure. It reports both rates in MiB/s and their ratio
// (target >= 0.5), and from the leader's metrics the mean time per accepted update to
// receive it (receive-ms: checked and stored on a majority) and to commit its digest
// (commit-ms). Both sides run without TLS, and every
// hospital's uploads share one connection; BenchmarkIngestTLS runs both sides with
// mutual TLS and a connection per hospital, as deployed. On a machine where both sides
// keep every core busy, the ratio is about the inverse ratio of the CPU time each spends
// per MiB, which it also reports (cpu-ms/MiB, raw-cpu-ms/MiB: the whole process, clients
// and all three nodes or the sink, over the timed rounds); kernel threads (the page
// cache's write-back to disk) are not counted. Last, with the cluster stopped, it
// measures the CPU time per MiB of the replication work alone (extra-cpu-ms/MiB:
// replicationWork) and reports the ceiling that work puts on the ratio on this machine,
// raw-cpu/(raw-cpu+extra): the ratio of a cluster that spent nothing on gRPC, Raft or
// scheduling beyond what the sink spends.
// Sub-benchmarks: the update size, named after 32 bytes a value although the encoding
// takes about 27 (65,536 values, 1.8 MB, "2MiB"; 348,160 values, 9.5 MB, "10MiB": the
// seed CNN's 347,146 parameters, as `medfed simulate` sends them; 524,288 values, 14.3
// MB, "16MiB"; 2,097,152 values, 57 MB, "64MiB"), whether the nodes flush each update to disk before acknowledging it
// (Config.SyncUpdates; "pagecache" is the default), and the number of hospitals: with 16
// a round is a longer stream, so its start (which, after the previous round's
// decryption, finds the process's caches and pools cold) weighs less.
//
// With MEDFED_INGEST_RAFT_DIR=DIR each node keeps its Raft log and snapshots in DIR/<node
// ID> (Config.RaftDir), on a device other than the blobs' if DIR is on one: with
// /dev/shm, say, the commits stop waiting for the shared disk (tmpfs keeps nothing over a
// reboot: a measurement of what the log's fsync costs there, not a deployment). With
// MEDFED_INGEST_IN_FLIGHT=N both sides keep N uploads going at once instead of 4 (16 with
// 16 hospitals: every hospital of the round uploading at the same time).
func BenchmarkIngest(b *testing.B) {
	for _, values := range []int{1 << 16, seedCNNValues, 1 << 19, 1 << 21} {
		for _, sync := range []bool{false, true} {
			for _, hospitals := range []int{4, 16} {
				mode := "pagecache"
				if sync {
					mode = "fsync"
				}
				b.Run(fmt.Sprintf("%dMiB/%s/hospitals=%d", values/(1<<15), mode, hospitals), func(b *testing.B) { benchmarkIngest(b, values, sync, hospitals, false) })
			}
		}
	}
}

// seedCNNValues is the seed CNN's parameter count (347,146) rounded up to a multiple of
// 128, the width of BenchmarkIngest's dense layer.
const seedCNNValues = 2720 * 128

// BenchmarkIngestTLS is BenchmarkIngest (10, 16 and 64 MiB updates, page-cache mode) as a
// consortium deploys it: mutual TLS on every connection (each hospital uploads over its
// own connection, with its own certificate, which the leader checks against the update's
// client ID; the leader copies each update to a follower over the Raft port's mutual TLS),
// against a sink that serves with the leader's TLS configuration to the same hospital
// clients.
func BenchmarkIngestTLS(b *testing.B) {
	for _, values := range []int{seedCNNValues, 1 << 19, 1 << 21} {
		for _, hospitals := range []int{4, 16} {
			b.Run(fmt.Sprintf("%dMiB/pagecache/hospitals=%d", values/(1<<15), hospitals), func(b *testing.B) { benchmarkIngest(b, values, false, hospitals, true) })
		}
	}
}

// benchOnce makes testing.Benchmark run each benchmark function once (-benchtime 1x)
// until t ends, so that a test can run a benchmark's code to see that it still works.
func benchOnce(t *testing.T) {
	bt := flag.Lookup("test.benchtime")
	old := bt.Value.String()
	if err := bt.Value.Set("1x"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bt.Value.Set(old) })
}

// TestIngestBenchmarks runs the code of BenchmarkIngest and BenchmarkIngestTLS once
// each, plain and with mutual TLS, on the smallest configuration (2 MiB updates from 4
// hospitals, one timed round) through testing.Benchmark, so that the suite notices when a
// change breaks them: each must finish and report every metric. It asserts no speed.
func TestIngestBenchmarks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two clusters; skipped with -short")
	}
	// One timed round each (after the untimed one), as -benchtime 1x.
	benchOnce(t)
	for _, secure := range []bool{false, true} {
		r := testing.Benchmark(func(b *testing.B) { benchmarkIngest(b, 1<<16, false, 4, secure) })
		if r.N == 0 {
			name := "Ingest/2MiB/pagecache/hospitals=4"
			if secure {
				name = "IngestTLS/16MiB/pagecache/hospitals=4" // the same code, larger updates
			}
			t.Fatalf("secure=%v: the benchmark failed; go test -run '^$' -bench %s -benchtime 1x ./coordinator shows why", secure, name)
		}
		for _, m := range []string{"MiB/s", "raw-MiB/s", "ratio", "cpu-ms/MiB", "raw-cpu-ms/MiB", "receive-ms", "commit-ms", "extra-cpu-ms/MiB", "ceiling"} {
			if v, ok := r.Extra[m]; !ok || !(v > 0) {
				t.Errorf("secure=%v: metric %s = %v (reported %v), want a positive value", secure, m, v, ok)
			}
		}
	}
}

// profiled runs f. When MEDFED_INGEST_PROFILE is set, it also writes a CPU profile of f
// to that prefix followed by "." and name: BenchmarkIngest profiles each timed cluster
// round (cluster.N) and each run of sink rounds (sink.N), and nothing else, so that
//
//	MEDFED_INGEST_PROFILE=/tmp/ingest go test ./coordinator -run '^$' -bench Ingest/16MiB/pagecache/hospitals=16 -benchtime 10x
//	go tool pprof -top /tmp/ingest.cluster.*
//	go tool pprof -top /tmp/ingest.sink.*
//
// shows where each side's time goes (run one sub-benchmark at a time; each overwrites
// the files).
func profiled(b *testing.B, name string, f func()) {
	prefix := os.Getenv("MEDFED_INGEST_PROFILE")
	if prefix == "" {
		f()
		return
	}
	out, err := os.Create(prefix + "." + name)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		b.Fatal(err)
	}
	defer pprof.StopCPUProfile()
	f()
}

// ingestInFlight returns how many uploads BenchmarkIngest keeps going at once: 4, or
// MEDFED_INGEST_IN_FLIGHT.
func ingestInFlight(b *testing.B) int {
	s := os.Getenv("MEDFED_INGEST_IN_FLIGHT")
	if s == "" {
		return 4
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("MEDFED_INGEST_IN_FLIGHT=%q: expected a number of uploads, 1 or more", s)
	}
	return n
}

func benchmarkIngest(b *testing.B, values int, syncUpdates bool, hospitals int, secure bool) {
	inFlight := ingestInFlight(b)
	settleDisk()
	var ca *testPKI
	if secure {
		ca = newTestPKI(b)
	}
	raftDirs := os.Getenv("MEDFED_INGEST_RAFT_DIR")
	if raftDirs != "" {
		var err error
		if raftDirs, err = os.MkdirTemp(raftDirs, "ingest"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(raftDirs) }) // after the cluster closes (registered before it)
	}
	tc := startClusterWith(b, 3, func(c *Config) {
		benchTune(c)
		c.SyncUpdates = syncUpdates
		if raftDirs != "" {
			c.RaftDir = filepath.Join(raftDirs, c.NodeID)
		}
		if secure {
			ca.serverNode(c)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	leader := tc.leader()
	var names []string
	for i := range hospitals {
		names = append(names, fmt.Sprintf("h%d", i+1))
	}
	// clients returns the operator's client and each hospital's, to addr: one insecure
	// client (one connection) for all, or with mutual TLS each its own, presenting its
	// own certificate.
	clients := func(addr string) (*coordclient.Client, []*coordclient.Client) {
		hs := make([]*coordclient.Client, hospitals)
		if !secure {
			op := newClient(b, []string{addr})
			for k := range hs {
				hs[k] = op
			}
			return op, hs
		}
		for k := range hs {
			hs[k] = ca.client([]string{addr}, pki.RoleHospital, names[k])
		}
		return ca.client([]string{addr}, pki.RoleOperator, "operator"), hs
	}
	c, hc := clients(tc.cfgs[leader].GRPCAddr)
	byName := map[string]*coordclient.Client{}
	for k, h := range names {
		byName[h] = hc[k]
	}
	// A dense layer from values/128-1 inputs to 128 units has values parameters.
	spec, err := json.Marshal(model.Spec{Input: []int{values/128 - 1}, Layers: []model.LayerSpec{{Type: "dense", Units: 128, Activation: "softmax"}}})
	if err != nil {
		b.Fatal(err)
	}
	f, err := c.CreateFederation(ctx, &pb.FederationSpec{
		Name: "bench", ModelSpecJson: spec, Clients: names, MinClients: uint32(hospitals), Threshold: 2,
		Secure: true, Strategy: "fedavg", Rounds: uint32(b.N + 1),
	})
	if err != nil {
		b.Fatal(err)
	}
	params, pk, parties := runCeremonyAs(b, ctx, func(h string) *coordclient.Client { return byName[h] }, "bench", names, 2)
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

	// submitAll uploads every update, inFlight at a time, and returns how long it took.
	submitAll := func(hc []*coordclient.Client, round, version uint64) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, hospitals)
		slots := make(chan struct{}, inFlight)
		for k := range hospitals {
			wg.Go(func() {
				slots <- struct{}{}
				defer func() { <-slots }()
				_, errs[k] = hc[k].SubmitUpdate(ctx, coordclient.Update{Federation: "bench", Round: round, ClientID: names[k],
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

	// The baseline: the same uploads into a sink, running beside the cluster.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var creds []grpc.ServerOption
	if secure { // the leader's own TLS configuration
		creds = append(creds, grpc.Creds(credentials.NewTLS(tc.cfgs[leader].ServerTLS)))
	}
	srv := grpc.NewServer(creds...)
	pb.RegisterRoundServiceServer(srv, sinkServer{})
	go srv.Serve(ln)
	defer srv.Stop()
	_, sink := clients(ln.Addr().String())
	sinkRounds := 0
	var raw, sinkCPU time.Duration
	// sinkUntil runs sink rounds until the sink has been timed for d in all.
	sinkUntil := func(d time.Duration) {
		profiled(b, fmt.Sprintf("sink.%d", sinkRounds), func() {
			for raw < d {
				c0 := cputime.Process()
				raw += submitAll(sink, uint64(sinkRounds+1), 0)
				sinkCPU += cputime.Process() - c0
				sinkRounds++
			}
		})
	}

	b.ResetTimer()
	b.StopTimer()
	var cluster, clusterCPU time.Duration
	for i := range b.N + 1 {
		r := uint64(i + 1)
		ri := waitRound(b, ctx, c, "bench", r, pb.RoundState_ROUND_STATE_OPEN)
		if i == 0 { // the untimed rounds
			submitAll(hc, r, ri.ModelVersion)
			submitAll(sink, 0, 0)
		} else {
			b.StartTimer()
			c0 := cputime.Process()
			profiled(b, fmt.Sprintf("cluster.%d", i), func() { cluster += submitAll(hc, r, ri.ModelVersion) })
			clusterCPU += cputime.Process() - c0
			b.StopTimer()
		}
		// Decrypt and publish, so the next round opens.
		ri = waitRound(b, ctx, c, "bench", r, pb.RoundState_ROUND_STATE_DECRYPTING)
		var active []he.PartyID
		for _, p := range ri.ActiveParties {
			active = append(active, he.PartyID(p))
		}
		_, aggb, err := hc[0].FetchAggregate(ctx, "bench", r)
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
			if _, err := byName[h].SubmitDecryptionShare(ctx, "bench", r, h, sb); err != nil {
				b.Fatal(err)
			}
		}
		waitRound(b, ctx, c, "bench", r, pb.RoundState_ROUND_STATE_PUBLISHED)
		if i > 0 {
			// The sink keeps pace, round by round, under the same conditions (the
			// page cache's write-back of the cluster's blobs, say), once the cluster
			// has finished the round's aggregation and decryption.
			sinkUntil(cluster)
		}
	}
	// Where the leader's time per accepted update went (the untimed round included).
	m := tc.nodes[leader].metrics
	if k := float64(m.updatesAccepted.Load()); k > 0 {
		b.ReportMetric(float64(m.updateReceiveNanos.Load())/k/1e6, "receive-ms")
		b.ReportMetric(float64(m.updateCommitNanos.Load())/k/1e6, "commit-ms")
	}
	tc.closeAll()

	const mib = 1 << 20
	clusterMiB, rawMiB := float64(b.N*hospitals*size)/mib, float64(sinkRounds*hospitals*size)/mib
	clusterRate, rawRate := clusterMiB/cluster.Seconds(), rawMiB/raw.Seconds()
	if clusterCPU > 0 {
		b.ReportMetric(clusterCPU.Seconds()*1000/clusterMiB, "cpu-ms/MiB")
		b.ReportMetric(sinkCPU.Seconds()*1000/rawMiB, "raw-cpu-ms/MiB")
	}
	b.ReportMetric(clusterRate, "MiB/s")
	b.ReportMetric(rawRate, "raw-MiB/s")
	b.ReportMetric(clusterRate/rawRate, "ratio")
	if sinkCPU > 0 {
		// The work any node that accepts an update adds to what the sink does with it.
		rawCPU := sinkCPU.Seconds() * 1000 / rawMiB
		extra := replicationWork(b, tc.cfgs[leader], params, int(f.NumParams), updates, max(2, b.N))
		b.ReportMetric(extra, "extra-cpu-ms/MiB")
		b.ReportMetric(rawCPU/(rawCPU+extra), "ceiling")
	}
}

// replicationWork measures the CPU time per MiB (ms, the whole process) of the work that
// accepting an update into a round adds to receiving it, alone, without gRPC or Raft: what
// receiveReplicated and the follower's storeFromConn do with each chunk of the update,
// and nothing else. The receiving node writes the chunk to its blob store, hashes it,
// checks it as a ciphertext of the model (updates[k] carries weight k+1, as
// BenchmarkIngest makes them), and sends it to one peer with sendChunk as push does: over
// cfg's Raft stream layer, from memory with mutual TLS, from the file it wrote the chunk to
// over plain TCP (when insecure); the peer reads the connection as serveBlobConn does and
// stores the blob with storeFromConn. With cfg.SyncUpdates both flush each blob before
// naming it, as the nodes do. Every update passes through rounds times, each round's
// blobs removed before the next (their files recycled when flushed, deleted otherwise, as
// the nodes' are once a round is published).
//
// On a machine where both the cluster and the sink keep every core busy, the ratio of
// their rates is about the inverse ratio of their CPU time per MiB, and the cluster
// spends at least the sink's time plus this: raw/(raw+extra), the ceiling
// BenchmarkIngest reports, bounds the ratio that replication done this way (the digest
// verified, the content checked, two copies: a majority of three) allows there.
func replicationWork(b *testing.B, cfg Config, params he.Params, numParams int, updates [][]byte, rounds int) float64 {
	var (
		stores [2]*blobstore.Store
		err    error
	)
	for i := range stores {
		if stores[i], err = blobstore.Open(b.TempDir()); err != nil {
			b.Fatal(err)
		}
		defer stores[i].Close()
	}
	var layer raft.StreamLayer
	if cfg.Insecure {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		layer = &tcpStreamLayer{Listener: ln, advertise: ln.Addr()}
	} else {
		tl, err := newTLSStreamLayer("127.0.0.1:0", nil, cfg.ServerTLS, cfg.ClientTLS, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		tl.advertise = tl.Listener.Addr()
		layer = tl
	}
	defer layer.Close()
	// The peer is a node with nothing but its blob store, and stores each put as
	// serveBlobConn has it stored.
	peer := &Node{blobs: stores[1]}
	stored := make(chan error)
	go func() {
		c, err := layer.Accept()
		if err != nil {
			stored <- err
			return
		}
		defer c.Close()
		// Read as muxLayer.route and serveBlobConn read a blob connection.
		r := deadlineReader{&peekedConn{Conn: c, r: bufio.NewReaderSize(c, blobCopyBuffer)}}
		for {
			var hdr [sizeOfBlobHeader]byte
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			size := int64(binary.BigEndian.Uint64(hdr[32:40]))
			status, msg, err := peer.storeFromConn(r, blobstore.Digest(hdr[:32]), size, hdr[40]&blobFlagDurable != 0)
			if err == nil && status != blobStored {
				err = fmt.Errorf("peer answered %d (%s), want %d (stored)", status, msg, blobStored)
			}
			stored <- err
		}
	}()
	c, err := layer.Dial(raft.ServerAddress(layer.Addr().String()), 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	digests := make([]blobstore.Digest, len(updates))
	for k, u := range updates {
		digests[k] = blobstore.Sum(u)
	}
	var bytes int64
	c0 := cputime.Process()
	for range rounds {
		for k, u := range updates {
			var hdr [sizeOfBlobHeader]byte
			copy(hdr[:32], digests[k][:])
			binary.BigEndian.PutUint64(hdr[32:40], uint64(len(u)))
			if cfg.SyncUpdates {
				hdr[40] = blobFlagDurable
			}
			if _, err := c.Write(hdr[:]); err != nil {
				b.Fatal(err)
			}
			w, err := stores[0].Create(digests[k], int64(len(u)), true)
			if err != nil {
				b.Fatal(err)
			}
			if cfg.SyncUpdates {
				w.WriteBehind()
			}
			var src *os.File
			if cfg.Insecure {
				if src, err = w.Open(); err != nil {
					b.Fatal(err)
				}
			}
			check := aggregation.NewEncryptedChecker(params, numParams, aggregation.EncryptedUpdate{Client: "h", Samples: k + 1}, len(u))
			for off := 0; off < len(u); off += MaxChunkBytes {
				chunk := u[off:min(off+MaxChunkBytes, len(u))]
				if _, err := w.Write(chunk); err != nil {
					b.Fatal(err)
				}
				if _, err := check.Write(chunk); err != nil {
					b.Fatal(err)
				}
				if err := sendChunk(c, src, chunk); err != nil {
					b.Fatal(err)
				}
			}
			if src != nil {
				src.Close()
			}
			if err := check.Close(); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write([]byte{blobKeep}); err != nil {
				b.Fatal(err)
			}
			if err := w.Commit(cfg.SyncUpdates); err != nil {
				b.Fatal(err)
			}
			if err := <-stored; err != nil {
				b.Fatal(err)
			}
			bytes += int64(len(u))
		}
		for _, d := range digests {
			for _, s := range stores {
				if err := s.Remove(d); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return (cputime.Process() - c0).Seconds() * 1000 / (float64(bytes) / (1 << 20))
}

// BenchmarkServedInfer compares the throughput of model as a service with in-process
// inference on the same machine: 64 concurrent callers each send one-image infer requests
// for the seed CNN (model.Architecture("cnn", [28 28 1], 10), an MNIST test digit) to a
// coordinator node's REST port (JSON, bearer token, loopback TCP) and gRPC port (raw
// contents), and, as the reference, call Predict on the same network in process, one image
// per call. It reports samples/s and p50/p99 latency for each, and for rest and grpc the
// ratio of their throughput to the in-process reference (the target is at least 0.5). The
// REST callers share one keep-alive connection pool with room for all of them, and read
// every response to the end, so connections are reused; "dials" counts the TCP
// connections the run opened: about one per caller (64-66 at -benchtime 3000x), more when
// a short run starts all callers at once and some dials lose the race to a freed
// connection (87 at 300x).
//
//	go test ./coordinator -run '^$' -bench ServedInfer -benchtime 3000x
func BenchmarkServedInfer(b *testing.B) {
	const callers = 64
	s := newServedCNN(b)
	img := s.img
	var dials atomic.Int64
	dialer := &net.Dialer{}
	tr := &http.Transport{
		MaxIdleConns:        2 * callers, // room to spare: no connection is closed for want of a slot
		MaxIdleConnsPerHost: 2 * callers,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	httpClient := &http.Client{Transport: tr, Timeout: waitTimeout}
	url := s.restBase() + "/v2/models/cnn/infer"
	body, err := json.Marshal(restInferBody(img, []int{1, 28, 28, 1}, "FP32"))
	if err != nil {
		b.Fatal(err)
	}
	g := s.grpcClient(b)
	gctx := bearer(context.Background(), inferToken)
	var reference float64 // in-process samples/s
	kinds := []struct {
		name string
		call func() error
	}{
		{"inprocess", func() error { s.local.Predict(img, 1); return nil }},
		{"rest", func() error {
			req, err := http.NewRequest("POST", url, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+inferToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := httpClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				msg, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
			}
			_, err = io.Copy(io.Discard, resp.Body) // to the end, so the connection is reused
			return err
		}},
		{"grpc", func() error {
			_, _, err := grpcInfer(gctx, g, "cnn", img, 1, []int{28, 28, 1})
			return err
		}},
	}
	for _, k := range kinds {
		b.Run(fmt.Sprintf("%s/callers=%d", k.name, callers), func(b *testing.B) {
			d0 := dials.Load()
			rate := callbench.Run(b, callers, 1, k.call)
			if k.name == "inprocess" {
				reference = rate
			} else if reference > 0 {
				b.ReportMetric(rate/reference, "ratio")
			}
			if k.name == "rest" {
				b.ReportMetric(float64(dials.Load()-d0), "dials")
			}
		})
	}
	s.tc.closeAll()
}

// BenchmarkBlobTransfer measures what it costs to pass a 64 MiB blob on to a peer over
// loopback TCP, as a node does with an update it receives: the sender writes each chunk
// to its blob store and sends it (sendChunk), the receiver stores it (readBlob). It
// reports the CPU time per MiB of the whole process, for each way of moving the bytes:
// through buffers in the process on both sides (write(2) and read(2), as over mutual
// TLS), or with the kernel moving them (sendfile(2) on the sender, splice(2) on the
// receiver, as over plain TCP), and each of the two alone.
func BenchmarkBlobTransfer(b *testing.B) {
	for _, v := range blobTransfers {
		b.Run(v.name, func(b *testing.B) { benchmarkBlobTransfer(b, v.sendfile, v.splice) })
	}
}

var blobTransfers = []struct {
	name             string
	sendfile, splice bool
}{{"write+read", false, false}, {"write+splice", false, true}, {"sendfile+read", true, false}, {"sendfile+splice", true, true}}

// TestBlobTransferBenchmark runs each case of BenchmarkBlobTransfer once, so that the
// suite notices when a change breaks it. It asserts no speed.
func TestBlobTransferBenchmark(t *testing.T) {
	benchOnce(t)
	for _, v := range blobTransfers {
		r := testing.Benchmark(func(b *testing.B) { benchmarkBlobTransfer(b, v.sendfile, v.splice) })
		if m := r.Extra["cpu-ms/MiB"]; r.N == 0 || !(m > 0) {
			t.Errorf("%s: the benchmark failed or reported cpu-ms/MiB = %v; go test -run '^$' -bench BlobTransfer/%s -benchtime 1x ./coordinator shows why", v.name, m, v.name)
		}
	}
}

func benchmarkBlobTransfer(b *testing.B, sendfile, splice bool) {
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	d := blobstore.Sum(data)
	var stores [2]*blobstore.Store
	for i := range stores {
		s, err := blobstore.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	stored := make(chan error, 1) // the last one, when the sender hangs up, is not read
	go func() {
		c, err := ln.Accept()
		if err != nil {
			stored <- err
			return
		}
		defer c.Close()
		var conn net.Conn = &peekedConn{Conn: c, r: bufio.NewReaderSize(c, blobCopyBuffer)}
		if !splice {
			conn = struct{ net.Conn }{conn} // readBlob no longer sees the socket
		}
		buf := make([]byte, blobCopyBuffer)
		for {
			w, err := stores[1].Create(d, int64(len(data)), false)
			if err == nil {
				var k int64
				if k, err = readBlob(w, deadlineReader{conn}, int64(len(data)), buf); err == nil && k != int64(len(data)) {
					err = io.ErrUnexpectedEOF
				}
				if err == nil {
					err = w.Commit(false)
				} else {
					w.Abort()
				}
			}
			if err == nil {
				err = stores[1].Remove(d)
			}
			stored <- err
			if err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c0 := cputime.Process()
	for b.Loop() {
		w, err := stores[0].Create(d, int64(len(data)), false)
		if err != nil {
			b.Fatal(err)
		}
		var src *os.File
		if sendfile {
			if src, err = w.Open(); err != nil {
				b.Fatal(err)
			}
		}
		for off := 0; off < len(data); off += MaxChunkBytes {
			chunk := data[off:min(off+MaxChunkBytes, len(data))]
			if _, err := w.Write(chunk); err != nil {
				b.Fatal(err)
			}
			if err := sendChunk(c, src, chunk); err != nil {
				b.Fatal(err)
			}
		}
		if src != nil {
			src.Close()
		}
		if err := <-stored; err != nil {
			b.Fatal(err)
		}
		if err := w.Commit(false); err != nil {
			b.Fatal(err)
		}
		if err := stores[0].Remove(d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cputime.Process()-c0).Seconds()*1000/float64(b.N*len(data)>>20), "cpu-ms/MiB")
}

// BenchmarkRaftTLSCopy measures the CPU time per MiB (ms, the whole process: both ends)
// of sending 64 MiB in 1 MiB writes over a Raft-port TLS connection on loopback, as the
// leader copies an update to a follower, the receiver reading it into a 256 KiB buffer:
// through tlsStreamLayer.Dial (batched: a Write's records go to the socket 64 KiB at a
// time) and through a tls.Conn with the same configuration (per-record: crypto/tls's
// one socket write per 16 KiB record).
//
//	go test ./coordinator -run '^$' -bench RaftTLSCopy -benchtime 20x
func BenchmarkRaftTLSCopy(b *testing.B) {
	b.Run("batched", func(b *testing.B) { benchmarkRaftTLSCopy(b, true) })
	b.Run("per-record", func(b *testing.B) { benchmarkRaftTLSCopy(b, false) })
}

// TestRaftTLSCopyBenchmark runs both cases of BenchmarkRaftTLSCopy once, so that the
// suite notices when a change breaks them. It asserts no speed.
func TestRaftTLSCopyBenchmark(t *testing.T) {
	benchOnce(t)
	for _, batched := range []bool{true, false} {
		r := testing.Benchmark(func(b *testing.B) { benchmarkRaftTLSCopy(b, batched) })
		if m := r.Extra["cpu-ms/MiB"]; r.N == 0 || !(m > 0) {
			t.Errorf("batched=%v: the benchmark failed or reported cpu-ms/MiB = %v; go test -run '^$' -bench RaftTLSCopy -benchtime 1x ./coordinator shows why", batched, m)
		}
	}
}

func benchmarkRaftTLSCopy(b *testing.B, batched bool) {
	layer, cfg := newTestTLSLayer(b)
	addr := layer.Listener.Addr().String()
	read := make(chan struct{})
	go func() {
		defer close(read)
		c, err := layer.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, fileBatch)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
		}
	}()
	var c net.Conn
	var err error
	if batched {
		c, err = layer.Dial(raft.ServerAddress(addr), 10*time.Second)
	} else {
		c, err = tls.Dial("tcp", addr, cfg.ClientTLS)
	}
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	const total = 64 << 20
	b.SetBytes(total)
	c0 := cputime.Process()
	for b.Loop() {
		for range total / len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	}
	c.Close()
	<-read // the receiver's work on the last bytes counts too
	b.ReportMetric((cputime.Process()-c0).Seconds()*1000/float64(b.N*(total>>20)), "cpu-ms/MiB")
}
