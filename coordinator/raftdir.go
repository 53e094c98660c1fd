package coordinator

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/medfed/medfed/internal/atomicfile"
)

// raftDirRecord is the file in DataDir that names the directory of the node's Raft state
// (raft.db and snapshots/) when Config.RaftDir keeps it apart from DataDir. It is written
// once, at the first start with RaftDir, after raft.db has been created there.
const raftDirRecord = "raft-dir"

// raftDir returns the directory of the node's Raft log and snapshots, and whether it is
// new and must be recorded in dataDir (recordRaftDir) once raft.db is in it: the
// directory recorded in dataDir, else want (Config.RaftDir), else dataDir.
//
// It refuses a directory other than the one that holds the node's Raft state, and a
// recorded one without raft.db (a volume that is not mounted, say): a node that came up
// with an empty Raft log would bootstrap again from Peers, forget its term and vote, and
// could vote twice in a term.
func raftDir(dataDir, want string) (dir string, record bool, err error) {
	if want != "" {
		if want, err = filepath.Abs(want); err != nil {
			return "", false, fmt.Errorf("raft dir: %w", err)
		}
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", false, fmt.Errorf("data dir: %w", err)
	}
	recPath := filepath.Join(dataDir, raftDirRecord)
	rec, err := os.ReadFile(recPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if want == "" || want == abs {
			return dataDir, false, nil
		}
		if _, err := os.Stat(filepath.Join(dataDir, "raft.db")); err == nil {
			return "", false, fmt.Errorf("raft dir: data dir %s holds this node's Raft log (raft.db), and the raft dir given is %s: move raft.db and snapshots/ there first, or start without it", dataDir, want)
		}
		return want, true, nil
	case err != nil:
		return "", false, fmt.Errorf("raft dir: %w", err)
	}
	recorded := strings.TrimSpace(string(rec))
	if !filepath.IsAbs(recorded) {
		return "", false, fmt.Errorf("raft dir: %s should hold an absolute path, holds %q", recPath, recorded)
	}
	if want != "" && want != recorded {
		return "", false, fmt.Errorf("raft dir: this node's Raft state is in %s (recorded in %s), and the raft dir given is %s: give %s or no raft dir, or move raft.db and snapshots/ and edit the record", recorded, recPath, want, recorded)
	}
	if _, err := os.Stat(filepath.Join(recorded, "raft.db")); err != nil {
		return "", false, fmt.Errorf("raft dir: %s (recorded in %s) holds no Raft log: %v; is its volume mounted? A node started with an empty log would join its cluster as a new member", recorded, recPath, err)
	}
	return recorded, false, nil
}

// recordRaftDir writes dir as the Raft directory of dataDir, durably.
func recordRaftDir(dataDir, dir string) error {
	if err := atomicfile.WriteFile(filepath.Join(dataDir, raftDirRecord), []byte(dir+"\n"), 0o600); err != nil {
		return fmt.Errorf("raft dir record: %w", err)
	}
	return nil
}
