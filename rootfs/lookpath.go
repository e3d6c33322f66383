package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// ErrCommandNotFound is wrapped by LookPath when no executable matches.
var ErrCommandNotFound = errors.New("command not found")

// DefaultPath is the PATH used inside the container when the environment
// sets none (the value runc, Docker and Podman use).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// LookPath resolves cmd (argv[0]) inside the root filesystem rootfs as the
// container's execve would, and returns the path found as seen inside the
// container (e.g. "/bin/sh", not the busybox it links to).
//
// If cmd contains a '/', it is taken relative to the container's root (the
// working directory is not known here). Otherwise every absolute directory
// of PATH is searched, PATH being taken from env (a "KEY=VAL" list; the last
// PATH wins, as in os/exec) or DefaultPath. Relative and empty PATH entries
// are skipped because they depend on the working directory.
//
// Symlinks are resolved scoped to rootfs, as they would be inside the
// container: an absolute link target or ".." never reaches the host. The
// result must be a regular file with at least one execute bit.
func LookPath(rootfs, cmd string, env []string) (string, error) {
	root, err := Dir(rootfs)
	if err != nil {
		return "", err
	}
	if cmd == "" {
		return "", fmt.Errorf("empty command in rootfs %s: set the agent's command: %w", root, ErrCommandNotFound)
	}

	if strings.Contains(cmd, "/") {
		p := path.Clean("/" + cmd)
		why, err := executable(root, p)
		if err != nil {
			return "", err
		}
		if why != "" {
			return "", fmt.Errorf("command %q not found in rootfs %s (%s): %w", cmd, root, why, ErrCommandNotFound)
		}
		return p, nil
	}

	pathVar := DefaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	var notes []string
	for _, dir := range strings.Split(pathVar, ":") {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, cmd)
		why, err := executable(root, p)
		if err != nil {
			return "", err
		}
		if why == "" {
			return p, nil
		}
		// "does not exist" is the normal miss of a PATH search; anything
		// else (a directory, a file without exec bit) is worth telling.
		if why != whyMissing {
			notes = append(notes, p+": "+why)
		}
	}
	msg := fmt.Sprintf("command %q not found in rootfs %s (searched PATH %s)", cmd, root, pathVar)
	if len(notes) > 0 {
		msg += "; skipped " + strings.Join(notes, ", ")
	}
	return "", fmt.Errorf("%s: %w", msg, ErrCommandNotFound)
}

const whyMissing = "does not exist"

// executable reports why the container path p inside root is not an
// executable regular file ("" if it is). Errors other than "missing" or
// "not a directory" on the way are returned as errors.
func executable(root, p string) (why string, err error) {
	host, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return "", fmt.Errorf("resolving %q in rootfs %s: %w", p, root, err)
	}
	// SecureJoin has already followed every symlink inside root, so Lstat
	// suffices and never follows a link out of it.
	fi, err := os.Lstat(host)
	switch {
	case securejoin.IsNotExist(err):
		return whyMissing, nil
	case err != nil:
		return "", fmt.Errorf("checking %q in rootfs %s: %w", p, root, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		// Only a dangling link (its target is missing) is left unresolved.
		return whyMissing, nil
	case !fi.Mode().IsRegular():
		return "not a regular file", nil
	case fi.Mode().Perm()&0o111 == 0:
		return "not executable (chmod +x it)", nil
	}
	return "", nil
}
