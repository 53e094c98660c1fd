package aggregation

import (
	"fmt"

	"github.com/medfed/medfed/crypto/he"
)

// EncryptedUpdate is one client's contribution in secure mode: the wire encoding of an
// he.Vector that the client encrypted after scaling its delta by its sample count, and that
// sample count, which travels in clear.
type EncryptedUpdate struct {
	// Client identifies the sender; it is used only in error messages.
	Client string
	// Data is the he wire encoding (he.Vector.MarshalBinary) of Samples·delta, as
	// he.Encryptor.Encrypt(delta, Samples) produces it.
	Data []byte
	// Samples is the FedAvg weight the client claims.
	Samples int
}

func (u EncryptedUpdate) name(i int) string { return Update{Client: u.Client}.name(i) }

// CheckEncrypted decodes an encrypted update and checks that it holds n values, one
// contribution, and the weight its sample count claims. It is what a coordinator node runs
// on an upload before it accepts it, so that a later sum cannot fail; EncryptedChecker runs
// it on the bytes as they arrive.
func CheckEncrypted(p he.Params, n int, u EncryptedUpdate) error {
	c := NewEncryptedChecker(p, n, u, len(u.Data))
	c.Write(u.Data)
	return c.Close()
}

// EncryptedChecker is CheckEncrypted on a stream: Write the update's bytes in order, in
// pieces of any size, then Close. A malformed ciphertext is refused by the Write that
// reaches it; the header's length, contributions and weight are compared at Close.
type EncryptedChecker struct {
	c *he.VectorChecker
	n int
	u EncryptedUpdate
}

// NewEncryptedChecker returns a checker for u's bytes, announced as size bytes (u.Data is
// not read).
func NewEncryptedChecker(p he.Params, n int, u EncryptedUpdate, size int) *EncryptedChecker {
	u.Data = nil
	return &EncryptedChecker{c: he.NewVectorChecker(p, size), n: n, u: u}
}

// Write checks the next bytes of the update.
func (e *EncryptedChecker) Write(b []byte) (int, error) {
	k, err := e.c.Write(b)
	if err != nil {
		return k, fmt.Errorf("%w: %s: %v", ErrLengthMismatch, e.u.name(0), err)
	}
	return k, nil
}

// Close reports whether the whole update passed.
func (e *EncryptedChecker) Close() error {
	v, err := e.c.Close()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrLengthMismatch, e.u.name(0), err)
	}
	return checkEncryptedHeader(v.Length, v.Contributions, v.Weight, e.n, e.u, 0)
}

func checkEncryptedHeader(length, contributions int, weight float64, n int, u EncryptedUpdate, i int) error {
	switch {
	case u.Samples < 1:
		return fmt.Errorf("%w: %s has %d samples", ErrSamples, u.name(i), u.Samples)
	case length != n:
		return fmt.Errorf("%w: %s has %d values, want %d", ErrLengthMismatch, u.name(i), length, n)
	case contributions != 1 || weight != float64(u.Samples):
		return fmt.Errorf("%w: %s is %d contribution(s) of total weight %v; expected 1 contribution of weight %d, its sample count",
			ErrSamples, u.name(i), contributions, weight, u.Samples)
	}
	return nil
}

// EncryptedWeightedSum is FedAvg under encryption: it adds the encrypted updates, each
// already scaled by its sample count, into one ciphertext vector of sum(n_i·d_i) with total
// weight sum(n_i). Whoever holds t decryption shares recovers the weighted mean
// (he.Decryption.Average divides by the weight). Nothing is decrypted here: the caller
// holds no key. Each update is checked as by CheckEncrypted and decoded straight into the
// sum (he.Vector.AddBinary). EncryptedSum does the same one update at a time, for callers
// that should not hold every update in memory at once.
//
// It returns an error wrapping ErrNoUpdates, ErrLengthMismatch or ErrSamples, naming the
// update at fault.
func EncryptedWeightedSum(p he.Params, n int, updates []EncryptedUpdate) (*he.Vector, error) {
	s, err := NewEncryptedSum(p, n)
	if err != nil {
		return nil, err
	}
	for _, u := range updates {
		if err := s.Add(u); err != nil {
			return nil, err
		}
	}
	return s.Vector()
}

// EncryptedSum accumulates encrypted updates; see EncryptedWeightedSum. It is not safe
// for concurrent use.
type EncryptedSum struct {
	n   int
	sum *he.Vector
	err error
}

// NewEncryptedSum starts an empty sum of n-value updates under parameters p.
func NewEncryptedSum(p he.Params, n int) (*EncryptedSum, error) {
	sum, err := he.NewAggregate(p, n)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLengthMismatch, err)
	}
	return &EncryptedSum{n: n, sum: sum}, nil
}

// Add checks u and adds it. After an error the sum is unusable: Add and Vector return it
// again.
func (s *EncryptedSum) Add(u EncryptedUpdate) error {
	if s.err != nil {
		return s.err
	}
	i := s.sum.Contributions()
	c, w := s.sum.Contributions(), s.sum.Weight()
	if err := s.sum.AddBinary(u.Data); err != nil {
		// AddBinary leaves the sum unchanged on a malformed vector.
		return fmt.Errorf("%w: %s: %v", ErrLengthMismatch, u.name(i), err)
	}
	if err := checkEncryptedHeader(s.n, s.sum.Contributions()-c, s.sum.Weight()-w, s.n, u, i); err != nil {
		s.err = err // already added: the sum is wrong now
		return err
	}
	return nil
}

// Vector returns the sum so far. It is ErrNoUpdates before the first Add.
func (s *EncryptedSum) Vector() (*he.Vector, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.sum.Contributions() == 0 {
		return nil, ErrNoUpdates
	}
	return s.sum, nil
}
