// Package atomicfile replaces a file's content so that a reader, or the file system after
// a crash, sees the old content or the whole new content, never a mix or a truncation.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write writes path through write: into a temporary file in path's directory (named
// ".BASE.tmp*", so a crash leaves at most such a file behind), which is synced, given perm,
// and renamed over path; then the directory is synced so that the rename survives a crash.
// If write or any step up to the rename fails, path is unchanged and the temporary file is
// removed; if only the directory sync fails, path has the new content, which a crash may
// still undo.
func Write(path string, perm fs.FileMode, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if err := SyncDir(dir); err != nil {
		return err
	}
	return nil
}

// WriteFile is Write for data already in memory, like os.WriteFile.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// SyncDir makes the entries of dir (a rename into it, say) durable. File systems that
// cannot sync a directory (EINVAL, ENOTSUP) are taken to need no sync.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}
