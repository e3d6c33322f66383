package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	cgroupsv3 "github.com/containerd/cgroups/v3"

	"github.com/clawrun/clawrun/policy"
)

// CgroupLimits is what a cgroup's limit files hold, in the units of an
// allowlist's total: bytes, cpus, tasks, or "max" for unlimited. "" is a
// file that is missing (controller not enabled there, no swap accounting).
type CgroupLimits struct {
	Memory string `json:"memory"`
	// Swap is what the cgroup may use beyond Memory: v2 memory.swap.max;
	// on v1 memory.memsw.limit_in_bytes minus memory.limit_in_bytes.
	Swap string `json:"swap"`
	CPUs string `json:"cpus"`
	Pids string `json:"pids"`
}

// readLimit reads one limit file; "" when it does not exist.
func readLimit(p string) (string, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// cpusText renders a CFS quota and period as cpus, "max" without quota.
func cpusText(quota, period string) string {
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if quota == "max" || (err1 == nil && q < 0) {
		return "max"
	}
	if err1 != nil || err2 != nil || p <= 0 {
		return "unreadable: " + quota + " per " + period
	}
	return strconv.FormatFloat(float64(q)/float64(p), 'f', -1, 64)
}

// Limits reads a cgroup's limits from each v1 controller's directory.
func (c cgroupV1Reader) Limits(cg string) (*CgroupLimits, error) {
	dir := func(ctl string) string { return filepath.Join(c.root, ctl, cg) }
	if _, err := os.Stat(dir("pids")); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(dir("memory")); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("cgroup v1 %s: %w", cg, ErrNoCgroup)
		}
	}
	var l CgroupLimits
	files := map[string]string{}
	for _, f := range []string{"memory/memory.limit_in_bytes", "memory/memory.memsw.limit_in_bytes", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us", "pids/pids.max"} {
		ctl, name, _ := strings.Cut(f, "/")
		v, err := readLimit(filepath.Join(dir(ctl), name))
		if err != nil {
			return nil, fmt.Errorf("cgroup v1 %s: %w", cg, err)
		}
		files[f] = v
	}
	unlimited := func(v string) string {
		if v != "" && isUnlimitedV1([]byte(v)) {
			return "max"
		}
		return v
	}
	l.Memory = unlimited(files["memory/memory.limit_in_bytes"])
	if sw := unlimited(files["memory/memory.memsw.limit_in_bytes"]); sw == "max" || sw == "" {
		l.Swap = sw
	} else if m, err1 := strconv.ParseInt(l.Memory, 10, 64); err1 == nil {
		if s, err2 := strconv.ParseInt(sw, 10, 64); err2 == nil {
			l.Swap = strconv.FormatInt(s-m, 10)
		}
	}
	if q := files["cpu/cpu.cfs_quota_us"]; q != "" {
		l.CPUs = cpusText(q, files["cpu/cpu.cfs_period_us"])
	}
	l.Pids = files["pids/pids.max"]
	return &l, nil
}

// Limits reads a cgroup's limits from its v2 directory.
func (c cgroupV2Reader) Limits(cg string) (*CgroupLimits, error) {
	dir := filepath.Join(c.mountpoint, cg)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cgroup v2 %s: %w", cg, ErrNoCgroup)
	}
	var l CgroupLimits
	for _, f := range []struct {
		name string
		to   *string
	}{{"memory.max", &l.Memory}, {"memory.swap.max", &l.Swap}, {"cpu.max", &l.CPUs}, {"pids.max", &l.Pids}} {
		v, err := readLimit(filepath.Join(dir, f.name))
		if err != nil {
			return nil, fmt.Errorf("cgroup v2 %s: %w", cg, err)
		}
		*f.to = v
	}
	if l.CPUs != "" {
		quota, period, _ := strings.Cut(l.CPUs, " ")
		l.CPUs = cpusText(quota, period)
	}
	return &l, nil
}

// cgroupReader reads the cgroups of r's host (a fake cgroupfs in tests).
func (r *Runtime) cgroupReader() CgroupReader {
	mount := filepath.Join(r.cgroups.fsRoot(), "sys/fs/cgroup")
	if r.cgroups.cgMode() == cgroupsv3.Unified {
		return NewCgroupV2Reader(mount)
	}
	return NewCgroupV1Reader(mount)
}

// wantTotal is what the parent's files must hold for total t: applyTotal
// writes each limit the total sets and resets the others to "max".
func wantTotal(t policy.Limits) CgroupLimits {
	w := CgroupLimits{Memory: "max", Swap: "max", CPUs: "max", Pids: "max"}
	if t.MemoryBytes > 0 {
		w.Memory, w.Swap = strconv.FormatInt(t.MemoryBytes, 10), "0"
	}
	if t.CPUs > 0 {
		w.CPUs = strconv.FormatFloat(float64(cpuQuota(t.CPUs))/cpuPeriod, 'f', -1, 64)
	}
	if t.Pids > 0 {
		w.Pids = strconv.FormatInt(t.Pids, 10)
	}
	return w
}

// TotalChecks compares the host total a container was run under with
// the live limit files of its parent cgroup: another run under an
// allowlist without the total, or a hand edit, changes what holds, and
// inspect must show what is enforced, not what was configured. A plan
// without a total has nothing to check.
func TotalChecks(cg CgroupReader, p *policy.Plan, cgroupsPath string) []Check {
	if p.Total.IsZero() || cgroupsPath == "" {
		return nil
	}
	parent := path.Dir(cgroupsPath)
	got, err := cg.Limits(parent)
	if err != nil {
		return []Check{{Property: "total (parent cgroup " + parent + ")", Expected: "readable", Actual: err.Error()}}
	}
	want := wantTotal(p.Total)
	var out []Check
	for _, f := range []struct {
		name, want, got string
	}{{"memory", want.Memory, got.Memory}, {"memory swap", want.Swap, got.Swap}, {"cpus", want.CPUs, got.CPUs}, {"pids", want.Pids, got.Pids}} {
		if f.got == "" {
			if f.want == "max" || f.name == "memory swap" {
				continue // no controller file, and nothing to enforce (or no swap accounting)
			}
			f.got = "absent (controller not enabled)"
		}
		out = append(out, Check{Property: "total." + f.name + " (cgroup " + parent + ")", Expected: f.want, Actual: f.got, OK: f.want == f.got})
	}
	return out
}
