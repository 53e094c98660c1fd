package client

import "errors"

// Errors returned by a Node. They are wrapped with details (what was expected, what
// arrived); test for them with errors.Is.
var (
	// ErrSchema reports local data that does not fit the federation's model (sample shape,
	// classes). Nothing is trained or sent.
	ErrSchema = errors.New("client: data does not fit the federation's model")
	// ErrState reports a state directory that cannot be used: it belongs to another client
	// or federation, does not decrypt with the given identity or passphrase, or is corrupt.
	ErrState = errors.New("client: unusable state directory")
	// ErrRefused reports a request the node refuses to answer, such as a decryption share
	// for an aggregate of fewer than min_clients contributions.
	ErrRefused = errors.New("client: refused")
	// ErrCeremony reports a key ceremony that cannot complete: a bad seed, a collective key
	// that does not match the seed, a threshold share that does not open.
	ErrCeremony = errors.New("client: key ceremony")
	// ErrFederation reports a federation the node cannot take part in: not on its roster,
	// an unusable spec, or a run that stopped (rounds aborted for want of clients).
	ErrFederation = errors.New("client: federation")
)
