// Package coordinator is MedFed's Raft-replicated coordinator: the federations, their
// rosters and key ceremonies, the training rounds with their running aggregates, and the
// model versions with their lineage, kept by 3 or 5 nodes that never lose an accepted
// update (hashicorp/raft with raft-boltdb/v2 log stores, file snapshots and a mutual-TLS
// transport), served over the medfed.v1 gRPC services (internal/pb).
//
// Reach first for New, which starts a Node from a Config, and Node.Run:
//
//	cfg := coordinator.Config{NodeID: "n1", DataDir: dir, RaftAddr: "10.0.0.1:7000",
//		GRPCAddr: "10.0.0.1:7001", Peers: peers, ServerTLS: srv, ClientTLS: cli}
//	n, err := coordinator.New(cfg, logger)
//	err = n.Run(ctx) // until ctx is cancelled, then a graceful shutdown
//
// Hospitals and operators talk to the cluster through coordclient, which retries on
// another node when one is down.
//
// # Replication
//
// Every write is a command (pb.Command, one version byte then protobuf) in the Raft log,
// applied by the FSM deterministically: times are stamped by the proposer, the FSM reads no
// clock and draws no randomness. A follower answers reads from its own state and forwards
// writes to the leader (ClusterService.Propose, allowed for coordinator certificates only),
// then waits until it has applied them, so a client reads its own writes from any node.
// Before any call to the federation, ceremony or round services, a node catches up with
// what was committed when the call arrived (Raft's read index): the leader applies the
// entries of earlier terms, which Raft commits only with the first entry of its term (a
// barrier, once per term), and confirms with a heartbeat round that a quorum still follows
// it; a follower (one just restarted, say) asks the leader for that index
// (ClusterService.ReadIndex, coordinator certificates only) and applies the log as far.
// So no node answers "not found" for a federation or round the cluster has, or checks an
// upload against a round state older than an acknowledgement, and a leader cut off from
// the others does not answer from its state while the rest elect another (its lease is a
// timing assumption a paused process can outlive). Without a known leader, or when the
// leader cannot confirm that it leads, these calls fail with Unavailable (after about one
// election); ClusterService.Status answers regardless. A follower whose leader predates
// ReadIndex (a rolling upgrade) uses the leader's Status instead.
// Nodes find the leader's gRPC address in the replicated state (each leader records the
// addresses of --grpc-peers, its own included; a node without an entry there records the
// address it listens on, through the leader if it follows, unless that is 0.0.0.0 or
// [::], which would send another host to itself) or in their own configuration.
//
// Membership changes one node at a time (ClusterService.AddNode, RemoveNode, on the
// leader). A new node joins as a non-voter and is promoted once it has applied what was
// committed when it joined (ErrCatchingUp if that takes longer than the call may wait: it
// stays a non-voter, and the leader promotes it once it has caught up), so that it never
// counts towards a quorum it cannot yet help to reach. RemoveNode refuses a removal that
// would leave fewer answering voters than the new membership's quorum. Removing a node
// that is out already succeeds, so that a retry after a lost answer does; an ID the
// cluster never recorded is NotFound.
//
// Entries stay small. The bytes of an update do not enter the log at all: the node that
// receives an upload writes it to its content-addressed blob store (DataDir/blobs,
// internal/blobstore) while it copies the same chunks, over the Raft port, to as many
// peers as a majority needs (the leader first); it checks the SHA-256 the client
// announced and the content (finite floats, or a well-formed ciphertext of the model's
// length with one contribution weighted by its sample count, aggregation.CheckEncrypted),
// tells the peers to keep their copies only if both checks pass (so no node names a blob
// after a digest its bytes were not checked against), waits until a majority holds the
// bytes, and only then commits an entry carrying the digest. An update counts as accepted
// once that entry is committed, so it survives the loss of any minority of nodes. By
// default a copy counts once it is written (in the page cache; the operating system writes
// it back, as Kafka relies on replication rather than fsync); Config.SyncUpdates flushes
// every copy to disk before the acknowledgement.
// Decryption shares take the same path (checked as a share from the sender's party for
// the round's current aggregate), and so does each encrypted aggregate the leader makes.
// The other payloads (a federation's initial weights, each new model) are split into
// chunk entries of at most MaxChunkBytes, staged under a key naming the round and the
// payload's SHA-256, and consumed by one commit entry that checks the digest; the leader
// pipelines them (a few in flight while the next bytes arrive); initial weights staged by an
// attempt that never reached its create command go when the federation is created, a
// round's with the round. Updates are idempotent by
// (round, client): the same bytes again return the original acknowledgement (even after
// the round moved on), different bytes are ErrExists. So is creating a federation: the
// same spec again returns the federation as it stands (a retry whose first answer was
// lost), another spec under the same name is ErrExists. A node deletes the blobs of a round
// as soon as it applies the round's publication or abort, and blobs no round refers to
// after Config.BlobGrace. Bytes that arrive again for a later round (the same digest) are
// pinned until their commit, so the end of the earlier round does not take them along.
//
// # Key ceremony
//
// A secure federation's key ceremony (seed commitments, reveals, public-key shares through
// the FSM, which combines the collective key; threshold shares relayed as age envelopes)
// needs every member. If it is incomplete ceremony_timeout_ms (or Config.CeremonyTimeout)
// after it started, the leader starts it again with the members that took the step it
// waits at, provided they are at least min_clients and the threshold (RestartCeremonyCmd:
// the earlier messages are dropped, the generation counts up, the hospitals left out can
// no longer take part); with fewer it stops the federation, naming who is missing.
//
// # Rounds
//
// The leader's driver opens a round on the latest model version with every enrolled
// client selected, seals it when every selected client has contributed (or at the deadline
// with at least min_clients; with fewer it aborts the round), and publishes it. The FSM
// holds each contribution's digest and sample count. In plaintext mode the leader reads
// the contributions from the blob stores (its own, or a peer's through
// BlobService.GetBlob), computes the aggregate (the weighted mean in float64, or median,
// trimmed mean, Krum) and the server optimizer step (package aggregation) and commits the
// new weights with the optimizer state. In secure mode the leader adds the CKKS
// ciphertexts of a sealed round (aggregation.EncryptedWeightedSum; it holds no key),
// stores the sum on a majority and commits its digests, its contribution count and total
// weight, which every replica checks against the round; a new leader that finds a sealed
// round without one recomputes it. It then starts collective decryption with the first t contributors as the active set, the
// hospitals send decryption shares, and the leader combines t of them, decodes the
// weighted average and publishes as in plaintext mode. If a member of the active set sends
// no share within Config.DecryptionTimeout, the leader picks a new set from the responsive
// contributors and re-randomises the aggregate (adds an encryption of zero seeded from the
// round and the re-selection count, he.Vector.Rerandomize), stores it like the first and
// commits the new set with its digests; the FSM refuses a new set without a new
// ciphertext, and shares for an older one. So the new set decrypts a new ciphertext and no
// hospital ever answers one ciphertext for two active sets; with fewer
// than t responsive contributors the round aborts with a reason naming the silent parties.
// The FSM accepts one publication per round, so a new leader that resumes a round cannot
// publish it twice. An operator may stop a federation at any time (StopFederation): a
// round in progress is aborted, without counting against its hospitals, unless it is
// decrypting and already holds its t shares (the coordinator could decrypt it, so it is
// published first); ResumeFederation lets it go on.
//
// With differential privacy (spec dp_noise_multiplier > 0; the hospitals clip and add the
// noise), each published round counts as one run of the Gaussian mechanism at sampling
// rate 1, and Federation.dp_epsilon reports the epsilon spent. Before opening a round
// that would bring it past dp_epsilon_budget, the leader ends the federation as done
// (FinishFederationCmd, with the reason); a spec whose budget allows no round is refused
// (privacy.go).
//
// # Transport
//
// Raft traffic runs over mutual TLS 1.3 (a raft.StreamLayer under
// raft.NewNetworkTransport) with the node's coordinator certificate from crypto/pki: a
// node accepts a Raft connection only from a peer whose certificate the consortium CA
// signed and which binds the coordinator role, and dials peers checking the same, so a
// hospital or operator certificate cannot join the log. The copies of update bytes use
// the same port and the same TLS: a connection that opens with a marker byte carries
// blobs (a header, the bytes, the sender's verdict on them, a one-byte answer) instead of
// Raft RPCs; a gRPC copy would cost as much CPU as the upload itself. With
// Config.Insecure gRPC, Raft and the blob copies run on plain TCP. The gRPC server decodes
// the data messages of an upload itself (uploadCodec): one copy out of gRPC's receive
// buffers instead of the stock codec's two, into the previous chunk's memory when the
// copies to peers are sent from the node's file (plain TCP, sendfile).
//
// # Model as a service
//
// Every node, followers included, serves the committed model versions over the Open
// Inference Protocol v2 (package inference): REST under /v2/ on the HTTP port (HTTPS
// unless Insecure, next to /healthz and /metrics) and inference.GRPCInferenceService on
// the gRPC port. The model name is the federation name, the version the model version.
// A goroutine of the node watches the FSM and publishes each newly committed version to
// the node's inference.Registry, outside Apply; the same goroutine publishes what a
// restored snapshot or the replayed log holds at start-up. Version 0 (the initial random
// weights) is not served. Each federation keeps its Config.Inference.Retain newest
// versions loaded (default 3) plus the versions an operator pinned with
// FederationService.PinModel (a replicated command, kept in snapshots, so every node
// keeps the same ones, also after a restart); other older versions are retired, and a
// pinned one when it is unpinned. Callers authenticate with a consortium certificate (any role) or a bearer token
// from Config.InferenceTokens; with tokens configured the gRPC port also admits TLS
// connections without a client certificate, for the OIP service only (the medfed.v1
// services answer them Unauthenticated).
//
// # Errors
//
// Errors wrap the sentinel values in errors.go; the gRPC services map each to one status
// code (StatusCode) at the boundary. With mutual TLS (crypto/pki), a hospital may act only
// as the client ID its certificate binds (PermissionDenied otherwise), federations and
// cluster membership are changed by operators, and forwarding is reserved to coordinator
// nodes (a follower forwards an operator's AddNode or RemoveNode to the leader with its
// own certificate, having checked the operator's).
//
// # Not done yet
//
// Staged payloads that are not blobs (initial weights, new models) live in memory on every
// node until committed. Served models carry feature and class names only when trained on the
// built-in breast cancer table; one trained on a hospital's own CSV is explained by
// feature index.
//
// BenchmarkServedInfer (64 callers, seed CNN, one 2-core machine shared with the callers):
// gRPC at 0.65 to 0.85 of in-process Predict throughput, REST (JSON) at 0.56 to 0.72 (the
// README has the numbers).
//
// BenchmarkIngest (3 replicas, 4 uploads in flight, the hospitals and the benchmark on one
// 2-core machine, the sink's rounds interleaved with the cluster's) accepts encrypted
// updates at 0.45 to 0.56 of the rate of a bare gRPC sink for 16 MiB updates on an AMD
// EPYC, 0.43 to 0.58 for 64 MiB and 0.30 to 0.53 for 2 MiB; on a Xeon (sink timed after
// the cluster) 0.52 to 0.56, 0.49 to 0.53 and 0.37 to 0.44. With mutual TLS on every
// connection (BenchmarkIngestTLS) the AMD machine gave 0.43 to 0.52 for 16 MiB and 0.44 to
// 0.50 for 64 MiB. The design targets 0.5; it was 0.06 to 0.11 while update bytes went
// through the Raft log. What is left is CPU the sink does not spend: the digest, the
// content check, the file writes and the copy to a follower, all on the same two cores
// (the benchmark reports CPU ms per MiB for both). The benchmark also times that work
// alone and reports the ratio it leaves room for (ceiling): on a slower 2-core machine,
// for 16 and 64 MiB updates written to the page cache, with and without TLS, the ceiling
// was 0.45 to 0.55, about the target itself, and the cluster reached 0.86 to 1.10 of it
// (the ceiling is an estimate good to about a tenth). Since the copy to the follower goes
// through the kernel (sendfile and splice over plain TCP, BenchmarkBlobTransfer) and the
// blob store no longer recycles files with dirty pages, an AMD EPYC gave 0.52 to 0.59 for
// 16 and 64 MiB in page-cache mode (ceiling 0.53 to 0.57) and 0.46 to 0.52 with TLS; with
// SyncUpdates the single disk the three nodes share on one machine bounds the rate.
// Decoding upload data with one copy (uploadCodec) then cut 0.2 to 0.9 CPU ms per MiB over
// plain TCP: 0.49 to 0.55 for 16 and 64 MiB, side by side with 0.41 to 0.54 before.
//
// With mutual TLS, three later cuts on the path of an update's copy to the follower
// (Raft-port connections send a Write's records in 64 KiB socket writes, batchedTLS; the
// follower writes its file 256 KiB at a time; the leader decodes an upload's chunks into a
// ring of reused messages) took the ratio on an AMD EPYC from 0.42-0.47 to 0.50-0.59 for
// 16 and 64 MiB updates, and 0.52-0.58 for the seed CNN's (9.5 MB); over plain TCP that day
// 0.44-0.60, and 2 MiB updates, waiting on their commits, 0.30-0.37.
package coordinator
