package dataset

import "errors"

// Sentinel errors. Loaders wrap them with context; test with errors.Is.
var (
	// ErrFormat means the input is not a well-formed file of the expected kind
	// (bad magic number, truncated data, unparsable number, ragged CSV row, ...).
	ErrFormat = errors.New("malformed data")

	// ErrTooLarge means a header or input claims more data than this package accepts.
	ErrTooLarge = errors.New("data too large")

	// ErrNotFound means a data set's files could not be located.
	ErrNotFound = errors.New("data set not found")

	// ErrShape means an operation does not fit the per-sample shape or width of a Set.
	ErrShape = errors.New("shape mismatch")

	// ErrInvalid means a Set's fields are inconsistent; returned by Set.Validate.
	ErrInvalid = errors.New("invalid data set")
)
