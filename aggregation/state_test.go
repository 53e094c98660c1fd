package aggregation_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"slices"
	"testing"

	"github.com/medfed/medfed/aggregation"
)

// stepped returns an optimizer of the named kind over 3 parameters after two steps.
func stepped(t testing.TB, name string) *aggregation.ServerOptimizer {
	t.Helper()
	o, err := aggregation.NewServerOptimizer(aggregation.ServerConfig{Name: name, LR: 0.05}, 3)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{1, 2, 3}
	for _, d := range [][]float32{{0.5, -0.25, 0}, {-1, 0.125, 2}} {
		if err := o.Apply(x, d); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

func TestStateRoundTrip(t *testing.T) {
	for _, name := range []string{"fedavg", "fedadam", "fedyogi", "fedadagrad"} {
		t.Run(name, func(t *testing.T) {
			o := stepped(t, name)
			b, err := o.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var r aggregation.ServerOptimizer
			if err := r.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if r.Config() != o.Config() || r.Steps() != o.Steps() || r.Dim() != o.Dim() {
				t.Errorf("restored %+v step %d dim %d, want %+v step %d dim %d",
					r.Config(), r.Steps(), r.Dim(), o.Config(), o.Steps(), o.Dim())
			}
			// The restored optimizer continues exactly as the original.
			x1, x2 := []float32{1, 2, 3}, []float32{1, 2, 3}
			d := []float32{0.3, 0.3, -0.7}
			if err := o.Apply(x1, d); err != nil {
				t.Fatal(err)
			}
			if err := r.Apply(x2, d); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(x1, x2) {
				t.Errorf("after restore the next step gives %v, want %v", x2, x1)
			}
			b1, _ := o.MarshalBinary()
			b2, _ := r.MarshalBinary()
			if !bytes.Equal(b1, b2) {
				t.Errorf("states diverged after one more step")
			}
		})
	}
}

// reseal recomputes the trailing CRC-32C of a state encoding.
func reseal(b []byte) []byte {
	end := len(b) - 4
	binary.LittleEndian.PutUint32(b[end:], crc32.Checksum(b[:end], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func TestUnmarshalBinaryErrors(t *testing.T) {
	valid, err := stepped(t, "fedadam").MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(slices.Clone(valid)) }
	put64 := func(off int, v uint64) []byte {
		return edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[off:], v); return reseal(b) })
	}
	putF := func(off int, v float64) []byte { return put64(off, math.Float64bits(v)) }
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"nine bytes", valid[:9]},
		{"truncated", valid[:len(valid)-1]},
		{"trailing byte", reseal(append(slices.Clone(valid), 0))},
		{"magic", edit(func(b []byte) []byte { b[0] = 'X'; return reseal(b) })},
		{"version", edit(func(b []byte) []byte { b[4] = 2; return reseal(b) })},
		{"kind", edit(func(b []byte) []byte { b[5] = 9; return reseal(b) })},
		{"reserved", edit(func(b []byte) []byte { b[7] = 1; return reseal(b) })},
		{"checksum", edit(func(b []byte) []byte { b[60] ^= 1; return b })},
		{"huge dim", put64(48, math.MaxUint64)},
		{"dim overflowing 16·dim", put64(48, 1<<60)},
		{"dim zero", put64(48, 0)},
		{"LR zero", putF(8, 0)},
		{"LR NaN", putF(8, math.NaN())},
		{"Beta1 one", putF(16, 1)},
		{"Tau negative", putF(32, -1)},
		{"m NaN", putF(56, math.NaN())},
		{"v negative", putF(56+3*8, -1)},
		{"v infinite", putF(56+3*8, math.Inf(1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := stepped(t, "fedyogi")
			before, _ := o.MarshalBinary()
			if err := o.UnmarshalBinary(tt.data); !errors.Is(err, aggregation.ErrState) {
				t.Fatalf("got %v, want %v", err, aggregation.ErrState)
			}
			if after, _ := o.MarshalBinary(); !bytes.Equal(before, after) {
				t.Errorf("failed UnmarshalBinary changed the optimizer")
			}
		})
	}
	var zero aggregation.ServerOptimizer
	if _, err := zero.MarshalBinary(); !errors.Is(err, aggregation.ErrState) {
		t.Errorf("MarshalBinary of a zero optimizer: got %v, want %v", err, aggregation.ErrState)
	}
}

// FuzzServerOptimizerState feeds arbitrary bytes to UnmarshalBinary. Whatever it accepts must
// encode back to the same bytes and be usable by Apply. The committed corpus in
// testdata/fuzz/FuzzServerOptimizerState holds valid states of each optimizer, a 9-byte
// input, huge length prefixes and corrupted checksums.
func FuzzServerOptimizerState(f *testing.F) {
	for _, name := range []string{"fedavg", "fedadam"} {
		b, err := stepped(f, name).MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var o aggregation.ServerOptimizer
		if err := o.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, aggregation.ErrState) {
				t.Fatalf("error %v does not wrap ErrState", err)
			}
			return
		}
		b, err := o.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("accepted input does not re-encode to itself")
		}
		if o.Dim() > 1<<16 {
			return // a fedavg state may claim a large dimension without holding data
		}
		x := make([]float32, o.Dim())
		d := make([]float32, o.Dim())
		for i := range d {
			d[i] = 1
		}
		if err := o.Apply(x, d); err != nil {
			t.Fatal(err)
		}
	})
}
