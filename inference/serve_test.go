package inference_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/internal/pb/oip"
	"github.com/medfed/medfed/model"
)

func authCtx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+testToken)
}

// TestServedPredictionsMatchInProcess serves the first 2000 MNIST test images over REST and
// gRPC from concurrent callers with mixed request sizes, so the batcher merges them, and
// checks every served prediction against the model evaluated in process.
func TestServedPredictionsMatchInProcess(t *testing.T) {
	test := mnistTestSet(t)
	const n = 2000
	m := seedCNN(t, 7)
	x := test.X[:n*784]
	want := m.Predict(x, n)
	wantClass := argmaxRows(want, 10)
	correct := 0
	for i, c := range wantClass {
		if c == int(test.Y[i]) {
			correct++
		}
	}
	f := newFixture(t, inference.Config{MaxBatch: 32, MaxDelay: time.Millisecond}, map[string]*model.Sequential{"mnist": m})

	sizes := []int{1, 3, 16, 40} // 40 exceeds MaxBatch and runs on its own
	type chunk struct{ lo, hi int }
	var chunks []chunk
	for lo, k := 0, 0; lo < n; k++ {
		hi := min(n, lo+sizes[k%len(sizes)])
		chunks = append(chunks, chunk{lo, hi})
		lo = hi
	}
	for _, proto := range []string{"rest", "grpc-contents", "grpc-raw"} {
		t.Run(proto, func(t *testing.T) {
			gotClass := make([]int, n)
			gotProb := make([]float32, n*10)
			work := make(chan chunk)
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for c := range work {
						k := c.hi - c.lo
						xs := x[c.lo*784 : c.hi*784]
						var classes []int
						var probs []float32
						switch proto {
						case "rest":
							code, obj := f.do(t, "POST", "/v2/models/mnist/infer", "", inferBody(xs, []int64{int64(k), 28, 28, 1}, "FP32"))
							if code != 200 {
								t.Errorf("chunk %v: status %d: %v", c, code, obj)
								continue
							}
							classes, probs = restOutputs(t, obj)
						default:
							req := &oip.ModelInferRequest{ModelName: "mnist", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{int64(k), 784}}}}
							if proto == "grpc-raw" {
								raw := make([]byte, 4*len(xs))
								for i, v := range xs {
									binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
								}
								req.RawInputContents = [][]byte{raw}
							} else {
								req.Inputs[0].Contents = &oip.InferTensorContents{Fp32Contents: xs}
							}
							resp, err := f.grpc.ModelInfer(authCtx(), req)
							if err != nil {
								t.Errorf("chunk %v: %v", c, err)
								continue
							}
							classes, probs = grpcOutputs(t, resp)
						}
						if len(classes) != k || len(probs) != k*10 {
							t.Errorf("chunk %v: %d classes and %d probabilities, want %d and %d", c, len(classes), len(probs), k, k*10)
							continue
						}
						copy(gotClass[c.lo:], classes)
						copy(gotProb[c.lo*10:], probs)
					}
				})
			}
			for _, c := range chunks {
				work <- c
			}
			close(work)
			wg.Wait()
			served := 0
			for i := range n {
				if gotClass[i] != wantClass[i] {
					t.Errorf("sample %d: served class %d, in-process %d", i, gotClass[i], wantClass[i])
				}
				if gotClass[i] == int(test.Y[i]) {
					served++
				}
			}
			for i := range gotProb {
				if d := math.Abs(float64(gotProb[i] - want[i])); d > 1e-6 {
					t.Fatalf("probability %d: served %v, in-process %v", i, gotProb[i], want[i])
				}
			}
			if served != correct {
				t.Errorf("served accuracy %d/%d, in-process %d/%d", served, n, correct, n)
			}
		})
	}
}

func grpcOutputs(t testing.TB, resp *oip.ModelInferResponse) (classes []int, probs []float32) {
	t.Helper()
	for i, o := range resp.Outputs {
		var raw []byte
		if len(resp.RawOutputContents) > 0 {
			raw = resp.RawOutputContents[i]
		}
		switch o.Name {
		case "predicted_class":
			if raw != nil {
				for j := 0; j < len(raw); j += 8 {
					classes = append(classes, int(int64(binary.LittleEndian.Uint64(raw[j:]))))
				}
			} else {
				for _, c := range o.Contents.Int64Contents {
					classes = append(classes, int(c))
				}
			}
		case "probabilities":
			if raw != nil {
				for j := 0; j < len(raw); j += 4 {
					probs = append(probs, math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
				}
			} else {
				probs = o.Contents.Fp32Contents
			}
		}
	}
	return classes, probs
}

// TestPublishWhileInFlight hammers infer over REST and gRPC while new versions are
// published (and old ones retired) over and over: no request may fail, and every answer
// comes from a version that existed.
func TestPublishWhileInFlight(t *testing.T) {
	f := newFixture(t, inference.Config{Retain: 2, MaxBatch: 8, MaxDelay: 200 * time.Microsecond}, map[string]*model.Sequential{"mnist": seedCNN(t, 1)})
	models := []*model.Sequential{seedCNN(t, 2), seedCNN(t, 3)}
	x := make([]float32, 2*784)
	for i := range x {
		x[i] = float32(i%255) / 255
	}
	body := inferBody(x, []int64{2, 784}, "FP32")
	stop := make(chan struct{})
	var requests, failures atomic.Int64
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				requests.Add(1)
				if i%2 == 0 {
					code, obj := f.do(t, "POST", "/v2/models/mnist/infer", "", body)
					if code != 200 {
						failures.Add(1)
						t.Errorf("REST status %d: %v", code, obj)
					}
					continue
				}
				_, err := f.grpc.ModelInfer(authCtx(), &oip.ModelInferRequest{ModelName: "mnist",
					Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{2, 784}, Contents: &oip.InferTensorContents{Fp32Contents: x}}}})
				if err != nil {
					failures.Add(1)
					t.Errorf("gRPC: %v", err)
				}
			}
		})
	}
	const last = 41
	for v := uint64(2); v <= last; v++ {
		if err := f.reg.Publish("mnist", v, models[v%2], inference.ModelMeta{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests during %d publications, %d failed", requests.Load(), last-1, failures.Load())
	if requests.Load() < 50 {
		t.Errorf("only %d requests ran during the switch", requests.Load())
	}
	sm, err := f.reg.Latest("mnist")
	if err != nil || sm.Version() != last {
		t.Fatalf("default version %v (%v), want %d", sm, err, last)
	}
	vs, _ := f.reg.Versions("mnist")
	if fmt.Sprint(vs) != "[40 41]" {
		t.Errorf("loaded versions %v, want [40 41]", vs)
	}
}

func TestAuthAndRateLimit(t *testing.T) {
	f := newFixture(t, inference.Config{RateLimit: 0.001, RateBurst: 3}, map[string]*model.Sequential{"mnist": seedCNN(t, 1)})
	body := inferBody(make([]float32, 784), []int64{1, 28, 28, 1}, "FP32")
	tests := []struct {
		name, token string
		want        int
		msg         string
	}{
		{"no credentials", "-", 401, "no client certificate"},
		{"bad token", "not-the-token-at-all", 401, "not recognised"},
		{"good token 1", "", 200, ""},
		{"good token 2", "", 200, ""},
		{"good token 3", "", 200, ""},
		{"over the limit", "", 429, "rate limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, obj := f.do(t, "POST", "/v2/models/mnist/infer", tt.token, body)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %v", code, tt.want, obj)
			}
			if tt.msg != "" && !strings.Contains(fmt.Sprint(obj["error"]), tt.msg) {
				t.Errorf("error %q, want it to mention %q", obj["error"], tt.msg)
			}
		})
	}
	// Health needs no credentials and does not count against the limit.
	if code, _ := f.do(t, "GET", "/v2/health/ready", "-", nil); code != 200 {
		t.Errorf("ready: %d", code)
	}
	req := &oip.ModelInferRequest{ModelName: "mnist", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 784}, Contents: &oip.InferTensorContents{Fp32Contents: make([]float32, 784)}}}}
	if _, err := f.grpc.ModelInfer(context.Background(), req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC without credentials: %v, want Unauthenticated", err)
	}
	if _, err := f.grpc.ModelInfer(authCtx(), req); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC over the limit: %v, want ResourceExhausted", err)
	}
	if live, err := f.grpc.ServerLive(context.Background(), &oip.ServerLiveRequest{}); err != nil || !live.Live {
		t.Errorf("ServerLive without credentials: %v %v", live, err)
	}
}

func TestMetricsCountPerCaller(t *testing.T) {
	f := newFixture(t, inference.Config{}, map[string]*model.Sequential{"mnist": seedCNN(t, 1)})
	body := inferBody(make([]float32, 2*784), []int64{2, 784}, "FP32")
	for range 3 {
		if code, obj := f.do(t, "POST", "/v2/models/mnist/infer", "", body); code != 200 {
			t.Fatal(code, obj)
		}
	}
	f.do(t, "POST", "/v2/models/mnist/infer", "-", body)
	req, _ := http.NewRequest("GET", f.http.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	for _, want := range []string{
		`medfed_inference_requests_total{caller="token/clinic-app",protocol="rest",endpoint="infer",code="ok"} 3`,
		`medfed_inference_requests_total{caller="anonymous",protocol="rest",endpoint="infer",code="unauthenticated"} 1`,
		`medfed_inference_samples_total{caller="token/clinic-app"} 6`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, buf.String())
		}
	}
}

// TestMalformedRequests sends bad requests over REST and gRPC: each gets the protocol's
// error with a message that says what was expected, and the server keeps serving.
func TestMalformedRequests(t *testing.T) {
	f := newFixture(t, inference.Config{MaxRequestSamples: 64, MaxBodyBytes: 8 << 20}, map[string]*model.Sequential{"mnist": seedCNN(t, 1)})
	good := inferBody(make([]float32, 784), []int64{1, 28, 28, 1}, "FP32")
	nanBody := strings.Replace(string(inferBody(make([]float32, 784), []int64{1, 784}, "FP32")), "[0,", `["NaN",`, 1)
	huge := make([]byte, 100<<20)
	copy(huge, `{"inputs":[{"name":"input","shape":[1,784],"datatype":"FP32","data":[`)
	for i := 80; i < len(huge); i++ {
		huge[i] = ' '
	}
	tests := []struct {
		name, path string
		body       []byte
		want       int
		msg        string
	}{
		{"bad json", "/v2/models/mnist/infer", []byte(`{"inputs": [`), 400, "not a JSON inference request"},
		{"no inputs", "/v2/models/mnist/infer", []byte(`{"inputs": []}`), 400, "0 inputs"},
		{"wrong shape", "/v2/models/mnist/infer", inferBody(make([]float32, 28*28), []int64{1, 28, 28}, "FP32"), 400, "want [N 28 28 1] or [N 784]"},
		{"data count", "/v2/models/mnist/infer", inferBody(make([]float32, 700), []int64{1, 784}, "FP32"), 400, "data has 700 values, shape needs 784"},
		{"wrong datatype", "/v2/models/mnist/infer", inferBody(make([]float32, 784), []int64{1, 784}, "BYTES"), 400, `datatype "BYTES"`},
		{"uint8 out of range", "/v2/models/mnist/infer", inferBody(append(make([]float32, 783), 300), []int64{1, 784}, "UINT8"), 400, "is not a UINT8"},
		{"nan string", "/v2/models/mnist/infer", []byte(nanBody), 400, "NaN, inputs must be finite"},
		{"bare nan", "/v2/models/mnist/infer", []byte(strings.Replace(nanBody, `"NaN"`, "NaN", 1)), 400, "NaN and Infinity are not JSON numbers"},
		{"too many samples", "/v2/models/mnist/infer", inferBody(make([]float32, 65*784), []int64{65, 784}, "FP32"), 400, "limit is 64 samples"},
		{"100 MiB body", "/v2/models/mnist/infer", huge, 400, "limit is 8388608"},
		{"unknown output", "/v2/models/mnist/infer", []byte(strings.Replace(string(good), `"inputs"`, `"outputs":[{"name":"logits"}],"inputs"`, 1)), 400, `requested output "logits"`},
		{"unknown model", "/v2/models/nope/infer", good, 404, `"nope"`},
		{"unknown version", "/v2/models/mnist/versions/9/infer", good, 404, "no loaded version 9"},
		{"non-numeric version", "/v2/models/mnist/versions/latest/infer", good, 404, `no version "latest"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, obj := f.do(t, "POST", tt.path, "", tt.body)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %v", code, tt.want, obj)
			}
			msg, _ := obj["error"].(string)
			if !strings.Contains(msg, tt.msg) {
				t.Errorf("error %q, want it to mention %q", msg, tt.msg)
			}
			if code, obj := f.do(t, "POST", "/v2/models/mnist/infer", "", good); code != 200 {
				t.Fatalf("a good request after it: status %d: %v", code, obj)
			}
		})
	}
	gtests := []struct {
		name string
		req  *oip.ModelInferRequest
		want codes.Code
		msg  string
	}{
		{"nan", &oip.ModelInferRequest{ModelName: "mnist", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 784}, Contents: &oip.InferTensorContents{Fp32Contents: append(make([]float32, 783), float32(math.NaN()))}}}}, codes.InvalidArgument, "value 783 is NaN"},
		{"wrong field", &oip.ModelInferRequest{ModelName: "mnist", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 784}, Contents: &oip.InferTensorContents{Fp64Contents: make([]float64, 784)}}}}, codes.InvalidArgument, "wants 784 values in fp32_contents, got 0"},
		{"raw size", &oip.ModelInferRequest{ModelName: "mnist", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "UINT8", Shape: []int64{1, 784}}}, RawInputContents: [][]byte{make([]byte, 783)}}, codes.InvalidArgument, "raw contents of 783 bytes"},
		{"missing input", &oip.ModelInferRequest{ModelName: "mnist"}, codes.InvalidArgument, "0 inputs"},
		{"unknown model", &oip.ModelInferRequest{ModelName: "nope"}, codes.NotFound, "model not found"},
		{"unknown version", &oip.ModelInferRequest{ModelName: "mnist", ModelVersion: "3"}, codes.NotFound, "no loaded version 3"},
	}
	for _, tt := range gtests {
		t.Run("grpc "+tt.name, func(t *testing.T) {
			_, err := f.grpc.ModelInfer(authCtx(), tt.req)
			if status.Code(err) != tt.want || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Errorf("got %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestMetadataAndHealth(t *testing.T) {
	reg, err := inference.NewRegistry(inference.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	fx := newFixture(t, inference.Config{}, map[string]*model.Sequential{"mnist": seedCNN(t, 1)})
	if err := fx.reg.Publish("mnist", 2, seedCNN(t, 2), inference.ModelMeta{}); err != nil {
		t.Fatal(err)
	}
	code, obj := fx.do(t, "GET", "/v2/models/mnist", "", nil)
	if code != 200 {
		t.Fatal(code, obj)
	}
	got := fmt.Sprintln(obj["name"], obj["versions"], obj["platform"], obj["inputs"], obj["outputs"])
	want := "mnist [1 2] medfed [map[datatype:FP32 name:input shape:[-1 28 28 1]]] [map[datatype:FP32 name:probabilities shape:[-1 10]] map[datatype:INT64 name:predicted_class shape:[-1]]]\n"
	if got != want {
		t.Errorf("metadata\n got %s\nwant %s", got, want)
	}
	for path, want := range map[string]int{
		"/v2/health/live": 200, "/v2/health/ready": 200, "/v2/models/mnist/ready": 200,
		"/v2/models/mnist/versions/1/ready": 200, "/v2/models/mnist/versions/1": 200,
		"/v2/models/mnist/versions/5/ready": 404, "/v2/models/other": 404, "/v2": 200,
	} {
		if code, obj := fx.do(t, "GET", path, "", nil); code != want {
			t.Errorf("GET %s: %d, want %d: %v", path, code, want, obj)
		}
	}
	md, err := fx.grpc.ModelMetadata(authCtx(), &oip.ModelMetadataRequest{Name: "mnist"})
	if err != nil || len(md.Versions) != 2 || md.Inputs[0].Shape[0] != -1 {
		t.Errorf("gRPC metadata %v: %v", md, err)
	}
	if r, err := fx.grpc.ModelReady(authCtx(), &oip.ModelReadyRequest{Name: "mnist", Version: "2"}); err != nil || !r.Ready {
		t.Errorf("gRPC ModelReady %v: %v", r, err)
	}
	// An empty registry is live but not ready.
	empty := inference.NewServer(reg, nil, nil)
	rec := httptestRecorder(empty.Handler(), "GET", "/v2/health/ready")
	if rec != http.StatusServiceUnavailable {
		t.Errorf("empty registry ready: %d, want 503", rec)
	}
}
