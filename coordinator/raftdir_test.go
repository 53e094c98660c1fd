package coordinator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medfed/medfed/internal/pb"
)

// TestRaftDir starts a node with its Raft state in a directory of its own: the log and
// snapshots go there, the update bytes stay in DataDir, and the node restarts from the
// recorded directory without the flag. It then refuses another directory, and the
// recorded one once it is empty, instead of starting with an empty log.
func TestRaftDir(t *testing.T) {
	rd := filepath.Join(t.TempDir(), "log")
	tc := startClusterWith(t, 1, func(c *Config) { c.RaftDir = rd })
	tc.leader()
	c := newClient(t, tc.addrs())
	if _, err := c.CreateFederation(testCtx(t), &pb.FederationSpec{Name: "a", ModelSpecJson: testModelSpec(t), Clients: []string{"h1"}, MinClients: 1}); err != nil {
		t.Fatal(err)
	}
	tc.stop(0)
	data := tc.cfgs[0].DataDir
	for _, p := range []string{filepath.Join(rd, "raft.db"), filepath.Join(rd, "snapshots"), filepath.Join(data, "blobs")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "raft.db")); err == nil {
		t.Error("raft.db is in the data dir too")
	}
	if rec, err := os.ReadFile(filepath.Join(data, raftDirRecord)); err != nil || strings.TrimSpace(string(rec)) != rd {
		t.Errorf("record: %q, %v; want %s", rec, err, rd)
	}

	tc.cfgs[0].RaftDir = ""
	tc.start(0)
	tc.leader()
	// Becoming leader comes before applying the replayed log: wait for the entry.
	waitFor(t, "the restarted node to apply federation a from its log", func() bool {
		_, err := tc.nodes[0].FSM().Federation("a")
		return err == nil
	})
	tc.stop(0)

	tc.cfgs[0].RaftDir = t.TempDir()
	if n, err := New(tc.cfgs[0], nil); err == nil {
		n.Close()
		t.Fatal("started with another raft dir than the recorded one")
	} else if !strings.Contains(err.Error(), rd) || !strings.Contains(err.Error(), tc.cfgs[0].RaftDir) {
		t.Errorf("error %q does not name both directories", err)
	}
	tc.cfgs[0].RaftDir = ""
	if err := os.Rename(rd, rd+".away"); err != nil { // the volume is not mounted
		t.Fatal(err)
	}
	if n, err := New(tc.cfgs[0], nil); err == nil {
		n.Close()
		t.Fatal("started with an empty log in the recorded raft dir")
	} else if !strings.Contains(err.Error(), "holds no Raft log") {
		t.Errorf("error %q", err)
	}
	if _, err := os.Stat(rd); err == nil {
		t.Error("the refused start created the raft dir")
	}
}

// TestRaftDirChoice covers raftDir's cases without a node.
func TestRaftDirChoice(t *testing.T) {
	data, other := t.TempDir(), t.TempDir()
	if dir, rec, err := raftDir(data, ""); dir != data || rec || err != nil {
		t.Errorf("no flag: %q %v %v, want the data dir", dir, rec, err)
	}
	if dir, rec, err := raftDir(data, data+"/."); dir != data || rec || err != nil {
		t.Errorf("the data dir itself: %q %v %v, want it unrecorded", dir, rec, err)
	}
	if dir, rec, err := raftDir(data, other); dir != other || !rec || err != nil {
		t.Errorf("new raft dir: %q %v %v, want it to be recorded", dir, rec, err)
	}
	if err := os.WriteFile(filepath.Join(data, "raft.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raftDir(data, other); err == nil || !strings.Contains(err.Error(), "move raft.db") {
		t.Errorf("raft dir given for a data dir that holds the log: %v", err)
	}
	if err := os.WriteFile(filepath.Join(data, raftDirRecord), []byte("log\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raftDir(data, ""); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf("relative record: %v", err)
	}
	if err := recordRaftDir(data, other); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raftDir(data, other); err == nil || !strings.Contains(err.Error(), "holds no Raft log") {
		t.Errorf("recorded dir without raft.db: %v", err)
	}
	if err := os.WriteFile(filepath.Join(other, "raft.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"", other} {
		if dir, rec, err := raftDir(data, want); dir != other || rec || err != nil {
			t.Errorf("recorded, flag %q: %q %v %v", want, dir, rec, err)
		}
	}
}
