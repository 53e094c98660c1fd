package seal

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"filippo.io/age"
)

// An enrolment is how a hospital tells the others, through the coordinator, where to send
// it envelopes and how to check what it signs: its X25519 age recipient, a space, and its
// Ed25519 verifying key as "ed25519:" followed by standard padded base64. It travels as
// the medfed.v1 Enrolment's age_recipient, so the coordinator can check it at enrolment.
// Hybrid (post-quantum) age recipients are not supported here yet.

// MaxEnrolment bounds an enrolment string.
const MaxEnrolment = 1024

const signingKeyPrefix = "ed25519:"

// FormatEnrolment returns the enrolment string of recipient and key.
func FormatEnrolment(recipient *age.X25519Recipient, key ed25519.PublicKey) string {
	return recipient.String() + " " + signingKeyPrefix + base64.StdEncoding.EncodeToString(key)
}

// ParseEnrolment parses an enrolment string. An error wraps ErrMalformed (ErrTooLarge
// beyond MaxEnrolment) and says what was expected.
func ParseEnrolment(s string) (*age.X25519Recipient, ed25519.PublicKey, error) {
	if len(s) > MaxEnrolment {
		return nil, nil, fmt.Errorf("%w: enrolment of %d bytes, expected at most %d", ErrTooLarge, len(s), MaxEnrolment)
	}
	f := strings.Fields(s)
	if len(f) != 2 || !strings.HasPrefix(f[1], signingKeyPrefix) {
		return nil, nil, fmt.Errorf("%w: enrolment %.40q: expected \"age1... %s<base64>\"", ErrMalformed, s, signingKeyPrefix)
	}
	r, err := age.ParseX25519Recipient(f[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: enrolment recipient: %v", ErrMalformed, err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(f[1], signingKeyPrefix))
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("%w: enrolment signing key: expected %d bytes of standard base64", ErrMalformed, ed25519.PublicKeySize)
	}
	return r, ed25519.PublicKey(k), nil
}
