package hostcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Seccomp checks the kernel's seccomp filter support and the libseccomp
// clawrun was linked against. Every agent runs under a seccomp profile,
// so a kernel without filters stops everything.
func Seccomp(h *Host) []Result {
	k := Result{Check: "seccomp (kernel)", Essential: true}
	if acts, ok := h.readTrim("/proc/sys/kernel/seccomp/actions_avail"); ok {
		have := strings.Fields(acts)
		if miss := missing(have, "allow", "errno"); len(miss) > 0 {
			k.Status, k.Detail = Fail, "filter actions lack "+strings.Join(miss, ", ")+" (have: "+acts+")"
			k.Fix = "use a kernel built with CONFIG_SECCOMP_FILTER=y"
		} else {
			k.Detail = "filter actions: " + acts
		}
	} else if status, ok := h.readTrim("/proc/self/status"); ok && strings.Contains(status, "\nSeccomp:") {
		// Before Linux 4.14 there is no actions_avail; filters still work.
		k.Status, k.Detail = Warn, "seccomp present, but actions_avail is missing (kernel older than 4.14)"
		k.Fix = "upgrade the kernel for full seccomp support"
	} else {
		k.Status, k.Detail = Fail, "the kernel has no seccomp support"
		k.Fix = "use a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y"
	}

	l := Result{Check: "libseccomp"}
	v := h.Libseccomp
	switch {
	case v == [3]uint{}:
		l.Status, l.Detail = Warn, "version unknown"
		l.Fix = "install libseccomp 2.5 or later (Debian/Ubuntu: libseccomp2)"
	case v[0] < 2 || v[0] == 2 && v[1] < 5:
		l.Status, l.Detail = Warn, fmt.Sprintf("%d.%d.%d: older than 2.5, newer syscalls may be unknown to the profile", v[0], v[1], v[2])
		l.Fix = "install libseccomp 2.5 or later (Debian/Ubuntu: libseccomp2)"
	default:
		l.Detail = fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2])
	}
	return []Result{k, l}
}

// Overlay reports whether an unprivileged user can mount overlayfs in a
// user namespace: Linux 5.11 allows it. With a probe it is tried for real;
// without, the kernel version is the (WARN-level) heuristic. Root
// filesystems work without it, copied instead of layered.
func Overlay(h *Host) Result {
	r := Result{Check: "unprivileged overlayfs"}
	fix := "Linux 5.11 or later mounts overlayfs in user namespaces; until then rootfs layers are copied (slower, more disk)"
	if h.ProbeOverlay != nil {
		if err := h.ProbeOverlay(); err != nil {
			r.Status, r.Detail, r.Fix = Warn, "tried in a user namespace: "+err.Error(), fix
		} else {
			r.Detail = "tried in a user namespace: works"
		}
		return r
	}
	if atLeast(h.Kernel, 5, 11) {
		r.Detail = "kernel " + h.Kernel + " is 5.11 or later (not tried)"
		return r
	}
	r.Status, r.Detail, r.Fix = Warn, "kernel "+h.Kernel+" is older than 5.11", fix
	return r
}

// Dir checks one of clawrun's own directories: it must belong to the user
// (runtime.New refuses it otherwise) and should be private, since it holds
// container state and agents' logs.
func Dir(h *Host, what, dir, flag string) Result {
	r := Result{Check: what, Essential: true}
	if dir == "" {
		r.Detail = "not set"
		r.Essential = false
		return r
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.Status, r.Detail = Fail, fmt.Sprintf("%s: %v", dir, err)
			r.Fix = fmt.Sprintf("pass %s with a directory of your own", flag)
			return r
		}
		// It will be created 0700; its nearest existing parent must let us.
		parent := filepath.Dir(dir)
		for {
			if _, err := os.Stat(parent); err == nil || parent == "/" {
				break
			}
			parent = filepath.Dir(parent)
		}
		if unix.Access(parent, unix.W_OK|unix.X_OK) != nil {
			r.Status = Fail
			r.Detail = fmt.Sprintf("%s does not exist and %s is not writable by you", dir, parent)
			r.Fix = fmt.Sprintf("pass %s with a directory of your own", flag)
			return r
		}
		r.Detail = dir + " (created with mode 0700 on first use)"
		return r
	}
	mode := st.Mode & 0o7777
	switch {
	case int(st.Uid) != h.UID:
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s belongs to uid %d, not to you (uid %d)", dir, st.Uid, h.UID)
		r.Fix = fmt.Sprintf("pass %s with a directory of your own", flag)
	case mode&0o077 != 0:
		r.Status = Warn
		r.Detail = fmt.Sprintf("%s has mode %04o: others can read container state or logs", dir, mode)
		r.Fix = "chmod 700 " + dir
	default:
		r.Detail = fmt.Sprintf("%s (yours, mode %04o)", dir, mode)
	}
	return r
}
