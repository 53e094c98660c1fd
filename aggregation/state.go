package aggregation

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// Serialised optimizer state, version 1, little-endian:
//
//	offset  size     field
//	0       4        magic "MFSO"
//	4       1        version (1)
//	5       1        optimizer: 0 fedavg, 1 fedadam, 2 fedyogi, 3 fedadagrad
//	6       2        reserved, zero
//	8       4×8      LR, Beta1, Beta2, Tau (float64, defaults resolved)
//	40      8        steps (uint64)
//	48      8        dim (uint64)
//	56      dim×8    m (float64; adaptive optimizers only)
//	...     dim×8    v (float64; adaptive optimizers only)
//	...     4        CRC-32C of everything before it
const (
	stateMagic   = "MFSO"
	stateVersion = 1
	stateHeader  = 56
	stateTrailer = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary encodes the optimizer's configuration, step count and moment estimates in a
// versioned, checksummed format that UnmarshalBinary reads back exactly. It implements
// encoding.BinaryMarshaler. The adaptive optimizers' state takes 16 bytes per parameter.
func (o *ServerOptimizer) MarshalBinary() ([]byte, error) {
	if o.dim == 0 {
		return nil, fmt.Errorf("%w: optimizer not initialised, use NewServerOptimizer", ErrState)
	}
	size := stateHeader + stateTrailer
	if o.kind != kindFedAvg {
		size += 16 * o.dim
	}
	b := make([]byte, stateHeader, size)
	copy(b, stateMagic)
	b[4] = stateVersion
	b[5] = byte(o.kind)
	le := binary.LittleEndian
	le.PutUint64(b[8:], math.Float64bits(o.cfg.LR))
	le.PutUint64(b[16:], math.Float64bits(o.cfg.Beta1))
	le.PutUint64(b[24:], math.Float64bits(o.cfg.Beta2))
	le.PutUint64(b[32:], math.Float64bits(o.cfg.Tau))
	le.PutUint64(b[40:], o.steps)
	le.PutUint64(b[48:], uint64(o.dim))
	if o.kind != kindFedAvg {
		for _, x := range o.m {
			b = le.AppendUint64(b, math.Float64bits(x))
		}
		for _, x := range o.v {
			b = le.AppendUint64(b, math.Float64bits(x))
		}
	}
	return le.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// UnmarshalBinary replaces the optimizer's whole state, configuration included, with one
// encoded by MarshalBinary; it works on a zero ServerOptimizer. It implements
// encoding.BinaryUnmarshaler.
//
// Input is untrusted: a truncated, oversized, corrupted or unsupported encoding, or one whose
// values an optimizer could not have produced (a bad hyperparameter, NaN, a negative second
// moment), returns an error wrapping ErrState and leaves the optimizer unchanged. It never
// allocates more than the input's size.
func (o *ServerOptimizer) UnmarshalBinary(data []byte) error {
	if len(data) < stateHeader+stateTrailer {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrState, len(data), stateHeader+stateTrailer)
	}
	if string(data[:4]) != stateMagic {
		return fmt.Errorf("%w: magic is %q, want %q", ErrState, data[:4], stateMagic)
	}
	if data[4] != stateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrState, data[4], stateVersion)
	}
	kind := optimizerKind(data[5])
	if int(kind) >= len(kindNames) {
		return fmt.Errorf("%w: optimizer kind %d, want 0 to %d", ErrState, kind, len(kindNames)-1)
	}
	if data[6] != 0 || data[7] != 0 {
		return fmt.Errorf("%w: reserved bytes are %#x %#x, want zero", ErrState, data[6], data[7])
	}
	le := binary.LittleEndian
	dim64 := le.Uint64(data[48:])
	body := uint64(len(data) - stateHeader - stateTrailer)
	want := uint64(0)
	if kind != kindFedAvg {
		if dim64 > body/16 {
			return fmt.Errorf("%w: dimension %d needs %s bytes of moments, have %d",
				ErrState, dim64, momentBytes(dim64), body)
		}
		want = 16 * dim64
	}
	if body != want {
		return fmt.Errorf("%w: %d bytes after the header, want %d for %s with dimension %d",
			ErrState, body+stateTrailer, want+stateTrailer, kindNames[kind], dim64)
	}
	if dim64 < 1 || dim64 > math.MaxInt {
		return fmt.Errorf("%w: dimension %d, want at least 1", ErrState, dim64)
	}
	end := len(data) - stateTrailer
	if got, sum := le.Uint32(data[end:]), crc32.Checksum(data[:end], castagnoli); got != sum {
		return fmt.Errorf("%w: checksum %#08x, want %#08x (corrupted)", ErrState, got, sum)
	}
	cfg := ServerConfig{
		Name:  kindNames[kind],
		LR:    math.Float64frombits(le.Uint64(data[8:])),
		Beta1: math.Float64frombits(le.Uint64(data[16:])),
		Beta2: math.Float64frombits(le.Uint64(data[24:])),
		Tau:   math.Float64frombits(le.Uint64(data[32:])),
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if cfg.resolved() != cfg {
		return fmt.Errorf("%w: configuration %+v has zero fields, want defaults resolved", ErrState, cfg)
	}
	dim := int(dim64)
	n := &ServerOptimizer{cfg: cfg, kind: kind, dim: dim, steps: le.Uint64(data[40:])}
	if kind != kindFedAvg {
		n.m = make([]float64, dim)
		n.v = make([]float64, dim)
		p := data[stateHeader:]
		for i := range n.m {
			x := math.Float64frombits(le.Uint64(p[8*i:]))
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("%w: first moment %d is %v", ErrState, i, x)
			}
			n.m[i] = x
		}
		p = p[8*dim:]
		for i := range n.v {
			x := math.Float64frombits(le.Uint64(p[8*i:]))
			if !(x >= 0) || math.IsInf(x, 1) {
				return fmt.Errorf("%w: second moment %d is %v, want a finite value >= 0", ErrState, i, x)
			}
			n.v[i] = x
		}
	}
	*o = *n
	return nil
}

// momentBytes formats 16·dim without overflowing.
func momentBytes(dim uint64) string {
	if dim > math.MaxUint64/16 {
		return fmt.Sprintf("16×%d", dim)
	}
	return fmt.Sprint(16 * dim)
}
