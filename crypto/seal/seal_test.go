package seal

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
)

type party struct {
	id     string
	signer *Signer
	age    *age.X25519Identity
}

func newParty(t testing.TB, id string) party {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(id, key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return party{id: id, signer: s, age: a}
}

func parties(t testing.TB) (a, b, c party, keys Keys) {
	a, b, c = newParty(t, "hospital-a"), newParty(t, "hospital-b"), newParty(t, "hospital-c")
	keys = Keys{a.id: a.signer.Public(), b.id: b.signer.Public(), c.id: c.signer.Public()}
	return a, b, c, keys
}

func TestEnvelopeRoundTrip(t *testing.T) {
	a, b, _, keys := parties(t)
	payload := bytes.Repeat([]byte("share"), 1000)
	env, err := Seal(a.signer, b.id, b.age.Recipient(), "he/threshold-share", payload)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(env)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Header{From: a.id, To: b.id, Label: "he/threshold-share"}); h != want {
		t.Errorf("header: got %+v, want %+v", h, want)
	}
	if bytes.Contains(env, payload[:50]) {
		t.Error("payload visible in the envelope")
	}
	l, err := Open(env, b.id, b.age, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Payload, payload) || l.From != a.id || l.Label != "he/threshold-share" {
		t.Errorf("opened letter: from %q label %q payload %d bytes", l.From, l.Label, len(l.Payload))
	}
}

// TestEnvelopeOnlyRecipientOpens: the coordinator (which relays), the sender,
// a third hospital and a fresh key all fail to open an envelope for b.
func TestEnvelopeOnlyRecipientOpens(t *testing.T) {
	a, b, c, keys := parties(t)
	coordinator := newParty(t, "coordinator")
	env, err := Seal(a.signer, b.id, b.age.Recipient(), "share", []byte("secret share"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		id   age.Identity
	}{
		{"sender", a.age},
		{"other hospital", c.age},
		{"coordinator", coordinator.age},
		{"passphrase", mustScryptIdentity(t, "guess")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Even claiming to be b (the clear header says b), the key is wrong.
			_, err := Open(env, b.id, tc.id, keys)
			if !errors.Is(err, ErrDecrypt) {
				t.Errorf("Open with %s key: got %v, want ErrDecrypt", tc.name, err)
			}
		})
	}
	if _, err := Open(env, c.id, c.age, keys); !errors.Is(err, ErrWrongRecipient) {
		t.Errorf("Open as c: got %v, want ErrWrongRecipient", err)
	}
}

func mustScryptIdentity(t testing.TB, pass string) age.Identity {
	id, err := age.NewScryptIdentity(pass)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEnvelopeTampering(t *testing.T) {
	a, b, c, keys := parties(t)
	env, err := Seal(a.signer, b.id, b.age.Recipient(), "share", []byte("secret share"))
	if err != nil {
		t.Fatal(err)
	}
	// Flip every byte in turn: nothing may open, and nothing may panic.
	for i := range env {
		bad := bytes.Clone(env)
		bad[i] ^= 0x01
		if l, err := Open(bad, b.id, b.age, keys); err == nil {
			t.Fatalf("flipped byte %d: opened %+v", i, l.Header)
		}
	}
	// Re-address the clear header to c: b's signed copy disagrees.
	relabel := func(h Header) []byte {
		_, ct, err := parse(env)
		if err != nil {
			t.Fatal(err)
		}
		out := appendHeader(nil, envelopeMagic, h)
		out = append(out, byte(len(ct)), byte(len(ct)>>8), byte(len(ct)>>16), byte(len(ct)>>24))
		return append(out, ct...)
	}
	if _, err := Open(relabel(Header{From: a.id, To: b.id, Label: "other"}), b.id, b.age, keys); !errors.Is(err, ErrSignature) {
		t.Errorf("relabelled: got %v, want ErrSignature", err)
	}
	if _, err := Open(relabel(Header{From: c.id, To: b.id, Label: "share"}), b.id, b.age, keys); !errors.Is(err, ErrSignature) {
		t.Errorf("claimed sender c: got %v, want ErrSignature", err)
	}
	// Truncations.
	for _, n := range []int{0, 4, 9, len(env) / 2, len(env) - 1} {
		if _, err := Open(env[:n], b.id, b.age, keys); err == nil {
			t.Errorf("truncated to %d bytes: opened", n)
		}
	}
}

func TestEnvelopeWrongSigner(t *testing.T) {
	a, b, c, keys := parties(t)
	// c signs but claims nothing: its own id is in the envelope; a directory
	// that maps c to a's key rejects it, an empty directory does not know c.
	env, err := Seal(c.signer, b.id, b.age.Recipient(), "share", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(env, b.id, b.age, Keys{c.id: a.signer.Public()}); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong key for signer: got %v, want ErrSignature", err)
	}
	if _, err := Open(env, b.id, b.age, Keys{}); !errors.Is(err, ErrUnknownSigner) {
		t.Errorf("unknown signer: got %v, want ErrUnknownSigner", err)
	}
	// An impostor with its own key but a's name.
	imp := newParty(t, a.id)
	env, err = Seal(imp.signer, b.id, b.age.Recipient(), "share", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(env, b.id, b.age, keys); !errors.Is(err, ErrSignature) {
		t.Errorf("impostor: got %v, want ErrSignature", err)
	}
}

func TestAtRest(t *testing.T) {
	a, _, c, _ := parties(t)
	data := []byte("secret key share and checkpoint")
	ct, err := Encrypt(data, a.age.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decrypt(ct, a.age)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Decrypt: got %q, %v", got, err)
	}
	if _, err := Decrypt(ct, c.age); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong identity: got %v, want ErrDecrypt", err)
	}
	bad := bytes.Clone(ct)
	bad[len(bad)-3] ^= 1
	if _, err := Decrypt(bad, a.age); err == nil {
		t.Error("tampered file decrypted")
	}

	rcp, err := age.NewScryptRecipient("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	rcp.SetWorkFactor(10) // fast for tests; the default (18) is for real use
	ct, err = Encrypt(data, rcp)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Decrypt(ct, mustScryptIdentity(t, "correct horse battery staple")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("passphrase: got %q, %v", got, err)
	}
	if _, err := Decrypt(ct, mustScryptIdentity(t, "wrong")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong passphrase: got %v, want ErrDecrypt", err)
	}
}

func TestParseIdentities(t *testing.T) {
	a, _, _, _ := parties(t)
	file := "# hospital-a\n" + a.age.String() + "\n"
	ids, err := ParseIdentities(strings.NewReader(file))
	if err != nil || len(ids) != 1 {
		t.Fatalf("ParseIdentities: %d identities, %v", len(ids), err)
	}
	ct, _ := Encrypt([]byte("x"), a.age.Recipient())
	if _, err := Decrypt(ct, ids...); err != nil {
		t.Error(err)
	}
	if _, err := ParseIdentities(strings.NewReader("not a key")); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: got %v, want ErrMalformed", err)
	}
}

func TestArtifactSignature(t *testing.T) {
	a, b, _, keys := parties(t)
	model := bytes.Repeat([]byte{1, 2, 3}, 1000)
	sig, err := Sign(a.signer, "model/v3", model)
	if err != nil {
		t.Fatal(err)
	}
	if who, err := Verify(sig, "model/v3", model, keys); err != nil || who != a.id {
		t.Fatalf("Verify: %q, %v", who, err)
	}
	tests := []struct {
		name  string
		sig   []byte
		label string
		data  []byte
		keys  Keys
		want  error
	}{
		{"modified model", sig, "model/v3", append(bytes.Clone(model), 0), keys, ErrSignature},
		{"other label", sig, "model/v4", model, keys, ErrSignature},
		{"wrong key", sig, "model/v3", model, Keys{a.id: b.signer.Public()}, ErrSignature},
		{"unknown signer", sig, "model/v3", model, Keys{}, ErrUnknownSigner},
		{"truncated", sig[:9], "model/v3", model, keys, ErrMalformed},
		{"flipped signature", flip(sig, len(sig)-1), "model/v3", model, keys, ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(tc.sig, tc.label, tc.data, tc.keys); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func TestArguments(t *testing.T) {
	if _, err := NewSigner("", make([]byte, ed25519.PrivateKeySize)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty id: got %v", err)
	}
	if _, err := NewSigner("x", make([]byte, 3)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("short key: got %v", err)
	}
	a, b, _, _ := parties(t)
	if _, err := Seal(a.signer, b.id, b.age.Recipient(), "l", make([]byte, MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("big payload: got %v", err)
	}
	if _, err := Seal(a.signer, "", b.age.Recipient(), "l", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty recipient: got %v", err)
	}
}
