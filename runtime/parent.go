package runtime

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/hostcheck"
	"github.com/clawrun/clawrun/policy"
)

// The host allowlist's total caps all agents together. Every agent's
// cgroup lies below one parent (/PARENT as root, DELEGATED/PARENT rootless
// on cgroup v2; PARENT is the allowlist's cgroup_parent), and the kernel
// charges a child's memory, cpu time and tasks to its ancestors, so a limit
// on the parent caps the sum. The runtime writes the total before each
// container is created, so the file is the only source of truth: removing
// total from it resets the parent to unlimited at the next run.
//
// Everything goes through r.cgroups (cgroupHost): unit tests point it at a
// fake cgroupfs directory, integration tests use the kernel.

// totalNeeds lists the total's limits and the controller each needs, in
// the same order (as limitNeeds does for an agent).
func totalNeeds(t policy.Limits) (names, ctrls []string) {
	names, ctrls = limitNeeds(t)
	for i, n := range names {
		names[i] = "total." + strings.TrimPrefix(n, "limits.")
	}
	return names, ctrls
}

// ParentCgroup is the cgroup holding this user's agents of the given
// cgroup_parent, relative to the hierarchy root: "/PARENT" as root,
// DELEGATED/PARENT rootless on cgroup v2 with a delegation, "" where a
// rootless user has none.
func (r *Runtime) ParentCgroup(parent string) string {
	if parent == "" {
		parent = policy.DefaultCgroupParent
	}
	if !r.Host.Rootless() {
		return "/" + parent
	}
	d, err := r.delegation()
	if err != nil {
		return ""
	}
	return path.Join(d.Path, parent)
}

// checkTotal refuses a run whose host total this host cannot enforce:
// rootless without a cgroup of its own, or with the total's controllers
// not delegated. An agent's limits.enforce: best-effort does not relax it:
// the total is the host's word, not the agent's.
func (r *Runtime) checkTotal(p *policy.Plan, cgroupsPath string) error {
	names, need := totalNeeds(p.Total)
	if len(names) == 0 || !r.Host.Rootless() {
		return nil
	}
	why := ""
	if cgroupsPath == "" {
		_, why = r.notDelegated(&policy.Plan{Limits: p.Total})
		if why == "" {
			why = "the agent has no cgroup of its own, so no parent cgroup counts it"
		}
	} else if d, err := r.delegation(); err != nil {
		why = "no cgroup v2 subtree is delegated to you (" + err.Error() + ")"
	} else {
		var miss, missCtl []string
		for i, c := range need {
			if !slices.Contains(d.Controllers, c) {
				miss, missCtl = append(miss, names[i]), append(missCtl, c)
			}
		}
		if len(miss) == 0 {
			return nil
		}
		names = miss
		why = fmt.Sprintf("the %s controller is not delegated to you at %s", strings.Join(missCtl, ", "), d.Path)
	}
	return fmt.Errorf("agent %s: the host allowlist's %s (cgroup_parent %s) cannot be enforced rootless: %s; limits.enforce: best-effort does not relax a host total: enable systemd delegation of the controllers, run as root, or remove total from the allowlist ('clawrun doctor' shows which limits this host enforces)",
		p.Name, strings.Join(names, ", "), p.CgroupParentName(), why)
}

// applyTotal writes the plan's total to the parent of cgroupsPath, or
// resets the parent to unlimited when the plan has none. Rootless, the
// parent exists already (ensureCgroupParent); as root it is created here,
// before libcontainer creates the container below it.
func (r *Runtime) applyTotal(p *policy.Plan, cgroupsPath string) error {
	if cgroupsPath == "" {
		return nil // checkTotal refused a total that needs a cgroup
	}
	parent := path.Dir(cgroupsPath)
	mount := filepath.Join(r.cgroups.fsRoot(), "sys/fs/cgroup")
	var err error
	if r.cgroups.cgMode() == cgroupsv3.Unified {
		err = writeTotalV2(mount, parent, p.Total, !r.Host.Rootless())
	} else {
		err = writeTotalV1(mount, parent, p.Total)
	}
	if err != nil {
		return fmt.Errorf("agent %s: %w", p.Name, err)
	}
	return nil
}

// cgroupFile is one write of a total: the limit it enforces ("" when it
// resets one), for messages, and the value; "" in value leaves the file
// alone. An optional file may be missing (memory.memsw.* without swap
// accounting).
type cgroupFile struct {
	limit, name, value string
	optional           bool
}

// writeFiles writes each value that differs from the file's content, in
// order. Unchanged files are not written, so a parent that is already
// right needs no permission to write.
func writeFiles(dir string, files []cgroupFile) error {
	for _, f := range files {
		if f.value == "" {
			continue
		}
		p := filepath.Join(dir, f.name)
		b, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && (f.optional || f.limit == "") {
				continue
			}
			return fmt.Errorf("%s: read %s: %w", orReset(f.limit), p, err)
		}
		if strings.TrimSpace(string(b)) == f.value || (f.value == "-1" && isUnlimitedV1(b)) {
			continue
		}
		if err := os.WriteFile(p, []byte(f.value), 0); err != nil {
			return fmt.Errorf("%s: write %s to %s: %w%s", orReset(f.limit), f.value, p, err, writeHint(f.name, err))
		}
	}
	return nil
}

func orReset(limit string) string {
	if limit == "" {
		return "host total"
	}
	return limit
}

// isUnlimitedV1 recognises cgroup v1's "no limit" readings: the page
// counter maximum for memory (9223372036854771712) and -1 for cpu quota.
func isUnlimitedV1(b []byte) bool {
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return err == nil && (n == -1 || n >= 1<<62)
}

func writeHint(name string, err error) string {
	switch {
	case strings.HasPrefix(name, "memory.") && strings.Contains(err.Error(), "device or resource busy"):
		return ": the agents already use more memory than that; stop some, or raise total.memory"
	case strings.HasPrefix(name, "cpu.cfs_quota") && strings.Contains(err.Error(), "invalid argument"):
		return ": on cgroup v1 a running agent's cpus must not exceed the total; stop it, or raise total.cpus"
	}
	return ""
}

// writeTotalV1 writes t to /CTRL/PARENT of each v1 controller. A total
// needs its controller mounted; a limit the total does not set is reset
// to unlimited where the parent exists.
func writeTotalV1(mount, parent string, t policy.Limits) error {
	mem, memLimit := "-1", ""
	if t.MemoryBytes > 0 {
		mem, memLimit = strconv.FormatInt(t.MemoryBytes, 10), "total.memory"
	}
	quota, cpuLimit := "-1", ""
	if t.CPUs > 0 {
		quota, cpuLimit = strconv.FormatInt(cpuQuota(t.CPUs), 10), "total.cpus"
	}
	pids, pidsLimit := "max", ""
	if t.Pids > 0 {
		pids, pidsLimit = strconv.FormatInt(t.Pids, 10), "total.pids"
	}
	memFiles := []cgroupFile{{memLimit, "memory.limit_in_bytes", mem, false}, {memLimit, "memory.memsw.limit_in_bytes", mem, true}}
	// memsw may never be below the memory limit: raise it first, lower it
	// last.
	if cur, err := os.ReadFile(filepath.Join(mount, "memory", parent, "memory.limit_in_bytes")); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(cur)), 10, 64); err == nil && (mem == "-1" || t.MemoryBytes > n) {
			slices.Reverse(memFiles)
		}
	}
	for _, c := range []struct {
		ctrl, limit string
		files       []cgroupFile
	}{
		{"memory", memLimit, memFiles},
		{"cpu", cpuLimit, []cgroupFile{{cpuLimit, "cpu.cfs_period_us", cpuPeriodText(cpuLimit), false}, {cpuLimit, "cpu.cfs_quota_us", quota, false}}},
		{"pids", pidsLimit, []cgroupFile{{pidsLimit, "pids.max", pids, false}}},
	} {
		dir := filepath.Join(mount, c.ctrl, parent)
		if c.limit == "" {
			if _, err := os.Stat(dir); err != nil {
				continue // nothing to reset
			}
		} else {
			if _, err := os.Stat(filepath.Join(mount, c.ctrl)); err != nil {
				return fmt.Errorf("%s cannot be enforced: the cgroup v1 %s controller is not mounted at %s: enable it, or remove %s from the allowlist ('clawrun doctor')", c.limit, c.ctrl, filepath.Join(mount, c.ctrl), c.limit)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("%s: create cgroup %s: %w", c.limit, dir, err)
			}
		}
		if err := writeFiles(dir, c.files); err != nil {
			return err
		}
	}
	return nil
}

// cpuPeriodText is the v1 period written with a cpu total; none without.
func cpuPeriodText(limit string) string {
	if limit == "" {
		return "" // leave the period alone on reset
	}
	return strconv.FormatUint(cpuPeriod, 10)
}

// writeTotalV2 writes t to PARENT on cgroup v2 (memory.max with swap off
// as for agents, cpu.max, pids.max). As root it creates the parent and
// enables the total's controllers for the root's children first; rootless
// ensureCgroupParent did both.
func writeTotalV2(mount, parent string, t policy.Limits, root bool) error {
	dir := filepath.Join(mount, parent)
	names, ctrls := totalNeeds(t)
	if root && len(ctrls) > 0 {
		if err := enableControllers(mount, ctrls); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(names, ", "), err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: create cgroup %s: %w", strings.Join(names, ", "), dir, err)
		}
		if err := enableControllers(dir, ctrls); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(names, ", "), err)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		if len(names) == 0 {
			return nil // nothing to reset
		}
		return fmt.Errorf("%s: cgroup %s: %w", strings.Join(names, ", "), dir, err)
	}
	var files []cgroupFile
	add := func(limit string, f ...cgroupFile) {
		if _, err := os.Stat(filepath.Join(dir, f[0].name)); err != nil && limit == "" {
			return // controller not enabled here and nothing to set
		}
		files = append(files, f...)
	}
	if t.MemoryBytes > 0 {
		add("total.memory", cgroupFile{"total.memory", "memory.max", strconv.FormatInt(t.MemoryBytes, 10), false}, cgroupFile{"total.memory", "memory.swap.max", "0", true})
	} else {
		add("", cgroupFile{"", "memory.max", "max", false}, cgroupFile{"", "memory.swap.max", "max", true})
	}
	if t.CPUs > 0 {
		add("total.cpus", cgroupFile{"total.cpus", "cpu.max", fmt.Sprintf("%d %d", cpuQuota(t.CPUs), cpuPeriod), false})
	} else {
		add("", cgroupFile{"", "cpu.max", fmt.Sprintf("max %d", cpuPeriod), false})
	}
	if t.Pids > 0 {
		add("total.pids", cgroupFile{"total.pids", "pids.max", strconv.FormatInt(t.Pids, 10), false})
	} else {
		add("", cgroupFile{"", "pids.max", "max", false})
	}
	return writeFiles(dir, files)
}

// cpuPeriod is the CFS period clawrun uses for agents and totals alike.
const cpuPeriod = 100000

func cpuQuota(cpus float64) int64 { return int64(cpus * cpuPeriod) }

// ioWeightUnenforced says why limits.io_weight has no effect for a
// container at cgroupsPath on this host, with the fix; "" when it is
// enforced or not set. hostcheck.IOWeight decides, as for doctor.
func (r *Runtime) ioWeightUnenforced(p *policy.Plan, cgroupsPath string) string {
	if p.Limits.IOWeight == 0 {
		return ""
	}
	if cgroupsPath == "" {
		return "no cgroup of its own on this host, and no rlimit weighs block I/O"
	}
	h := &hostcheck.Host{Root: r.cgroups.fsRoot(), UID: r.Host.UID, CgroupMode: r.cgroups.cgMode()}
	if ok, _, why, fix := hostcheck.IOWeight(h); !ok {
		return why + "; " + fix
	}
	return ""
}

// spec builds a container's spec for this host: an io weight the host
// cannot enforce is left out (a strict run was refused in checkLimits),
// and ioNote says why, for inspect.
func (r *Runtime) spec(p *policy.Plan, id *Identity, cgroupsPath string) (s *specs.Spec, ioNote string, err error) {
	if s, err = Spec(p, id, cgroupsPath); err != nil {
		return nil, "", err
	}
	if ioNote = r.ioWeightUnenforced(p, cgroupsPath); ioNote != "" && s.Linux != nil && s.Linux.Resources != nil {
		s.Linux.Resources.BlockIO = nil
	}
	return s, ioNote, nil
}
