package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
)

// Validity defaults, used when a validity of zero is given.
const (
	// DefaultCAValidity is how long a new CA lasts: one year.
	DefaultCAValidity = 365 * 24 * time.Hour
	// DefaultLeafValidity is how long an issued certificate lasts: 90 days.
	DefaultLeafValidity = 90 * 24 * time.Hour
	// ClockSkew is how far before the issue time a certificate becomes
	// valid, so that parties whose clocks run a little behind accept it.
	ClockSkew = 5 * time.Minute
)

// CA is a consortium certificate authority: a self-signed certificate and its
// private key. A CA is immutable and safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

// NewCA makes a CA named name (the Subject CommonName and Organization of
// its certificate) with a fresh ECDSA P-256 key, valid from now minus
// ClockSkew for validity (DefaultCAValidity if zero).
func NewCA(name string, validity time.Duration, now time.Time) (*CA, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	if validity == 0 {
		validity = DefaultCAValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("%w: CA validity %s, want a positive duration", ErrInvalidRequest, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generating CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{name}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: signing CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parsing new CA certificate: %w", err)
	}
	return &CA{cert: cert, certPEM: pemCert(der), key: key}, nil
}

// LoadCA reads a CA certificate and its private key from PEM files, as
// written by CA.Save. It fails, naming the file, if either is missing or not
// PEM, if the certificate is not a CA certificate, or if the key does not
// match it. An expired CA loads (so that it can be inspected); Issue refuses
// to use it.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("CA certificate %s: %w: %d certificates, want exactly 1", certPath, ErrInvalidRequest, len(certs))
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA certificate %s: %w: %q cannot sign certificates", certPath, ErrNotCA, cert.Subject.CommonName)
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	if err := matchKey(cert, key); err != nil {
		return nil, fmt.Errorf("CA key %s and certificate %s: %w", keyPath, certPath, err)
	}
	return &CA{cert: cert, certPEM: pemCert(cert.Raw), key: key}, nil
}

// Certificate returns the CA's certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA's certificate in PEM form: the ca.crt that every
// party needs to verify its peers.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// Save writes the CA certificate to certPath (mode 0644) and its private key
// to keyPath (mode 0600). Unless overwrite is set it fails with ErrExists,
// writing nothing, if either file exists.
func (ca *CA) Save(certPath, keyPath string, overwrite bool) error {
	keyPEM, err := pemKey(ca.key)
	if err != nil {
		return err
	}
	return SaveKeyPair(certPath, ca.certPEM, keyPath, keyPEM, overwrite)
}

// IssueRequest describes a certificate to issue.
type IssueRequest struct {
	// Role of the holder (required).
	Role Role
	// ID is the node ID, hospital client ID or operator name (required);
	// see ValidateID.
	ID string
	// DNSNames and IPAddresses are the names a server is reached by. A
	// coordinator needs at least one of them; others may leave them empty.
	DNSNames    []string
	IPAddresses []net.IP
	// Validity of the certificate; zero means DefaultLeafValidity. It may
	// not reach past the CA's own expiry.
	Validity time.Duration
	// Now is the issue time; zero means time.Now(). The certificate is
	// valid from Now minus ClockSkew.
	Now time.Time
}

// Issue makes a fresh ECDSA P-256 key and a certificate for it, signed by
// the CA, that binds the key to req.Role and req.ID (see the package
// documentation). It returns both in PEM form; the key is PKCS #8.
func (ca *CA) Issue(req IssueRequest) (certPEM, keyPEM []byte, err error) {
	if !req.Role.Valid() {
		return nil, nil, fmt.Errorf("%w: %q, want coordinator, hospital or operator", ErrInvalidRole, req.Role)
	}
	if err := ValidateID(req.ID); err != nil {
		return nil, nil, err
	}
	for _, d := range req.DNSNames {
		if err := validateDNSName(d); err != nil {
			return nil, nil, err
		}
	}
	for _, ip := range req.IPAddresses {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, nil, fmt.Errorf("%w: IP address of %d bytes, want 4 or 16", ErrInvalidRequest, len(ip))
		}
	}
	if req.Role == RoleCoordinator && len(req.DNSNames) == 0 && len(req.IPAddresses) == 0 {
		return nil, nil, fmt.Errorf("%w: coordinator %q has no DNS name or IP address; clients check the server's name, so give at least one", ErrInvalidRequest, req.ID)
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultLeafValidity
	}
	if validity < 0 {
		return nil, nil, fmt.Errorf("%w: validity %s, want a positive duration", ErrInvalidRequest, validity)
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	notAfter := now.Add(validity)
	if now.After(ca.cert.NotAfter) {
		return nil, nil, fmt.Errorf("CA %q: %w at %s (now %s); make a new CA", ca.cert.Subject.CommonName, ErrExpired, ca.cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if notAfter.After(ca.cert.NotAfter) {
		return nil, nil, fmt.Errorf("%w: certificate would be valid until %s, after the CA expires at %s; shorten the validity or renew the CA", ErrInvalidRequest, notAfter.UTC().Format(time.RFC3339), ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generating key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if req.Role == RoleCoordinator {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         req.ID,
			Organization:       ca.cert.Subject.Organization,
			OrganizationalUnit: []string{string(req.Role)},
		},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
		URIs:                  []*url.URL{IdentityURI(req.Role, req.ID)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: signing certificate for %s %q: %w", req.Role, req.ID, err)
	}
	keyPEM, err = pemKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemCert(der), keyPEM, nil
}

// SaveKeyPair writes certPEM to certPath (mode 0644) and keyPEM to keyPath
// (mode 0600). Unless overwrite is set it fails with ErrExists, writing
// nothing, if either file exists.
func SaveKeyPair(certPath string, certPEM []byte, keyPath string, keyPEM []byte, overwrite bool) error {
	if certPath == keyPath {
		return fmt.Errorf("%w: certificate and key would both go to %s", ErrInvalidRequest, certPath)
	}
	if !overwrite {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s: %w (use --force to replace it)", p, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := writeNew(keyPath, keyPEM, 0o600, overwrite); err != nil {
		return err
	}
	return writeNew(certPath, certPEM, 0o644, overwrite)
}

// writeNew creates path with perm, replacing an existing file only if
// overwrite is set. The file is created afresh so that perm always applies.
func writeNew(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	if overwrite {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w (use --force to replace it)", path, ErrExists)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never zero
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func validateName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%w: CA name %q has %d bytes, want 1-64", ErrInvalidRequest, name, len(name))
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: CA name %q contains the unprintable %U", ErrInvalidRequest, name, r)
		}
	}
	return nil
}

// validateDNSName accepts host names (and a leading "*." wildcard) of
// letters, digits, hyphens and dots.
func validateDNSName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: DNS name %q %s", ErrInvalidRequest, name, why)
	}
	if name == "" || len(name) > 253 {
		return bad("is empty or longer than 253 bytes")
	}
	host := strings.TrimPrefix(name, "*.")
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return bad("has an empty label or one longer than 63 bytes")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("has a label that starts or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return bad(fmt.Sprintf("contains %q, want letters, digits, hyphens and dots", c))
			}
		}
	}
	return nil
}
