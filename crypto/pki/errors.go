package pki

import "errors"

// Sentinel errors; functions wrap them with the file or value concerned,
// what was expected and what arrived. Check them with errors.Is.
var (
	// ErrInvalidID reports an ID outside 1-64 characters of [A-Za-z0-9._-]
	// starting with a letter or digit.
	ErrInvalidID = errors.New("pki: invalid id")
	// ErrInvalidRole reports a role other than coordinator, hospital or
	// operator.
	ErrInvalidRole = errors.New("pki: invalid role")
	// ErrInvalidRequest reports another bad argument (validity, names).
	ErrInvalidRequest = errors.New("pki: invalid request")
	// ErrNoIdentity reports a certificate without a valid medfed://role/id
	// URI, or with one that disagrees with its CommonName.
	ErrNoIdentity = errors.New("pki: certificate carries no medfed identity")
	// ErrNotPEM reports a file without the expected PEM block.
	ErrNotPEM = errors.New("pki: not PEM")
	// ErrKeyMismatch reports a private key that does not belong to the
	// certificate.
	ErrKeyMismatch = errors.New("pki: private key does not match certificate")
	// ErrExpired reports a certificate past its NotAfter time.
	ErrExpired = errors.New("pki: certificate expired")
	// ErrNotYetValid reports a certificate before its NotBefore time.
	ErrNotYetValid = errors.New("pki: certificate not yet valid")
	// ErrUntrusted reports a certificate that the consortium CA did not sign,
	// or that is not allowed for the use asked of it (a hospital certificate
	// offered as a server certificate, say).
	ErrUntrusted = errors.New("pki: certificate not trusted")
	// ErrNotCA reports a CA file whose certificate is not a CA certificate.
	ErrNotCA = errors.New("pki: not a CA certificate")
	// ErrWrongRole reports a peer whose role is not the one expected.
	ErrWrongRole = errors.New("pki: peer has the wrong role")
	// ErrNotVerified reports a TLS connection without a verified peer
	// certificate.
	ErrNotVerified = errors.New("pki: no verified peer certificate")
	// ErrSenderMismatch reports a message whose claimed sender differs from
	// the identity in the connection's certificate.
	ErrSenderMismatch = errors.New("pki: sender differs from certificate")
	// ErrExists reports an output file that already exists.
	ErrExists = errors.New("pki: file exists")
)
