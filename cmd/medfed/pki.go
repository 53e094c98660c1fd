package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/medfed/medfed/crypto/pki"
)

// File names of the consortium CA inside its folder.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

func runPKI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return runSubcommand(ctx, "pki", args, stdout, stderr, pkiUsage, map[string]subcommand{
		"init": func(_ context.Context, _ string, args []string, stdout, stderr io.Writer) error {
			return runPKIInit(args, stdout, stderr)
		},
		"issue": func(_ context.Context, _ string, args []string, stdout, stderr io.Writer) error {
			return runPKIIssue(args, stdout, stderr)
		},
	})
}

func pkiUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: medfed pki <init|issue> [flags]

  init    make the consortium CA: writes ca.crt (give it to every party) and ca.key (keep it offline)
  issue   issue a certificate binding a coordinator node ID, hospital client ID or operator name

Run 'medfed pki init -h' or 'medfed pki issue -h' for the flags.
`)
}

// pkiInitConfig is what `medfed pki init` does.
type pkiInitConfig struct {
	Out      string        // folder for ca.crt and ca.key
	Name     string        // CA name
	Validity time.Duration // CA lifetime
	Force    bool          // replace existing files
}

func (c pkiInitConfig) validate() error {
	if c.Out == "" {
		return errors.New("--out is required: the folder to write ca.crt and ca.key to")
	}
	if c.Validity <= 0 {
		return fmt.Errorf("--validity %s: want a positive duration such as 8760h", c.Validity)
	}
	return nil
}

func (c pkiInitConfig) run(now time.Time, stdout io.Writer) error {
	ca, err := pki.NewCA(c.Name, c.Validity, now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Out, 0o700); err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(c.Out, caCertFile), filepath.Join(c.Out, caKeyFile)
	if err := ca.Save(certPath, keyPath, c.Force); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: CA certificate %q, valid until %s; give it to every party\n", certPath, c.Name, ca.Certificate().NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "wrote %s: CA private key (mode 0600); keep it offline, it signs every identity\n", keyPath)
	return nil
}

func runPKIInit(args []string, stdout, stderr io.Writer) error {
	cfg := pkiInitConfig{Name: "MedFed consortium CA", Validity: pki.DefaultCAValidity}
	fs := flag.NewFlagSet("medfed pki init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Out, "out", "", "folder to write ca.crt and ca.key to (created if missing)")
	fs.StringVar(&cfg.Name, "name", cfg.Name, "name of the consortium CA")
	fs.DurationVar(&cfg.Validity, "validity", cfg.Validity, "lifetime of the CA")
	fs.BoolVar(&cfg.Force, "force", false, "replace an existing ca.crt and ca.key")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	return cfg.run(time.Now(), stdout)
}

// pkiIssueConfig is what `medfed pki issue` does.
type pkiIssueConfig struct {
	CADir    string        // folder with ca.crt and ca.key
	Role     string        // coordinator, hospital or operator
	ID       string        // node ID, client ID or operator name
	DNS      string        // comma-separated DNS names
	IP       string        // comma-separated IP addresses
	Validity time.Duration // certificate lifetime
	Out      string        // folder for ID.crt and ID.key
	Force    bool          // replace existing files
}

// request turns the configuration into an issue request, checking every
// field.
func (c pkiIssueConfig) request() (pki.IssueRequest, error) {
	var req pki.IssueRequest
	if c.CADir == "" {
		return req, errors.New("--ca-dir is required: the folder with ca.crt and ca.key (made by 'medfed pki init')")
	}
	if c.Out == "" {
		return req, errors.New("--out is required: the folder to write <id>.crt and <id>.key to")
	}
	if c.Role == "" {
		return req, errors.New("--role is required: coordinator, hospital or operator")
	}
	role, err := pki.ParseRole(c.Role)
	if err != nil {
		return req, fmt.Errorf("--role: %w", err)
	}
	if c.ID == "" {
		return req, errors.New("--id is required: the node ID, hospital client ID or operator name")
	}
	if err := pki.ValidateID(c.ID); err != nil {
		return req, fmt.Errorf("--id: %w", err)
	}
	if c.Validity <= 0 {
		return req, fmt.Errorf("--validity %s: want a positive duration such as 2160h", c.Validity)
	}
	req = pki.IssueRequest{Role: role, ID: c.ID, Validity: c.Validity}
	req.DNSNames = splitList(c.DNS)
	for _, s := range splitList(c.IP) {
		ip := net.ParseIP(s)
		if ip == nil {
			return req, fmt.Errorf("--ip: %q is not an IP address, want for example 127.0.0.1 or ::1", s)
		}
		req.IPAddresses = append(req.IPAddresses, ip)
	}
	if role == pki.RoleCoordinator && len(req.DNSNames) == 0 && len(req.IPAddresses) == 0 {
		return req, errors.New("a coordinator certificate needs --dns or --ip: the names clients dial it by")
	}
	return req, nil
}

func (c pkiIssueConfig) run(stdout io.Writer) error {
	req, err := c.request()
	if err != nil {
		return err
	}
	caCert, caKey := filepath.Join(c.CADir, caCertFile), filepath.Join(c.CADir, caKeyFile)
	certPath, keyPath := filepath.Join(c.Out, c.ID+".crt"), filepath.Join(c.Out, c.ID+".key")
	for _, out := range []string{certPath, keyPath} {
		for _, in := range []string{caCert, caKey} {
			if samePath(out, in) {
				return fmt.Errorf("--id %q with --out %s would overwrite the CA file %s; choose another --id or --out", c.ID, c.Out, in)
			}
		}
	}
	ca, err := pki.LoadCA(caCert, caKey)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Out, 0o700); err != nil {
		return err
	}
	if err := pki.SaveKeyPair(certPath, certPEM, keyPath, keyPEM, c.Force); err != nil {
		return err
	}
	names := ""
	if len(req.DNSNames) > 0 {
		names += ", DNS " + strings.Join(req.DNSNames, ",")
	}
	if len(req.IPAddresses) > 0 {
		ips := make([]string, len(req.IPAddresses))
		for i, ip := range req.IPAddresses {
			ips[i] = ip.String()
		}
		names += ", IP " + strings.Join(ips, ",")
	}
	until := "?"
	if b, _ := pem.Decode(certPEM); b != nil {
		if cert, err := x509.ParseCertificate(b.Bytes); err == nil {
			until = cert.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	fmt.Fprintf(stdout, "wrote %s: %s %q (%s), valid until %s%s\n", certPath, req.Role, req.ID, pki.IdentityURI(req.Role, req.ID), until, names)
	fmt.Fprintf(stdout, "wrote %s: its private key (mode 0600)\n", keyPath)
	return nil
}

func runPKIIssue(args []string, stdout, stderr io.Writer) error {
	cfg := pkiIssueConfig{Validity: pki.DefaultLeafValidity}
	fs := flag.NewFlagSet("medfed pki issue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.CADir, "ca-dir", "", "folder with ca.crt and ca.key (made by 'medfed pki init')")
	fs.StringVar(&cfg.Role, "role", "", "coordinator, hospital or operator")
	fs.StringVar(&cfg.ID, "id", "", "node ID, hospital client ID or operator name: 1-64 characters of [A-Za-z0-9._-]")
	fs.StringVar(&cfg.DNS, "dns", "", "comma-separated DNS names the holder serves on (a coordinator needs --dns or --ip)")
	fs.StringVar(&cfg.IP, "ip", "", "comma-separated IP addresses the holder serves on")
	fs.DurationVar(&cfg.Validity, "validity", cfg.Validity, "lifetime of the certificate")
	fs.StringVar(&cfg.Out, "out", "", "folder to write <id>.crt and <id>.key to (created if missing)")
	fs.BoolVar(&cfg.Force, "force", false, "replace an existing <id>.crt and <id>.key")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return cfg.run(stdout)
}

// splitList splits a comma-separated flag value, dropping spaces and empty
// items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// samePath reports whether a and b name the same file, by path or, when
// both exist, by identity.
func samePath(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}
