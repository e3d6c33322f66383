package hostcheck

import (
	"errors"
	"fmt"
	"os"
	"path"
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
// rootless on v2 those delegated to the user's own subtree, where clawrun
// places rootless agents.
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

// Delegation is the cgroup v2 subtree delegated to an unprivileged user:
// the topmost ancestor of the process's own cgroup that the user owns
// (systemd's user@UID.service) and whose cgroup.procs and
// cgroup.subtree_control the user may write. Rootless agents go below it.
type Delegation struct {
	// Path is relative to the cgroup2 mount, e.g.
	// /user.slice/user-1000.slice/user@1000.service.
	Path string
	// Controllers are the limit controllers (of memory, cpu, pids)
	// available there (cgroup.controllers); Enabled those already enabled
	// for its children (cgroup.subtree_control).
	Controllers, Enabled []string
	// All lists every controller in cgroup.controllers.
	All []string
}

// Errors of FindDelegation, for callers that explain them.
var (
	ErrNoOwnCgroup       = errors.New("own cgroup unknown")
	ErrNotDelegated      = errors.New("no cgroup delegated to you")
	ErrDelegationPartial = errors.New("delegation incomplete")
)

// FindDelegation looks for the subtree delegated to uid below root (the
// file system root, "/" on a real host), read from this process's
// /proc/self/cgroup. The host must be cgroup v2 (unified).
func FindDelegation(root string, uid int) (*Delegation, error) {
	h := &Host{Root: root, UID: uid}
	own, err := ownCgroupV2(h)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoOwnCgroup, err)
	}
	mount := h.path(cgroupRoot)
	deleg := ""
	for d := filepath.Join(mount, own); d != mount && strings.HasPrefix(d, mount+"/"); d = filepath.Dir(d) {
		if ownedBy(d, h.UID) {
			deleg = d
		}
	}
	if deleg == "" {
		return nil, fmt.Errorf("%w (own cgroup %s is not yours)", ErrNotDelegated, own)
	}
	rel := "/" + strings.TrimPrefix(strings.TrimPrefix(deleg, mount), "/")
	for _, f := range []string{"cgroup.procs", "cgroup.subtree_control"} {
		if !ownedBy(filepath.Join(deleg, f), h.UID) {
			return &Delegation{Path: rel}, fmt.Errorf("%w: %s is yours but %s is not writable by you", ErrDelegationPartial, rel, f)
		}
	}
	ctl, _ := h.readTrim(filepath.Join(cgroupRoot, rel, "cgroup.controllers"))
	sub, _ := h.readTrim(filepath.Join(cgroupRoot, rel, "cgroup.subtree_control"))
	return &Delegation{
		Path:        rel,
		All:         strings.Fields(ctl),
		Controllers: intersect(strings.Fields(ctl), "memory", "cpu", "pids"),
		Enabled:     strings.Fields(sub),
	}, nil
}

// rootlessV2 reports the subtree delegated to the user (FindDelegation),
// below which clawrun places rootless agents (DELEGATED/clawrun/NAME).
func rootlessV2(h *Host) (Result, Limits) {
	r := Result{Check: "cgroups"}
	var lim Limits
	d, err := FindDelegation(h.Root, h.UID)
	switch {
	case errors.Is(err, ErrNoOwnCgroup):
		r.Status, r.Detail = Warn, "cgroup v2: "+strings.TrimPrefix(err.Error(), ErrNoOwnCgroup.Error()+": ")
		lim.Why = "rootless on cgroup v2, own cgroup unknown"
		return r, lim
	case errors.Is(err, ErrNotDelegated):
		r.Status = Warn
		r.Detail = "cgroup v2: " + err.Error()
		r.Fix = "log in through systemd-logind (a real session or 'machinectl shell USER@'), or 'loginctl enable-linger USER'; then " + delegationFix
		lim.Why = "rootless on cgroup v2 without a delegated cgroup"
		return r, lim
	case err != nil:
		r.Status = Warn
		r.Detail = "cgroup v2: " + strings.TrimPrefix(err.Error(), ErrDelegationPartial.Error()+": ")
		r.Fix = delegationFix
		lim.Why = "rootless on cgroup v2, delegation incomplete"
		return r, lim
	}
	lim = limitsFrom(d.Controllers)
	lim.Why = "rootless on cgroup v2: delegated to you at " + d.Path + " (" + listOr(d.Controllers, "no limit controllers") +
		"); clawrun places agents in " + path.Join(d.Path, "clawrun", "NAME")
	r.Detail = fmt.Sprintf("cgroup v2, delegated %s: controllers %s (enabled for children: %s)", d.Path, listOr(d.All, "none"), listOr(d.Enabled, "none"))
	if len(d.Controllers) < 3 {
		r.Status = Warn
		r.Detail += "; not delegated: " + strings.Join(missing(d.Controllers, "memory", "cpu", "pids"), ", ")
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
