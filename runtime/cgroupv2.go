package runtime

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/hostcheck"
	"github.com/clawrun/clawrun/policy"
)

// Rootless on cgroup v2, systemd delegates a subtree to the user (usually
// user@UID.service). clawrun places each rootless agent in a leaf below it,
// DELEGATED/clawrun/NAME: the user enables the limit controllers for
// DELEGATED's and clawrun's children here, and libcontainer, root of the
// outer user namespace (nested.go) where the user's files are root's,
// creates the leaf and writes the limits. A leaf, because cgroup v2 lets no
// cgroup with controllers enabled for its children hold processes itself.

// cgroupHost is where the runtime looks for cgroups; the zero value is the
// real host. Tests point it at a fake file system.
type cgroupHost struct {
	root string                  // file system root; "" is "/"
	mode func() cgroupsv3.CGMode // nil is cgroupsv3.Mode
}

func (c cgroupHost) fsRoot() string {
	if c.root == "" {
		return "/"
	}
	return c.root
}

func (c cgroupHost) cgMode() cgroupsv3.CGMode {
	if c.mode == nil {
		return cgroupsv3.Mode()
	}
	return c.mode()
}

// limitNeeds lists the limits a plan declares and the cgroup v2
// controllers each needs, in the same order.
func limitNeeds(l policy.Limits) (names, ctrls []string) {
	if l.MemoryBytes > 0 {
		names, ctrls = append(names, "limits.memory"), append(ctrls, "memory")
	}
	if l.CPUs > 0 {
		names, ctrls = append(names, "limits.cpus"), append(ctrls, "cpu")
	}
	if l.Pids > 0 {
		names, ctrls = append(names, "limits.pids"), append(ctrls, "pids")
	}
	return names, ctrls
}

// delegation finds the user's delegated cgroup v2 subtree; nil with the
// reason when there is none (or the host is not cgroup v2).
func (r *Runtime) delegation() (*hostcheck.Delegation, error) {
	if r.cgroups.cgMode() != cgroupsv3.Unified {
		return nil, errors.New("not cgroup v2")
	}
	return hostcheck.FindDelegation(r.cgroups.fsRoot(), r.Host.UID)
}

// cgroupsPath says where a container goes: /clawrun/NAME as root; rootless
// on cgroup v2, DELEGATED/clawrun/NAME when the delegated subtree has every
// controller the plan's limits need; otherwise nowhere of its own (""),
// and checkLimits decides whether the limits may go unenforced.
func (r *Runtime) cgroupsPath(p *policy.Plan, name string) string {
	parent := p.CgroupParentName()
	if !r.Host.Rootless() {
		return "/" + parent + "/" + name
	}
	d, err := r.delegation()
	if err != nil {
		return ""
	}
	_, need := limitNeeds(p.Limits)
	for _, c := range need {
		if !slices.Contains(d.Controllers, c) {
			return ""
		}
	}
	return path.Join(d.Path, parent, name)
}

// notDelegated explains why a rootless run has no cgroup for the named
// limits and returns just the limits concerned.
func (r *Runtime) notDelegated(p *policy.Plan) (names []string, why string) {
	names, need := limitNeeds(p.Limits)
	switch r.cgroups.cgMode() {
	case cgroupsv3.Hybrid:
		return names, "this host uses cgroup v1 (hybrid), where an unprivileged user cannot own a cgroup"
	case cgroupsv3.Unified:
	default:
		return names, "this host uses cgroup v1, where an unprivileged user cannot own a cgroup"
	}
	d, err := r.delegation()
	if err != nil {
		return names, "no cgroup v2 subtree is delegated to you (" + err.Error() + ")"
	}
	var miss, missCtl []string
	for i, c := range need {
		if !slices.Contains(d.Controllers, c) {
			miss, missCtl = append(miss, names[i]), append(missCtl, c)
		}
	}
	return miss, fmt.Sprintf("the %s controller is not delegated to you at %s (delegated: %s)",
		strings.Join(missCtl, ", "), d.Path, strings.Join(append([]string{}, d.Controllers...), ", "))
}

// ensureCgroupParent prepares DELEGATED/PARENT (the directory of
// cgroupsPath, PARENT being the allowlist's cgroup_parent) for a rootless
// container: the limit controllers enabled for the children of DELEGATED
// and of DELEGATED/PARENT, and io too when the user has it and the agent
// asks for an io weight. It runs as the user, who owns both.
func (r *Runtime) ensureCgroupParent(cgroupsPath string, io bool) error {
	d, err := r.delegation()
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", cgroupsPath, err)
	}
	ctrls := d.Controllers
	if io && slices.Contains(d.All, "io") {
		ctrls = append(slices.Clone(ctrls), "io")
	}
	mount := filepath.Join(r.cgroups.fsRoot(), "sys/fs/cgroup")
	if err := enableControllers(filepath.Join(mount, d.Path), ctrls); err != nil {
		return err
	}
	own := filepath.Join(mount, path.Dir(cgroupsPath))
	if err := os.Mkdir(own, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", own, err)
	}
	return enableControllers(own, ctrls)
}

// enableControllers writes "+c" for each controller not yet enabled in
// dir's cgroup.subtree_control.
func enableControllers(dir string, ctrls []string) error {
	f := filepath.Join(dir, "cgroup.subtree_control")
	b, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("cgroup v2: %w", err)
	}
	on := strings.Fields(string(b))
	var add []string
	for _, c := range ctrls {
		if !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.WriteFile(f, []byte(strings.Join(add, " ")), 0); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("cgroup v2: enable %s in %s: %w: the cgroup holds processes itself, and cgroup v2 allows controllers only for the children of a cgroup without processes; start clawrun from a child cgroup (a systemd user session or 'systemd-run --user --scope')", strings.Join(add, " "), f, err)
		}
		return fmt.Errorf("cgroup v2: enable %s in %s: %w", strings.Join(add, " "), f, err)
	}
	return nil
}
