package runtime

import (
	"os"
	"path/filepath"
	"testing"

	cgroupsv3 "github.com/containerd/cgroups/v3"

	"github.com/clawrun/clawrun/policy"
)

// checksByProperty indexes TotalChecks' rows.
func checksByProperty(cs []Check) map[string]Check {
	m := map[string]Check{}
	for _, c := range cs {
		m[c.Property] = c
	}
	return m
}

// inspect reads what the parent's files hold after applyTotal wrote them,
// and a later change to them (another allowlist's run, a hand edit) is a
// mismatch. A fake cgroupfs stands in for the kernel; the integration
// tests (TestTotalPids, the cgroup v2 VM) read real ones.
func TestTotalChecks(t *testing.T) {
	const unlimited = "9223372036854771712"
	for _, c := range []struct {
		name  string
		mode  cgroupsv3.CGMode
		files map[string]string
		pids  string // the parent's pids.max file
	}{
		{"v1", cgroupsv3.Hybrid, map[string]string{
			"memory/agents/memory.limit_in_bytes": unlimited, "memory/agents/memory.memsw.limit_in_bytes": unlimited,
			"cpu/agents/cpu.cfs_period_us": "100000", "cpu/agents/cpu.cfs_quota_us": "-1", "pids/agents/pids.max": "max",
		}, "pids/agents/pids.max"},
		{"v2", cgroupsv3.Unified, map[string]string{
			"cgroup.subtree_control": "", "agents/cgroup.procs": "", "agents/cgroup.subtree_control": "",
			"agents/memory.max": "max", "agents/memory.swap.max": "max", "agents/cpu.max": "max 100000", "agents/pids.max": "max",
		}, "agents/pids.max"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := fakeCgroupfs(t, c.files)
			r := &Runtime{cgroups: cgroupHost{root: root, mode: func() cgroupsv3.CGMode { return c.mode }}}
			p := &policy.Plan{Name: "a", CgroupParent: "agents", Total: policy.Limits{MemoryBytes: 48 << 20, CPUs: 1.5, Pids: 24}}
			if err := r.applyTotal(p, "/agents/a"); err != nil {
				t.Fatal(err)
			}
			got := checksByProperty(TotalChecks(r.cgroupReader(), p, "/agents/a"))
			for prop, want := range map[string]string{
				"total.memory (cgroup /agents)": "50331648", "total.memory swap (cgroup /agents)": "0",
				"total.cpus (cgroup /agents)": "1.5", "total.pids (cgroup /agents)": "24",
			} {
				if ch := got[prop]; !ch.OK || ch.Actual != want {
					t.Errorf("%s: %+v, want %s and ok", prop, ch, want)
				}
			}
			// Another run resets pids: inspect of this agent must say so.
			if err := os.WriteFile(filepath.Join(root, "sys/fs/cgroup", c.pids), []byte("max"), 0o644); err != nil {
				t.Fatal(err)
			}
			ch := checksByProperty(TotalChecks(r.cgroupReader(), p, "/agents/a"))["total.pids (cgroup /agents)"]
			if ch.OK || ch.Actual != "max" || ch.Expected != "24" {
				t.Fatalf("reset parent not a mismatch: %+v", ch)
			}
			// A parent that is gone cannot enforce anything.
			if err := os.RemoveAll(filepath.Join(root, "sys/fs/cgroup")); err != nil {
				t.Fatal(err)
			}
			if cs := TotalChecks(r.cgroupReader(), p, "/agents/a"); len(cs) != 1 || cs[0].OK {
				t.Fatalf("missing parent: %+v", cs)
			}
		})
	}
	if cs := TotalChecks(NewCgroupV2Reader(t.TempDir()), &policy.Plan{}, "/agents/a"); cs != nil {
		t.Fatalf("no total, yet checks: %+v", cs)
	}
}
