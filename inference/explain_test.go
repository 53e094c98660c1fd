package inference_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"

	"path/filepath"
	"testing"
	"time"

	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/inference"
	"github.com/medfed/medfed/model"
)

// TestExplainCompleteness checks that integrated gradients over REST return an attribution
// map of the input's size whose sum approximates p(x) - p(baseline) for the explained class.
func TestExplainCompleteness(t *testing.T) {
	test := mnistTestSet(t)
	m := seedCNN(t, 3)
	f := newFixture(t, inference.Config{}, map[string]*model.Sequential{"mnist": m})
	const n = 4
	x := test.X[:n*784]
	code, obj := f.do(t, "POST", "/v2/models/mnist/explain", "", inferBody(x, []int64{n, 28, 28, 1}, "FP32"))
	if code != 200 {
		t.Fatal(code, obj)
	}
	var attr []any
	for _, o := range obj["outputs"].([]any) {
		om := o.(map[string]any)
		if om["name"] == "attributions" {
			attr = om["data"].([]any)
			if s := om["shape"].([]any); len(s) != 4 || s[1].(float64) != 28 {
				t.Errorf("attribution shape %v, want [4 28 28 1]", s)
			}
		}
	}
	if len(attr) != n*784 {
		t.Fatalf("%d attributions, want %d", len(attr), n*784)
	}
	probs := m.Predict(x, n)
	base := m.Predict(make([]float32, n*784), n)
	wantClass := argmaxRows(probs, 10)
	exps := obj["explanations"].([]any)
	for i := range n {
		sum := 0.0
		for _, v := range attr[i*784 : (i+1)*784] {
			sum += v.(float64)
		}
		c := wantClass[i]
		want := float64(probs[i*10+c] - base[i*10+c])
		e := exps[i].(map[string]any)
		if int(e["target_class"].(float64)) != c {
			t.Errorf("sample %d: explained class %v, want the predicted %d", i, e["target_class"], c)
		}
		if math.Abs(sum-want) > 1e-3+0.05*math.Abs(want) {
			t.Errorf("sample %d: attributions sum to %.4f, p(x)-p(0) = %.4f", i, sum, want)
		} else {
			t.Logf("sample %d class %d: attributions sum to %.4f, p(x)-p(0) = %.4f", i, c, sum, want)
		}
	}
	if code, obj := f.do(t, "POST", "/v2/models/mnist/explain", "", inferBody(make([]float32, 17*784), []int64{17, 784}, "FP32")); code != 400 {
		t.Errorf("explaining 17 samples: %d, want 400 (limit 16): %v", code, obj)
	}
}

// TestExplainTabularByFeature serves a breast-cancer MLP with feature names: explanations
// carry one attribution per named feature.
func TestExplainTabularByFeature(t *testing.T) {
	set, err := dataset.LoadBreastCancer("")
	if err != nil {
		t.Skip(err)
	}
	spec, err := model.Architecture("mlp", set.Shape, set.Classes)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Build(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, inference.Config{}, nil)
	if err := f.reg.Publish("breast-cancer", 1, m, inference.ModelMeta{FeatureNames: set.Features, ClassNames: []string{"malignant", "benign"}}); err != nil {
		t.Fatal(err)
	}
	z := dataset.FitStandardizer(set)
	if err := z.Apply(set); err != nil {
		t.Fatal(err)
	}
	x := set.X[:30]
	body, _ := json.Marshal(map[string]any{
		"parameters": map[string]any{"method": "gradient_x_input"},
		"inputs":     []map[string]any{{"name": "input", "shape": []int{1, 30}, "datatype": "FP32", "data": x}},
	})
	code, obj := f.do(t, "POST", "/v2/models/breast-cancer/explain", "", body)
	if code != 200 {
		t.Fatal(code, obj)
	}
	e := obj["explanations"].([]any)[0].(map[string]any)
	feats := e["features"].(map[string]any)
	if len(feats) != 30 || e["method"] != "gradient_x_input" {
		t.Fatalf("explanation %v", e)
	}
	if _, ok := feats[set.Features[0]]; !ok {
		t.Errorf("no attribution for feature %q: %v", set.Features[0], feats)
	}
	code, obj = f.do(t, "GET", "/v2/models/breast-cancer", "", nil)
	if params := obj["parameters"].(map[string]any); code != 200 || len(params["feature_names"].([]any)) != 30 {
		t.Errorf("metadata %d %v", code, obj)
	}
}

func TestRegistryRetentionAndPins(t *testing.T) {
	reg, err := inference.NewRegistry(inference.Config{Retain: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	m := seedCNN(t, 1)
	for v := uint64(1); v <= 3; v++ {
		if v == 2 {
			if err := reg.Pin("mnist", 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := reg.Publish("mnist", v, m, inference.ModelMeta{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.Publish("mnist", 3, m, inference.ModelMeta{}); err == nil {
		t.Error("republishing version 3 succeeded, want ErrVersionExists")
	}
	for _, step := range []struct {
		do   func() error
		want string
	}{
		{func() error { return nil }, "[1 2 3]"},
		{func() error { return reg.Publish("mnist", 4, m, inference.ModelMeta{}) }, "[1 3 4]"},
		{func() error { return reg.Unpin("mnist", 1) }, "[3 4]"},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		vs, _ := reg.Versions("mnist")
		if got := fmtVersions(vs); got != step.want {
			t.Errorf("versions %s, want %s", got, step.want)
		}
	}
	sm, err := reg.Latest("mnist")
	if err != nil || sm.Version() != 4 {
		t.Errorf("latest %v %v, want 4", sm, err)
	}
	if _, err := reg.Version("mnist", 1); err == nil {
		t.Error("retired version 1 still served")
	}
	// A version that is looked up before it is retired still answers.
	old, _ := reg.Version("mnist", 3)
	reg.Publish("mnist", 5, m, inference.ModelMeta{})
	reg.Publish("mnist", 6, m, inference.ModelMeta{})
	if _, err := old.Predict(context.Background(), make([]float32, 784), 1); err != nil {
		t.Errorf("retired version in hand: %v", err)
	}
	// A version pinned before it is published stays, however old, and does not become the
	// default.
	if err := reg.Pin("mnist", 1); err != nil {
		t.Fatal(err)
	}
	if err := reg.Publish("mnist", 1, m, inference.ModelMeta{}); err != nil {
		t.Fatal(err)
	}
	if vs, _ := reg.Versions("mnist"); fmtVersions(vs) != "[1 5 6]" {
		t.Errorf("versions after publishing pinned version 1: %s, want [1 5 6]", fmtVersions(vs))
	}
	if sm, err := reg.Latest("mnist"); err != nil || sm.Version() != 6 {
		t.Errorf("latest %v %v, want 6", sm, err)
	}
}

func fmtVersions(vs []uint64) string { return fmt.Sprint(vs) }

// TestMutualTLSCaller authenticates a hospital by its consortium certificate, and a token
// caller without one on the same listener (TokenTLSConfig).
func TestMutualTLSCaller(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("test consortium", 365*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caPath, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := ca.Save(caPath, caKey, false); err != nil {
		t.Fatal(err)
	}
	issue := func(role pki.Role, id string, ips ...net.IP) (string, string) {
		c, k, err := ca.Issue(pki.IssueRequest{Role: role, ID: id, IPAddresses: ips})
		if err != nil {
			t.Fatal(err)
		}
		cp, kp := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+".key")
		if err := pki.SaveKeyPair(cp, c, kp, k, false); err != nil {
			t.Fatal(err)
		}
		return cp, kp
	}
	sc, sk := issue(pki.RoleCoordinator, "node1", net.ParseIP("127.0.0.1"))
	hc, hk := issue(pki.RoleHospital, "h1")
	serverTLS, err := pki.ServerTLSConfig(sc, sk, caPath)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, inference.Config{}, map[string]*model.Sequential{"mnist": seedCNN(t, 1)})
	hs := httptest.NewUnstartedServer(f.srv.Handler())
	hs.TLS = inference.TokenTLSConfig(serverTLS)
	hs.StartTLS()
	defer hs.Close()
	clientTLS, err := pki.ClientTLSConfig(hc, hk, caPath, "")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
	defer client.CloseIdleConnections()
	body := inferBody(make([]float32, 784), []int64{1, 784}, "FP32")
	resp, err := client.Post(hs.URL+"/v2/models/mnist/infer", "application/json", bytesReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("hospital with certificate: %d", resp.StatusCode)
	}
	// Without a certificate: only the token gets in.
	anon := clientTLS.Clone()
	anon.Certificates = nil
	anonClient := &http.Client{Transport: &http.Transport{TLSClientConfig: anon}}
	defer anonClient.CloseIdleConnections()
	for token, want := range map[string]int{"": 401, testToken: 200} {
		req, _ := http.NewRequest("POST", hs.URL+"/v2/models/mnist/infer", bytesReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := anonClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("token %q without certificate: %d, want %d", token, resp.StatusCode, want)
		}
	}
	req, _ := http.NewRequest("GET", hs.URL+"/metrics", nil)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sb []byte
	sb, _ = readAll(resp)
	if !contains(string(sb), `caller="hospital/h1",protocol="rest",endpoint="infer",code="ok"} 1`) {
		t.Errorf("metrics lack the hospital's request:\n%s", sb)
	}

}
