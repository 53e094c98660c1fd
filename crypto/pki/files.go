package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// readCerts returns every CERTIFICATE block of the PEM file at path, in
// order, failing if there is none.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	var certs []*x509.Certificate
	var other []string
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			other = append(other, b.Type)
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: block %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(other) > 0 {
			return nil, fmt.Errorf("certificate %s: %w: found %q blocks, want CERTIFICATE (is this a key file?)", path, ErrNotPEM, other)
		}
		return nil, fmt.Errorf("certificate %s: %w: no CERTIFICATE block in %d bytes", path, ErrNotPEM, len(data))
	}
	return certs, nil
}

// readKey returns the first private key of the PEM file at path (PKCS #8,
// SEC 1 or PKCS #1).
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	var types []string
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var key any
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("private key %s: %w: the key is encrypted, want an unencrypted PKCS #8 key", path, ErrNotPEM)
		default:
			types = append(types, b.Type)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("private key %s: %s block: %w", path, b.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key %s: %w: key of type %T cannot sign", path, ErrNotPEM, key)
		}
		return signer, nil
	}
	if len(types) > 0 {
		return nil, fmt.Errorf("private key %s: %w: found %q blocks, want PRIVATE KEY (is this a certificate file?)", path, ErrNotPEM, types)
	}
	return nil, fmt.Errorf("private key %s: %w: no PRIVATE KEY block in %d bytes", path, ErrNotPEM, len(data))
}

// matchKey checks that key is the private key of cert.
func matchKey(cert *x509.Certificate, key crypto.Signer) error {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("%w: the key is not the one certified for %q", ErrKeyMismatch, cert.Subject.CommonName)
	}
	return nil
}

// checkTime fails with ErrExpired or ErrNotYetValid if cert is not valid at
// now.
func checkTime(cert *x509.Certificate, now time.Time) error {
	if now.After(cert.NotAfter) {
		return fmt.Errorf("%w: %q expired at %s (now %s)", ErrExpired, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("%w: %q is valid from %s (now %s)", ErrNotYetValid, cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// readCAPool reads one or more CA certificates (several during a CA
// rotation) into a pool.
func readCAPool(path string, now time.Time) (*x509.CertPool, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("CA certificate %s: %w: %q is a leaf certificate", path, ErrNotCA, c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	var firstErr error
	for _, c := range certs {
		err := checkTime(c, now)
		if err == nil {
			return pool, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, fmt.Errorf("CA certificate %s: no CA is valid now: %w", path, firstErr)
}

// loadKeyPair reads a certificate (with any intermediates after it) and its
// key, and checks that the pair is usable for usage under the CA in pool at
// now and carries a MedFed identity.
func loadKeyPair(certFile, keyFile, caFile string, pool *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) (tls.Certificate, error) {
	certs, err := readCerts(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf := certs[0]
	if err := matchKey(leaf, key); err != nil {
		return tls.Certificate{}, fmt.Errorf("key %s and certificate %s: %w", keyFile, certFile, err)
	}
	if err := checkTime(leaf, now); err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s: %w: %s", certFile, ErrUntrusted, explainVerify(err, caFile, leaf, usage))
	}
	if _, _, err := Identity(leaf); err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// explainVerify turns an x509 verification error into a sentence that says
// what was expected.
func explainVerify(err error, caFile string, leaf *x509.Certificate, usage x509.ExtKeyUsage) string {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Sprintf("%q (issued by %q) is not signed by the CA in %s", leaf.Subject.CommonName, leaf.Issuer.CommonName, caFile)
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
		want := "client"
		if usage == x509.ExtKeyUsageServerAuth {
			want = "server"
		}
		return fmt.Sprintf("%q may not be used for %s authentication (only coordinator certificates serve)", leaf.Subject.CommonName, want)
	}
	return err.Error()
}
