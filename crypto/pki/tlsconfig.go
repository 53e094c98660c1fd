package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// ServerTLSConfig returns the TLS configuration of a server (a coordinator,
// for its gRPC, Raft and HTTP listeners): it presents the certificate in
// certFile with the key in keyFile, and requires every client to present a
// certificate signed by a CA in caFile that carries a MedFed identity. It
// accepts TLS 1.3 only.
//
// It checks the files now and fails with an error naming the file and the
// problem: a missing file, no PEM block (ErrNotPEM), a key that does not
// match the certificate (ErrKeyMismatch), an expired certificate
// (ErrExpired), or a certificate not signed by the CA or without server
// authentication, which only coordinators have (ErrUntrusted).
//
// After the handshake, read the client's identity with IdentityFromTLS or
// check a claimed sender with CheckSender. The server accepts any role;
// deciding what each role may do is the caller's business.
func ServerTLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	now := time.Now()
	pool, err := readCAPool(caFile, now)
	if err != nil {
		return nil, err
	}
	cert, err := loadKeyPair(certFile, keyFile, caFile, pool, x509.ExtKeyUsageServerAuth, now)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, _, err := IdentityFromTLS(cs)
			return err
		},
	}, nil
}

// ClientTLSConfig returns the TLS configuration of a client (a hospital, an
// operator, or a coordinator dialling a peer): it presents the certificate in
// certFile with the key in keyFile, and accepts only a server whose
// certificate is signed by a CA in caFile, is valid for serverName, and
// belongs to a coordinator. An empty serverName leaves the name to the
// dialler (tls.Dial and gRPC take it from the address). It accepts TLS 1.3
// only, and checks the files now with the same errors as ServerTLSConfig.
func ClientTLSConfig(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	now := time.Now()
	pool, err := readCAPool(caFile, now)
	if err != nil {
		return nil, err
	}
	cert, err := loadKeyPair(certFile, keyFile, caFile, pool, x509.ExtKeyUsageClientAuth, now)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		RootCAs:          pool,
		ServerName:       serverName,
		VerifyConnection: requireRole(RoleCoordinator),
	}, nil
}

// requireRole returns a VerifyConnection hook that accepts only a peer with
// the given role.
func requireRole(want Role) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		role, id, err := IdentityFromTLS(cs)
		if err != nil {
			return err
		}
		if role != want {
			return fmt.Errorf("%w: peer is %s %q, want a %s", ErrWrongRole, role, id, want)
		}
		return nil
	}
}
