package hostcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// delegationFix is the usual systemd recipe for handing controllers to
// users (as in the rootless-containers and Podman guides).
const delegationFix = "as root: mkdir -p /etc/systemd/system/user@.service.d && " +
	"printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && " +
	"systemctl daemon-reload, then log in again"

// Cgroups reports the cgroup version and which controllers clawrun can use
// for this user, and derives the limits the host enforces: as root all
// present controllers; rootless on v1 none (a user cannot own a v1 cgroup);
// rootless on v2 those delegated to the user's own subtree.
func Cgroups(h *Host) (Result, Limits) {
	r := Result{Check: "cgroups"}
	var lim Limits
	switch h.CgroupMode {
	case cgroupsv3.Legacy, cgroupsv3.Hybrid:
		version := "cgroup v1"
		if h.CgroupMode == cgroupsv3.Hybrid {
			version = "cgroup v1 (hybrid)"
		}
		if h.rootless() {
			r.Status = Warn
			r.Detail = version + ": an unprivileged user cannot own a cgroup, so no limit is enforceable rootless"
			r.Fix = "run agents with limits as root, or boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and systemd delegation"
			lim.Why = "rootless on " + version + ": runs that declare limits are refused"
			return r, lim
		}
		var have, miss []string
		for _, c := range []string{"memory", "cpu", "pids"} {
			if st, err := os.Stat(h.path(filepath.Join(cgroupRoot, c))); err == nil && st.IsDir() {
				have = append(have, c)
			} else {
				miss = append(miss, c)
			}
		}
		lim = limitsFrom(have)
		lim.Why = "root on " + version + ": clawrun creates /clawrun/NAME in each controller"
		r.Detail = version + ", as root: controllers " + listOr(have, "none")
		if len(miss) > 0 {
			r.Status = Warn
			r.Detail += "; not mounted: " + strings.Join(miss, ", ")
			r.Fix = "enable the missing controllers in the kernel (cgroup_enable=memory on the kernel command line for memory)"
		}
		return r, lim
	case cgroupsv3.Unified:
		if !h.rootless() {
			ctl, _ := h.readTrim(filepath.Join(cgroupRoot, "cgroup.controllers"))
			have := intersect(strings.Fields(ctl), "memory", "cpu", "pids")
			lim = limitsFrom(have)
			lim.Why = "root on cgroup v2"
			r.Detail = "cgroup v2, as root: controllers " + listOr(have, "none")
			if len(have) < 3 {
				r.Status = Warn
				r.Fix = "enable the missing controllers in the kernel (cgroup_enable=memory on the kernel command line for memory)"
			}
			return r, lim
		}
		return rootlessV2(h)
	}
	r.Status = Warn
	r.Detail = "no cgroup hierarchy at /sys/fs/cgroup: no limit is enforceable"
	r.Fix = "mount cgroup2 on /sys/fs/cgroup (every systemd host does)"
	lim.Why = "no cgroup hierarchy"
	return r, lim
}

// rootlessV2 finds the subtree delegated to the user: the topmost ancestor
// of the process's own cgroup that the user owns (systemd's user@UID.service)
// and whose cgroup.procs and cgroup.subtree_control the user may write.
func rootlessV2(h *Host) (Result, Limits) {
	r := Result{Check: "cgroups"}
	var lim Limits
	own, err := ownCgroupV2(h)
	if err != nil {
		r.Status, r.Detail = Warn, "cgroup v2: "+err.Error()
		lim.Why = "rootless on cgroup v2, own cgroup unknown"
		return r, lim
	}
	mount := h.path(cgroupRoot)
	deleg := ""
	for d := filepath.Join(mount, own); d != mount && strings.HasPrefix(d, mount+"/"); d = filepath.Dir(d) {
		if ownedBy(d, h.UID) {
			deleg = d
		}
	}
	if deleg == "" {
		r.Status = Warn
		r.Detail = fmt.Sprintf("cgroup v2: no cgroup delegated to you (own cgroup %s is not yours)", own)
		r.Fix = "log in through systemd-logind (a real session or 'machinectl shell USER@'), or 'loginctl enable-linger USER'; then " + delegationFix
		lim.Why = "rootless on cgroup v2 without a delegated cgroup"
		return r, lim
	}
	rel := "/" + strings.TrimPrefix(strings.TrimPrefix(deleg, mount), "/")
	for _, f := range []string{"cgroup.procs", "cgroup.subtree_control"} {
		if !ownedBy(filepath.Join(deleg, f), h.UID) {
			r.Status = Warn
			r.Detail = fmt.Sprintf("cgroup v2: %s is yours but %s is not writable by you", rel, f)
			r.Fix = delegationFix
			lim.Why = "rootless on cgroup v2, delegation incomplete"
			return r, lim
		}
	}
	ctl, _ := h.readTrim(filepath.Join(cgroupRoot, rel, "cgroup.controllers"))
	sub, _ := h.readTrim(filepath.Join(cgroupRoot, rel, "cgroup.subtree_control"))
	have := intersect(strings.Fields(ctl), "memory", "cpu", "pids")
	// The host is ready, but this clawrun does not place rootless agents in
	// the delegated subtree yet, and `run` refuses limits there: say so
	// rather than promise limits that would be refused.
	lim.Why = "rootless on cgroup v2: delegated to you at " + rel + " (" + listOr(have, "no limit controllers") +
		"), but this clawrun does not use rootless cgroup v2 delegation yet; run agents with limits as root"
	r.Detail = fmt.Sprintf("cgroup v2, delegated %s: controllers %s (enabled for children: %s)", rel, listOr(strings.Fields(ctl), "none"), listOr(strings.Fields(sub), "none"))
	if len(have) < 3 {
		r.Status = Warn
		r.Detail += "; not delegated: " + strings.Join(missing(have, "memory", "cpu", "pids"), ", ")
		r.Fix = delegationFix
	}
	return r, lim
}

// ownCgroupV2 reads the unified ("0::") line of /proc/self/cgroup.
func ownCgroupV2(h *Host) (string, error) {
	s, ok := h.readTrim("/proc/self/cgroup")
	if !ok {
		return "", fmt.Errorf("cannot read /proc/self/cgroup")
	}
	for _, line := range strings.Split(s, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 entry in /proc/self/cgroup")
}

func ownedBy(p string, uid int) bool {
	var st unix.Stat_t
	return unix.Stat(p, &st) == nil && int(st.Uid) == uid
}

func limitsFrom(controllers []string) Limits {
	var l Limits
	for _, c := range controllers {
		switch c {
		case "memory":
			l.Memory = true
		case "cpu":
			l.CPU = true
		case "pids":
			l.Pids = true
		}
	}
	return l
}

// intersect keeps the wanted names present in have, in wanted's order.
func intersect(have []string, wanted ...string) []string {
	var out []string
	for _, w := range wanted {
		for _, h := range have {
			if h == w {
				out = append(out, w)
				break
			}
		}
	}
	return out
}

func missing(have []string, wanted ...string) []string {
	var out []string
	for _, w := range wanted {
		if len(intersect(have, w)) == 0 {
			out = append(out, w)
		}
	}
	return out
}

func listOr(l []string, empty string) string {
	if len(l) == 0 {
		return empty
	}
	return strings.Join(l, ", ")
}
