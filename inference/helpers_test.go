package inference_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/internal/pb/oip"
	"github.com/medfed/medfed/model"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testToken = "test-token-0123456789abcdef"

// seedCNN builds the seed CNN with random weights from seed.
func seedCNN(t testing.TB, seed uint64) *model.Sequential {
	t.Helper()
	spec, err := model.Architecture("cnn", []int{28, 28, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Build(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	mnistOnce sync.Once
	mnistTest *dataset.Set
	mnistErr  error
)

// mnistTestSet loads the MNIST test images once per test binary.
func mnistTestSet(t testing.TB) *dataset.Set {
	t.Helper()
	mnistOnce.Do(func() {
		dir, err := dataset.MNISTDir()
		if err != nil {
			mnistErr = err
			return
		}
		path := func(name string) string {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p + ".gz"); err == nil {
				return p + ".gz"
			}
			return p
		}
		mnistTest, mnistErr = dataset.LoadIDXFiles(path("t10k-images-idx3-ubyte"), path("t10k-labels-idx1-ubyte"))
	})
	if mnistErr != nil {
		t.Skipf("MNIST not available: %v", mnistErr)
	}
	return mnistTest
}

// fixture is a registry with a served model behind a real HTTP server and a gRPC server on
// bufconn.
type fixture struct {
	reg  *inference.Registry
	srv  *inference.Server
	http *httptest.Server
	grpc oip.GRPCInferenceServiceClient
}

func newFixture(t testing.TB, cfg inference.Config, models map[string]*model.Sequential) *fixture {
	t.Helper()
	if cfg.RateLimit == 0 {
		cfg.NoRateLimit = true // only the rate-limit test wants one
	}
	reg, err := inference.NewRegistry(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range models {
		if err := reg.Publish(name, 1, m, inference.ModelMeta{}); err != nil {
			t.Fatal(err)
		}
	}
	tokens, err := inference.NewTokenSet(map[string]string{testToken: "clinic-app"})
	if err != nil {
		t.Fatal(err)
	}
	srv := inference.NewServer(reg, tokens, nil)
	hs := httptest.NewServer(srv.Handler())

	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	srv.RegisterGRPC(gs)
	go gs.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return &fixture{reg: reg, srv: srv, http: hs, grpc: oip.NewGRPCInferenceServiceClient(conn)}
}

// do sends a request with the test token (unless token is "-": none) and returns the status
// and the decoded JSON body.
func (f *fixture) do(t testing.TB, method, path, token string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token == "" {
		token = testToken
	}
	if token != "-" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil && resp.Header.Get("Content-Type") == "application/json" {
		t.Fatalf("%s %s: body is not JSON: %v\n%s", method, path, err, data)
	}
	return resp.StatusCode, obj
}

// inferBody is a protocol request for n samples of x.
func inferBody(x []float32, shape []int64, datatype string) []byte {
	b, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "shape": shape, "datatype": datatype, "data": x}}})
	return b
}

// restClasses extracts predicted_class and probabilities from an infer response.
func restOutputs(t testing.TB, obj map[string]any) (classes []int, probs []float32) {
	t.Helper()
	outs, _ := obj["outputs"].([]any)
	for _, o := range outs {
		om := o.(map[string]any)
		data := om["data"].([]any)
		switch om["name"] {
		case "predicted_class":
			for _, v := range data {
				classes = append(classes, int(v.(float64)))
			}
		case "probabilities":
			for _, v := range data {
				probs = append(probs, float32(v.(float64)))
			}
		}
	}
	return classes, probs
}

func argmaxRows(p []float32, classes int) []int {
	out := make([]int, len(p)/classes)
	for i := range out {
		row := p[i*classes : (i+1)*classes]
		for c := range row {
			if row[c] > row[out[i]] {
				out[i] = c
			}
		}
	}
	return out
}

func httptestRecorder(h http.Handler, method, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func readAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
