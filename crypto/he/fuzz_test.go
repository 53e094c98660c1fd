package he

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// fuzzEnv is a small federation shared by the fuzz targets; valid encodings
// of every object seed the corpus next to testdata/fuzz (9-byte inputs,
// huge length prefixes, wrong kinds).
type fuzzEnv struct {
	p     Params
	group Group
	party *Party
	seeds map[kind][]byte
}

var fuzzOnce = sync.OnceValue(func() *fuzzEnv {
	p, err := NewParams(DefaultProfile())
	if err != nil {
		panic(err)
	}
	var tb testing.B
	f := newFederation(&tb, p, 3, 2)
	v, _ := NewEncryptor(p, f.pk).Encrypt(randomVector(rand.New(rand.NewPCG(1, 1)), 10), 1)
	ds, _ := f.parties[1].DecryptionShare(v, []PartyID{1, 2})
	ks, _ := f.parties[1].PublicKeyShare(f.pk.Seed)
	ts, _ := f.parties[1].ThresholdShare(2)
	env := &fuzzEnv{p: p, group: f.group, party: f.parties[1], seeds: map[kind][]byte{}}
	env.seeds[kindVector], _ = v.MarshalBinary()
	env.seeds[kindDecryptionShare], _ = ds.MarshalBinary()
	env.seeds[kindPublicKeyShare], _ = ks.MarshalBinary()
	env.seeds[kindPublicKey], _ = f.pk.MarshalBinary()
	env.seeds[kindThresholdShare], _ = ts.MarshalBinary()
	env.seeds[kindSeedCommitment], _ = f.parties[1].SeedCommitment().MarshalBinary()
	env.seeds[kindSeedReveal], _ = f.parties[1].SeedReveal().MarshalBinary()
	env.seeds[kindPartyState], _ = f.parties[1].MarshalBinary()
	return env
})

func fuzzDecoder(f *testing.F, k kind, decode func(e *fuzzEnv, b []byte) error) {
	e := fuzzOnce()
	f.Add(e.seeds[k])
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := decode(e, b); err == nil && len(b) > e.p.MaxWireSize() {
			t.Fatalf("accepted %d bytes, limit %d", len(b), e.p.MaxWireSize())
		}
	})
}

func FuzzDecodeVector(f *testing.F) {
	fuzzDecoder(f, kindVector, func(e *fuzzEnv, b []byte) error {
		v, err := DecodeVector(e.p, b)
		if err != nil {
			return err
		}
		out, _ := v.MarshalBinary()
		if !bytes.Equal(out, b) {
			panic("vector does not re-encode to its input")
		}
		return nil
	})
}

// FuzzCheckVector checks that CheckVector accepts exactly what DecodeVector accepts, and
// reports the same header.
func FuzzCheckVector(f *testing.F) {
	fuzzDecoder(f, kindVector, func(e *fuzzEnv, b []byte) error {
		info, cerr := CheckVector(e.p, b)
		v, derr := DecodeVector(e.p, b)
		if (cerr == nil) != (derr == nil) {
			panic(fmt.Sprintf("CheckVector says %v, DecodeVector %v", cerr, derr))
		}
		if derr == nil && (info.Length != v.Len() || info.Contributions != v.Contributions() || info.Weight != v.Weight()) {
			panic(fmt.Sprintf("CheckVector reports %+v, DecodeVector %d values, %d contributions, weight %v", info, v.Len(), v.Contributions(), v.Weight()))
		}
		// The same bytes through a VectorChecker in pieces of a size drawn from them.
		c := NewVectorChecker(e.p, len(b))
		step := 1 + (len(b)*7919)%4099
		for off := 0; off < len(b); off += step {
			c.Write(b[off:min(off+step, len(b))])
		}
		if sinfo, serr := c.Close(); (serr == nil) != (derr == nil) || sinfo != info {
			panic(fmt.Sprintf("in pieces of %d: VectorChecker says %+v, %v; CheckVector %+v, %v", step, sinfo, serr, info, cerr))
		}
		return derr
	})
}

// FuzzAddBinary checks that a failed AddBinary leaves the aggregate unchanged.
func FuzzAddBinary(f *testing.F) {
	e := fuzzOnce()
	f.Add(e.seeds[kindVector])
	f.Fuzz(func(t *testing.T, b []byte) {
		agg, err := DecodeVector(e.p, e.seeds[kindVector])
		if err != nil {
			t.Fatal(err)
		}
		before := agg.Digest()
		if err := agg.AddBinary(b); err != nil && agg.Digest() != before {
			t.Fatalf("failed AddBinary (%v) changed the aggregate", err)
		}
	})
}

func FuzzDecodeDecryptionShare(f *testing.F) {
	fuzzDecoder(f, kindDecryptionShare, func(e *fuzzEnv, b []byte) error {
		_, err := DecodeDecryptionShare(e.p, b)
		return err
	})
}

func FuzzDecodePublicKeyShare(f *testing.F) {
	fuzzDecoder(f, kindPublicKeyShare, func(e *fuzzEnv, b []byte) error {
		_, err := DecodePublicKeyShare(e.p, b)
		return err
	})
}

func FuzzDecodePublicKey(f *testing.F) {
	fuzzDecoder(f, kindPublicKey, func(e *fuzzEnv, b []byte) error {
		_, err := DecodePublicKey(e.p, b)
		return err
	})
}

func FuzzDecodeThresholdShare(f *testing.F) {
	fuzzDecoder(f, kindThresholdShare, func(e *fuzzEnv, b []byte) error {
		_, err := DecodeThresholdShare(e.p, b)
		return err
	})
}

func FuzzDecodeSeedCommitment(f *testing.F) {
	fuzzDecoder(f, kindSeedCommitment, func(e *fuzzEnv, b []byte) error {
		_, err := DecodeSeedCommitment(e.p, b)
		return err
	})
}

func FuzzDecodeSeedReveal(f *testing.F) {
	fuzzDecoder(f, kindSeedReveal, func(e *fuzzEnv, b []byte) error {
		_, err := DecodeSeedReveal(e.p, b)
		return err
	})
}

func FuzzRestoreParty(f *testing.F) {
	fuzzDecoder(f, kindPartyState, func(e *fuzzEnv, b []byte) error {
		_, err := RestoreParty(e.p, e.group, b)
		return err
	})
}
