package seal

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
)

// MaxPayload bounds the plaintext of an envelope and the size of an identity
// file. Envelopes carry key-ceremony shares (about 112 KiB with the default
// he profile), so 16 MiB is generous.
const MaxPayload = 16 << 20

// maxID bounds party identifiers and labels.
const (
	maxID    = 255
	maxLabel = 1024
)

// Encrypt encrypts data at rest (a key share, a checkpoint) to the given age
// recipients: an X25519 or hybrid recipient from the hospital's identity
// file, or an age.ScryptRecipient made from a passphrase. age authenticates
// the ciphertext but not who wrote it; Sign the data as well when a
// substituted file must be detected.
func Encrypt(data []byte, recipients ...age.Recipient) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, fmt.Errorf("%w: expected at least one recipient, got none", ErrInvalidArgument)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return nil, fmt.Errorf("seal: age encrypt: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return nil, fmt.Errorf("seal: age encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("seal: age encrypt: %w", err)
	}
	return buf.Bytes(), nil
}

// Decrypt opens data encrypted by Encrypt with any of the identities. The
// plaintext is never longer than the ciphertext, so the input size bounds the
// allocation.
func Decrypt(ciphertext []byte, identities ...age.Identity) ([]byte, error) {
	if len(identities) == 0 {
		return nil, fmt.Errorf("%w: expected at least one identity, got none", ErrInvalidArgument)
	}
	r, err := age.Decrypt(bytes.NewReader(ciphertext), identities...)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) || errors.Is(err, age.ErrIncorrectIdentity) {
			return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(len(ciphertext))+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	return out, nil
}

// ParseIdentities reads an age identity file (X25519 or hybrid identities,
// one per line, # comments), refusing files over MaxPayload.
func ParseIdentities(r io.Reader) ([]age.Identity, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("seal: read identity file: %w", err)
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%w: identity file over %d bytes", ErrTooLarge, MaxPayload)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return ids, nil
}

// Signer signs envelopes and artifacts as the party ID with an Ed25519 key.
// It is safe for concurrent use.
type Signer struct {
	id  string
	key ed25519.PrivateKey
}

// NewSigner returns a Signer for id (1 to 255 bytes) and key.
func NewSigner(id string, key ed25519.PrivateKey) (*Signer, error) {
	if err := checkID("signer id", id); err != nil {
		return nil, err
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: expected a %d-byte ed25519 private key, got %d bytes",
			ErrInvalidArgument, ed25519.PrivateKeySize, len(key))
	}
	return &Signer{id: id, key: key}, nil
}

// ID returns the signer's party identifier.
func (s *Signer) ID() string { return s.id }

// Public returns the signer's verifying key, to publish in the roster.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// KeyDirectory finds a party's Ed25519 verifying key, typically from the
// federation roster.
type KeyDirectory interface {
	VerifyingKey(id string) (ed25519.PublicKey, error)
}

// Keys is a KeyDirectory backed by a map from party ID to key.
type Keys map[string]ed25519.PublicKey

// VerifyingKey returns the key of id, or ErrUnknownSigner.
func (k Keys) VerifyingKey(id string) (ed25519.PublicKey, error) {
	pub, ok := k[id]
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSigner, id)
	}
	return pub, nil
}

func checkID(what, id string) error {
	if len(id) < 1 || len(id) > maxID {
		return fmt.Errorf("%w: %s must have 1 to %d bytes, got %d", ErrInvalidArgument, what, maxID, len(id))
	}
	return nil
}

func verify(keys KeyDirectory, signer string, msg, sig []byte) error {
	pub, err := keys.VerifyingKey(signer)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnknownSigner, err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: signature by %q does not verify", ErrSignature, signer)
	}
	return nil
}
