// Package rootfs prepares root filesystems for agent containers: it validates
// directory roots, resolves commands inside them the way the container's
// execve will, and builds small busybox-based roots for tests and demos.
// It never runs containers.
package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Dir validates a directory root filesystem and returns it as an absolute,
// cleaned, symlink-free path. The path must exist and be a directory.
func Dir(path string) (string, error) {
	if path == "" {
		return "", errors.New("rootfs: empty path: set the agent's rootfs to a directory that holds the container's root filesystem")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("rootfs %q: %w", path, err)
	}
	// Resolve symlinks once, here, so that every later join (SecureJoin, bind
	// mounts) works on a root that cannot change meaning underneath us.
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("rootfs %q does not exist (or is a dangling symlink): create it (e.g. unpack an image into it) or fix the path", path)
		}
		return "", fmt.Errorf("rootfs %q: %w: check the path and its permissions", path, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("rootfs %q: %w: check the path and its permissions", path, err)
	}
	if !fi.IsDir() {
		if real != abs {
			return "", fmt.Errorf("rootfs %q (resolved to %q) is not a directory: point rootfs at the directory that holds the container's root filesystem", path, real)
		}
		return "", fmt.Errorf("rootfs %q is not a directory: point rootfs at the directory that holds the container's root filesystem", path)
	}
	return real, nil
}
