package he

import "errors"

// Sentinel errors. Functions wrap them with details (what was expected, what
// arrived); check them with errors.Is.
var (
	// ErrInvalidProfile reports a parameter profile that fails validation.
	ErrInvalidProfile = errors.New("he: invalid profile")
	// ErrProfileMismatch reports an object made under other parameters.
	ErrProfileMismatch = errors.New("he: parameter profile mismatch")
	// ErrMalformed reports wire bytes that do not decode.
	ErrMalformed = errors.New("he: malformed encoding")
	// ErrTooLarge reports wire bytes or vectors beyond the profile's size limit.
	ErrTooLarge = errors.New("he: size limit exceeded")
	// ErrInvalidGroup reports a roster or threshold that cannot be used.
	ErrInvalidGroup = errors.New("he: invalid group")
	// ErrUnknownParty reports a party identifier that is not in the group.
	ErrUnknownParty = errors.New("he: unknown party")
	// ErrDuplicate reports a second, different contribution from the same party.
	ErrDuplicate = errors.New("he: duplicate contribution")
	// ErrCeremonyState reports a ceremony step taken out of order.
	ErrCeremonyState = errors.New("he: ceremony step out of order")
	// ErrCommitment reports a seed reveal that does not match its commitment.
	ErrCommitment = errors.New("he: seed reveal does not match commitment")
	// ErrValue reports a value that is NaN, infinite or beyond the profile's MaxAbs,
	// or a weight that is not a positive finite number.
	ErrValue = errors.New("he: value out of range")
	// ErrCapacity reports an aggregate whose total weight would overflow the modulus.
	ErrCapacity = errors.New("he: aggregate capacity exceeded")
	// ErrShape reports vectors of different lengths.
	ErrShape = errors.New("he: vector length mismatch")
	// ErrActiveSet reports an active decryption set that is not exactly t distinct group members.
	ErrActiveSet = errors.New("he: invalid active set")
	// ErrShareConflict reports a request for a second, different decryption share
	// of the same ciphertext; a party never issues one.
	ErrShareConflict = errors.New("he: conflicting decryption share request")
	// ErrNotEnoughShares reports a decryption attempted with fewer than t shares.
	ErrNotEnoughShares = errors.New("he: not enough decryption shares")
)
