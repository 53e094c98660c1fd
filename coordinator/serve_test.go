package coordinator

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/internal/pb/oip"
	"github.com/medfed/medfed/model"
)

const inferToken = "serve-test-token-0123456789abcdef"

// mnistSets loads MNIST, or skips the test.
func mnistSets(t testing.TB) (train, test *dataset.Set) {
	t.Helper()
	dir, err := dataset.MNISTDir()
	if err != nil {
		t.Skipf("MNIST not available: %v", err)
	}
	train, test, err = dataset.LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	return train, test
}

// servingTune gives every node an HTTP port, the bearer token inferToken (caller
// "token/app"), no rate limit (the tests hammer), and larger chunk entries than
// testConfig's, for MNIST-sized updates.
func servingTune(t testing.TB) func(*Config) {
	tokens, err := inference.NewTokenSet(map[string]string{inferToken: "app"})
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		c.HTTPAddr = loopback.Addr(t)
		c.ChunkBytes = 256 << 10
		c.Inference = inference.Config{NoRateLimit: true}
		c.InferenceTokens = tokens
	}
}

// oipREST is a caller of a node's REST endpoints.
type oipREST struct {
	t     testing.TB
	http  *http.Client
	token string
}

func newOIPREST(t testing.TB, token string) *oipREST {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &oipREST{t: t, http: &http.Client{Transport: tr, Timeout: waitTimeout}, token: token}
}

func (c *oipREST) do(method, url string, body any) (int, []byte, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return 0, nil, err
		}
	}
	return c.send(method, url, b)
}

// send sends body as it is (none if nil).
func (c *oipREST) send(method, url string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

type inferResponse struct {
	ModelVersion string `json:"model_version"`
	Outputs      []struct {
		Name string          `json:"name"`
		Data json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// infer posts n samples of x to /v2/models/{name}/infer and returns the serving version and
// the predicted classes.
func (c *oipREST) infer(base, name string, x []float32, n int, shape []int) (string, []int64, error) {
	s := append([]int{n}, shape...)
	code, b, err := c.do("POST", base+"/v2/models/"+name+"/infer", map[string]any{
		"inputs": []map[string]any{{"name": "input", "shape": s, "datatype": "FP32", "data": x}},
	})
	if err != nil {
		return "", nil, err
	}
	if code != http.StatusOK {
		return "", nil, fmt.Errorf("HTTP %d: %s", code, b)
	}
	var r inferResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return "", nil, err
	}
	for _, o := range r.Outputs {
		if o.Name == inference.OutputPredictedClass {
			var classes []int64
			err := json.Unmarshal(o.Data, &classes)
			return r.ModelVersion, classes, err
		}
	}
	return "", nil, fmt.Errorf("no %s output in %s", inference.OutputPredictedClass, b)
}

// grpcInfer calls ModelInfer with raw FP32 input and returns the predicted classes.
func grpcInfer(ctx context.Context, c oip.GRPCInferenceServiceClient, name string, x []float32, n int, shape []int) (string, []int64, error) {
	s := []int64{int64(n)}
	for _, d := range shape {
		s = append(s, int64(d))
	}
	raw := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	resp, err := c.ModelInfer(ctx, &oip.ModelInferRequest{ModelName: name,
		Inputs:           []*oip.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: s}},
		RawInputContents: [][]byte{raw}})
	if err != nil {
		return "", nil, err
	}
	for i, o := range resp.Outputs {
		if o.Name != inference.OutputPredictedClass {
			continue
		}
		b := resp.RawOutputContents[i]
		classes := make([]int64, len(b)/8)
		for j := range classes {
			classes[j] = int64(binary.LittleEndian.Uint64(b[8*j:]))
		}
		return resp.ModelVersion, classes, nil
	}
	return "", nil, fmt.Errorf("no %s output", inference.OutputPredictedClass)
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// federatedMNIST runs rounds of a plaintext federation on MNIST: each hospital trains the
// current global model for one epoch on its shard and submits the difference.
type federatedMNIST struct {
	t      testing.TB
	ctx    context.Context
	c      *coordclient.Client
	name   string
	spec   model.Spec
	shards []*dataset.Set
	hosps  []string
}

func (f *federatedMNIST) round(r uint64) {
	t := f.t
	t.Helper()
	waitRound(t, f.ctx, f.c, f.name, r, pb.RoundState_ROUND_STATE_OPEN)
	h, wb, err := f.c.FetchModel(f.ctx, f.name, r-1, "f32")
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != r-1 {
		t.Fatalf("round %d: fetched model version %d, want %d", r, h.Version, r-1)
	}
	global, err := DecodeFloat32s(wb)
	if err != nil {
		t.Fatal(err)
	}
	for k, hosp := range f.hosps {
		m, err := model.Build(f.spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetFlat(global); err != nil {
			t.Fatal(err)
		}
		tr, err := model.NewTrainer(m, model.TrainConfig{Epochs: 1, BatchSize: 32, Seed: uint64(10*r) + uint64(k),
			Optimizer: model.OptimizerConfig{Name: "sgd", LearningRate: 0.1}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Epoch(f.ctx, f.shards[k].X, f.shards[k].Y, nil); err != nil {
			t.Fatal(err)
		}
		d := m.Flat(nil)
		for i := range d {
			d[i] -= global[i]
		}
		if _, err := f.c.SubmitUpdate(f.ctx, coordclient.Update{Federation: f.name, Round: r, ClientID: hosp,
			ModelVersion: r - 1, Samples: uint64(f.shards[k].Len()), Data: EncodeFloat32s(d)}); err != nil {
			t.Fatalf("round %d: submit %s: %v", r, hosp, err)
		}
	}
	waitRound(t, f.ctx, f.c, f.name, r, pb.RoundState_ROUND_STATE_PUBLISHED)
}

// waitServed waits until every running node serves version v of name by default.
func (tc *testCluster) waitServed(name string, v uint64) {
	tc.t.Helper()
	for i, n := range tc.nodes {
		if n == nil {
			continue
		}
		waitFor(tc.t, fmt.Sprintf("%s to serve %s version %d", tc.cfgs[i].NodeID, name, v), func() bool {
			sm, err := n.Registry().Latest(name)
			return err == nil && sm.Version() == v
		})
	}
}

// TestClusterServesModel runs a plaintext federation of three hospitals on MNIST on a
// 3-node cluster and checks model as a service on every node:
//   - after two rounds every node, followers included, answers infer over REST and gRPC for
//     the first 2,000 MNIST test images with identical predictions, equal to the published
//     model's evaluated in process (so are the accuracies);
//   - while callers hammer a follower, round 3 publishes: no request fails, and the served
//     default version moves from 2 to 3;
//   - requests without a valid token are refused, health checks need none, and the model
//     metadata lists the loaded versions.
func TestClusterServesModel(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	train, test := mnistSets(t)
	tc := startClusterWith(t, 3, servingTune(t))
	ctx := testCtx(t)
	c := newClient(t, tc.addrs())
	tc.leader()
	rest := newOIPREST(t, inferToken)
	anon := newOIPREST(t, "")
	base := func(i int) string { return "http://" + tc.nodes[i].HTTPAddr() }

	spec := model.Spec{Input: []int{28, 28, 1}, Layers: []model.LayerSpec{
		{Type: "flatten"}, {Type: "dense", Units: 16, Activation: "relu"}, {Type: "dense", Units: 10, Activation: "softmax"}}}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	hosps := []string{"h1", "h2", "h3"}
	if _, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "mnist", ModelSpecJson: specJSON, Dataset: "mnist",
		Clients: hosps, Rounds: 3, MinClients: 3, Strategy: "fedavg", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	// No round has published yet: nothing is served (version 0 is the random start).
	if code, b, err := anon.do("GET", base(0)+"/v2/health/ready", nil); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("ready before round 1: %d %s %v, want 503", code, b, err)
	}
	if code, b, err := rest.do("GET", base(0)+"/v2/models/mnist", nil); err != nil || code != http.StatusNotFound {
		t.Errorf("metadata before round 1: %d %s %v, want 404", code, b, err)
	}
	for _, h := range hosps {
		if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "mnist", ClientId: h}); err != nil {
			t.Fatal(err)
		}
	}
	fm := &federatedMNIST{t: t, ctx: ctx, c: c, name: "mnist", spec: spec, hosps: hosps}
	for k := range hosps {
		idx := make([]int, 1000)
		for i := range idx {
			idx[i] = 1000*k + i
		}
		fm.shards = append(fm.shards, train.Subset(idx))
	}
	fm.round(1)
	fm.round(2)
	tc.waitServed("mnist", 2)

	// (a) The same predictions everywhere, and the in-process accuracy.
	const n, batch = 2000, 250
	x, y := test.X[:n*test.Size()], test.Y[:n]
	_, w2, _, err := tc.nodes[0].FSM().ModelVersion("mnist", 2, false)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := model.Build(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.SetFlat(w2); err != nil {
		t.Fatal(err)
	}
	_, wantAcc, err := m2.Evaluate(x, y, n, "sparse_categorical_crossentropy")
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int64, 0, n)
	for off := 0; off < n; off += batch {
		p := m2.Predict(x[off*test.Size():(off+batch)*test.Size()], batch)
		for i := range batch {
			row := p[10*i : 10*i+10]
			want = append(want, int64(slices.Index(row, slices.Max(row))))
		}
	}
	t.Logf("model version 2: in-process accuracy %.4f on the first %d test images", wantAcc, n)
	if wantAcc < 0.5 {
		t.Errorf("in-process accuracy %.4f: the federation did not learn", wantAcc)
	}
	for i := range tc.nodes {
		conn, err := grpc.NewClient(tc.cfgs[i].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		g := oip.NewGRPCInferenceServiceClient(conn)
		for _, proto := range []string{"rest", "grpc"} {
			var got []int64
			for off := 0; off < n; off += batch {
				xb := x[off*test.Size() : (off+batch)*test.Size()]
				var v string
				var cls []int64
				var err error
				if proto == "rest" {
					v, cls, err = rest.infer(base(i), "mnist", xb, batch, test.Shape)
				} else {
					v, cls, err = grpcInfer(bearer(ctx, inferToken), g, "mnist", xb, batch, test.Shape)
				}
				if err != nil {
					t.Fatalf("%s %s: %v", tc.cfgs[i].NodeID, proto, err)
				}
				if v != "2" {
					t.Fatalf("%s %s: served version %q, want 2", tc.cfgs[i].NodeID, proto, v)
				}
				got = append(got, cls...)
			}
			correct := 0
			for j, cl := range got {
				if cl == int64(y[j]) {
					correct++
				}
			}
			acc := float64(correct) / n
			if !slices.Equal(got, want) || math.Abs(acc-wantAcc) > 1e-12 {
				diff := 0
				for j := range min(len(got), len(want)) {
					if got[j] != want[j] {
						diff++
					}
				}
				t.Errorf("%s %s: %d of %d predictions differ from in process; served accuracy %.4f, in process %.4f", tc.cfgs[i].NodeID, proto, diff, n, acc, wantAcc)
			}
		}
		conn.Close()
	}

	// (b) Round 3 publishes while callers hammer a follower: no failed request, and the
	// default version moves to 3.
	leader := tc.leader()
	fi := (leader + 1) % 3
	var (
		stop     atomic.Bool
		requests atomic.Int64
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
	)
	const callers = 3
	seen3 := make([]atomic.Bool, callers)
	for k := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; !stop.Load(); i += callers {
				j := i % n
				v, cls, err := rest.infer(base(fi), "mnist", x[j*test.Size():(j+1)*test.Size()], 1, test.Shape)
				requests.Add(1)
				switch {
				case err != nil:
				case v == "3":
					seen3[k].Store(true)
				case v != "2":
					err = fmt.Errorf("served version %q, want 2 or 3", v)
				case seen3[k].Load():
					err = fmt.Errorf("served version 2 after version 3")
				}
				if err == nil && len(cls) != 1 {
					err = fmt.Errorf("%d classes for 1 sample", len(cls))
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	fm.round(3)
	waitFor(t, "every caller to be served version 3", func() bool {
		for k := range seen3 {
			if !seen3[k].Load() {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests to follower %s during round 3", requests.Load(), tc.cfgs[fi].NodeID)
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the switch, first: %s", len(failures), requests.Load(), failures[0])
	}
	tc.waitServed("mnist", 3)

	// (c) Access control and metadata.
	for _, tok := range []string{"", "wrong-token-0123456789abcdef"} {
		cl := newOIPREST(t, tok)
		if _, _, err := cl.infer(base(fi), "mnist", x[:test.Size()], 1, test.Shape); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
			t.Errorf("REST infer with token %q: got %v, want HTTP 401", tok, err)
		}
		if code, _, _ := cl.do("GET", base(fi)+"/v2/models/mnist", nil); code != http.StatusUnauthorized {
			t.Errorf("REST metadata with token %q: HTTP %d, want 401", tok, code)
		}
	}
	conn, err := grpc.NewClient(tc.cfgs[fi].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := oip.NewGRPCInferenceServiceClient(conn)
	if _, _, err := grpcInfer(ctx, g, "mnist", x[:test.Size()], 1, test.Shape); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC infer without a token: got %v, want Unauthenticated", err)
	}
	if _, _, err := grpcInfer(bearer(ctx, "wrong-token-0123456789abcdef"), g, "mnist", x[:test.Size()], 1, test.Shape); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC infer with a wrong token: got %v, want Unauthenticated", err)
	}
	if r, err := g.ServerReady(ctx, &oip.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Errorf("gRPC ServerReady without a token: %v %v, want ready", r, err)
	}
	if code, b, err := anon.do("GET", base(fi)+"/v2/health/ready", nil); err != nil || code != http.StatusOK {
		t.Errorf("ready without a token: %d %s %v, want 200", code, b, err)
	}
	code, b, err := rest.do("GET", base(fi)+"/v2/models/mnist", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("metadata: %d %s %v", code, b, err)
	}
	var meta struct {
		Name     string   `json:"name"`
		Versions []string `json:"versions"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Name != "mnist" || !slices.Equal(meta.Versions, []string{"1", "2", "3"}) {
		t.Errorf("metadata name %q versions %v, want mnist [1 2 3]", meta.Name, meta.Versions)
	}
	md, err := g.ModelMetadata(bearer(ctx, inferToken), &oip.ModelMetadataRequest{Name: "mnist"})
	if err != nil || !slices.Equal(md.Versions, []string{"1", "2", "3"}) {
		t.Errorf("gRPC metadata: %v %v, want versions [1 2 3]", md, err)
	}
	// An older version stays available by number.
	if v, _, err := rest.infer(base(fi), "mnist/versions/1", x[:test.Size()], 1, test.Shape); err != nil || v != "1" {
		t.Errorf("infer on version 1: version %q, %v", v, err)
	}
	code, b, err = anon.do("GET", base(fi)+"/metrics", nil)
	if err != nil || code != http.StatusOK || !strings.Contains(string(b), `medfed_inference_requests_total{caller="token/app",protocol="rest",endpoint="infer",code="ok"}`) {
		t.Errorf("/metrics: %d %v, want per-caller inference counters:\n%s", code, err, b)
	}
	tc.closeAll()
}

// TestTLSClusterServesModel serves a model on a mutual-TLS node with a token file: over
// HTTPS and gRPC a caller authenticates with a consortium certificate or, without one,
// with a bearer token; a caller with neither is refused, and a token caller without a
// certificate cannot reach the medfed.v1 services.
func TestTLSClusterServesModel(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ca := newTestPKI(t)
	serving := servingTune(t)
	tc := startClusterWith(t, 1, func(c *Config) { ca.serverNode(c); serving(c) })
	ctx := testCtx(t)
	tc.leader()
	op := ca.client(tc.addrs(), pki.RoleOperator, "op")
	h1 := ca.client(tc.addrs(), pki.RoleHospital, "h1")
	if _, err := op.CreateFederation(ctx, &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: "h1"}); err != nil {
		t.Fatal(err)
	}
	waitRound(t, ctx, op, "f", 1, pb.RoundState_ROUND_STATE_OPEN)
	if _, err := h1.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: 1, ClientID: "h1", Samples: 3, Data: EncodeFloat32s(delta(0))}); err != nil {
		t.Fatal(err)
	}
	waitRound(t, ctx, op, "f", 1, pb.RoundState_ROUND_STATE_PUBLISHED)
	tc.waitServed("f", 1)

	withCert := ca.clientTLS(pki.RoleHospital, "h1")
	noCert := withCert.Clone()
	noCert.Certificates = nil
	x := make([]float32, 8)
	base := "https://" + tc.nodes[0].HTTPAddr()
	grpcConn := func(cfg *tls.Config) oip.GRPCInferenceServiceClient {
		conn, err := grpc.NewClient(tc.cfgs[0].GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return oip.NewGRPCInferenceServiceClient(conn)
	}
	for _, c := range []struct {
		name  string
		tls   *tls.Config
		token string
		ok    bool
	}{
		{"hospital certificate", withCert, "", true},
		{"token without certificate", noCert, inferToken, true},
		{"neither", noCert, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: c.tls}
			defer tr.CloseIdleConnections()
			rc := &oipREST{t: t, http: &http.Client{Transport: tr, Timeout: waitTimeout}, token: c.token}
			v, _, err := rc.infer(base, "f", x, 1, []int{8})
			if c.ok && (err != nil || v != "1") {
				t.Errorf("REST: version %q, %v; want version 1", v, err)
			}
			if !c.ok && (err == nil || !strings.Contains(err.Error(), "HTTP 401")) {
				t.Errorf("REST: %v, want HTTP 401", err)
			}
			// Health checks and metrics need no credentials, but TLS.
			if code, b, err := rc.do("GET", base+"/healthz", nil); err != nil || code != http.StatusOK {
				t.Errorf("/healthz: %d %s %v", code, b, err)
			}
			gctx := ctx
			if c.token != "" {
				gctx = bearer(ctx, c.token)
			}
			g := grpcConn(c.tls)
			v, _, err = grpcInfer(gctx, g, "f", x, 1, []int{8})
			if c.ok && (err != nil || v != "1") {
				t.Errorf("gRPC: version %q, %v; want version 1", v, err)
			}
			if !c.ok && status.Code(err) != codes.Unauthenticated {
				t.Errorf("gRPC: %v, want Unauthenticated", err)
			}
		})
	}
	// A token opens the OIP service only.
	conn, err := grpc.NewClient(tc.cfgs[0].GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(noCert)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewFederationServiceClient(conn).ListFederations(bearer(ctx, inferToken), &pb.ListFederationsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("medfed.v1 without a certificate: got %v, want Unauthenticated", err)
	}
	tc.closeAll()
}

// waitVersions waits until every running node has loaded exactly the versions want of name.
func (tc *testCluster) waitVersions(name string, want []uint64) {
	tc.t.Helper()
	for i, n := range tc.nodes {
		if n == nil {
			continue
		}
		var got []uint64
		waitFor(tc.t, fmt.Sprintf("%s to load versions %v of %s", tc.cfgs[i].NodeID, want, name), func() bool {
			got, _ = n.Registry().Versions(name)
			return slices.Equal(got, want)
		})
	}
}

// TestPinnedVersionServed pins model version 1 on a 3-node mutual-TLS cluster that keeps
// two versions loaded: an operator pins it through a follower (a hospital may not), four
// more rounds publish, and every node still serves version 1 next to 4 and 5, also a
// follower restarted from a snapshot; after the operator unpins it, every node retires it
// and answers 404 for it.
func TestPinnedVersionServed(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ca := newTestPKI(t)
	serving := servingTune(t)
	tc := startClusterWith(t, 3, func(c *Config) {
		ca.serverNode(c)
		serving(c)
		c.Inference.Retain = 2
	})
	ctx := testCtx(t)
	leader := tc.leader()
	fi := (leader + 1) % 3
	op := ca.client(tc.addrs(), pki.RoleOperator, "op")
	h1 := ca.client(tc.addrs(), pki.RoleHospital, "h1")
	if _, err := op.CreateFederation(ctx, &pb.FederationSpec{Name: "f", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1, Rounds: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Enrol(ctx, &pb.EnrolRequest{Federation: "f", ClientId: "h1"}); err != nil {
		t.Fatal(err)
	}
	round := func(r uint64) {
		t.Helper()
		waitRound(t, ctx, op, "f", r, pb.RoundState_ROUND_STATE_OPEN)
		if _, err := h1.SubmitUpdate(ctx, coordclient.Update{Federation: "f", Round: r, ClientID: "h1", ModelVersion: r - 1, Samples: 3, Data: EncodeFloat32s(delta(int(r)))}); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		waitRound(t, ctx, op, "f", r, pb.RoundState_ROUND_STATE_PUBLISHED)
	}
	round(1)
	tc.waitServed("f", 1)

	// Pin and unpin go to a follower, which forwards them to the leader.
	fedClient := func(role pki.Role, id string) pb.FederationServiceClient {
		conn, err := grpc.NewClient(tc.cfgs[fi].GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(ca.clientTLS(role, id))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return pb.NewFederationServiceClient(conn)
	}
	opFed, hospFed := fedClient(pki.RoleOperator, "op"), fedClient(pki.RoleHospital, "h1")
	if _, err := hospFed.PinModel(ctx, &pb.PinModelRequest{Federation: "f", Version: 1}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("hospital pins: got %v, want PermissionDenied", err)
	}
	for _, c := range []struct {
		version uint64
		code    codes.Code
	}{{0, codes.InvalidArgument}, {2, codes.NotFound}} {
		if _, err := opFed.PinModel(ctx, &pb.PinModelRequest{Federation: "f", Version: c.version}); status.Code(err) != c.code {
			t.Errorf("pin version %d: got %v, want %v", c.version, err, c.code)
		}
	}
	fd, err := opFed.PinModel(ctx, &pb.PinModelRequest{Federation: "f", Version: 1})
	if err != nil || !slices.Equal(fd.GetPinnedVersions(), []uint64{1}) {
		t.Fatalf("pin version 1: pinned %v, %v; want [1]", fd.GetPinnedVersions(), err)
	}
	for r := uint64(2); r <= 5; r++ {
		round(r)
	}
	tc.waitServed("f", 5)
	tc.waitVersions("f", []uint64{1, 4, 5})

	rest := &http.Transport{TLSClientConfig: ca.clientTLS(pki.RoleHospital, "h1")}
	defer rest.CloseIdleConnections()
	rc := &oipREST{t: t, http: &http.Client{Transport: rest, Timeout: waitTimeout}}
	x := make([]float32, 8)
	inferAll := func(version string) {
		t.Helper()
		for i := range tc.nodes {
			v, _, err := rc.infer("https://"+tc.nodes[i].HTTPAddr(), "f/versions/"+version, x, 1, []int{8})
			if version == "1" && (err != nil || v != "1") {
				t.Errorf("%s: infer on pinned version 1: version %q, %v", tc.cfgs[i].NodeID, v, err)
			}
			if version != "1" && (err == nil || !strings.Contains(err.Error(), "HTTP 404")) {
				t.Errorf("%s: infer on retired version %s: %v, want HTTP 404", tc.cfgs[i].NodeID, version, err)
			}
		}
	}
	inferAll("1")
	inferAll("2")

	// A follower restarted from a snapshot serves the pinned version again.
	if err := tc.nodes[fi].raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot %s: %v", tc.cfgs[fi].NodeID, err)
	}
	tc.stop(fi)
	tc.start(fi)
	tc.waitServed("f", 5)
	tc.waitVersions("f", []uint64{1, 4, 5})
	inferAll("1")

	fd, err = opFed.PinModel(ctx, &pb.PinModelRequest{Federation: "f", Version: 1, Unpin: true})
	if err != nil || len(fd.GetPinnedVersions()) != 0 {
		t.Fatalf("unpin version 1: pinned %v, %v; want none", fd.GetPinnedVersions(), err)
	}
	tc.waitVersions("f", []uint64{4, 5})
	inferAll("3")
	for i := range tc.nodes {
		if _, _, err := rc.infer("https://"+tc.nodes[i].HTTPAddr(), "f/versions/1", x, 1, []int{8}); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
			t.Errorf("%s: infer on unpinned version 1: %v, want HTTP 404", tc.cfgs[i].NodeID, err)
		}
	}
	tc.closeAll()
}

// servedCNN is a one-node cluster serving the seed CNN (model.Architecture("cnn",
// [28 28 1], 10)) as model "cnn" version 1, published by a one-hospital round, with the
// same network built in process and an MNIST test digit (a blank image without MNIST).
type servedCNN struct {
	tc    *testCluster
	local *model.Sequential
	img   []float32
}

func newServedCNN(t testing.TB) *servedCNN {
	t.Helper()
	tc := startClusterWith(t, 1, servingTune(t))
	ctx := testCtx(t)
	tc.leader()
	c := newClient(t, tc.addrs())
	spec, err := model.Architecture("cnn", []int{28, 28, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := c.CreateFederation(ctx, &pb.FederationSpec{Name: "cnn", ModelSpecJson: specJSON, Dataset: "mnist", Clients: []string{"h1"}, MinClients: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enrol(ctx, &pb.EnrolRequest{Federation: "cnn", ClientId: "h1"}); err != nil {
		t.Fatal(err)
	}
	waitRound(t, ctx, c, "cnn", 1, pb.RoundState_ROUND_STATE_OPEN)
	d := make([]float32, fd.NumParams)
	for i := range d {
		d[i] = 1e-3 * float32(i%7-3)
	}
	if _, err := c.SubmitUpdate(ctx, coordclient.Update{Federation: "cnn", Round: 1, ClientID: "h1", Samples: 1, Data: EncodeFloat32s(d)}); err != nil {
		t.Fatal(err)
	}
	waitRound(t, ctx, c, "cnn", 1, pb.RoundState_ROUND_STATE_PUBLISHED)
	tc.waitServed("cnn", 1)
	_, w, _, err := tc.nodes[0].FSM().ModelVersion("cnn", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	local, err := model.Build(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.SetFlat(w); err != nil {
		t.Fatal(err)
	}
	img := make([]float32, 784)
	if dir, err := dataset.MNISTDir(); err == nil {
		if _, test, err := dataset.LoadMNIST(dir); err == nil {
			img = slices.Clone(test.X[:784])
		}
	}
	return &servedCNN{tc: tc, local: local, img: img}
}

func (s *servedCNN) restBase() string { return "http://" + s.tc.nodes[0].HTTPAddr() }

func (s *servedCNN) grpcClient(t testing.TB) oip.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(s.tc.cfgs[0].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return oip.NewGRPCInferenceServiceClient(conn)
}

// restInferBody is a REST infer request body with one FP32 input.
func restInferBody(x []float32, shape []int, datatype string) map[string]any {
	return map[string]any{"inputs": []map[string]any{{"name": "input", "shape": shape, "datatype": datatype, "data": x}}}
}

// TestNodeRefusesMalformedRequests sends malformed inference requests to a coordinator
// node's HTTP and gRPC ports: wrong shape, wrong datatype, missing input, NaN, a 100 MiB
// body, an unknown model or version. Each gets the protocol's error (HTTP 400 or 404, gRPC
// InvalidArgument or NotFound; a 100 MiB gRPC message is over the port's message limit,
// which gRPC itself answers ResourceExhausted) with a message saying what was wrong, and
// a good request succeeds after each, on both ports.
func TestNodeRefusesMalformedRequests(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	s := newServedCNN(t)
	rest := newOIPREST(t, inferToken)
	g := s.grpcClient(t)
	ctx := bearer(testCtx(t), inferToken)
	infer := s.restBase() + "/v2/models/cnn/infer"
	img := s.img
	_, want, err := rest.infer(s.restBase(), "cnn", img, 1, []int{28, 28, 1})
	if err != nil {
		t.Fatal(err)
	}
	p := s.local.Predict(img, 1)
	if wantClass := int64(slices.Index(p, slices.Max(p))); want[0] != wantClass {
		t.Fatalf("served class %d, in process %d", want[0], wantClass)
	}
	goodAfter := func(t *testing.T) {
		t.Helper()
		if _, cls, err := rest.infer(s.restBase(), "cnn", img, 1, []int{28, 28, 1}); err != nil || !slices.Equal(cls, want) {
			t.Errorf("REST request after it: %v %v, want class %v", cls, err, want)
		}
		if _, cls, err := grpcInfer(ctx, g, "cnn", img, 1, []int{28, 28, 1}); err != nil || !slices.Equal(cls, want) {
			t.Errorf("gRPC request after it: %v %v, want class %v", cls, err, want)
		}
	}

	marshal := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := marshal(restInferBody(img, []int{1, 28, 28, 1}, "FP32"))
	nanBody := bytes.Replace(marshal(restInferBody(make([]float32, 784), []int{1, 784}, "FP32")), []byte("[0,"), []byte(`["NaN",`), 1)
	huge := bytes.Repeat([]byte(" "), 100<<20)
	copy(huge, `{"inputs":[{"name":"input","shape":[1,784],"datatype":"FP32","data":[`)
	for _, tt := range []struct {
		name, url string
		body      []byte
		code      int
		msg       string
	}{
		{"wrong shape", infer, marshal(restInferBody(make([]float32, 784), []int{1, 28, 28}, "FP32")), 400, "want [N 28 28 1] or [N 784]"},
		{"data does not fit the shape", infer, marshal(restInferBody(make([]float32, 700), []int{1, 784}, "FP32")), 400, "data has 700 values, shape needs 784"},
		{"wrong datatype", infer, marshal(restInferBody(make([]float32, 784), []int{1, 784}, "BYTES")), 400, `datatype "BYTES"`},
		{"missing input", infer, []byte(`{"inputs": []}`), 400, "0 inputs"},
		{"no inputs field", infer, []byte(`{"id": "x"}`), 400, "0 inputs"},
		{"NaN", infer, nanBody, 400, "NaN"},
		{"bare NaN", infer, bytes.Replace(nanBody, []byte(`"NaN"`), []byte("NaN"), 1), 400, "NaN and Infinity are not JSON numbers"},
		{"100 MiB body", infer, huge, 400, fmt.Sprintf("limit is %d", inference.DefaultConfig().MaxBodyBytes)},
		{"unknown model", s.restBase() + "/v2/models/nope/infer", good, 404, `"nope"`},
		{"unknown version", s.restBase() + "/v2/models/cnn/versions/7/infer", good, 404, "no loaded version 7"},
		{"version 0", s.restBase() + "/v2/models/cnn/versions/0/infer", good, 404, "no loaded version 0"},
	} {
		t.Run("rest "+tt.name, func(t *testing.T) {
			code, b, err := rest.send("POST", tt.url, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			var e struct {
				Error string `json:"error"`
			}
			if code != tt.code || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Error, tt.msg) {
				t.Errorf("got HTTP %d %.300s, want %d with an error mentioning %q", code, b, tt.code, tt.msg)
			}
			goodAfter(t)
		})
	}

	raw := func(x []float32) [][]byte {
		b := make([]byte, 4*len(x))
		for i, v := range x {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return [][]byte{b}
	}
	tensor := func(datatype string, shape ...int64) []*oip.ModelInferRequest_InferInputTensor {
		return []*oip.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: datatype, Shape: shape}}
	}
	for _, tt := range []struct {
		name string
		req  *oip.ModelInferRequest
		code codes.Code
		msg  string
	}{
		{"wrong shape", &oip.ModelInferRequest{ModelName: "cnn", Inputs: tensor("FP32", 1, 28, 28), RawInputContents: raw(img)}, codes.InvalidArgument, "want [N 28 28 1] or [N 784]"},
		{"wrong datatype", &oip.ModelInferRequest{ModelName: "cnn", Inputs: tensor("BYTES", 1, 784), RawInputContents: raw(img)}, codes.InvalidArgument, `datatype "BYTES"`},
		{"contents in the wrong field", &oip.ModelInferRequest{ModelName: "cnn", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 784}, Contents: &oip.InferTensorContents{Fp64Contents: make([]float64, 784)}}}}, codes.InvalidArgument, "fp32_contents"},
		{"missing input", &oip.ModelInferRequest{ModelName: "cnn"}, codes.InvalidArgument, "0 inputs"},
		{"NaN", &oip.ModelInferRequest{ModelName: "cnn", Inputs: tensor("FP32", 1, 784), RawInputContents: raw(append(make([]float32, 783), float32(math.NaN())))}, codes.InvalidArgument, "NaN"},
		{"100 MiB message", &oip.ModelInferRequest{ModelName: "cnn", Inputs: tensor("FP32", 1, 784), RawInputContents: [][]byte{make([]byte, 100<<20)}}, codes.ResourceExhausted, "larger than max"},
		{"unknown model", &oip.ModelInferRequest{ModelName: "nope", Inputs: tensor("FP32", 1, 784), RawInputContents: raw(img)}, codes.NotFound, `"nope"`},
		{"unknown version", &oip.ModelInferRequest{ModelName: "cnn", ModelVersion: "7", Inputs: tensor("FP32", 1, 784), RawInputContents: raw(img)}, codes.NotFound, "no loaded version 7"},
	} {
		t.Run("grpc "+tt.name, func(t *testing.T) {
			_, err := g.ModelInfer(ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Errorf("got %v, want %v mentioning %q", err, tt.code, tt.msg)
			}
			goodAfter(t)
		})
	}
	s.tc.closeAll()
}

// TestServedMetaNamesTableFeatures checks that a breast-cancer model is served with the
// table's feature and class names (explanations by feature name), and other models without.
func TestServedMetaNamesTableFeatures(t *testing.T) {
	spec, err := model.Architecture("mlp", []int{30}, 2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Build(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	meta := servedMeta("breast-cancer", m)
	if len(meta.FeatureNames) != 30 || meta.FeatureNames[0] != "radius_mean" || len(meta.ClassNames) != 2 {
		t.Errorf("breast-cancer meta: %d features (first %q), classes %v; want 30 starting with radius_mean, 2 classes", len(meta.FeatureNames), first(meta.FeatureNames), meta.ClassNames)
	}
	if got := servedMeta("mnist", m); got.FeatureNames != nil {
		t.Errorf("mnist model got feature names %v", got.FeatureNames)
	}
	other, _ := model.Build(model.Spec{Input: []int{12}, Layers: []model.LayerSpec{{Type: "dense", Units: 2, Activation: "softmax"}}}, 1)
	if got := servedMeta("breast-cancer", other); got.FeatureNames != nil {
		t.Errorf("a 12-input model got the table's 30 feature names")
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
