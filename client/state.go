package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"filippo.io/age"

	"github.com/medfed/medfed/crypto/seal"
	"github.com/medfed/medfed/internal/atomicfile"
)

// stateVersion is the version of the state file layout.
const stateVersion = 1

// state is what a node keeps between runs, in StateDir/state.age (age-encrypted JSON).
// Large per-round payloads live next to it in their own encrypted files.
type state struct {
	Version    int    `json:"version"`
	Federation string `json:"federation"`
	ClientID   string `json:"client_id"`
	PartyID    uint32 `json:"party_id,omitempty"`
	// EnvelopeIdentity is the X25519 identity that opens threshold shares, when the state
	// is protected by a passphrase (with an identity file, that identity is used).
	EnvelopeIdentity string `json:"envelope_identity,omitempty"`
	// SigningKey is the Ed25519 seed that signs the envelopes this node seals.
	SigningKey []byte `json:"signing_key"`
	// Party is the he.Party state (secret-key share, Shamir shares, issued shares).
	Party []byte `json:"party,omitempty"`
	// ThresholdSent records that this node's threshold shares reached the coordinator.
	ThresholdSent bool `json:"threshold_sent,omitempty"`
	// CeremonyGen is the generation of the key ceremony Party belongs to (the coordinator
	// restarts a ceremony without hospitals that missed it).
	CeremonyGen uint32 `json:"ceremony_generation,omitempty"`
	// Rounds records this node's progress in each round it took part in.
	Rounds map[uint64]*roundState `json:"rounds,omitempty"`
}

// roundState is a node's progress in one round.
type roundState struct {
	ModelVersion uint64 `json:"model_version"`
	Samples      uint64 `json:"samples"`
	// UpdateDigest is the SHA-256 of the update bytes kept in round-R.update.age, written
	// before the first upload so that a restarted node resends the same bytes.
	UpdateDigest []byte `json:"update_digest,omitempty"`
	// AckIndex is the Raft index of the commit that accepted the update (0 until acked).
	AckIndex uint64 `json:"ack_index,omitempty"`
	// Skipped is why the node did not contribute (round closed before it was ready...).
	Skipped string `json:"skipped,omitempty"`
	// ShareDigest is the SHA-256 of the decryption share kept in round-R.share.age.
	ShareDigest []byte `json:"share_digest,omitempty"`
	// ShareActive is the active set that share was made for. The coordinator may replace
	// a stalled active set, with a rerandomised aggregate; the node then makes a new share
	// (he.Party refuses a second active set for the same ciphertext).
	ShareActive []uint32 `json:"share_active,omitempty"`
	ShareAcked  bool     `json:"share_acked,omitempty"`
}

// store reads and writes age-encrypted files in the state directory. Every write is
// atomic (temporary file, fsync, rename, fsync of the directory).
type store struct {
	dir        string
	recipients []age.Recipient
	identities []age.Identity
}

func newStore(cfg Config) (*store, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	}
	s := &store{dir: cfg.StateDir}
	if cfg.AgeIdentity != nil {
		s.recipients = []age.Recipient{cfg.AgeIdentity.Recipient()}
		s.identities = []age.Identity{cfg.AgeIdentity}
		return s, nil
	}
	r, err := age.NewScryptRecipient(cfg.Passphrase)
	if err != nil {
		return nil, err
	}
	r.SetWorkFactor(cfg.ScryptWorkFactor)
	id, err := age.NewScryptIdentity(cfg.Passphrase)
	if err != nil {
		return nil, err
	}
	s.recipients, s.identities = []age.Recipient{r}, []age.Identity{id}
	return s, nil
}

// read returns the decrypted contents of name, or nil if it does not exist.
func (s *store) read(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	}
	p, err := seal.Decrypt(b, s.identities...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v (wrong identity or passphrase?)", ErrState, filepath.Join(s.dir, name), err)
	}
	return p, nil
}

func (s *store) write(name string, data []byte) error {
	ct, err := seal.Encrypt(data, s.recipients...)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.dir, name), ct, 0o600)
}

const stateFile = "state.age"

func updateFile(r uint64) string { return "round-" + strconv.FormatUint(r, 10) + ".update.age" }
func shareFile(r uint64) string  { return "round-" + strconv.FormatUint(r, 10) + ".share.age" }

func (s *store) loadState() (*state, error) {
	b, err := s.read(stateFile)
	if err != nil || b == nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrState, stateFile, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%w: state version %d, this node reads %d", ErrState, st.Version, stateVersion)
	}
	if st.Rounds == nil {
		st.Rounds = map[uint64]*roundState{}
	}
	return &st, nil
}

func (s *store) saveState(st *state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.write(stateFile, b)
}
