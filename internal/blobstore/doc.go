// Package blobstore is a content-addressed file store: each blob is one file named by the
// hex SHA-256 of its bytes. The coordinator keeps encrypted updates in it, outside the Raft
// log: a node writes an upload here while it streams the bytes to its peers, and commits
// only the digest through Raft once a majority of nodes hold the file.
//
// A blob is written through a Writer, which checks the announced length (and the digest,
// unless the caller hashes the bytes itself) and makes the file visible under its digest
// only when it is complete, so readers never see a partial blob. A Writer's Commit either
// flushes the file to stable storage before it returns (durable) or leaves the write-back
// to the operating system: the mode for when replication to a majority, not the local
// disk, is what makes an acknowledged update survive the loss of a node (as Kafka does by
// default); a Writer whose blob will be flushed can start the write-back as it writes
// (WriteBehind), so that the flush has little left to do. Get re-checks the digest of what it reads, so a corrupted file is reported,
// never returned.
//
// A Store is safe for concurrent use. Several writers may write the same blob at once;
// the first complete one wins and the others' files are discarded.
package blobstore
