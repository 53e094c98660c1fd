package coordinator

import (
	"encoding/binary"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/medfed/medfed/internal/pb"
)

// uploadCodec is the gRPC codec of a node's server: protobuf, except for the upload
// messages that carry only data (all of an upload after its header). The stock codec
// gathers such a message from gRPC's receive buffers into one buffer and then copies the
// data out of it into a new allocation: two copies of every byte of an update, and a
// garbage MiB per chunk. uploadCodec copies the data once, straight from the receive
// buffers, into the data the message already holds if it has the room (receiveReplicated
// passes the same message again when nothing else still reads the previous chunk).
// Anything else, a data message with other fields included, goes to the stock codec, so
// what is accepted and how it decodes is unchanged (FuzzUploadCodec compares the two).
type uploadCodec struct{ encoding.CodecV2 }

func newUploadCodec() uploadCodec { return uploadCodec{encoding.GetCodecV2(proto.Name)} }

func (c uploadCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*pb.UploadChunk)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	skip, n, ok := dataOnly(data)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	d, ok := m.Msg.(*pb.UploadChunk_Data)
	if !ok || cap(d.Data) < n {
		d = &pb.UploadChunk_Data{Data: make([]byte, n)}
	}
	d.Data = d.Data[:n]
	m.Reset()
	m.Msg = d
	off := 0
	for _, b := range data {
		p := b.ReadOnlyData()
		if skip >= len(p) {
			skip -= len(p)
			continue
		}
		off += copy(d.Data[off:], p[skip:])
		skip = 0
	}
	return nil
}

// dataOnly reports whether data encodes an UploadChunk with nothing but its data field
// (field 2, the oneof's bytes), and if so the length of the field's tag and length
// prefix, skip, and of the data, n.
func dataOnly(data mem.BufferSlice) (skip, n int, ok bool) {
	var head [2 * binary.MaxVarintLen64]byte // a tag and a length, however encoded
	h := head[:data.CopyTo(head[:])]
	num, typ, k := protowire.ConsumeTag(h)
	if k < 0 || num != 2 || typ != protowire.BytesType {
		return 0, 0, false
	}
	l, j := protowire.ConsumeVarint(h[k:])
	if j < 0 || l != uint64(data.Len()-k-j) {
		return 0, 0, false
	}
	return k + j, int(l), true
}
