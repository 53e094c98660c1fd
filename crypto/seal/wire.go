package seal

import (
	"encoding/binary"
	"fmt"
)

// reader consumes length-prefixed fields and records the first error; every
// read checks the remaining length first, so no length prefix can make it
// allocate or slice beyond the input.
type reader struct {
	b    []byte
	what string
	err  error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s", ErrMalformed, r.what, fmt.Sprintf(format, args...))
	}
}

func (r *reader) bytes(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("%s needs %d bytes, %d left", field, n, len(r.b))
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(field string) int {
	b := r.bytes(1, field)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16(field string) int {
	b := r.bytes(2, field)
	if b == nil {
		return 0
	}
	return int(binary.LittleEndian.Uint16(b))
}

func (r *reader) u32(field string) int {
	b := r.bytes(4, field)
	if b == nil {
		return 0
	}
	return int(binary.LittleEndian.Uint32(b))
}

// str reads a string with an n-byte length prefix and bounds it by max.
func (r *reader) str(field string, prefix, min, max int) string {
	var n int
	if prefix == 1 {
		n = r.u8(field + " length")
	} else {
		n = r.u16(field + " length")
	}
	if r.err == nil && (n < min || n > max) {
		r.fail("%s must have %d to %d bytes, got %d", field, min, max, n)
		return ""
	}
	return string(r.bytes(n, field))
}

func (r *reader) end() {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
}

func appendStr8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }
func appendStr16(b []byte, s string) []byte {
	return append(binary.LittleEndian.AppendUint16(b, uint16(len(s))), s...)
}
