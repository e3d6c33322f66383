package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
)

// An agent with writable_rootfs: true writes to a root of its own, never to
// its base (a shared image base or rootfs directory):
//
//	DATA/containers/NAME/upper, work   overlayfs upper and work dirs
//	DATA/containers/NAME/root          the root the container gets: the
//	                                   overlay's mount point, or a copy
//
// The overlay is mounted in the private mount namespace of the process that
// drives libcontainer (the outer user namespace's child when rootless, a
// child with CLONE_NEWNS as root), so it never shows on the host and goes
// away with the container. Where the kernel refuses overlayfs (an old
// kernel in a user namespace, an upper filesystem without the xattrs it
// needs) the base is copied instead. Either way the area is the
// container's: rm discards it.

// Writable-root methods, as inspect shows them.
const (
	WritableOverlay = "overlayfs"
	WritableCopy    = "copy"
)

// WorkspaceDir is the host directory behind an agent's /workspace.
func (r *Runtime) WorkspaceDir(agent string) string {
	return policy.WorkspaceDir(resolvedDir(r.DataDir), agent)
}

// writableDir is where a container's writable root lives on the host.
func (r *Runtime) writableDir(name string) string {
	return filepath.Join(resolvedDir(r.DataDir), "containers", name)
}

// resolvedDir is d made absolute with its symlinks resolved, as far as it
// exists: mount sources are opened refusing symlinks (pinGrants).
func resolvedDir(d string) string {
	abs, err := filepath.Abs(d)
	if err != nil {
		return d
	}
	rest := ""
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// prepareStorage checks the agent's workspace against this runtime's data
// directory and places its writable root, if it asks for either.
func (r *Runtime) prepareStorage(p *policy.Plan, name string) (*policy.Plan, error) {
	if p.Workspace {
		want := r.WorkspaceDir(p.Name)
		switch p.WorkspaceDir {
		case want:
		case "":
			return nil, fmt.Errorf("agent %s: workspace: the agent file was loaded without clawrun's data directory, so the workspace was not checked (policy.WithDataDir)", p.Name)
		default:
			return nil, fmt.Errorf("agent %s: workspace: the agent file was checked with the workspace %s, but this data directory keeps it at %s: load it with the same --data", p.Name, p.WorkspaceDir, want)
		}
	}
	if p.WritableRootfs && p.WritableRoot == "" {
		return p.WithWritableRoot(filepath.Join(r.writableDir(name), "root"))
	}
	return p, nil
}

// ensureWorkspace creates the agent's workspace (0700, the caller's): the
// agent's id maps to the caller, so it can write there.
func (r *Runtime) ensureWorkspace(p *policy.Plan) error {
	if !p.Workspace {
		return nil
	}
	if err := ensurePrivateDir(filepath.Dir(p.WorkspaceDir)); err != nil {
		return fmt.Errorf("agent %s: workspace: %w", p.Name, err)
	}
	if err := ensurePrivateDir(p.WorkspaceDir); err != nil {
		return fmt.Errorf("agent %s: workspace: %w", p.Name, err)
	}
	return nil
}

// RemoveWorkspace deletes an agent's persistent workspace. It refuses while
// a container of that agent exists, which may be using it.
func (r *Runtime) RemoveWorkspace(agent string) error {
	if err := policy.ValidName(agent); err != nil {
		return err
	}
	list, err := r.List()
	if err != nil {
		return err
	}
	for _, c := range list {
		if c.Meta != nil && c.Meta.Plan != nil && c.Meta.Plan.Workspace && c.Meta.Plan.Name == agent {
			return fmt.Errorf("workspace of %s is used by container %s: remove it first ('clawrun rm -f %s')", agent, c.Name, c.Name)
		}
	}
	d := r.WorkspaceDir(agent)
	if _, err := os.Lstat(d); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("agent %s has no workspace (looked for %s)", agent, d)
		}
		return err
	}
	return removeTree(d)
}

// setupWritableRoot assembles a container's writable root at
// p.WritableRoot. It runs in the mount namespace libcontainer will use and
// returns the method used, with why overlayfs was not.
func setupWritableRoot(p *policy.Plan, inUserns bool) (string, error) {
	dir := filepath.Dir(p.WritableRoot)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", fmt.Errorf("agent %s: writable root: %w", p.Name, err)
	}
	// A leftover of a container that is gone (the caller checked the name
	// is free) is discarded.
	if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrExist) {
		if err := removeTree(dir); err != nil {
			return "", fmt.Errorf("agent %s: writable root: %w", p.Name, err)
		}
		err = os.Mkdir(dir, 0o700)
		if err != nil {
			return "", fmt.Errorf("agent %s: writable root: %w", p.Name, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("agent %s: writable root: %w", p.Name, err)
	}
	base, err := os.Stat(p.Rootfs)
	if err != nil {
		return "", fmt.Errorf("agent %s: base %s: %w", p.Name, p.Rootfs, err)
	}
	why := overlayRoot(p.Rootfs, dir, base, inUserns)
	if why == nil {
		return WritableOverlay, nil
	}
	// The overlay may have left its directories behind; the copy starts
	// from an empty root.
	for _, d := range []string{"upper", "work", "root"} {
		_ = removeTree(filepath.Join(dir, d))
	}
	if err := rootfs.Copy(p.Rootfs, p.WritableRoot); err != nil {
		return "", fmt.Errorf("agent %s: writable root: overlayfs refused (%v), and copying %s failed: %w", p.Name, why, p.Rootfs, err)
	}
	return fmt.Sprintf("%s (overlayfs refused: %v)", WritableCopy, why), nil
}

// overlayRoot mounts dir/root as an overlay of the read-only base with
// dir/upper as the container's layer.
func overlayRoot(base, dir string, baseInfo fs.FileInfo, inUserns bool) error {
	upper, work, root := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "root")
	for _, p := range []string{base, upper, work} {
		// mount(2) splits its options at ',' and lowerdir at ':'.
		if strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("path %s holds ',', ':' or '\\'", p)
		}
	}
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	// The overlay's root takes the upper dir's mode and owner: the base's,
	// so the container's / looks as it would read-only. Left ours, / of a
	// mapped image base would belong to the agent's kept id (the invoking
	// user), which could then replace /etc and the rest of the top level.
	if err := os.Chmod(upper, baseInfo.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := baseInfo.Sys().(*syscall.Stat_t); ok {
		// Best effort: an owner this namespace does not map (a directory
		// rootfs of another host user, rootless) cannot be given, and
		// then / stays as it always was for such a base.
		_ = os.Lchown(upper, int(st.Uid), int(st.Gid))
	}
	opts := "lowerdir=" + base + ",upperdir=" + upper + ",workdir=" + work
	if inUserns {
		// In a user namespace overlayfs keeps its metadata in user.*
		// xattrs (Linux 5.11 and later).
		opts += ",userxattr"
	}
	if err := unix.Mount("overlay", root, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	return nil
}

// privateMounts keeps a root-run child's mounts out of the host's mount
// namespace: a new mount namespace still shares propagation with it.
func privateMounts() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	return nil
}

// dropWritableRoot discards a container's writable root.
func (r *Runtime) dropWritableRoot(p *policy.Plan) error {
	if p == nil || p.WritableRoot == "" {
		return nil
	}
	// In the namespace that mounted the overlay (a foreground run removing
	// itself) it must go first, or the removal would reach through it. On
	// the host the root is no mount point and this fails harmlessly.
	_ = unix.Unmount(p.WritableRoot, unix.MNT_DETACH)
	d := filepath.Dir(p.WritableRoot)
	err := removeTree(d)
	if err != nil && errors.Is(err, fs.ErrPermission) && r.Host.Rootless() && r.Host.MappingTools {
		// Over a mapped image base, the overlay's copy-ups (and a copied
		// root) keep the image's owners, subordinate ids the user cannot
		// remove as such: remove them where the range is mapped.
		if uerr := removeInUserns(r.Host, filepath.Dir(d), d); uerr != nil {
			return fmt.Errorf("%w; in a user namespace holding your subordinate ids: %v", err, uerr)
		}
		return nil
	}
	return err
}

// removeTree is rootfs.RemoveTree (os.RemoveAll that also gets through
// directories without write permission) with the directory named.
func removeTree(d string) error {
	if err := rootfs.RemoveTree(d); err != nil {
		return fmt.Errorf("remove %s: %w", d, err)
	}
	return nil
}
