package inference_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/internal/callbench"
	"github.com/medfed/medfed/internal/pb/oip"
)

// BenchmarkInfer measures one-image infer requests for the seed CNN at 1, 8 and 64
// concurrent callers: in process (Predict per request, and Predict on whole batches of 64
// as the throughput ceiling), over REST (JSON, loopback TCP) and over gRPC (raw contents,
// loopback TCP). It reports the latency percentiles p50 and p99 in milliseconds and the
// throughput in samples per second.
//
//	go test ./inference -run '^$' -bench Infer -benchtime 2000x
func BenchmarkInfer(b *testing.B) {
	m := seedCNN(b, 1)
	img := mnistTestSet(b).X[:784] // a real digit: realistic JSON size
	reg, err := inference.NewRegistry(inference.Config{NoRateLimit: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close(context.Background())
	if err := reg.Publish("mnist", 1, m, inference.ModelMeta{}); err != nil {
		b.Fatal(err)
	}
	tokens, _ := inference.NewTokenSet(map[string]string{testToken: "bench"})
	srv := inference.NewServer(reg, tokens, nil)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.RegisterGRPC(gs)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	gc := oip.NewGRPCInferenceServiceClient(conn)
	// One keep-alive pool with room for every caller; responses are read to the end, so
	// connections are reused ("dials" counts the ones a run opened).
	var dials atomic.Int64
	dialer := &net.Dialer{}
	httpClient := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 128,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
	}}
	defer httpClient.CloseIdleConnections()
	restBody := inferBody(img, []int64{1, 28, 28, 1}, "FP32")
	raw := make([]byte, 4*784)
	for i, v := range img {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	gctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+testToken)
	batch := slices.Repeat(img, 64)

	kinds := []struct {
		name    string
		samples int
		call    func() error
	}{
		{"inprocess", 1, func() error { m.Predict(img, 1); return nil }},
		{"inprocess-batch64", 64, func() error { m.Predict(batch, 64); return nil }},
		{"rest", 1, func() error {
			req, _ := http.NewRequest("POST", hs.URL+"/v2/models/mnist/infer", bytesReader(restBody))
			req.Header.Set("Authorization", "Bearer "+testToken)
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
		{"grpc", 1, func() error {
			_, err := gc.ModelInfer(gctx, &oip.ModelInferRequest{ModelName: "mnist",
				Inputs:           []*oip.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 784}}},
				RawInputContents: [][]byte{raw}})
			return err
		}},
	}
	for _, k := range kinds {
		for _, callers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", k.name, callers), func(b *testing.B) {
				d0 := dials.Load()
				callbench.Run(b, callers, k.samples, k.call)
				if k.name == "rest" {
					b.ReportMetric(float64(dials.Load()-d0), "dials")
				}
			})
		}
	}
}
