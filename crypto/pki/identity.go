package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
)

// Role is the kind of party a certificate belongs to.
type Role string

// The roles of a consortium.
const (
	// RoleCoordinator is a coordinator node; its ID is the Raft node ID.
	RoleCoordinator Role = "coordinator"
	// RoleHospital is a hospital client node; its ID is the client ID used
	// in the federation roster and in every submission.
	RoleHospital Role = "hospital"
	// RoleOperator is a consortium operator's tool; its ID is the
	// operator's name.
	RoleOperator Role = "operator"
)

// URIScheme is the scheme of the identity URI, medfed://<role>/<id>.
const URIScheme = "medfed"

// MaxIDLen is the longest ID accepted.
const MaxIDLen = 64

// Roles lists the valid roles.
func Roles() []Role { return []Role{RoleCoordinator, RoleHospital, RoleOperator} }

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	switch r {
	case RoleCoordinator, RoleHospital, RoleOperator:
		return true
	}
	return false
}

// ParseRole returns s as a Role, or an error wrapping ErrInvalidRole.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("%w: %q, want coordinator, hospital or operator", ErrInvalidRole, s)
	}
	return r, nil
}

// ValidateID returns an error wrapping ErrInvalidID unless id is 1 to
// MaxIDLen characters from [A-Za-z0-9._-] starting with a letter or digit.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty, want 1-%d characters of [A-Za-z0-9._-]", ErrInvalidID, MaxIDLen)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: %d characters, want at most %d", ErrInvalidID, len(id), MaxIDLen)
	}
	for i, c := range id {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("%w: %q starts with %q, want a letter or digit", ErrInvalidID, id, c)
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%w: %q contains %q, want only [A-Za-z0-9._-]", ErrInvalidID, id, c)
		}
	}
	return nil
}

// IdentityURI returns medfed://<role>/<id>, the URI that binds a certificate
// to its holder. It does not validate role or id.
func IdentityURI(role Role, id string) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: string(role), Path: "/" + id}
}

// Identity returns the role and ID that cert is bound to, read from its
// medfed:// URI subject alternative name. It fails with ErrNoIdentity if
// there is no such URI, more than one, or one that is malformed, names an
// unknown role or an invalid ID, or disagrees with the CommonName. Identity
// does not verify the certificate; use it on verified chains only.
func Identity(cert *x509.Certificate) (Role, string, error) {
	var found *url.URL
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		if found != nil {
			return "", "", fmt.Errorf("%w: two identity URIs, %s and %s, want one", ErrNoIdentity, found, u)
		}
		found = u
	}
	if found == nil {
		return "", "", fmt.Errorf("%w: no %s:// URI among the subject alternative names of %q", ErrNoIdentity, URIScheme, cert.Subject.CommonName)
	}
	role := Role(found.Host)
	id := ""
	if len(found.Path) > 1 {
		id = found.Path[1:]
	}
	if !role.Valid() {
		return "", "", fmt.Errorf("%w: URI %s names role %q, want coordinator, hospital or operator", ErrNoIdentity, found, found.Host)
	}
	if err := ValidateID(id); err != nil {
		return "", "", fmt.Errorf("%w: URI %s: %v", ErrNoIdentity, found, err)
	}
	if found.String() != IdentityURI(role, id).String() || found.RawQuery != "" || found.Fragment != "" || found.User != nil {
		return "", "", fmt.Errorf("%w: URI %s, want exactly %s", ErrNoIdentity, found, IdentityURI(role, id))
	}
	if cert.Subject.CommonName != id {
		return "", "", fmt.Errorf("%w: CommonName %q differs from URI %s", ErrNoIdentity, cert.Subject.CommonName, found)
	}
	return role, id, nil
}

// IdentityFromTLS returns the role and ID of the peer of a TLS connection,
// from the leaf of its verified chain. It fails with ErrNotVerified when the
// peer's certificate was not verified (no certificate, or a configuration
// that skips verification), so an identity is only ever read from a
// certificate the consortium CA signed.
func IdentityFromTLS(state tls.ConnectionState) (Role, string, error) {
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", "", fmt.Errorf("%w: the connection has %d peer certificates and no verified chain", ErrNotVerified, len(state.PeerCertificates))
	}
	return Identity(state.VerifiedChains[0][0])
}

// CheckSender returns nil if the peer of the TLS connection holds the given
// role and ID. A server calls it before accepting a message that names its
// sender, such as a hospital's submission with its client ID: the claimed ID
// must be the one in the certificate. It fails with ErrSenderMismatch (or
// ErrNotVerified, ErrNoIdentity) otherwise.
func CheckSender(state tls.ConnectionState, role Role, id string) error {
	gotRole, gotID, err := IdentityFromTLS(state)
	if err != nil {
		return err
	}
	if gotRole != role || gotID != id {
		return fmt.Errorf("%w: message claims %s %q, certificate is %s %q", ErrSenderMismatch, role, id, gotRole, gotID)
	}
	return nil
}
