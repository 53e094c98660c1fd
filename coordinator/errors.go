package coordinator

import "errors"

// Errors returned by the coordinator. They are wrapped with details (which federation,
// round or client, what was expected, what arrived); test for them with errors.Is. The
// gRPC services map each to one status code (see StatusCode).
var (
	// ErrInvalid reports a malformed request or command: a bad name, a missing field, data
	// whose length or digest does not match what was announced. InvalidArgument.
	ErrInvalid = errors.New("coordinator: invalid argument")
	// ErrNotFound reports an unknown federation, round, model version or blob. NotFound.
	ErrNotFound = errors.New("coordinator: not found")
	// ErrExists reports a federation that already exists with another spec, or a second,
	// different submission for something that accepts one per client (an update per
	// round, a share, an envelope). AlreadyExists.
	ErrExists = errors.New("coordinator: already exists")
	// ErrWrongRound reports a submission for a round that is not the federation's current
	// one. FailedPrecondition.
	ErrWrongRound = errors.New("coordinator: wrong round")
	// ErrRoundState reports a step the round's state does not allow (an update to a sealed
	// round, a share before decryption started, a second publication). FailedPrecondition.
	ErrRoundState = errors.New("coordinator: round state does not allow this")
	// ErrStaleModel reports an update trained from another model version than the round's.
	// FailedPrecondition.
	ErrStaleModel = errors.New("coordinator: stale model version")
	// ErrLength reports an update whose vector length differs from the model's. InvalidArgument.
	ErrLength = errors.New("coordinator: wrong vector length")
	// ErrUnknownClient reports a client ID that is not on the federation's roster or not
	// selected for the round. PermissionDenied.
	ErrUnknownClient = errors.New("coordinator: unknown client")
	// ErrNotEnrolled reports a client on the roster that has not enrolled. FailedPrecondition.
	ErrNotEnrolled = errors.New("coordinator: client not enrolled")
	// ErrIdentity reports a caller whose TLS certificate does not bind the client ID (or role)
	// it acts as. PermissionDenied.
	ErrIdentity = errors.New("coordinator: identity mismatch")
	// ErrTooLarge reports a message, stream or staged payload beyond its limit.
	// ResourceExhausted.
	ErrTooLarge = errors.New("coordinator: too large")
	// ErrNotLeader reports a write that found no leader to take it. Unavailable.
	ErrNotLeader = errors.New("coordinator: no leader")
	// ErrReplicas reports bytes (an update, an aggregate) that could not be stored on as
	// many nodes as a majority needs, because peers were down or refused them; nothing
	// was committed. Unavailable, so a client retries, on this node or another.
	ErrReplicas = errors.New("coordinator: too few replicas")
	// ErrCeremony reports a key-ceremony step out of order or that the federation's ceremony
	// is not complete. FailedPrecondition.
	ErrCeremony = errors.New("coordinator: key ceremony")
	// ErrCatchingUp reports a node added to the cluster that is not yet a voter: it has not
	// been seen to apply what was committed when it joined. FailedPrecondition.
	ErrCatchingUp = errors.New("coordinator: new node not yet a voter")
	// ErrCommand reports a Raft log entry that does not decode.
	ErrCommand = errors.New("coordinator: malformed command")
)
