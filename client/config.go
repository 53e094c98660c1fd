package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"time"

	"filippo.io/age"
	"google.golang.org/grpc"

	"github.com/medfed/medfed/crypto/pki"
)

// Config configures a Node. Zero values of the tuning fields mean "default"; the identity
// fields (Coordinators, ClientID, Federation, Data, StateDir, one of AgeIdentity and
// Passphrase, and TLS unless Insecure) are required.
type Config struct {
	// Coordinators are the gRPC addresses (HOST:PORT) of the coordinator nodes; the node
	// moves on to the next one when one is unreachable or has no leader.
	Coordinators []string
	// ClientID is the hospital's ID on the federation's roster; with mutual TLS it must be
	// the ID the hospital's certificate binds.
	ClientID string
	// Federation is the name of the study to take part in.
	Federation string
	// Data supplies the hospital's training data once the federation's model is known.
	Data DataSource
	// StateDir holds the node's state between runs (secret-key share, threshold shares,
	// per-round progress), encrypted at rest with age. Created if missing.
	StateDir string

	// TLS is the mutual-TLS client configuration (pki.ClientTLSConfig with the hospital's
	// certificate). Required unless Insecure is set.
	TLS *tls.Config
	// Insecure talks to coordinators run with --insecure, without TLS. Local experiments only.
	Insecure bool
	// DialOptions are added to the gRPC options of every coordinator connection, after the
	// transport credentials: interceptors or stats handlers for tracing, or for a test
	// that records every message the node sends.
	DialOptions []grpc.DialOption

	// AgeIdentity is the hospital's age identity: it encrypts the state at rest and opens
	// the threshold shares other hospitals seal for it. Exactly one of AgeIdentity and
	// Passphrase must be set.
	AgeIdentity *age.X25519Identity
	// Passphrase encrypts the state at rest (age scrypt) instead of an identity file; the
	// node then generates its X25519 identity for envelopes and keeps it in the state.
	Passphrase string
	// ScryptWorkFactor is the log2 work factor of the passphrase encryption (default 18,
	// age's default; tests lower it).
	ScryptWorkFactor int

	// ProximalMu is FedProx's mu, used when the federation's strategy is fedprox
	// (default 0.01; the federation spec has no field for it yet).
	ProximalMu float64
	// ClipNorm bounds the L2 norm of the hospital's update when the federation sets no
	// dp_clip_norm; 0 means no clipping beyond what the encryption profile needs.
	ClipNorm float64
	// Seed seeds local shuffling and dropout; 0 derives one from the client ID and round.
	Seed uint64
	// EpsilonBudget is this hospital's own limit on the privacy its updates may spend
	// (epsilon at the federation's dp_delta, counted as the coordinator counts it): the
	// node contributes to no round that would pass it, nor to one past the federation's
	// dp_epsilon_budget, whatever the coordinator does. With it set, the node refuses a
	// federation without differential privacy. 0: the federation's budget alone.
	EpsilonBudget float64

	// PollInterval is how often the node reads the federation's state (default 250ms).
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts on another coordinator
	// (default 100ms and 2s); MaxAttempts bounds the attempts of one call (default 60).
	MinBackoff, MaxBackoff time.Duration
	MaxAttempts            int
	// Exit controls when Run returns: once the federation has run all its rounds
	// (the default), or never (ExitNever) until its context is cancelled.
	Exit ExitPolicy
}

// ExitPolicy says when Node.Run returns on its own.
type ExitPolicy int

const (
	// ExitWhenDone returns once the federation has run all its rounds.
	ExitWhenDone ExitPolicy = iota
	// ExitNever keeps the node running until its context is cancelled.
	ExitNever
)

// DefaultConfig returns the defaults that New fills into zero fields.
func DefaultConfig() Config {
	return Config{
		ScryptWorkFactor: 18,
		ProximalMu:       0.01,
		PollInterval:     250 * time.Millisecond,
		MinBackoff:       100 * time.Millisecond,
		MaxBackoff:       2 * time.Second,
		MaxAttempts:      60,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ScryptWorkFactor == 0 {
		c.ScryptWorkFactor = d.ScryptWorkFactor
	}
	if c.ProximalMu == 0 {
		c.ProximalMu = d.ProximalMu
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = d.MinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	return c
}

// Validate names the first bad field, or returns nil.
func (c Config) Validate() error {
	switch {
	case len(c.Coordinators) == 0:
		return errors.New("client config: Coordinators is empty")
	case c.ClientID == "":
		return errors.New("client config: ClientID is empty")
	case c.Federation == "":
		return errors.New("client config: Federation is empty")
	case c.Data == nil:
		return errors.New("client config: Data is nil")
	case c.StateDir == "":
		return errors.New("client config: StateDir is empty")
	case c.Insecure && c.TLS != nil:
		return errors.New("client config: Insecure and TLS exclude each other")
	case !c.Insecure && c.TLS == nil:
		return errors.New("client config: TLS is required unless Insecure is set")
	case (c.AgeIdentity == nil) == (c.Passphrase == ""):
		return errors.New("client config: set exactly one of AgeIdentity and Passphrase")
	case c.ScryptWorkFactor < 0 || c.ScryptWorkFactor > 30:
		return fmt.Errorf("client config: ScryptWorkFactor %d, expected 1 to 30", c.ScryptWorkFactor)
	case c.ProximalMu < 0, c.ClipNorm < 0:
		return errors.New("client config: ProximalMu and ClipNorm must not be negative")
	case !(c.EpsilonBudget >= 0) || math.IsInf(c.EpsilonBudget, 1):
		return fmt.Errorf("client config: EpsilonBudget %v, expected a finite epsilon > 0 (or 0 for the federation's budget alone)", c.EpsilonBudget)
	case c.PollInterval < 0, c.MinBackoff < 0, c.MaxBackoff < 0, c.MaxAttempts < 0:
		return errors.New("client config: negative duration or attempt count")
	}
	for _, a := range c.Coordinators {
		if a == "" {
			return errors.New("client config: Coordinators holds an empty address")
		}
	}
	// The ID becomes a file name and a certificate identity: the same rules as pki.
	if err := pki.ValidateID(c.ClientID); err != nil {
		return fmt.Errorf("client config: ClientID: %w", err)
	}
	return nil
}
