package seal

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"filippo.io/age"
)

// Envelope wire format, version 1 (little-endian lengths):
//
//	outer: "MFSE" | 1 | u8 len, from | u8 len, to | u16 len, label | u32 len, age ciphertext
//	inner: "MFSI" | 1 | u8 len, from | u8 len, to | u16 len, label | u32 len, payload | ed25519 signature
//
// The inner message is signed, then age-encrypted to the recipient
// (sign-then-encrypt). The signature covers a domain tag, sender, recipient,
// label and payload, so:
//   - only the recipient can read the payload or even the signature (the
//     coordinator relays ciphertext only);
//   - the recipient knows who wrote it: age alone does not authenticate the
//     sender, anyone holding the recipient's public key can encrypt to it;
//   - the recipient cannot re-encrypt the signed share to a third party and
//     pass it off as addressed to them (the recipient is signed), and a relay
//     cannot re-label it (the label is signed).
//
// Encrypt-then-sign was rejected: a signature on the ciphertext proves who
// sent the bytes, not who wrote the plaintext (a relay can strip it and sign
// the same ciphertext itself), and without the recipient inside the
// encryption a share can be surreptitiously forwarded. The clear outer header
// repeats sender, recipient and label so the coordinator can route; Open
// rejects an envelope whose clear header disagrees with the signed copy.
const (
	envelopeMagic = "MFSE"
	innerMagic    = "MFSI"
	wireVersion   = 1
	envelopeTag   = "medfed/seal/envelope/v1\x00"
)

// MaxEnvelope bounds the size of an envelope accepted by Open and
// ParseHeader: MaxPayload plus headers and age overhead.
const MaxEnvelope = MaxPayload + MaxPayload/64 + 64<<10

// Header is the clear part of an envelope, for routing.
type Header struct {
	From, To, Label string
}

// Letter is an opened envelope: its payload, whose sender has been verified.
type Letter struct {
	Header
	Payload []byte
}

func appendHeader(b []byte, magic string, h Header) []byte {
	b = append(b, magic...)
	b = append(b, wireVersion)
	b = appendStr8(b, h.From)
	b = appendStr8(b, h.To)
	return appendStr16(b, h.Label)
}

func (r *reader) header(magic string) Header {
	m := r.bytes(len(magic)+1, "magic")
	if r.err == nil && (string(m[:len(magic)]) != magic || m[len(magic)] != wireVersion) {
		r.fail("expected magic %q version %d, got %q version %d", magic, wireVersion, m[:len(magic)], m[len(magic)])
	}
	var h Header
	h.From = r.str("sender", 1, 1, maxID)
	h.To = r.str("recipient", 1, 1, maxID)
	h.Label = r.str("label", 2, 0, maxLabel)
	return h
}

// Seal signs payload as s, addressed to party to, and encrypts it to that
// party's age recipient. label says what the payload is (for example
// "he/threshold-share/epoch-1"); Open returns it, signed.
func Seal(s *Signer, to string, recipient age.Recipient, label string, payload []byte) ([]byte, error) {
	if err := checkID("recipient id", to); err != nil {
		return nil, err
	}
	if len(label) > maxLabel {
		return nil, fmt.Errorf("%w: label must have at most %d bytes, got %d", ErrInvalidArgument, maxLabel, len(label))
	}
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: payload of %d bytes, limit %d", ErrTooLarge, len(payload), MaxPayload)
	}
	h := Header{From: s.id, To: to, Label: label}
	inner := appendHeader(make([]byte, 0, 600+len(payload)+ed25519.SignatureSize), innerMagic, h)
	inner = binary.LittleEndian.AppendUint32(inner, uint32(len(payload)))
	inner = append(inner, payload...)
	inner = append(inner, ed25519.Sign(s.key, append([]byte(envelopeTag), inner...))...)

	ct, err := Encrypt(inner, recipient)
	if err != nil {
		return nil, err
	}
	env := appendHeader(make([]byte, 0, 600+len(ct)), envelopeMagic, h)
	env = binary.LittleEndian.AppendUint32(env, uint32(len(ct)))
	return append(env, ct...), nil
}

// parse splits an envelope into its clear header and age ciphertext.
func parse(env []byte) (Header, []byte, error) {
	if len(env) > MaxEnvelope {
		return Header{}, nil, fmt.Errorf("%w: envelope of %d bytes, limit %d", ErrTooLarge, len(env), MaxEnvelope)
	}
	r := &reader{b: env, what: "envelope"}
	h := r.header(envelopeMagic)
	n := r.u32("ciphertext length")
	ct := r.bytes(n, "ciphertext")
	r.end()
	if r.err != nil {
		return Header{}, nil, r.err
	}
	return h, ct, nil
}

// ParseHeader returns the clear routing header of an envelope. It proves
// nothing about the sender; only Open does.
func ParseHeader(env []byte) (Header, error) {
	h, _, err := parse(env)
	return h, err
}

// Open decrypts an envelope addressed to party me with its age identity,
// verifies the sender's signature with keys and returns the letter. It fails
// with ErrWrongRecipient for envelopes addressed to another party,
// ErrDecrypt when the identity does not open it or it was modified,
// ErrUnknownSigner or ErrSignature when the sender is not who it claims.
func Open(env []byte, me string, id age.Identity, keys KeyDirectory) (*Letter, error) {
	h, ct, err := parse(env)
	if err != nil {
		return nil, err
	}
	if h.To != me {
		return nil, fmt.Errorf("%w: addressed to %q, opened by %q", ErrWrongRecipient, h.To, me)
	}
	inner, err := Decrypt(ct, id)
	if err != nil {
		return nil, err
	}
	ih, payload, signed, sig, err := parseInner(inner)
	if err != nil {
		return nil, err
	}
	if ih != h {
		return nil, fmt.Errorf("%w: clear header %+v does not match signed header %+v", ErrSignature, h, ih)
	}
	if err := verify(keys, ih.From, append([]byte(envelopeTag), signed...), sig); err != nil {
		return nil, err
	}
	return &Letter{Header: ih, Payload: payload}, nil
}

// parseInner splits the decrypted content into header, payload, the signed
// bytes and the signature.
func parseInner(inner []byte) (h Header, payload, signed, sig []byte, err error) {
	r := &reader{b: inner, what: "envelope content"}
	h = r.header(innerMagic)
	n := r.u32("payload length")
	payload = r.bytes(n, "payload")
	signed = inner[:len(inner)-len(r.b)]
	sig = r.bytes(ed25519.SignatureSize, "signature")
	r.end()
	if r.err != nil {
		return Header{}, nil, nil, nil, r.err
	}
	return h, payload, signed, sig, nil
}
