package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

const exampleYAML = `# a study on MNIST
name: study
model: cnn
dataset: mnist
clients: [h1, h2, h3]
rounds: 3
min_clients: 2
threshold: 2
strategy: fedavg
secure: true
local_epochs: 1
batch_size: 32
lr: 0.01
round_timeout: 5m
ceremony_timeout: 20m
max_aborted_rounds: 4
dp:
  clip_norm: 1.0
  noise_multiplier: 1.1
  epsilon_budget: 8
  delta: 1e-5
`

func TestParseFederationSpec(t *testing.T) {
	spec, err := parseFederationSpec([]byte(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := model.Architecture("cnn", []int{28, 28, 1}, 10)
	got, err := model.ParseSpec(spec.ModelSpecJson)
	if err != nil || !got.Equal(want) {
		t.Fatalf("model spec %v (%v), want %v", got, err, want)
	}
	if spec.Name != "study" || spec.Dataset != "mnist" || len(spec.Clients) != 3 || spec.Rounds != 3 || spec.MinClients != 2 ||
		spec.Threshold != 2 || !spec.Secure || spec.Lr != 0.01 || spec.BatchSize != 32 || spec.RoundTimeoutMs != 300000 || spec.CeremonyTimeoutMs != 1200000 || spec.MaxAbortedRounds != 4 ||
		spec.DpClipNorm != 1 || spec.DpNoiseMultiplier != 1.1 || spec.DpEpsilonBudget != 8 || spec.DpDelta != 1e-5 {
		t.Errorf("spec %v", spec)
	}

	// JSON, a full architecture and an explicit schema.
	js := `{"name": "bc", "clients": ["a", "b"], "min_clients": 2,
	  "model": {"input": [30], "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
	  "dataset": {"shape": [30], "classes": 2}, "strategy": "median"}`
	spec, err = parseFederationSpec([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := model.ParseSpec(spec.ModelSpecJson); got.Input[0] != 30 || spec.Strategy != "median" {
		t.Errorf("json spec %v", spec)
	}
	// The same architecture in YAML.
	ys := "name: bc\nclients: [a]\nmin_clients: 1\nmodel:\n  input: [30]\n  layers:\n    - {type: dense, units: 2, activation: softmax}\n"
	if _, err := parseFederationSpec([]byte(ys)); err != nil {
		t.Errorf("yaml architecture: %v", err)
	}

	bad := []struct {
		name, spec, want string
	}{
		{"unknown yaml key", exampleYAML + "rouns: 4\n", "field rouns not found"},
		{"unknown json key", `{"name": "x", "clientz": ["a"]}`, `unknown field "clientz"`},
		{"unknown dp key", strings.Replace(exampleYAML, "delta:", "delt:", 1), "field delt not found"},
		{"unknown dataset key", strings.Replace(exampleYAML, "dataset: mnist", "dataset: {shape: [3], klasses: 2}", 1), `unknown key "klasses"`},
		{"unknown dataset", strings.Replace(exampleYAML, "dataset: mnist", "dataset: imagenet", 1), `dataset "imagenet"`},
		{"model without dataset", strings.Replace(exampleYAML, "dataset: mnist\n", "", 1), "needs dataset"},
		{"unknown model", strings.Replace(exampleYAML, "model: cnn", "model: resnet", 1), "model:"},
		{"bad architecture", strings.Replace(exampleYAML, "model: cnn", "model: {input: [28, 28, 1], layers: [{type: dense, unitz: 2}]}", 1), "model:"},
		{"shape mismatch", strings.Replace(exampleYAML, "model: cnn", "model: {input: [30], layers: [{type: dense, units: 2, activation: softmax}]}", 1), "does not match"},
		{"no name", strings.Replace(exampleYAML, "name: study\n", "", 1), "name is required"},
		{"no roster", strings.Replace(exampleYAML, "clients: [h1, h2, h3]\n", "", 1), "clients is required"},
		{"no min_clients", strings.Replace(exampleYAML, "min_clients: 2\n", "", 1), "min_clients is required"},
		{"wrong type", strings.Replace(exampleYAML, "rounds: 3", "rounds: many", 1), "cannot unmarshal"},
		{"bad timeout", strings.Replace(exampleYAML, "5m", "soon", 1), "round_timeout"},
		{"bad ceremony timeout", strings.Replace(exampleYAML, "20m", "-1s", 1), "ceremony_timeout"},
		{"negative lr", strings.Replace(exampleYAML, "lr: 0.01", "lr: -1", 1), "lr -1"},
		{"two documents", exampleYAML + "---\nname: other\n", "one document"},
		{"trailing json", `{"name": "x"} {}`, "trailing data"},
		{"empty", "  \n", "empty spec"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFederationSpec([]byte(tt.spec))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

func TestClientCommandsBadFlags(t *testing.T) {
	for _, tt := range []struct {
		run  func(context.Context, []string, io.Writer, io.Writer) error
		args []string
	}{
		{runStatus, nil},
		{runStatus, []string{"--coordinator", "127.0.0.1:1"}},
		{runStatus, []string{"--coordinator", "127.0.0.1:1", "--insecure", "--tls-cert", "x"}},
		{runStatus, []string{"--coordinator", "127.0.0.1:1", "--tls-cert", "x", "--tls-key", "y"}},
		{runFederation, nil},
		{runFederation, []string{"delete"}},
		{runFederation, []string{"create", "--coordinator", "127.0.0.1:1", "--insecure"}},
		{runFederation, []string{"show", "--coordinator", "127.0.0.1:1", "--insecure"}},
		{runFederation, []string{"show", "--coordinator", "127.0.0.1:1", "--insecure", "--name", "a", "--spec", "b"}},
		{runFederation, []string{"create", "--spec", "x.yaml", "--insecure"}},
		{runFederation, []string{"pin", "--coordinator", "127.0.0.1:1", "--insecure", "--version", "1"}},
		{runFederation, []string{"pin", "--coordinator", "127.0.0.1:1", "--insecure", "--name", "a"}},
		{runFederation, []string{"unpin", "--coordinator", "127.0.0.1:1", "--insecure", "--name", "a", "--version", "0"}},
		{runFederation, []string{"unpin", "--name", "a", "--version", "1", "--insecure"}},
		{runFederation, []string{"resume", "--coordinator", "127.0.0.1:1", "--insecure"}},
		{runFederation, []string{"stop", "--coordinator", "127.0.0.1:1", "--insecure"}},
		{runFederation, []string{"stop", "--coordinator", "127.0.0.1:1", "--insecure", "--name", "a", "--reason", strings.Repeat("x", 1025)}},
		{runFederation, []string{"resume", "--coordinator", "127.0.0.1:1", "--insecure", "--name", "a", "--reason", "x"}},
	} {
		var stderr bytes.Buffer
		if err := tt.run(context.Background(), tt.args, io.Discard, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("%v: got %v, want a usage error", tt.args, err)
		}
	}
	// A spec error names the file and the problem, before any connection.
	spec := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(spec, []byte("name: x\nmodle: cnn\n"), 0o644)
	err := runFederation(context.Background(), []string{"create", "--coordinator", "127.0.0.1:1", "--insecure", "--spec", spec}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "modle") {
		t.Errorf("bad spec: got %v", err)
	}
}

// TestClusterByHand follows docs/cluster.md: a CA and certificates made with `medfed pki`,
// three `medfed coordinator` nodes with mutual TLS, `medfed federation create` and `show`
// with an operator certificate, `medfed status --json`, and a fourth node added with
// `medfed coordinator --join` and `medfed cluster add`, then removed.
func TestClusterByHand(t *testing.T) {
	dir := t.TempDir()
	caDir, certs := filepath.Join(dir, "ca"), filepath.Join(dir, "certs")
	pkiRun := func(args ...string) {
		t.Helper()
		if out, errOut, err := runPKICLI(args...); err != nil {
			t.Fatalf("pki %v: %v\n%s%s", args, err, out, errOut)
		}
	}
	pkiRun("init", "--out", caDir, "--name", "Test consortium")
	ids := []string{"n1", "n2", "n3"}
	for _, id := range ids {
		pkiRun("issue", "--ca-dir", caDir, "--out", certs, "--role", "coordinator", "--id", id, "--ip", "127.0.0.1")
	}
	pkiRun("issue", "--ca-dir", caDir, "--out", certs, "--role", "operator", "--id", "alice")
	for _, h := range []string{"h1", "h2"} {
		pkiRun("issue", "--ca-dir", caDir, "--out", certs, "--role", "hospital", "--id", h)
	}
	ca := filepath.Join(caDir, "ca.crt")
	tlsArgs := func(id string) []string {
		return []string{"--tls-cert", filepath.Join(certs, id+".crt"), "--tls-key", filepath.Join(certs, id+".key"), "--tls-ca", ca}
	}

	var raftAddrs, grpcAddrs, httpAddrs, peers, grpcPeers []string
	for _, id := range ids {
		raftAddrs, grpcAddrs, httpAddrs = append(raftAddrs, loopback.Addr(t)), append(grpcAddrs, loopback.Addr(t)), append(httpAddrs, loopback.Addr(t))
		peers = append(peers, id+"="+raftAddrs[len(raftAddrs)-1])
		grpcPeers = append(grpcPeers, id+"="+grpcAddrs[len(grpcAddrs)-1])
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(ids))
	var logs [3]syncBuffer
	for i, id := range ids {
		args := append([]string{"--node-id", id, "--data-dir", filepath.Join(dir, id), "--raft-addr", raftAddrs[i], "--grpc-addr", grpcAddrs[i],
			"--http-addr", httpAddrs[i], "--peers", strings.Join(peers, ","), "--grpc-peers", strings.Join(grpcPeers, ",")}, tlsArgs(id)...)
		go func() { done <- runCoordinator(ctx, args, io.Discard, &logs[i]) }()
	}
	defer func() {
		cancel()
		for range ids {
			if err := <-done; err != nil {
				t.Errorf("coordinator: %v", err)
			}
		}
	}()
	// With TLS the HTTP port serves HTTPS; /healthz needs no client certificate.
	opTLS, err := pki.ClientTLSConfig(filepath.Join(certs, "alice.crt"), filepath.Join(certs, "alice.key"), ca, "")
	if err != nil {
		t.Fatal(err)
	}
	opTLS.Certificates = nil
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: opTLS}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(90 * time.Second)
	for i := range ids {
		for {
			resp, err := hc.Get("https://" + httpAddrs[i] + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s never became healthy: %v\n%s", ids[i], err, logs[i].String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	coord := strings.Join(grpcAddrs, ",")
	specFile := filepath.Join(dir, "study.yaml")
	spec := "name: study\nmodel: mlp\ndataset: breast-cancer\nclients: [h1, h2]\nrounds: 2\nmin_clients: 2\nstrategy: fedavg\nlr: 0.01\n"
	if err := os.WriteFile(specFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := func(run func(context.Context, []string, io.Writer, io.Writer) error, args ...string) (string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		if err != nil {
			t.Logf("%v: %v\n%s", args, err, errb.String())
		}
		return out.String(), err
	}
	// A hospital may not create federations.
	if _, err := cli(runFederation, append([]string{"create", "--coordinator", coord, "--spec", specFile}, tlsArgs("h1")...)...); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("hospital create: got %v, want PermissionDenied", err)
	}
	out, err := cli(runFederation, append([]string{"create", "--coordinator", coord, "--spec", specFile}, tlsArgs("alice")...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out)
	if !strings.Contains(out, "federation study created") {
		t.Errorf("create output:\n%s", out)
	}
	// The same command again (say, after its answer was lost) changes nothing; another
	// spec under the same name is refused.
	if out, err := cli(runFederation, append([]string{"create", "--coordinator", coord, "--spec", specFile}, tlsArgs("alice")...)...); err != nil || !strings.Contains(out, "federation study exists already, with this spec") {
		t.Errorf("create again: %v, output:\n%s", err, out)
	}
	otherFile := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(otherFile, []byte(strings.Replace(spec, "rounds: 2", "rounds: 3", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(runFederation, append([]string{"create", "--coordinator", coord, "--spec", otherFile}, tlsArgs("alice")...)...); err == nil || !strings.Contains(err.Error(), "AlreadyExists") || !strings.Contains(err.Error(), "another spec") {
		t.Errorf("create with another spec under the same name: got %v, want AlreadyExists", err)
	}

	// The hospitals enrol; the leader opens round 1.
	for _, h := range []string{"h1", "h2"} {
		cfg, err := pki.ClientTLSConfig(filepath.Join(certs, h+".crt"), filepath.Join(certs, h+".key"), ca, "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := coordclient.New(grpcAddrs, coordclient.Options{Creds: credentials.NewTLS(cfg)})
		if err != nil {
			t.Fatal(err)
		}
		ectx, ecancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err = c.Enrol(ectx, &pb.EnrolRequest{Federation: "study", ClientId: h})
		ecancel()
		c.Close()
		if err != nil {
			t.Fatalf("enrol %s: %v", h, err)
		}
	}

	var st clusterView
	for start := time.Now(); ; {
		out, err := cli(runStatus, append([]string{"--coordinator", coord, "--json"}, tlsArgs("alice")...)...)
		if err != nil {
			t.Fatal(err)
		}
		st = clusterView{}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil || dec.More() {
			t.Fatalf("status --json is not one object (%v):\n%s", err, out)
		}
		if len(st.Federations) == 1 && len(st.Federations[0].Rounds) == 1 && st.Federations[0].Rounds[0].State == "open" {
			t.Log(out)
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("round 1 never opened:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var leaders, followers int
	for _, n := range st.Nodes {
		switch n.State {
		case "leader":
			leaders++
			if n.ID != st.Leader {
				t.Errorf("node %s says leader, status leader is %s", n.ID, st.Leader)
			}
		case "follower":
			followers++
		}
	}
	if len(st.Nodes) != 3 || leaders != 1 || followers != 2 {
		t.Errorf("nodes %+v, want one leader and two followers", st.Nodes)
	}
	if f := st.Federations[0]; f.Name != "study" || f.ModelVersion != 0 || len(f.Rounds[0].Contributors) != 0 {
		t.Errorf("federation %+v", f)
	}
	// The raw JSON has exactly the documented top-level keys.
	out, _ = cli(runStatus, append([]string{"--coordinator", grpcAddrs[2], "--json"}, tlsArgs("alice")...)...)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 3 || raw["leader"] == nil || raw["nodes"] == nil || raw["federations"] == nil {
		t.Errorf("status --json keys: %v (%v)", out, err)
	}

	out, err = cli(runFederation, append([]string{"show", "--coordinator", coord, "--name", "study"}, tlsArgs("alice")...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out)
	for _, want := range []string{"federation study", "enrolled 2 of 2", "round 1: open"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	out, err = cli(runFederation, append([]string{"show", "--coordinator", coord, "--spec", specFile, "--json"}, tlsArgs("alice")...)...)
	if err != nil {
		t.Fatal(err)
	}
	var fv federationView
	if err := json.Unmarshal([]byte(out), &fv); err != nil || fv.Name != "study" || fv.NumParams == 0 || len(fv.Enrolled) != 2 {
		t.Errorf("show --json: %+v (%v)\n%s", fv, err, out)
	}
	out, err = cli(runStatus, append([]string{"--coordinator", coord}, tlsArgs("alice")...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out)
	if !strings.Contains(out, fmt.Sprintf("leader: %s", st.Leader)) {
		t.Errorf("status output:\n%s", out)
	}
	// Round 1 publishes; an operator pins model version 1 for serving, a hospital may not.
	for _, h := range []string{"h1", "h2"} {
		cfg, err := pki.ClientTLSConfig(filepath.Join(certs, h+".crt"), filepath.Join(certs, h+".key"), ca, "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := coordclient.New(grpcAddrs, coordclient.Options{Creds: credentials.NewTLS(cfg)})
		if err != nil {
			t.Fatal(err)
		}
		uctx, ucancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err = c.SubmitUpdate(uctx, coordclient.Update{Federation: "study", Round: 1, ClientID: h, Samples: 10,
			Data: make([]byte, 4*fv.NumParams)})
		ucancel()
		c.Close()
		if err != nil {
			t.Fatalf("update from %s: %v", h, err)
		}
	}
	for start := time.Now(); ; {
		out, err := cli(runFederation, append([]string{"show", "--coordinator", coord, "--name", "study", "--json"}, tlsArgs("alice")...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &fv); err == nil && fv.ModelVersion == 1 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("round 1 never published:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pinArgs := func(sub, who string, extra ...string) []string {
		return append(append([]string{sub, "--coordinator", coord, "--name", "study", "--version", "1"}, extra...), tlsArgs(who)...)
	}
	if _, err := cli(runFederation, pinArgs("pin", "h1")...); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("hospital pin: got %v, want PermissionDenied", err)
	}
	out, err = cli(runFederation, pinArgs("pin", "alice")...)
	if err != nil || !strings.Contains(out, "model version 1 pinned; pinned versions: 1") {
		t.Errorf("pin: %v\n%s", err, out)
	}
	out, err = cli(runFederation, append([]string{"show", "--coordinator", coord, "--name", "study"}, tlsArgs("alice")...)...)
	if err != nil || !strings.Contains(out, "pinned   model versions 1") {
		t.Errorf("show after pin: %v\n%s", err, out)
	}
	out, err = cli(runFederation, pinArgs("unpin", "alice", "--json")...)
	fv = federationView{}
	if err != nil || json.Unmarshal([]byte(out), &fv) != nil || fv.Name != "study" || len(fv.Pinned) != 0 {
		t.Errorf("unpin --json: %+v %v\n%s", fv, err, out)
	}
	// resume is for operators; on a running federation it changes nothing.
	resumeArgs := func(who string) []string {
		return append([]string{"resume", "--coordinator", coord, "--name", "study"}, tlsArgs(who)...)
	}
	if _, err := cli(runFederation, resumeArgs("h1")...); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("hospital resume: got %v, want PermissionDenied", err)
	}
	if out, err := cli(runFederation, resumeArgs("alice")...); err != nil || !strings.Contains(out, "federation study: running") {
		t.Errorf("resume: %v\n%s", err, out)
	}

	// docs/cluster.md, Membership: a fourth node joins, serves the federation, and leaves.
	pkiRun("issue", "--ca-dir", caDir, "--out", certs, "--role", "coordinator", "--id", "n4", "--ip", "127.0.0.1")
	r4, g4 := loopback.Addr(t), loopback.Addr(t)
	ctx4, cancel4 := context.WithCancel(context.Background())
	done4 := make(chan error, 1)
	go func() {
		done4 <- runCoordinator(ctx4, append([]string{"--node-id", "n4", "--data-dir", filepath.Join(dir, "n4"), "--join",
			"--raft-addr", r4, "--grpc-addr", g4}, tlsArgs("n4")...), io.Discard, io.Discard)
	}()
	defer func() {
		cancel4()
		if err := <-done4; err != nil {
			t.Errorf("n4: %v", err)
		}
	}()
	// Through a follower, which forwards to the leader with its own certificate.
	var follower string
	for _, n := range st.Nodes {
		if n.State == "follower" {
			follower = n.Address
		}
	}
	memberArgs := func(sub, who string) []string {
		args := []string{sub, "--coordinator", follower, "--id", "n4"}
		if sub == "add" {
			args = append(args, "--raft-addr", r4, "--grpc-addr", g4)
		}
		return append(args, tlsArgs(who)...)
	}
	if _, err := cli(runCluster, memberArgs("add", "h1")...); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("hospital adds a node: got %v, want PermissionDenied", err)
	}
	out, err = cli(runCluster, memberArgs("add", "alice")...)
	if err != nil || !strings.Contains(out, "node n4 added to the cluster") || strings.Count(out, " voter\n") != 4 {
		t.Fatalf("cluster add: %v\n%s", err, out)
	}
	for start := time.Now(); ; {
		out, err := cli(runFederation, append([]string{"show", "--coordinator", g4, "--name", "study", "--json"}, tlsArgs("alice")...)...)
		fv = federationView{}
		if err == nil && json.Unmarshal([]byte(out), &fv) == nil && fv.ModelVersion == 1 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("n4 never served the federation: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err = cli(runCluster, memberArgs("remove", "alice")...)
	if err != nil || !strings.Contains(out, "node n4 removed from the cluster") || strings.Count(out, " voter\n") != 3 {
		t.Errorf("cluster remove: %v\n%s", err, out)
	}
}

// TestFederationViewPrivacy: 'federation show' reports the privacy spent and why a
// federation is done before its last round, in text and JSON.
func TestFederationViewPrivacy(t *testing.T) {
	f := &pb.Federation{
		Spec:       &pb.FederationSpec{Name: "dp", Clients: []string{"h1", "h2"}, MinClients: 2, Rounds: 5, DpNoiseMultiplier: 1, DpEpsilonBudget: 8},
		Done:       true,
		DoneReason: "privacy budget spent: round 3 would bring it to 9.018",
		DpEpsilon:  7.087862,
		Rounds:     []*pb.RoundInfo{{Round: 1, State: pb.RoundState_ROUND_STATE_PUBLISHED}, {Round: 2, State: pb.RoundState_ROUND_STATE_PUBLISHED}},
	}
	v := federationViewOf(f)
	var text bytes.Buffer
	printFederation(&text, v)
	for _, want := range []string{"5 planned, model version 0, done: privacy budget spent: round 3", "privacy  noise multiplier 1, epsilon 7.09 spent at delta 1e-05 (budget 8)"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["dp_epsilon"] != 7.087862 || m["dp_epsilon_budget"] != 8.0 || m["dp_delta"] != 1e-05 || !strings.HasPrefix(m["done_reason"].(string), "privacy budget spent") {
		t.Errorf("JSON %s", b)
	}
	v = federationViewOf(&pb.Federation{Spec: &pb.FederationSpec{Name: "plain"}})
	text.Reset()
	printFederation(&text, v)
	if b, _ := json.Marshal(v); strings.Contains(text.String(), "privacy") || strings.Contains(string(b), "dp_") {
		t.Errorf("a federation without DP shows privacy: %s / %s", text.String(), b)
	}
}

// TestFederationStopResume: 'medfed federation stop' stops a running federation with the
// operator's reason, and 'resume' lets it go on (text and JSON output).
func TestFederationStopResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, peers, c := startTestCoordinators(ctx, t, 1)
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := runFederation(ctx, append(args, "--coordinator", peers[0].GRPCAddr, "--insecure", "--name", "bc"), &out, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	if out := run("stop", "--reason", "data audit"); !strings.Contains(out, "stopped after") || !strings.Contains(out, "stopped by an operator: data audit") {
		t.Errorf("stop printed %q", out)
	}
	if f, err := c.Federation(ctx, "bc"); err != nil || !f.Stopped {
		t.Fatalf("after stop: %v, %v", f, err)
	}
	var v federationView
	if err := json.Unmarshal([]byte(run("resume", "--json")), &v); err != nil || v.Stopped {
		t.Errorf("resume --json: %+v, %v", v, err)
	}
}
