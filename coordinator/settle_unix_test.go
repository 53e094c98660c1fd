//go:build unix

package coordinator

import "syscall"

// settleDisk writes back every dirty page of the machine and waits for the disk, so
// that a benchmark does not inherit the write-back (or, on a file system mounted with
// discard, the trims of deleted files) of the one before it.
func settleDisk() { syscall.Sync() }
