// Package pki runs MedFed's consortium certificate authority and builds the
// mutual-TLS configurations that every party uses, so that each connection is
// bound to a role and a MedFed ID (node ID, hospital client ID or operator
// name).
//
// Reach for NewCA once per consortium (the `medfed pki init` command) and
// CA.Issue for each coordinator node, hospital and operator (`medfed pki
// issue`). Reach for ServerTLSConfig on the coordinator and ClientTLSConfig
// on hospitals, operators and coordinator peers. On an accepted connection,
// IdentityFromTLS says who is on the other end and CheckSender refuses a
// message whose claimed sender differs from the certificate.
//
// # Identities
//
// A certificate names its holder twice: the ID in the Subject CommonName (for
// people reading it with openssl) and a URI subject alternative name
// medfed://<role>/<id> (in the spirit of SPIFFE IDs), for example
// medfed://hospital/h1. Only the URI is authoritative; Identity refuses a
// certificate without exactly one such URI, or whose CommonName disagrees
// with it. Roles are coordinator, hospital and operator. IDs are 1 to 64
// characters from [A-Za-z0-9._-] and start with a letter or digit (so an ID
// is always a safe file name and never "." or "..").
//
// # Keys and usages
//
// Keys are ECDSA P-256 (PKCS #8 PEM), chosen over Ed25519 because every TLS
// stack and hardware module speaks it. The CA signs leaves only (path length
// zero). Coordinator certificates carry both server and client
// authentication, because a coordinator serves hospitals and also dials its
// Raft peers; hospital and operator certificates carry client authentication
// only, so they cannot pose as a server. A coordinator certificate must name
// at least one DNS name or IP address, since clients check the server's name.
//
// The TLS configurations require TLS 1.3 and a certificate from the CA on
// both sides. The server also refuses clients without a MedFed identity, and
// the client refuses servers whose role is not coordinator.
//
// # Not covered
//
// There is no revocation list or OCSP. Leaf certificates are short-lived
// (DefaultLeafValidity, 90 days); to cut off a party before expiry, remove
// its ID from the federation roster, which the coordinator checks on every
// request. The CA key is a plain PEM file with mode 0600: keep it offline.
//
// Apart from LoadCA, CA.Save, SaveKeyPair and the two TLS configuration
// builders, which read or write the files they are given, the package does
// no I/O. All values are safe for concurrent use once built.
package pki
