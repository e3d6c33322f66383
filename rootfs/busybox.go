package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// Modes of a built root filesystem. Everything is readable by everyone
// because the rootfs is read by unprivileged users and by ids mapped into
// a user namespace, which are neither owner nor group of these files.
const (
	dirMode  fs.FileMode = 0o755
	fileMode fs.FileMode = 0o644
	execMode fs.FileMode = 0o755
	tmpMode              = fs.ModeSticky | 0o777
)

// busyboxDirs are created in every busybox rootfs: mount points the runtime
// needs (/proc, /sys, /dev, /tmp), homes, and /data for grants.
var busyboxDirs = []string{
	"/bin", "/dev", "/etc", "/home", "/home/agent", "/proc", "/root",
	"/sys", "/tmp", "/usr", "/usr/bin", "/data",
}

var busyboxEtc = map[string]string{
	"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
		"agent:x:1000:1000:agent:/home/agent:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
	"/etc/group": "root:x:0:\n" +
		"agent:x:1000:\n" +
		"nobody:x:65534:\n",
	"/etc/hostname": "clawrun\n",
	"/etc/hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
}

// BuildBusybox writes a minimal root filesystem into dir, which is created
// if missing and must otherwise be an empty directory. It holds /bin/busybox
// (copied from busybox, which must be a static binary, e.g. /bin/busybox
// from Debian's busybox-static) with a /bin symlink for each of its applets,
// the usual top-level directories, /etc/passwd and /etc/group with root (0),
// agent (1000) and nobody (65534), and /etc/hostname.
//
// extra maps container paths to host files copied into the rootfs (the
// agent binary at /agent, say), keeping their permission bits, adding read
// for everyone and dropping setuid/setgid/sticky. An extra replaces a file
// or symlink already at its path, such as an applet link.
//
// On error, whatever was written into dir is removed again.
func BuildBusybox(dir, busybox string, extra map[string]string) (err error) {
	if dir == "" {
		return errors.New("busybox rootfs: empty target directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("busybox rootfs %q: %w", dir, err)
	}
	created, err := prepareEmptyDir(abs)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		if created {
			os.RemoveAll(abs)
		} else {
			clearDir(abs)
		}
	}()
	root, err := Dir(abs)
	if err != nil {
		return err
	}

	applets, err := busyboxApplets(busybox)
	if err != nil {
		return err
	}
	for _, d := range busyboxDirs {
		if err := mkdir(filepath.Join(root, d), dirMode); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), tmpMode); err != nil {
		return fmt.Errorf("busybox rootfs %s: %w", root, err)
	}
	if err := installFile(busybox, filepath.Join(root, "bin", "busybox"), execMode); err != nil {
		return err
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return fmt.Errorf("busybox rootfs %s: applet link: %w", root, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(busyboxEtc)) {
		if err := writeFile(filepath.Join(root, name), []byte(busyboxEtc[name]), fileMode); err != nil {
			return err
		}
	}
	for _, cpath := range slices.Sorted(maps.Keys(extra)) {
		if err := installExtra(root, cpath, extra[cpath]); err != nil {
			return err
		}
	}
	return nil
}

// prepareEmptyDir makes sure dir exists and is empty, reporting whether it
// created it.
func prepareEmptyDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return false, fmt.Errorf("busybox rootfs %s: %w", dir, err)
		}
		// MkdirAll's mode is filtered by umask; the rootfs must be 0755.
		if err := os.Chmod(dir, dirMode); err != nil {
			return true, fmt.Errorf("busybox rootfs %s: %w", dir, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("busybox rootfs %s: %w: the target must be an empty directory or not exist", dir, err)
	case len(entries) > 0:
		return false, fmt.Errorf("busybox rootfs %s is not empty (has %q): choose a new directory or empty it first", dir, entries[0].Name())
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return false, fmt.Errorf("busybox rootfs %s: %w", dir, err)
	}
	return false, nil
}

func clearDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// busyboxApplets lists the applets of busybox, without "busybox" itself.
func busyboxApplets(busybox string) ([]string, error) {
	if busybox == "" {
		return nil, errors.New("busybox rootfs: no busybox binary given: install a static busybox (Debian: apt-get install busybox-static) and pass its path, e.g. /bin/busybox")
	}
	fi, err := os.Stat(busybox)
	if err != nil {
		return nil, fmt.Errorf("busybox binary %q: %w: install a static busybox (Debian: apt-get install busybox-static)", busybox, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("busybox binary %q is not a regular file", busybox)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(busybox, "--list")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing applets with %q --list: %w: %s", busybox, err, strings.TrimSpace(stderr.String()))
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		// Applet names are plain file names; anything else would let the
		// binary we ran write links outside /bin.
		if a == "busybox" || a == "." || a == ".." || strings.ContainsRune(a, '/') {
			continue
		}
		applets = append(applets, a)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("busybox binary %q lists no applets: is it a busybox build with --list support?", busybox)
	}
	return applets, nil
}

// installExtra copies the host file src to the container path cpath.
func installExtra(root, cpath, src string) error {
	if !path.IsAbs(cpath) || path.Clean(cpath) == "/" {
		return fmt.Errorf("extra file %q (from %s): container path must be absolute and not /", cpath, src)
	}
	cpath = path.Clean(cpath)
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("extra file %s -> %s: %w", src, cpath, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("extra file %s -> %s: source is not a regular file (directories are not supported)", src, cpath)
	}
	// The parent may already exist as an applet link or a directory we
	// made; resolve it inside root so a link can never place the file on
	// the host.
	parent, err := securejoin.SecureJoin(root, path.Dir(cpath))
	if err != nil {
		return fmt.Errorf("extra file %s -> %s: %w", src, cpath, err)
	}
	if err := mkdirAll(root, parent); err != nil {
		return fmt.Errorf("extra file %s -> %s: %w", src, cpath, err)
	}
	dst := filepath.Join(parent, path.Base(cpath))
	if old, err := os.Lstat(dst); err == nil {
		if old.IsDir() {
			return fmt.Errorf("extra file %s -> %s: a directory is already there", src, cpath)
		}
		if err := os.Remove(dst); err != nil {
			return fmt.Errorf("extra file %s -> %s: %w", src, cpath, err)
		}
	}
	mode := fi.Mode().Perm() | 0o444
	return installFile(src, dst, mode)
}

// mkdirAll creates dir (a path under root) and its missing parents, each
// with dirMode regardless of umask.
func mkdirAll(root, dir string) error {
	if dir == root {
		return nil
	}
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if err := mkdirAll(root, filepath.Dir(dir)); err != nil {
		return err
	}
	return mkdir(dir, dirMode)
}

func mkdir(dir string, mode fs.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	return nil
}

func writeFile(name string, data []byte, mode fs.FileMode) error {
	if err := os.WriteFile(name, data, mode); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := os.Chmod(name, mode); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	return nil
}

// installFile copies src to the new file dst with exactly mode (umask and
// the source's special bits do not apply).
func installFile(src, dst string, mode fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("copying %s to %s: %w", src, dst, cerr)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if err := out.Chmod(mode); err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return nil
}
