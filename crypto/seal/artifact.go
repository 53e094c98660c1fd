package seal

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
)

// Detached artifact signature, version 1:
//
//	"MFSA" | 1 | u8 len, signer | u16 len, label | sha256(data) | ed25519 signature
//
// The signature covers a domain tag, signer, label and digest. Use it for
// model artifacts (safetensors files) and checkpoints: age encryption at rest
// does not prove who wrote a file.
const (
	artifactMagic = "MFSA"
	artifactTag   = "medfed/seal/artifact/v1\x00"
)

// Sign returns a detached signature of data by s under label (for example
// "model/v12").
func Sign(s *Signer, label string, data []byte) ([]byte, error) {
	if len(label) > maxLabel {
		return nil, fmt.Errorf("%w: label must have at most %d bytes, got %d", ErrInvalidArgument, maxLabel, len(label))
	}
	sum := sha256.Sum256(data)
	b := append([]byte(artifactMagic), wireVersion)
	b = appendStr8(b, s.id)
	b = appendStr16(b, label)
	b = append(b, sum[:]...)
	return append(b, ed25519.Sign(s.key, append([]byte(artifactTag), b...))...), nil
}

// Verify checks a detached signature of data under label and returns the
// signer's ID.
func Verify(sig []byte, label string, data []byte, keys KeyDirectory) (string, error) {
	r := &reader{b: sig, what: "artifact signature"}
	m := r.bytes(len(artifactMagic)+1, "magic")
	if r.err == nil && (string(m[:4]) != artifactMagic || m[4] != wireVersion) {
		r.fail("expected magic %q version %d, got %q version %d", artifactMagic, wireVersion, m[:4], m[4])
	}
	signer := r.str("signer", 1, 1, maxID)
	gotLabel := r.str("label", 2, 0, maxLabel)
	digest := r.bytes(sha256.Size, "digest")
	signed := len(sig) - len(r.b)
	s := r.bytes(ed25519.SignatureSize, "signature")
	r.end()
	if r.err != nil {
		return "", r.err
	}
	if gotLabel != label {
		return "", fmt.Errorf("%w: signature is for label %q, expected %q", ErrSignature, gotLabel, label)
	}
	if sum := sha256.Sum256(data); string(sum[:]) != string(digest) {
		return "", fmt.Errorf("%w: data digest %x does not match signed digest %x", ErrSignature, sum[:8], digest[:8])
	}
	if err := verify(keys, signer, append([]byte(artifactTag), sig[:signed]...), s); err != nil {
		return "", err
	}
	return signer, nil
}
