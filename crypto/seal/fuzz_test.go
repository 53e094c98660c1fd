package seal

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"filippo.io/age"
)

// fuzzIdentity is a fixed test identity, so that seed envelopes in
// testdata/fuzz stay decryptable across runs. It protects nothing.
const fuzzIdentity = "AGE-SECRET-KEY-1ATX50GXSUWDSLVAAFVD6CJ8XXM3DRDYDLMLGG4XVYHPGSEPKC85SV975P0"

func fuzzParties(f *testing.F) (*age.X25519Identity, *Signer, Keys) {
	id, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewSigner("hospital-a", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		f.Fatal(err)
	}
	return id, s, Keys{"hospital-a": s.Public()}
}

// FuzzOpen feeds arbitrary bytes to the envelope decoder: it must return an
// error or a verified letter, never panic or allocate beyond MaxEnvelope.
func FuzzOpen(f *testing.F) {
	id, s, keys := fuzzParties(f)
	env, err := Seal(s, "hospital-b", id.Recipient(), "he/threshold-share", []byte("share bytes"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Open(b, "hospital-b", id, keys)
		if err == nil && l.From != "hospital-a" {
			t.Fatalf("opened a letter from %q", l.From)
		}
		if _, err := ParseHeader(b); err != nil && len(b) > MaxEnvelope+1 {
			return
		}
	})
}

// FuzzParseInner fuzzes the parser of decrypted envelope content, which a
// malicious sender controls.
func FuzzParseInner(f *testing.F) {
	f.Add(append(appendHeader(nil, innerMagic, Header{From: "a", To: "b", Label: "l"}), 1, 0, 0, 0, 'x'))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, signed, sig, err := parseInner(b)
		if err != nil {
			return
		}
		if len(sig) != ed25519.SignatureSize || len(signed)+len(sig) != len(b) || len(payload) > len(b) || h.From == "" {
			t.Fatalf("inconsistent parse: %d signed, %d sig, %d payload of %d", len(signed), len(sig), len(payload), len(b))
		}
	})
}

// FuzzVerify fuzzes the detached artifact signature decoder.
func FuzzVerify(f *testing.F) {
	_, s, keys := fuzzParties(f)
	sig, err := Sign(s, "model/v1", []byte("model"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sig)
	f.Fuzz(func(t *testing.T, b []byte) {
		if who, err := Verify(b, "model/v1", []byte("model"), keys); err == nil && who != "hospital-a" {
			t.Fatalf("verified as %q", who)
		}
	})
}
