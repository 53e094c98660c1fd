package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftLog: hashicorp/raft's log lines become slog records with raft's message and
// arguments (values as raft's text log prints them), and its debug lines are dropped; a
// peer's error that repeats within raftLogRepeat is logged once, and the next one after
// it says how many were left out, while the same error about another peer is logged.
func TestRaftLog(t *testing.T) {
	var buf bytes.Buffer
	var hl hclog.Logger = newRaftLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	now := time.Unix(1_000_000, 0)
	hl.(*raftLogger).limit.Now = func() time.Time { return now }

	refused := errors.New("dial tcp 10.0.0.2:7000: connect: connection refused")
	n2 := raft.Server{Suffrage: raft.Voter, ID: "n2", Address: "10.0.0.2:7000"}
	hl.Info("entering follower state", "leader-id", "n1")
	hl.Debug("a debug line")
	for range 5 {
		hl.Error("failed to appendEntries to", "peer", n2, "error", refused)
	}
	hl.Error("failed to appendEntries to", "peer", raft.Server{Suffrage: raft.Voter, ID: "n3", Address: "10.0.0.3:7000"}, "error", refused)
	hl.Named("net").With("local", "10.0.0.1:7000").Warn("failed to contact", "server-id", "n2", "time", 1400*time.Millisecond)
	now = now.Add(raftLogRepeat - time.Millisecond)
	hl.Error("failed to appendEntries to", "peer", n2, "error", refused) // still within
	now = now.Add(time.Millisecond)
	hl.Error("failed to appendEntries to", "peer", n2, "error", refused)
	hl.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}).Print("a standard log line")

	want := []map[string]any{
		{"level": "DEBUG", "msg": "entering follower state", "component": "raft", "leader-id": "n1"},
		{"level": "ERROR", "msg": "failed to appendEntries to", "peer": "{Voter n2 10.0.0.2:7000}", "error": refused.Error()},
		{"level": "ERROR", "msg": "failed to appendEntries to", "peer": "{Voter n3 10.0.0.3:7000}"},
		{"level": "WARN", "msg": "failed to contact", "module": "net", "local": "10.0.0.1:7000", "server-id": "n2", "time": float64(1400 * time.Millisecond)},
		{"level": "ERROR", "msg": "failed to appendEntries to", "peer": "{Voter n2 10.0.0.2:7000}", "repeated": float64(5)},
		{"level": "WARN", "msg": "a standard log line", "component": "raft"},
	}
	var got []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		got = append(got, m)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i, w := range want {
		for k, v := range w {
			if fmt.Sprint(got[i][k]) != fmt.Sprint(v) {
				t.Errorf("record %d: %s = %v, want %v (%v)", i, k, got[i][k], v, got[i])
			}
		}
		if _, ok := got[i]["repeated"]; ok && w["repeated"] == nil {
			t.Errorf("record %d: repeated = %v, want none", i, got[i]["repeated"])
		}
	}
}
