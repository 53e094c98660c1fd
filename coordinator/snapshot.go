package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"io"

	"github.com/medfed/medfed/crypto/he"
)

// Snapshot format: magic "MFSN" | version u32 | length u64 | SHA-256 of the payload |
// payload (encoding/gob of state).
const (
	snapshotMagic   = "MFSN"
	snapshotVersion = 1
	snapshotHeader  = 4 + 4 + 8 + sha256.Size
)

func encodeState(w io.Writer, st *state) error {
	var payload bytes.Buffer
	if err := gob.NewEncoder(&payload).Encode(st); err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	hdr := make([]byte, 0, snapshotHeader)
	hdr = append(hdr, snapshotMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, snapshotVersion)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(payload.Len()))
	sum := sha256.Sum256(payload.Bytes())
	hdr = append(hdr, sum[:]...)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(payload.Bytes())
	return err
}

func decodeState(r io.Reader) (*state, error) {
	hdr := make([]byte, snapshotHeader)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("%w: snapshot header: %v", ErrCommand, err)
	}
	if string(hdr[:4]) != snapshotMagic || binary.LittleEndian.Uint32(hdr[4:]) != snapshotVersion {
		return nil, fmt.Errorf("%w: not a version %d coordinator snapshot", ErrCommand, snapshotVersion)
	}
	n := binary.LittleEndian.Uint64(hdr[8:])
	var payload bytes.Buffer
	if _, err := io.CopyN(&payload, r, int64(n)); err != nil || uint64(payload.Len()) != n {
		return nil, fmt.Errorf("%w: snapshot truncated at %d of %d bytes", ErrCommand, payload.Len(), n)
	}
	if sum := sha256.Sum256(payload.Bytes()); !bytes.Equal(sum[:], hdr[16:]) {
		return nil, fmt.Errorf("%w: snapshot checksum mismatch", ErrCommand)
	}
	st := newState()
	if err := gob.NewDecoder(&payload).Decode(st); err != nil {
		return nil, fmt.Errorf("%w: decode snapshot: %v", ErrCommand, err)
	}
	if st.Federations == nil {
		st.Federations = map[string]*federation{}
	}
	if st.Blobs == nil {
		st.Blobs = map[string]*blob{}
	}
	if st.NodeAddrs == nil {
		st.NodeAddrs = map[string]string{}
	}
	for name, fd := range st.Federations {
		if err := fd.restoreDerived(); err != nil {
			return nil, fmt.Errorf("federation %q: %w", name, err)
		}
	}
	return st, nil
}

// restoreDerived rebuilds what snapshots do not store: the parsed spec, the CKKS parameters,
// the ceremony (by replaying its messages) and encrypted running sums.
func (fd *federation) restoreDerived() error {
	if err := fd.initDerived(); err != nil {
		return err
	}
	if fd.Enrolled == nil {
		fd.Enrolled = map[string]*enrolment{}
	}
	if !fd.spec.Secure {
		return nil
	}
	if len(fd.Ceremony.Steps) > 0 {
		cer, err := he.NewCeremony(*fd.params, fd.group())
		if err != nil {
			return err
		}
		fd.ceremony = cer
		for _, s := range fd.Ceremony.Steps {
			if err := applyCeremonyStep(fd, fd.partyOf(s.Client), pbStep(s.Step), s.Data); err != nil {
				return fmt.Errorf("replay ceremony: %w", err)
			}
		}
	}
	if fd.Ceremony.PublicKey != nil {
		pk, err := he.DecodePublicKey(*fd.params, fd.Ceremony.PublicKey)
		if err != nil {
			return err
		}
		fd.pk = pk
	}
	return nil
}
