// Package coordclient is the Go client of a MedFed coordinator cluster, for hospitals
// (client nodes) and operator tools. It speaks the medfed.v1 gRPC services to any node of
// the cluster and moves on to another address, with exponential backoff, when a node is
// unreachable or has no leader (Retryable); Options.Logger hears of each such move. The
// writes are idempotent (a repeated update, decryption share, enrolment, key-ceremony
// message, federation create or node removal is answered as done), so a call whose answer
// was lost is retried safely.
//
// A Client is safe for concurrent use.
package coordclient
