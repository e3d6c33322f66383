package hostcheck

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// UserNamespaces checks the switches that let (or stop) a user create user
// namespaces. clawrun always runs agents in one, as root too, so a kernel
// without them, or user.max_user_namespaces=0, stops everything; the
// unprivileged-only switches stop rootless users.
func UserNamespaces(h *Host) []Result {
	var out []Result
	r := Result{Check: "user namespaces", Essential: true}
	max, ok := h.readInt("/proc/sys/user/max_user_namespaces")
	switch {
	case !ok:
		r.Status, r.Detail = Fail, "user.max_user_namespaces missing: the kernel has no user namespaces"
		r.Fix = "use a kernel built with CONFIG_USER_NS=y (every current distribution kernel is)"
	case max == 0:
		r.Status, r.Detail = Fail, "user.max_user_namespaces=0: user namespaces are disabled"
		r.Fix = "sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)"
	case max < 100:
		r.Status, r.Detail = Warn, fmt.Sprintf("user.max_user_namespaces=%d: only a few agents can run at once", max)
		r.Fix = "sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)"
	default:
		r.Detail = fmt.Sprintf("user.max_user_namespaces=%d", max)
	}
	out = append(out, r)

	// Debian's and older Ubuntu's switch; absent on mainline kernels.
	if v, ok := h.readInt("/proc/sys/kernel/unprivileged_userns_clone"); ok {
		r := Result{Check: "unprivileged user namespaces", Detail: fmt.Sprintf("kernel.unprivileged_userns_clone=%d", v)}
		if v == 0 {
			if h.rootless() {
				r.Status, r.Essential = Fail, true
				r.Fix = "sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/), or run clawrun as root"
			} else {
				r.Detail += " (root is not affected)"
			}
		}
		out = append(out, r)
	}

	// Ubuntu 23.10 and later confine unprivileged user namespaces with
	// AppArmor: creating one works, but it holds no capabilities.
	if v, ok := h.readInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok {
		r := Result{Check: "AppArmor user namespaces", Detail: fmt.Sprintf("kernel.apparmor_restrict_unprivileged_userns=%d", v)}
		if v != 0 {
			if h.rootless() {
				r.Status, r.Essential = Fail, true
				r.Fix = "allow clawrun with an AppArmor profile granting 'userns,' (see docs/doctor.md), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or run as root"
			} else {
				r.Detail += " (root is not affected)"
			}
		}
		out = append(out, r)
	}

	if h.ProbeUserNS != nil {
		r := Result{Check: "create a user namespace", Detail: "tried: works", Essential: true}
		if err := h.ProbeUserNS(); err != nil {
			r.Status, r.Detail = Fail, "tried: "+err.Error()
			r.Fix = "see the user namespace lines above; a container or seccomp policy around clawrun may also forbid unshare(CLONE_NEWUSER)"
		}
		out = append(out, r)
	}
	return out
}

// SubIDs checks the user's subordinate id ranges. Without them agents still
// run, under a single-id map: only container root exists.
func SubIDs(h *Host) Result {
	r := Result{Check: "subordinate ids"}
	uids := countSubIDs(h.path("/etc/subuid"), h.User, h.UID)
	gids := countSubIDs(h.path("/etc/subgid"), h.User, h.UID)
	start := freeSubIDStart(h.path("/etc/subuid"), h.path("/etc/subgid"))
	fix := fmt.Sprintf("usermod --add-subuids %d-%d --add-subgids %d-%d %s", start, start+65535, start, start+65535, userOrUID(h))
	switch {
	case uids == 0 || gids == 0:
		r.Status = Warn
		r.Detail = fmt.Sprintf("no range for %s in /etc/subuid or /etc/subgid (subuids %d, subgids %d): agents run under a single-id map, as root inside with no capabilities", userOrUID(h), uids, gids)
		r.Fix = fix
	case uids < 65536 || gids < 65536:
		r.Status = Warn
		r.Detail = fmt.Sprintf("%d subuids, %d subgids: images using ids above that (nobody is 65534) will fail", uids, gids)
		r.Fix = fix
	default:
		r.Detail = fmt.Sprintf("%d subuids, %d subgids for %s", uids, gids, userOrUID(h))
	}
	return r
}

func userOrUID(h *Host) string {
	if h.User != "" {
		return h.User
	}
	return strconv.Itoa(h.UID)
}

// freeSubIDStart is where a new 65536-id range can start without
// overlapping any user's range in the files: 100000 (useradd's first), or
// past the last range there. Overlapping ranges would let two users'
// containers share ids.
func freeSubIDStart(paths ...string) int64 {
	start := int64(100000)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.Split(strings.TrimSpace(line), ":")
			if len(parts) != 3 {
				continue
			}
			s, err1 := strconv.ParseInt(parts[1], 10, 64)
			n, err2 := strconv.ParseInt(parts[2], 10, 64)
			if err1 == nil && err2 == nil && s >= 0 && n > 0 && s+n > start {
				start = s + n
			}
		}
	}
	return start
}

// countSubIDs sums the ranges of "user:start:count" lines for the user,
// given by name or uid.
func countSubIDs(path, name string, uid int) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) != 3 || parts[0] == "" || (parts[0] != name && parts[0] != strconv.Itoa(uid)) {
			continue
		}
		start, err1 := strconv.ParseInt(parts[1], 10, 64)
		count, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err1 == nil && err2 == nil && start >= 0 && count > 0 {
			n += count
		}
	}
	return n
}

// IDMapTools checks newuidmap and newgidmap: a rootless user can write
// more than their own id into a user namespace's map only through these
// setuid (or file-capability) helpers. clawrun uses them when they are on
// PATH and the user has subordinate ids.
func IDMapTools(h *Host) Result {
	r := Result{Check: "newuidmap/newgidmap"}
	if !h.rootless() {
		r.Detail = "not needed as root"
		return r
	}
	var found, missing, broken []string
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		p, err := h.lookPath(tool)
		if err != nil {
			missing = append(missing, tool)
			continue
		}
		shown := "/" + strings.TrimPrefix(strings.TrimPrefix(p, h.Root), "/")
		if why := privileged(p); why != "" {
			broken = append(broken, shown+" "+why)
			continue
		}
		found = append(found, shown)
	}
	subids := countSubIDs(h.path("/etc/subuid"), h.User, h.UID) > 0 && countSubIDs(h.path("/etc/subgid"), h.User, h.UID) > 0
	switch {
	case len(broken) > 0:
		r.Detail = strings.Join(broken, "; ")
		r.Fix = "reinstall them setuid root (Debian/Ubuntu: apt install --reinstall uidmap), or as root: chmod u+s $(command -v newuidmap newgidmap)"
		if subids {
			// clawrun would pick them and fail to write the id map.
			r.Status = Fail
			r.Detail += ": runs with subordinate ids will fail (idmap: single still works)"
		} else {
			r.Status = Warn
		}
	case len(missing) > 0:
		r.Status = Warn
		r.Detail = strings.Join(missing, ", ") + " not found on PATH: agents run under a single-id map"
		r.Fix = "install them (Debian/Ubuntu: apt install uidmap; Fedora: dnf install shadow-utils)"
	default:
		r.Detail = strings.Join(found, ", ")
	}
	return r
}

func (h *Host) lookPath(name string) (string, error) {
	for _, d := range h.PathDirs {
		p := filepath.Join(h.path(d), name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// privileged says why a helper cannot raise privileges, or "" when it can:
// setuid root, or a file capability as Fedora and Arch ship them.
func privileged(p string) string {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return "unreadable: " + err.Error()
	}
	if st.Mode&unix.S_ISUID != 0 && st.Uid == 0 {
		return ""
	}
	if n, err := unix.Getxattr(p, "security.capability", nil); err == nil && n > 0 {
		return ""
	}
	if st.Mode&unix.S_ISUID == 0 {
		return "is not setuid and has no file capabilities"
	}
	return fmt.Sprintf("is setuid but owned by uid %d, not root", st.Uid)
}

// Nsenter checks for util-linux's nsenter, which the egress hooks of a
// bundle (`clawrun bundle` of an agent with network egress, run by plain
// runc) use to open the proxy's listeners inside the container. clawrun's
// own runs do not need it, so its absence is only a warning.
func Nsenter(h *Host) Result {
	r := Result{Check: "nsenter"}
	p, err := h.lookPath("nsenter")
	if err != nil {
		r.Status = Warn
		r.Detail = "not found on PATH: bundles of egress agents cannot start their proxy under plain runc ('clawrun run' and 'serve' do not need it)"
		r.Fix = "install util-linux (Debian/Ubuntu: apt install util-linux)"
		return r
	}
	r.Detail = "/" + strings.TrimPrefix(strings.TrimPrefix(p, h.Root), "/") + " (for egress bundles under plain runc)"
	return r
}
