// Package client is the hospital's node in a MedFed federation: it runs next to the
// hospital's data, trains the local replica of the federation's model and sends nothing
// but encrypted updates, sample counts, public key-ceremony material, sealed threshold
// shares and decryption shares.
//
// Reach for New with a Config and Node.Run:
//
//	cfg := client.Config{
//		Coordinators: []string{"coord1:7001", "coord2:7001", "coord3:7001"},
//		ClientID: "h1", Federation: "study", StateDir: "/var/lib/medfed",
//		Data: client.Folder{Kind: client.KindIDX, Dir: "/data/h1"},
//		TLS: tlsCfg, AgeIdentity: id,
//	}
//	n, err := client.New(cfg, logger)
//	err = n.Run(ctx) // returns once the federation has run all its rounds
//
// # What Run does
//
//  1. Reads the federation (waiting for the operator to create it), builds its model and
//     loads the local data, refusing data whose sample shape or classes do not fit the
//     model (ErrSchema) before anything is trained or sent.
//  2. Enrols with its age recipient and its Ed25519 envelope-signing key.
//  3. In a secure federation, runs the multiparty key ceremony (crypto/he): seed
//     commitment, reveal, public-key share, then seals its Shamir share for every other
//     member (crypto/seal: signed, then age-encrypted to the recipient) and opens the
//     shares addressed to it. If the coordinator restarts the ceremony without hospitals
//     that missed it, the node drops its party of the earlier attempt and takes part
//     again; a node left out stops with ErrFederation and the coordinator's reason.
//  4. For every round it is selected for: downloads the round's model version, trains
//     locally (epochs, batch size and learning rate from the federation spec; the FedProx
//     proximal term with Config.ProximalMu when the strategy is fedprox), computes the
//     update local - global, clips it to dp_clip_norm (or Config.ClipNorm), and in DP mode
//     adds its 1/min_clients share of the Gaussian noise (aggregation.ClipAndNoise) and
//     submits with weight 1 instead of its sample count, as aggregation's DP notes
//     require. It encrypts weight·update under the collective key and uploads it. In DP
//     mode it first counts the updates it has made: it makes none that would take the
//     privacy they spend, as the coordinator accounts it, past dp_epsilon_budget or
//     Config.EpsilonBudget, and then stays out of rounds (RoundReport.Skipped says why).
//  5. When the round is sealed and the coordinator asks its party for a decryption share,
//     it checks the replicated round state first: the round must be decrypting, hold at
//     least min_clients contributions, and the downloaded aggregate must count exactly
//     those contributions and their samples. It refuses otherwise (ErrRefused, logged).
//  6. Returns nil once the federation has published all its rounds, or ErrFederation with
//     the coordinator's reason once the federation stopped (its key ceremony timed out, or
//     max_aborted_rounds rounds in a row aborted: the federation's limit, which a node
//     does not second-guess with one of its own). If the coordinator left it out of
//     selection after a missed round (it was down or late), it enrols again, and is
//     selected from the next round on.
//
// # State and restarts
//
// StateDir holds state.age (the he.Party with the secret-key share and the Shamir shares,
// the envelope-signing key, per-round progress) and, per round, the update and the
// decryption share it sent, all encrypted with age to the hospital's identity or to a
// passphrase (scrypt). Every message derived from a secret is written to disk before it
// leaves, so a node killed at any point and restarted resumes without a second ceremony,
// resends the same update bytes (the coordinator returns the original acknowledgement)
// and the same decryption share bytes, and never submits two different updates or
// shares for one round.
//
// # Wire format choices
//
// The medfed.v1 Enrolment has one string for the hospital's keys: the node sends
// "<age X25519 recipient> ed25519:<base64 verifying key>" in age_recipient
// (seal.FormatEnrolment; the coordinator refuses a malformed one at enrolment). Hybrid
// (post-quantum) age identities are not supported for envelopes yet.
//
// # Not done yet
//
// The node polls the federation's state (Config.PollInterval) instead of streaming
// WatchRounds. It does not lock StateDir: run one node per state directory. Table
// features are standardised with each hospital's own statistics, not federated ones, so
// the served model takes features scaled that way (medfed predict --standardize-from
// applies a hospital's statistics to its inputs).
package client
