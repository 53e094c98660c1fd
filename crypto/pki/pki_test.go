package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustIssue(t *testing.T, ca *CA, req IssueRequest) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := ca.Issue(req)
	if err != nil {
		t.Fatalf("Issue(%+v): %v", req, err)
	}
	return c, k
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// files writes a CA certificate and an issued pair and returns their paths.
func files(t *testing.T, ca *CA, certPEM, keyPEM []byte) (certFile, keyFile, caFile string) {
	t.Helper()
	dir := t.TempDir()
	return writeFile(t, dir, "x.crt", certPEM), writeFile(t, dir, "x.key", keyPEM), writeFile(t, dir, "ca.crt", ca.CertPEM())
}

func parsePEM(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signRaw signs an arbitrary leaf template with ca, bypassing Issue's checks.
func signRaw(t *testing.T, ca *CA, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := newSerial()
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pemKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemCert(der), kp
}

// rawClient builds a client configuration without ClientTLSConfig's checks,
// to offer the server certificates that ClientTLSConfig would refuse.
func rawClient(t *testing.T, ca *CA, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "localhost"}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		// Offer the certificate whatever CAs the server asks for (a Go
		// client would otherwise send none), so the server must refuse it.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg
}

type handshakeResult struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

// handshake runs a real TLS 1.3 handshake over loopback TCP and one byte of
// application data from server to client, which surfaces a server's refusal
// of the client certificate on the client side too.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		tc := tls.Server(c, serverCfg)
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{1})
		}
		done <- result{tc.ConnectionState(), err}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(deadline)
	tc := tls.Client(conn, clientCfg)
	var res handshakeResult
	res.clientErr = tc.Handshake()
	if res.clientErr == nil {
		_, res.clientErr = io.ReadFull(tc, make([]byte, 1))
	}
	res.client = tc.ConnectionState()
	conn.Close()
	r := <-done
	res.server, res.serverErr = r.state, r.err
	return res
}

// consortium is a CA with a coordinator server configuration.
type consortium struct {
	ca     *CA
	server *tls.Config
}

func newConsortium(t *testing.T) consortium {
	t.Helper()
	ca := newTestCA(t, "Test consortium")
	c, k := mustIssue(t, ca, IssueRequest{Role: RoleCoordinator, ID: "node1", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	srv, err := ServerTLSConfig(files(t, ca, c, k))
	if err != nil {
		t.Fatal(err)
	}
	return consortium{ca, srv}
}

func (cs consortium) client(t *testing.T, role Role, id string) *tls.Config {
	t.Helper()
	req := IssueRequest{Role: role, ID: id}
	if role == RoleCoordinator {
		req.DNSNames = []string{id + ".medfed.test"}
	}
	c, k := mustIssue(t, cs.ca, req)
	cf, kf, caf := files(t, cs.ca, c, k)
	cfg, err := ClientTLSConfig(cf, kf, caf, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestHandshakeAccepts(t *testing.T) {
	cs := newConsortium(t)
	tests := []struct {
		role Role
		id   string
	}{
		{RoleHospital, "h1"},
		{RoleOperator, "alice"},
		{RoleCoordinator, "node2"},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			r := handshake(t, cs.server, cs.client(t, tt.role, tt.id))
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("server error %v, client error %v; want both nil", r.serverErr, r.clientErr)
			}
			if r.server.Version != tls.VersionTLS13 {
				t.Errorf("version %x, want TLS 1.3", r.server.Version)
			}
			role, id, err := IdentityFromTLS(r.server)
			if err != nil || role != tt.role || id != tt.id {
				t.Errorf("server sees (%q, %q, %v), want (%q, %q, nil)", role, id, err, tt.role, tt.id)
			}
			role, id, err = IdentityFromTLS(r.client)
			if err != nil || role != RoleCoordinator || id != "node1" {
				t.Errorf("client sees (%q, %q, %v), want (coordinator, node1, nil)", role, id, err)
			}
			if err := CheckSender(r.server, tt.role, tt.id); err != nil {
				t.Errorf("CheckSender(own identity) = %v, want nil", err)
			}
			if err := CheckSender(r.server, RoleHospital, "h2"); !errors.Is(err, ErrSenderMismatch) {
				t.Errorf("CheckSender(hospital, h2) = %v, want ErrSenderMismatch", err)
			}
		})
	}
}

func TestHandshakeRefuses(t *testing.T) {
	cs := newConsortium(t)
	other := newTestCA(t, "Other consortium")
	otherC, otherK := mustIssue(t, other, IssueRequest{Role: RoleHospital, ID: "h1"})
	expC, expK := mustIssue(t, cs.ca, IssueRequest{Role: RoleHospital, ID: "h1", Now: time.Now().Add(-48 * time.Hour), Validity: time.Hour})
	anonC, anonK := signRaw(t, cs.ca, &x509.Certificate{Subject: pkix.Name{CommonName: "h1"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	tests := []struct {
		name      string
		client    *tls.Config
		serverErr error  // sentinel expected in the server's error, if any
		says      string // text expected in the server's error
	}{
		{"another CA", rawClient(t, cs.ca, otherC, otherK), nil, "unknown authority"},
		{"expired", rawClient(t, cs.ca, expC, expK), nil, "expired"},
		{"no certificate", rawClient(t, cs.ca, nil, nil), nil, "didn't provide a certificate"},
		{"no identity URI", rawClient(t, cs.ca, anonC, anonK), ErrNoIdentity, "no medfed:// URI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := handshake(t, cs.server, tt.client)
			if r.serverErr == nil {
				t.Fatal("server accepted the client, want refusal")
			}
			if r.clientErr == nil {
				t.Error("client saw no error, want the server's refusal")
			}
			if tt.serverErr != nil && !errors.Is(r.serverErr, tt.serverErr) {
				t.Errorf("server error %v, want %v", r.serverErr, tt.serverErr)
			}
			if !strings.Contains(r.serverErr.Error(), tt.says) {
				t.Errorf("server error %q does not say %q", r.serverErr, tt.says)
			}
		})
	}
}

// A hospital certificate cannot serve: a client refuses it, so a hospital
// cannot pose as the coordinator.
func TestClientRefusesNonCoordinatorServer(t *testing.T) {
	cs := newConsortium(t)
	c, k := mustIssue(t, cs.ca, IssueRequest{Role: RoleHospital, ID: "h9", DNSNames: []string{"localhost"}})
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cs.ca.cert)
	srv := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	r := handshake(t, srv, cs.client(t, RoleHospital, "h1"))
	if r.clientErr == nil {
		t.Fatal("client accepted a hospital certificate as server")
	}
	// Even a server-capable certificate of the wrong role is refused.
	cfg := cs.client(t, RoleOperator, "op")
	state := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{parsePEM(t, c)}}}
	if err := cfg.VerifyConnection(state); !errors.Is(err, ErrWrongRole) {
		t.Errorf("VerifyConnection(hospital peer) = %v, want ErrWrongRole", err)
	}
}

func TestIdentityFromTLSUnverified(t *testing.T) {
	_, _, err := IdentityFromTLS(tls.ConnectionState{})
	if !errors.Is(err, ErrNotVerified) {
		t.Errorf("got %v, want ErrNotVerified", err)
	}
	if err := CheckSender(tls.ConnectionState{}, RoleHospital, "h1"); !errors.Is(err, ErrNotVerified) {
		t.Errorf("CheckSender: got %v, want ErrNotVerified", err)
	}
}

func TestIssueBindsIdentity(t *testing.T) {
	ca := newTestCA(t, "Test consortium")
	tests := []struct {
		role      Role
		usages    []x509.ExtKeyUsage
		dns       []string
		wantNames bool
	}{
		{RoleCoordinator, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, []string{"coord.example"}, true},
		{RoleHospital, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, false},
		{RoleOperator, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			c, _ := mustIssue(t, ca, IssueRequest{Role: tt.role, ID: "x-1.a_b", DNSNames: tt.dns})
			cert := parsePEM(t, c)
			role, id, err := Identity(cert)
			if err != nil || role != tt.role || id != "x-1.a_b" {
				t.Fatalf("Identity = (%q, %q, %v), want (%q, x-1.a_b, nil)", role, id, err, tt.role)
			}
			if got, want := cert.URIs[0].String(), "medfed://"+string(tt.role)+"/x-1.a_b"; got != want {
				t.Errorf("URI %s, want %s", got, want)
			}
			if cert.Subject.CommonName != "x-1.a_b" {
				t.Errorf("CommonName %q", cert.Subject.CommonName)
			}
			if len(cert.ExtKeyUsage) != len(tt.usages) {
				t.Fatalf("ExtKeyUsage %v, want %v", cert.ExtKeyUsage, tt.usages)
			}
			for i := range tt.usages {
				if cert.ExtKeyUsage[i] != tt.usages[i] {
					t.Errorf("ExtKeyUsage %v, want %v", cert.ExtKeyUsage, tt.usages)
				}
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
				t.Errorf("public key %T, want ECDSA", cert.PublicKey)
			}
		})
	}
}

func TestIssueRejects(t *testing.T) {
	ca := newTestCA(t, "Test consortium")
	tests := []struct {
		name string
		req  IssueRequest
		want error
	}{
		{"space in id", IssueRequest{Role: RoleHospital, ID: "h 1"}, ErrInvalidID},
		{"slash in id", IssueRequest{Role: RoleHospital, ID: "h/1"}, ErrInvalidID},
		{"dot dot", IssueRequest{Role: RoleHospital, ID: ".."}, ErrInvalidID},
		{"leading dash", IssueRequest{Role: RoleHospital, ID: "-h"}, ErrInvalidID},
		{"unicode", IssueRequest{Role: RoleHospital, ID: "hôpital"}, ErrInvalidID},
		{"empty id", IssueRequest{Role: RoleHospital}, ErrInvalidID},
		{"long id", IssueRequest{Role: RoleHospital, ID: strings.Repeat("a", 65)}, ErrInvalidID},
		{"bad role", IssueRequest{Role: "admin", ID: "h1"}, ErrInvalidRole},
		{"empty role", IssueRequest{ID: "h1"}, ErrInvalidRole},
		{"coordinator without names", IssueRequest{Role: RoleCoordinator, ID: "n1"}, ErrInvalidRequest},
		{"bad DNS name", IssueRequest{Role: RoleCoordinator, ID: "n1", DNSNames: []string{"a b.example"}}, ErrInvalidRequest},
		{"negative validity", IssueRequest{Role: RoleHospital, ID: "h1", Validity: -time.Hour}, ErrInvalidRequest},
		{"outlives CA", IssueRequest{Role: RoleHospital, ID: "h1", Validity: 2 * DefaultCAValidity}, ErrInvalidRequest},
		{"CA expired", IssueRequest{Role: RoleHospital, ID: "h1", Now: time.Now().Add(2 * DefaultCAValidity)}, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, k, err := ca.Issue(tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if c != nil || k != nil {
				t.Error("returned PEM with an error")
			}
			t.Log(err)
		})
	}
	if err := ValidateID(strings.Repeat("a", 64)); err != nil {
		t.Errorf("64-character ID: %v", err)
	}
}

func TestIdentityErrors(t *testing.T) {
	ca := newTestCA(t, "Test consortium")
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		cn   string
		uris []*url.URL
	}{
		{"no URI", "h1", nil},
		{"other scheme only", "h1", []*url.URL{u("spiffe://medfed/hospital/h1")}},
		{"unknown role", "h1", []*url.URL{u("medfed://admin/h1")}},
		{"bad id", "h 1", []*url.URL{u("medfed://hospital/h%201")}},
		{"nested path", "h1", []*url.URL{u("medfed://hospital/h1/x")}},
		{"query", "h1", []*url.URL{u("medfed://hospital/h1?x=1")}},
		{"port", "h1", []*url.URL{u("medfed://hospital:1/h1")}},
		{"CommonName differs", "h2", []*url.URL{u("medfed://hospital/h1")}},
		{"two identities", "h1", []*url.URL{u("medfed://hospital/h1"), u("medfed://operator/h1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := signRaw(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: tt.cn}, URIs: tt.uris})
			role, id, err := Identity(parsePEM(t, c))
			if !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("got (%q, %q, %v), want ErrNoIdentity", role, id, err)
			}
			t.Log(err)
		})
	}
}

func TestTLSConfigFileErrors(t *testing.T) {
	cs := newConsortium(t)
	ca := cs.ca
	dir := t.TempDir()
	coordC, coordK := mustIssue(t, ca, IssueRequest{Role: RoleCoordinator, ID: "node1", DNSNames: []string{"localhost"}})
	hospC, hospK := mustIssue(t, ca, IssueRequest{Role: RoleHospital, ID: "h1"})
	_, otherK := mustIssue(t, ca, IssueRequest{Role: RoleHospital, ID: "h2"})
	expC, expK := mustIssue(t, ca, IssueRequest{Role: RoleHospital, ID: "old", Now: time.Now().Add(-48 * time.Hour), Validity: time.Hour})
	other := newTestCA(t, "Other consortium")
	foreignC, foreignK := mustIssue(t, other, IssueRequest{Role: RoleHospital, ID: "h1"})

	caFile := writeFile(t, dir, "ca.crt", ca.CertPEM())
	coordCrt := writeFile(t, dir, "coord.crt", coordC)
	coordKey := writeFile(t, dir, "coord.key", coordK)
	hospCrt := writeFile(t, dir, "h1.crt", hospC)
	hospKey := writeFile(t, dir, "h1.key", hospK)
	h2Key := writeFile(t, dir, "h2.key", otherK)
	expCrt := writeFile(t, dir, "old.crt", expC)
	expKey := writeFile(t, dir, "old.key", expK)
	foreignCrt := writeFile(t, dir, "foreign.crt", foreignC)
	foreignKey := writeFile(t, dir, "foreign.key", foreignK)
	garbage := writeFile(t, dir, "garbage.crt", []byte("not a certificate\n"))
	missing := filepath.Join(dir, "missing.crt")

	server := func(c, k, a string) error { _, err := ServerTLSConfig(c, k, a); return err }
	client := func(c, k, a string) error { _, err := ClientTLSConfig(c, k, a, "localhost"); return err }
	tests := []struct {
		name         string
		load         func(c, k, a string) error
		cert, key    string
		ca           string
		want         error
		wantMentions string
	}{
		{"missing cert", client, missing, hospKey, caFile, fs.ErrNotExist, "missing.crt"},
		{"missing key", client, hospCrt, filepath.Join(dir, "missing.key"), caFile, fs.ErrNotExist, "missing.key"},
		{"missing CA", client, hospCrt, hospKey, missing, fs.ErrNotExist, "missing.crt"},
		{"cert not PEM", client, garbage, hospKey, caFile, ErrNotPEM, "garbage.crt"},
		{"key not PEM", client, hospCrt, garbage, caFile, ErrNotPEM, "garbage.crt"},
		{"CA not PEM", client, hospCrt, hospKey, garbage, ErrNotPEM, "garbage.crt"},
		{"files swapped", client, hospKey, hospCrt, caFile, ErrNotPEM, "key file"},
		{"key mismatch", client, hospCrt, h2Key, caFile, ErrKeyMismatch, "h2.key"},
		{"expired", client, expCrt, expKey, caFile, ErrExpired, "old.crt"},
		{"other CA", client, foreignCrt, foreignKey, caFile, ErrUntrusted, "not signed by the CA in " + caFile},
		{"CA file is a leaf", client, hospCrt, hospKey, hospCrt, ErrNotCA, "h1.crt"},
		{"hospital as server", server, hospCrt, hospKey, caFile, ErrUntrusted, "server authentication"},
		{"server ok", server, coordCrt, coordKey, caFile, nil, ""},
		{"client ok", client, hospCrt, hospKey, caFile, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.load(tt.cert, tt.key, tt.ca)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMentions) {
				t.Errorf("error %q does not mention %q", err, tt.wantMentions)
			}
			t.Log(err)
		})
	}
}

func TestSaveLoadCA(t *testing.T) {
	ca := newTestCA(t, "Test consortium")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.Save(certPath, keyPath, false); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if err := ca.Save(certPath, keyPath, false); !errors.Is(err, ErrExists) {
		t.Errorf("second Save without overwrite: %v, want ErrExists", err)
	}
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(certPath, keyPath, true); err != nil {
		t.Fatalf("Save with overwrite: %v", err)
	}
	if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
		t.Errorf("overwritten key file mode %v, want 0600", st.Mode().Perm())
	}

	loaded, err := LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Certificate().Equal(ca.Certificate()) {
		t.Error("loaded CA certificate differs")
	}
	c, _ := mustIssue(t, loaded, IssueRequest{Role: RoleHospital, ID: "h1"})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	if _, err := parsePEM(t, c).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate from the loaded CA does not verify: %v", err)
	}

	other := newTestCA(t, "Other")
	otherKey, _ := pemKey(other.key)
	leafC, leafK := mustIssue(t, ca, IssueRequest{Role: RoleHospital, ID: "h2"})
	tests := []struct {
		name       string
		cert, key  []byte
		want       error
		wantInText string
	}{
		{"wrong key", ca.CertPEM(), otherKey, ErrKeyMismatch, "ca.key"},
		{"leaf as CA", leafC, leafK, ErrNotCA, "ca.crt"},
		{"key as cert", otherKey, otherKey, ErrNotPEM, "ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			_, err := LoadCA(writeFile(t, d, "ca.crt", tt.cert), writeFile(t, d, "ca.key", tt.key))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantInText) {
				t.Errorf("got %v, want %v mentioning %s", err, tt.want, tt.wantInText)
			}
		})
	}
}

func TestNewCARejects(t *testing.T) {
	for _, tt := range []struct {
		name     string
		validity time.Duration
	}{{"", 0}, {strings.Repeat("n", 65), 0}, {"bad\nname", 0}, {"ok", -time.Hour}} {
		if _, err := NewCA(tt.name, tt.validity, time.Now()); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("NewCA(%q, %v) = %v, want ErrInvalidRequest", tt.name, tt.validity, err)
		}
	}
	ca := newTestCA(t, "Test consortium")
	c := ca.Certificate()
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA constraints: IsCA %v MaxPathLen %d zero %v usage %v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != DefaultCAValidity+ClockSkew {
		t.Errorf("CA validity %v, want %v", got, DefaultCAValidity+ClockSkew)
	}
}
