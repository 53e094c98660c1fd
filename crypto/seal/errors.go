package seal

import "errors"

// Sentinel errors; functions wrap them with what was expected and what
// arrived. Check them with errors.Is.
var (
	// ErrMalformed reports bytes that are not a well-formed envelope,
	// signature or age file.
	ErrMalformed = errors.New("seal: malformed input")
	// ErrTooLarge reports input beyond the package's size limits.
	ErrTooLarge = errors.New("seal: size limit exceeded")
	// ErrDecrypt reports an age file or envelope that none of the given
	// identities opens, or whose ciphertext was modified.
	ErrDecrypt = errors.New("seal: cannot decrypt")
	// ErrWrongRecipient reports an envelope addressed to someone else.
	ErrWrongRecipient = errors.New("seal: envelope addressed to another party")
	// ErrUnknownSigner reports a signer the key directory does not know.
	ErrUnknownSigner = errors.New("seal: unknown signer")
	// ErrSignature reports a signature that does not verify, or signed
	// fields that do not match the clear header.
	ErrSignature = errors.New("seal: bad signature")
	// ErrInvalidArgument reports a bad argument from the caller (empty or
	// oversized identifier, wrong key size).
	ErrInvalidArgument = errors.New("seal: invalid argument")
)
