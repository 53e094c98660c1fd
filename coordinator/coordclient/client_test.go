package coordclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/internal/loopback"
	"github.com/medfed/medfed/internal/pb"
)

type statusServer struct {
	pb.UnimplementedClusterServiceServer
}

func (statusServer) Status(context.Context, *pb.StatusRequest) (*pb.ClusterStatus, error) {
	return &pb.ClusterStatus{NodeId: "n2"}, nil
}

// TestFailoverLogged: a call that the first node cannot answer (nothing listens there)
// succeeds on the second, and Options.Logger gets one record naming the first node and
// its error.
func TestFailoverLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterClusterServiceServer(srv, statusServer{})
	go srv.Serve(ln)
	defer srv.Stop()
	dead := loopback.Addr(t)

	var buf bytes.Buffer
	c, err := coordclient.New([]string{dead, ln.Addr().String()}, coordclient.Options{
		MinBackoff: time.Millisecond, Logger: slog.New(slog.NewJSONHandler(&buf, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil || st.NodeId != "n2" {
		t.Fatalf("Status: %v, %v; want n2's answer", st, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d log records, want 1:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["node"] != dead || rec["attempt"] != float64(1) || !strings.Contains(rec["err"].(string), "Unavailable") {
		t.Errorf("log record %v, want node %s, attempt 1 and its Unavailable error", rec, dead)
	}
}

// TestFailoverLogThinned: a node that fails again and again within FailoverLogRepeat is
// logged once, not once per retry.
func TestFailoverLogThinned(t *testing.T) {
	dead := loopback.Addr(t)
	var buf bytes.Buffer
	c, err := coordclient.New([]string{dead}, coordclient.Options{
		MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 6,
		Logger: slog.New(slog.NewJSONHandler(&buf, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		if _, err := c.Status(ctx); !coordclient.Retryable(err) {
			t.Fatalf("Status of a node that is not there: %v, want Unavailable", err)
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], dead) {
		t.Fatalf("got %d log records for 10 retried failures of %s, want 1:\n%s", len(lines), dead, buf.String())
	}
}

// ExampleNew: a client of a three-node cluster, given every node's address; a call goes to
// the node that last answered and moves on while nodes fail. Here the first address has
// no node behind it, and the call is answered by the second.
func ExampleNew() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := grpc.NewServer()
	pb.RegisterClusterServiceServer(srv, statusServer{})
	go srv.Serve(ln)
	defer srv.Stop()
	down, err := loopback.FreeAddr()
	if err != nil {
		fmt.Println(err)
		return
	}

	c, err := coordclient.New([]string{down, ln.Addr().String()}, coordclient.Options{MaxAttempts: 5})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("answered by", st.NodeId)
	// Output: answered by n2
}
