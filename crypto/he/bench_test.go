package he

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/medfed/medfed/internal/cputime"
)

// cpuMeter reports process CPU time per operation; call stop after the loop.
func cpuMeter(b *testing.B) (stop func()) {
	start := cputime.Process()
	return func() {
		if used := cputime.Process() - start; used > 0 && b.N > 0 {
			b.ReportMetric(float64(used/time.Nanosecond)/float64(b.N), "cpu-ns/op")
		}
	}
}

const benchValues = 1_000_000

func benchFederation(b *testing.B, n, t int) (*federation, [][]byte) {
	p := mustParams(b, DefaultProfile())
	f := newFederation(b, p, n, t)
	r := rand.New(rand.NewPCG(3, 4))
	enc := NewEncryptor(p, f.pk)
	var wire [][]byte
	for i := 0; i < 10; i++ {
		v, err := enc.Encrypt(randomVector(r, benchValues), float64(100+i))
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := v.MarshalBinary()
		wire = append(wire, raw)
	}
	return f, wire
}

// BenchmarkEncrypt encrypts 1M values under the collective key (one hospital's update).
func BenchmarkEncrypt(b *testing.B) {
	p := mustParams(b, DefaultProfile())
	f := newFederation(b, p, 3, 2)
	x := randomVector(rand.New(rand.NewPCG(1, 1)), benchValues)
	enc := NewEncryptor(p, f.pk)
	b.ResetTimer()
	stop := cpuMeter(b)
	for b.Loop() {
		v, err := enc.Encrypt(x, 100)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
	stop()
	b.ReportMetric(p.BytesPerValue()/4, "x_float32")
	b.ReportMetric(p.BytesPerValue(), "bytes/value")
}

// BenchmarkAggregate decodes and adds 10 wire-encoded updates of 1M values.
func BenchmarkAggregate(b *testing.B) {
	f, wire := benchFederation(b, 3, 2)
	b.ResetTimer()
	stop := cpuMeter(b)
	for b.Loop() {
		agg, _ := NewAggregate(f.params, benchValues)
		for _, w := range wire {
			if err := agg.AddBinary(w); err != nil {
				b.Fatal(err)
			}
		}
	}
	stop()
}

// BenchmarkDecryptionShare is one hospital's share for a 1M-value aggregate of 10 updates.
func BenchmarkDecryptionShare(b *testing.B) {
	f, wire := benchFederation(b, 10, 6)
	agg, _ := NewAggregate(f.params, benchValues)
	for _, w := range wire {
		_ = agg.AddBinary(w)
	}
	active := roster(6)
	b.ResetTimer()
	stop := cpuMeter(b)
	for b.Loop() {
		// A party answers a ciphertext once; use a fresh party state per
		// iteration, and hash the aggregate again as a hospital that just
		// decoded it would.
		f.parties[1].mu.Lock()
		clear(f.parties[1].issued)
		f.parties[1].mu.Unlock()
		agg.digest.Store(nil)
		if _, err := f.parties[1].DecryptionShare(agg, active); err != nil {
			b.Fatal(err)
		}
	}
	stop()
}

// BenchmarkCombine decodes 6 wire-encoded shares, combines them and decodes
// the 1M-value average. The aggregate's digest is cached: the coordinator
// computes it once when the round closes (about 10 ms for 1M values).
func BenchmarkCombine(b *testing.B) {
	f, wire := benchFederation(b, 10, 6)
	agg, _ := NewAggregate(f.params, benchValues)
	for _, w := range wire {
		_ = agg.AddBinary(w)
	}
	active := roster(6)
	var shares [][]byte
	for _, id := range active {
		s, err := f.parties[id].DecryptionShare(agg, active)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := s.MarshalBinary()
		shares = append(shares, raw)
	}
	b.ResetTimer()
	stop := cpuMeter(b)
	for b.Loop() {
		d, err := NewDecryption(f.params, f.group, agg, active)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range shares {
			if err := d.AddShareBinary(s); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := d.Average(); err != nil {
			b.Fatal(err)
		}
	}
	stop()
}

func benchmarkCeremony(b *testing.B, n, t int) {
	p := mustParams(b, DefaultProfile())
	stop := cpuMeter(b)
	for b.Loop() {
		newFederation(b, p, n, t)
	}
	stop()
}

// BenchmarkCeremony10 runs a whole 10-hospital ceremony (t=6) in one process;
// divide by the number of parties for one hospital's work.
func BenchmarkCeremony10(b *testing.B) { benchmarkCeremony(b, 10, 6) }

// BenchmarkCeremony100 runs a whole 100-hospital ceremony (t=51) in one process.
func BenchmarkCeremony100(b *testing.B) { benchmarkCeremony(b, 100, 51) }

// BenchmarkVectorChecker checks one wire-encoded update of 1M values (about 27 MiB) as a
// coordinator does while it streams in, in 1 MiB writes; SetBytes makes the rate MB/s.
func BenchmarkVectorChecker(b *testing.B) {
	p := mustParams(b, DefaultProfile())
	f := newFederation(b, p, 3, 2)
	v, err := NewEncryptor(p, f.pk).Encrypt(randomVector(rand.New(rand.NewPCG(1, 1)), benchValues), 100)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := v.MarshalBinary()
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for b.Loop() {
		c := NewVectorChecker(p, len(raw))
		for off := 0; off < len(raw); off += 1 << 20 {
			if _, err := c.Write(raw[off:min(off+1<<20, len(raw))]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
