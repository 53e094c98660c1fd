package aggregation

import "errors"

// Errors returned by this package. They are wrapped with details (which client, what was
// expected, what arrived); test for them with errors.Is.
var (
	// ErrNoUpdates means an aggregator was called with no updates.
	ErrNoUpdates = errors.New("aggregation: no updates")
	// ErrLengthMismatch means a vector does not have the expected number of values.
	ErrLengthMismatch = errors.New("aggregation: length mismatch")
	// ErrSamples means an update's sample count is not positive, or (for an encrypted
	// update) is not the weight the ciphertext carries.
	ErrSamples = errors.New("aggregation: bad sample count")
	// ErrNonFinite means a vector holds NaN or ±Inf.
	ErrNonFinite = errors.New("aggregation: non-finite value")
	// ErrTooFewUpdates means a robust aggregator cannot tolerate the requested number of
	// Byzantine updates with the updates it was given.
	ErrTooFewUpdates = errors.New("aggregation: too few updates")
	// ErrParameter means an aggregator or optimizer parameter is out of range.
	ErrParameter = errors.New("aggregation: parameter out of range")
	// ErrUnknownStrategy means a strategy or server optimizer name is not recognised.
	ErrUnknownStrategy = errors.New("aggregation: unknown strategy")
	// ErrState means serialised optimizer state is malformed, truncated, corrupted or from an
	// unsupported version.
	ErrState = errors.New("aggregation: bad optimizer state")
)
