package inference

import "errors"

// Errors returned by the Registry and the protocol handlers. The REST handler maps them to
// HTTP status codes and the gRPC service to status codes, only at those boundaries.
var (
	// ErrModelNotFound: no model of that name is published (HTTP 404, gRPC NotFound).
	ErrModelNotFound = errors.New("model not found")
	// ErrVersionNotFound: the model exists but not in that version, or the version was
	// retired (HTTP 404, gRPC NotFound).
	ErrVersionNotFound = errors.New("model version not found")
	// ErrVersionExists: Publish of a version the registry already holds.
	ErrVersionExists = errors.New("model version already published")
	// ErrInvalidInput: a request that does not fit the model or the protocol: wrong shape,
	// datatype, missing input, NaN or Inf, malformed body (HTTP 400, gRPC InvalidArgument).
	ErrInvalidInput = errors.New("invalid inference request")
	// ErrTooLarge: a request over a size limit (HTTP 400, gRPC InvalidArgument).
	ErrTooLarge = errors.New("inference request too large")
	// ErrUnauthenticated: no valid client certificate or bearer token (HTTP 401, gRPC
	// Unauthenticated).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrRateLimited: the caller is over its rate limit (HTTP 429, gRPC ResourceExhausted).
	ErrRateLimited = errors.New("rate limit exceeded")
	// ErrClosed: the registry is shut down (HTTP 503, gRPC Unavailable).
	ErrClosed = errors.New("inference registry closed")
)
