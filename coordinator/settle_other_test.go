//go:build !unix

package coordinator

// settleDisk does nothing where there is no sync(2).
func settleDisk() {}
