package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultCgroupParent is the cgroup that holds agents when the allowlist
// names none: /clawrun as root, DELEGATED/clawrun rootless on cgroup v2.
const DefaultCgroupParent = "clawrun"

// CgroupParentName is the plan's parent cgroup name, DefaultCgroupParent
// for plans recorded before the allowlist could name one.
func (p *Plan) CgroupParentName() string {
	if p.CgroupParent == "" {
		return DefaultCgroupParent
	}
	return p.CgroupParent
}

// ParentName is cgroup_parent, or DefaultCgroupParent when unset.
func (a *Allowlist) ParentName() string {
	if a.CgroupParent == "" {
		return DefaultCgroupParent
	}
	return a.CgroupParent
}

// applyTotal copies the host's parent cgroup and total into a plan, so
// that every caller of the runtime (run, serve, the gateway) writes the
// same total without reading the allowlist again.
func (a *Allowlist) applyTotal(p *Plan) {
	p.CgroupParent, p.Total = a.CgroupParent, a.Total
}

// checkCgroupParent accepts one plain cgroup name: the runtime joins it
// below the hierarchy root or the delegated subtree, so a path or ".."
// would place agents somewhere else.
func checkCgroupParent(s string) error {
	if s == "" || s == "." || s == ".." || strings.HasPrefix(s, ".") || len(s) > 64 {
		return fmt.Errorf("invalid cgroup_parent %q: give one cgroup name such as clawrun (letters, digits, '-', '_', '.'; not starting with '.')", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("invalid cgroup_parent %q: %q is not allowed; give one cgroup name such as clawrun (letters, digits, '-', '_', '.')", s, r)
		}
	}
	// clawrun owns its parent: every run writes the total there, or resets
	// it to unlimited. A systemd unit's cgroup (system.slice, user.slice,
	// init.scope, a user manager's app.slice) has limits of systemd's,
	// which a run would overwrite, and the host's services below it.
	for _, unit := range []string{".slice", ".scope", ".service", ".mount", ".socket", ".swap"} {
		if strings.HasSuffix(s, unit) {
			return fmt.Errorf("invalid cgroup_parent %q: a systemd unit's cgroup, whose limits (and services) clawrun would overwrite on every run; give a name of clawrun's own such as clawrun", s)
		}
	}
	return nil
}

// parseIOWeight reads limits.io_weight: the range of the OCI spec's blkio
// weight, which runc also converts for cgroup v2's io.weight.
func parseIOWeight(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n < 10 || n > 1000 {
		return 0, fmt.Errorf("invalid io_weight %q: give a whole number from 10 to 1000 (100 is an even share)", s)
	}
	return uint16(n), nil
}

// cpusAboveTotal says why cpus is refused under the host allowlist's
// total.cpus, "" when it is not: cgroup v1 refuses a child's cpu quota
// above its parent's (and on v2 it could never be reached). Memory and
// pids above the total are allowed: each is a cap on one agent, the total
// on all of them, and an agent may use more of the total while the others
// are idle.
func (a *Allowlist) cpusAboveTotal(cpus float64) string {
	t := a.Total
	if t.CPUs == 0 || cpus <= t.CPUs {
		return ""
	}
	total := strconv.FormatFloat(t.CPUs, 'f', -1, 64)
	return fmt.Sprintf("%s is above the host's total.cpus %s (%s, line %d), which caps all agents together (cgroup v1 refuses an agent quota above it): lower it to at most %s, or raise total.cpus there",
		strconv.FormatFloat(cpus, 'f', -1, 64), total, a.Path, a.TotalLine, total)
}

// aboveTotal reports an agent's cpus above the total (cpusAboveTotal) on
// the line of cpus.
func (l *loader) aboveTotal(m *fields, path string, lim Limits) {
	msg := l.ck.allow.cpusAboveTotal(lim.CPUs)
	if msg == "" {
		return
	}
	line := 0
	if v := m.get("cpus"); v != nil {
		line = deref(v).Line
	}
	l.c.addRule(line, join(path, "cpus"), RuleAllowlist, "%s", msg)
}
