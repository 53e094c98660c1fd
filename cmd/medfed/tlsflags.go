package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/crypto/pki"
)

// tlsFlags are the TLS flags shared by every subcommand that serves or connects to a
// coordinator: mutual TLS from the consortium CA by default, plaintext only with
// --insecure.
type tlsFlags struct {
	cert, key, ca string
	insecure      bool
}

// register adds --tls-cert, --tls-key, --tls-ca and --insecure to fs; whose says whose
// certificate --tls-cert is, for the help text ("this node's").
func (f *tlsFlags) register(fs *flag.FlagSet, whose string) {
	fs.StringVar(&f.cert, "tls-cert", "", whose+" certificate (medfed pki issue)")
	fs.StringVar(&f.key, "tls-key", "", whose+" private key")
	fs.StringVar(&f.ca, "tls-ca", "", "the consortium CA certificate (ca.crt from medfed pki init)")
	fs.BoolVar(&f.insecure, "insecure", false, "no TLS at all (local experiments only)")
}

// check returns a usage error unless the flags ask for mutual TLS with all three files, or
// for --insecure alone.
func (f *tlsFlags) check(fs *flag.FlagSet) error {
	set := f.cert != "" || f.key != "" || f.ca != ""
	switch {
	case f.insecure && set:
		return usageError(fs, "--insecure and --tls-* flags exclude each other")
	case !f.insecure && (f.cert == "" || f.key == "" || f.ca == ""):
		return usageError(fs, "mutual TLS needs --tls-cert, --tls-key and --tls-ca (or --insecure, for local experiments only)")
	}
	return nil
}

// serverConfigs returns a coordinator node's TLS configurations: the server side of its
// gRPC and Raft listeners, and the client side it dials its peers with. Both are nil with
// --insecure.
func (f *tlsFlags) serverConfigs() (server, client *tls.Config, err error) {
	if f.insecure {
		return nil, nil, nil
	}
	if server, err = pki.ServerTLSConfig(f.cert, f.key, f.ca); err != nil {
		return nil, nil, err
	}
	if client, err = pki.ClientTLSConfig(f.cert, f.key, f.ca, ""); err != nil {
		return nil, nil, err
	}
	return server, client, nil
}

// clientCreds returns the gRPC credentials of a hospital or operator tool; nil with
// --insecure (coordclient then speaks plaintext). The server name is taken from each
// address dialled.
func (f *tlsFlags) clientCreds() (credentials.TransportCredentials, error) {
	if f.insecure {
		return nil, nil
	}
	cfg, err := pki.ClientTLSConfig(f.cert, f.key, f.ca, "")
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// coordinatorFlags are the flags of a command that talks to a coordinator cluster.
type coordinatorFlags struct {
	addrs   string
	timeout time.Duration
	tls     tlsFlags
}

// coordinatorCommand starts the flag set of a command that talks to a coordinator cluster:
// the connection and TLS flags, and --json, whose help (jsonHelp) says what it prints. The
// command adds its own flags, then calls parse.
func coordinatorCommand(name, jsonHelp string, stderr io.Writer) (*flag.FlagSet, *coordinatorFlags, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := new(coordinatorFlags)
	cf.register(fs)
	return fs, cf, fs.Bool("json", false, jsonHelp)
}

// parse parses args into fs (parseFlags) and checks the coordinator flags.
func (c *coordinatorFlags) parse(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return c.check(fs)
}

func (c *coordinatorFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addrs, "coordinator", "", "HOST:PORT[,HOST:PORT...] of the coordinator nodes' gRPC services; any node will do, the others are tried when one is down (required)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up after this long")
	c.tls.register(fs, "your operator or hospital")
}

// check validates the flags after parsing.
func (c *coordinatorFlags) check(fs *flag.FlagSet) error {
	if len(c.list()) == 0 {
		return usageError(fs, "missing --coordinator")
	}
	if c.timeout <= 0 {
		return usageError(fs, "--timeout %s: want a positive duration such as 30s", c.timeout)
	}
	return c.tls.check(fs)
}

func (c *coordinatorFlags) list() []string {
	var out []string
	for _, a := range strings.Split(c.addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// dial returns a client of the cluster, warning on stderr when it runs without TLS.
func (c *coordinatorFlags) dial(stderr io.Writer) (*coordclient.Client, error) {
	creds, err := c.tls.clientCreds()
	if err != nil {
		return nil, err
	}
	if c.tls.insecure {
		fmt.Fprintln(stderr, "warning: talking to the coordinator WITHOUT TLS (--insecure)")
	}
	return coordclient.New(c.list(), coordclient.Options{Creds: creds})
}
