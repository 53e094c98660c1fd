package coordinator

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/medfed/medfed/internal/pb"
)

// commandVersion is the first byte of every Raft log entry the coordinator writes.
const commandVersion = 1

// maxCommandBytes bounds one encoded command: a chunk of at most MaxChunkBytes plus its
// small envelope.
const maxCommandBytes = MaxChunkBytes + 64<<10

// EncodeCommand encodes c as a Raft log entry: a version byte, then the protobuf encoding.
func EncodeCommand(c *pb.Command) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCommand, err)
	}
	return append([]byte{commandVersion}, b...), nil
}

// DecodeCommand decodes a Raft log entry written by EncodeCommand. Input is untrusted (it
// may come from a forwarded proposal): anything but a version-1 entry holding exactly one
// known command of at most maxCommandBytes returns an error wrapping ErrCommand.
func DecodeCommand(b []byte) (*pb.Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrCommand)
	}
	if len(b) > maxCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrCommand, len(b), maxCommandBytes)
	}
	if b[0] != commandVersion {
		return nil, fmt.Errorf("%w: expected version %d, got %d", ErrCommand, commandVersion, b[0])
	}
	var c pb.Command
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b[1:], &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCommand, err)
	}
	if c.Cmd == nil {
		return nil, fmt.Errorf("%w: no command in entry", ErrCommand)
	}
	return &c, nil
}
