package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/internal/loopback"
)

func long() bool { return os.Getenv("MEDFED_LONG") == "1" }

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// medfed returns the path of a medfed binary: MEDFED_E2E_BINARY, or one built from this
// module once per test binary. It skips the test if the binary lacks the client command.
func medfed(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("MEDFED_E2E_BINARY"); p != "" {
			buildPath = p
			return
		}
		dir, err := os.MkdirTemp("", "medfed-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "medfed")
		cmd := exec.Command("go", "build", "-o", buildPath, "../cmd/medfed")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	out, _ := exec.Command(buildPath, "client", "-h").CombinedOutput()
	if bytes.Contains(out, []byte(`unknown command "client"`)) {
		t.Fatal("the medfed binary has no client command: cmd/medfed/main.go must register runClient")
	}
	return buildPath
}

// proc is a medfed process the test started; its output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func start(t *testing.T, bin, name, logDir string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("---- %s log (tail) ----\n%s", name, tail(logPath, 40))
		}
	})
	return p
}

// kill sends SIGKILL (no graceful shutdown) and waits for the process to exit.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("medfed %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// consortium is a CA with certificates for coordinators n1..nN, hospitals and an operator.
type consortium struct {
	dir string
}

func newConsortium(t *testing.T, bin, dir string, nodes int, hospitals []string) consortium {
	t.Helper()
	run(t, bin, "pki", "init", "--out", filepath.Join(dir, "ca"))
	issue := func(role, id string, extra ...string) {
		run(t, bin, append([]string{"pki", "issue", "--ca-dir", filepath.Join(dir, "ca"), "--role", role, "--id", id, "--out", filepath.Join(dir, "certs")}, extra...)...)
	}
	for i := range nodes {
		issue("coordinator", fmt.Sprintf("n%d", i+1), "--ip", "127.0.0.1", "--dns", "localhost")
	}
	for _, h := range hospitals {
		issue("hospital", h)
	}
	issue("operator", "op")
	return consortium{dir: dir}
}

func (c consortium) tlsArgs(id string) []string {
	return []string{"--tls-cert", c.cert(id), "--tls-key", filepath.Join(c.dir, "certs", id+".key"), "--tls-ca", c.ca()}
}
func (c consortium) cert(id string) string { return filepath.Join(c.dir, "certs", id+".crt") }
func (c consortium) ca() string            { return filepath.Join(c.dir, "ca", "ca.crt") }

// operator returns a coordinator client with the operator's certificate.
func (c consortium) operator(t *testing.T, addrs []string) *coordclient.Client {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(c.cert("op"), filepath.Join(c.dir, "certs", "op.key"), c.ca(), "")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := coordclient.New(addrs, coordclient.Options{Creds: credentials.NewTLS(cfg), MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, MaxAttempts: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// cluster is a coordinator cluster of medfed processes.
type cluster struct {
	ids   []string
	grpc  []string
	procs []*proc
}

func startCluster(t *testing.T, bin string, pk consortium, dir string, n int) *cluster {
	t.Helper()
	c := &cluster{}
	var raft, grpcs []string
	for i := range n {
		c.ids = append(c.ids, fmt.Sprintf("n%d", i+1))
		a, g := loopback.Addr(t), loopback.Addr(t)
		raft, grpcs = append(raft, c.ids[i]+"="+a), append(grpcs, c.ids[i]+"="+g)
		c.grpc = append(c.grpc, g)
	}
	for i, id := range c.ids {
		args := []string{"coordinator", "--node-id", id, "--data-dir", filepath.Join(dir, id),
			"--raft-addr", strings.TrimPrefix(raft[i], id+"="), "--grpc-addr", c.grpc[i],
			"--peers", strings.Join(raft, ","), "--grpc-peers", strings.Join(grpcs, ",")}
		c.procs = append(c.procs, start(t, bin, id, dir, append(args, pk.tlsArgs(id)...)...))
	}
	return c
}

// leader returns the index of the node that leads, as the cluster reports it.
func (c *cluster) leader(t *testing.T, ctx context.Context, op *coordclient.Client) int {
	t.Helper()
	for ctx.Err() == nil {
		st, err := op.Status(ctx)
		if err == nil && st.LeaderId != "" {
			for i, id := range c.ids {
				if id == st.LeaderId && !c.procs[i].exited() {
					return i
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no leader")
	return -1
}
