package hostcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Current describes the real host for the calling user. The probes are
// left nil: the caller wires them to a re-execution of itself (see
// ProbeInUserNS), since only a fresh process can enter new namespaces.
func Current(stateDir, dataDir string) *Host {
	h := &Host{
		Root: "/", UID: os.Geteuid(), GID: os.Getegid(),
		CgroupMode: cgroupsv3.Mode(),
		StateDir:   stateDir, DataDir: dataDir,
	}
	if u, err := user.LookupId(strconv.Itoa(h.UID)); err == nil {
		h.User = u.Username
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		h.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	ma, mi, mc := libseccomp.GetLibraryVersion()
	h.Libseccomp = [3]uint{ma, mi, mc}
	// The same search clawrun's runtime does (exec.LookPath on PATH).
	h.PathDirs = filepath.SplitList(os.Getenv("PATH"))
	return h
}

// ProbeInUserNS runs exe with args in a new user namespace that maps only
// the caller to root, with a private mount namespace when mountNS is set,
// and reports how it failed. Nothing it mounts outlives it.
func ProbeInUserNS(exe string, args []string, mountNS bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	flags := uintptr(unix.CLONE_NEWUSER)
	if mountNS {
		flags |= unix.CLONE_NEWNS
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 flags,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return errors.New(msg)
		}
		if msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}

// MountOverlay is the probe's inside half, run by ProbeInUserNS with a
// mount namespace: it mounts an overlay of fresh directories under dir and
// unmounts it again.
func MountOverlay(dir string) error {
	// Keep every mount in this namespace, whatever the host's propagation.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	sub := map[string]string{}
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		sub[d] = filepath.Join(dir, d)
		if err := os.MkdirAll(sub[d], 0o700); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", sub["lower"], sub["upper"], sub["work"])
	err := unix.Mount("overlay", sub["merged"], "overlay", 0, opts)
	if err != nil {
		// Some kernels want user.* xattrs spelled out inside a user namespace.
		if err2 := unix.Mount("overlay", sub["merged"], "overlay", 0, opts+",userxattr"); err2 == nil {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	if err := os.WriteFile(filepath.Join(sub["merged"], "probe"), nil, 0o600); err != nil {
		_ = unix.Unmount(sub["merged"], 0)
		return fmt.Errorf("overlay mounted but not writable: %w", err)
	}
	return unix.Unmount(sub["merged"], 0)
}
