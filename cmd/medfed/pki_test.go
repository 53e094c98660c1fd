package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medfed/medfed/crypto/pki"
)

func runPKICLI(args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = runPKI(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestPKIInitIssueLoad(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	outDir := filepath.Join(t.TempDir(), "certs")
	out, errOut, err := runPKICLI("init", "--out", caDir, "--name", "Test consortium", "--validity", "8760h")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, errOut)
	}
	t.Log(out)
	for _, s := range []string{"ca.crt", "ca.key", "keep it offline"} {
		if !strings.Contains(out, s) {
			t.Errorf("init output lacks %q:\n%s", s, out)
		}
	}
	if st, err := os.Stat(filepath.Join(caDir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, mode %v; want mode 0600", err, st.Mode().Perm())
	}

	issues := [][]string{
		{"--role", "coordinator", "--id", "node1", "--dns", "localhost, coord.example", "--ip", "127.0.0.1,::1"},
		{"--role", "hospital", "--id", "h1", "--validity", "24h"},
	}
	for _, a := range issues {
		args := append([]string{"issue", "--ca-dir", caDir, "--out", outDir}, a...)
		out, errOut, err := runPKICLI(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		t.Log(out)
		if !strings.Contains(out, "medfed://"+a[1]+"/"+a[3]) {
			t.Errorf("issue output lacks the identity URI:\n%s", out)
		}
		if st, err := os.Stat(filepath.Join(outDir, a[3]+".key")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s.key: %v, want mode 0600", a[3], err)
		}
	}

	ca := filepath.Join(caDir, "ca.crt")
	if _, err := pki.ServerTLSConfig(filepath.Join(outDir, "node1.crt"), filepath.Join(outDir, "node1.key"), ca); err != nil {
		t.Errorf("ServerTLSConfig(node1): %v", err)
	}
	cfg, err := pki.ClientTLSConfig(filepath.Join(outDir, "h1.crt"), filepath.Join(outDir, "h1.key"), ca, "localhost")
	if err != nil {
		t.Fatalf("ClientTLSConfig(h1): %v", err)
	}
	role, id, err := pki.Identity(cfg.Certificates[0].Leaf)
	if err != nil || role != pki.RoleHospital || id != "h1" {
		t.Errorf("Identity(h1.crt) = (%q, %q, %v), want (hospital, h1, nil)", role, id, err)
	}
	if _, err := pki.ServerTLSConfig(filepath.Join(outDir, "h1.crt"), filepath.Join(outDir, "h1.key"), ca); !errors.Is(err, pki.ErrUntrusted) {
		t.Errorf("ServerTLSConfig(hospital) = %v, want ErrUntrusted", err)
	}

	// Existing files are kept unless --force.
	before, _ := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	if _, _, err := runPKICLI("init", "--out", caDir); !errors.Is(err, pki.ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second init: %v, want ErrExists mentioning --force", err)
	}
	after, _ := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	if !bytes.Equal(before, after) {
		t.Error("refused init changed ca.crt")
	}
	hospital := []string{"issue", "--ca-dir", caDir, "--out", outDir, "--role", "hospital", "--id", "h1"}
	if _, _, err := runPKICLI(hospital...); !errors.Is(err, pki.ErrExists) {
		t.Errorf("second issue: %v, want ErrExists", err)
	}
	if _, errOut, err := runPKICLI(append(hospital, "--force")...); err != nil {
		t.Errorf("issue --force: %v\n%s", err, errOut)
	}
	if _, errOut, err := runPKICLI("init", "--out", caDir, "--force"); err != nil {
		t.Errorf("init --force: %v\n%s", err, errOut)
	}
}

func TestPKIErrors(t *testing.T) {
	caDir := t.TempDir()
	if _, errOut, err := runPKICLI("init", "--out", caDir); err != nil {
		t.Fatalf("init: %v\n%s", err, errOut)
	}
	out := t.TempDir()
	issue := func(a ...string) []string { return append([]string{"issue", "--ca-dir", caDir, "--out", out}, a...) }
	tests := []struct {
		name string
		args []string
		want string // text the error must contain
		is   error  // sentinel the error must wrap, if any
	}{
		{"no subcommand", nil, "", errUsage},
		{"unknown subcommand", []string{"revoke"}, "", errUsage},
		{"help", []string{"-h"}, "", flag.ErrHelp},
		{"init without --out", []string{"init"}, "--out is required", nil},
		{"init bad validity", []string{"init", "--out", t.TempDir(), "--validity", "-1h"}, "--validity -1h0m0s: want a positive duration", nil},
		{"init unparsable validity", []string{"init", "--out", t.TempDir(), "--validity", "year"}, "", errUsage},
		{"init stray argument", []string{"init", "--out", t.TempDir(), "extra"}, "", errUsage},
		{"bad role", issue("--role", "admin", "--id", "x"), `--role: pki: invalid role: "admin", want coordinator, hospital or operator`, pki.ErrInvalidRole},
		{"missing role", issue("--id", "x"), "--role is required", nil},
		{"missing id", issue("--role", "hospital"), "--id is required", nil},
		{"illegal id", issue("--role", "hospital", "--id", "h 1"), `--id: pki: invalid id: "h 1" contains ' '`, pki.ErrInvalidID},
		{"bad ip", issue("--role", "coordinator", "--id", "n1", "--ip", "300.1.1.1"), `--ip: "300.1.1.1" is not an IP address`, nil},
		{"bad dns", issue("--role", "coordinator", "--id", "n1", "--dns", "a_b"), `DNS name "a_b"`, pki.ErrInvalidRequest},
		{"coordinator without names", issue("--role", "coordinator", "--id", "n1"), "needs --dns or --ip", nil},
		{"validity past CA", issue("--role", "hospital", "--id", "h1", "--validity", "100000h"), "after the CA expires", pki.ErrInvalidRequest},
		{"missing --ca-dir", []string{"issue", "--out", out, "--role", "hospital", "--id", "h1"}, "--ca-dir is required", nil},
		{"missing --out", []string{"issue", "--ca-dir", caDir, "--role", "hospital", "--id", "h1"}, "--out is required", nil},
		{"no CA there", []string{"issue", "--ca-dir", t.TempDir(), "--out", out, "--role", "hospital", "--id", "h1"}, "ca.crt", os.ErrNotExist},
		{"would overwrite CA", []string{"issue", "--ca-dir", caDir, "--out", caDir, "--role", "hospital", "--id", "ca", "--force"}, "would overwrite the CA file", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runPKICLI(tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	if _, err := pki.LoadCA(filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key")); err != nil {
		t.Errorf("CA damaged by the refused commands: %v", err)
	}
}
