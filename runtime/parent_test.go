package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	cgroupsv3 "github.com/containerd/cgroups/v3"

	"github.com/clawrun/clawrun/policy"
)

// fakeCgroupfs writes files below root/sys/fs/cgroup.
func fakeCgroupfs(t *testing.T, files map[string]string) string {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "sys/fs/cgroup"), files)
	return root
}

func readFake(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "sys/fs/cgroup", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// The total goes to each v1 controller's parent as root, and removing it
// resets the parent to unlimited. A fake cgroupfs stands in for the
// kernel, which the integration tests (TestTotalPids) use.
func TestApplyTotalV1(t *testing.T) {
	const unlimited = "9223372036854771712"
	root := fakeCgroupfs(t, map[string]string{
		"memory/agents/memory.limit_in_bytes":       unlimited,
		"memory/agents/memory.memsw.limit_in_bytes": unlimited,
		"cpu/agents/cpu.cfs_period_us":              "100000",
		"cpu/agents/cpu.cfs_quota_us":               "-1",
		"pids/agents/pids.max":                      "max",
	})
	r := &Runtime{cgroups: cgroupHost{root: root, mode: func() cgroupsv3.CGMode { return cgroupsv3.Hybrid }}}
	p := &policy.Plan{Name: "a", CgroupParent: "agents", Total: policy.Limits{MemoryBytes: 64 << 20, CPUs: 1.5, Pids: 20}}
	if err := r.applyTotal(p, "/agents/a"); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"memory/agents/memory.limit_in_bytes": "67108864", "memory/agents/memory.memsw.limit_in_bytes": "67108864",
		"cpu/agents/cpu.cfs_quota_us": "150000", "pids/agents/pids.max": "20",
	} {
		if got := readFake(t, root, f); got != want {
			t.Errorf("%s = %s, want %s", f, got, want)
		}
	}
	p.Total = policy.Limits{}
	if err := r.applyTotal(p, "/agents/a"); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"memory/agents/memory.limit_in_bytes": "-1", "cpu/agents/cpu.cfs_quota_us": "-1", "pids/agents/pids.max": "max",
	} {
		if got := readFake(t, root, f); got != want {
			t.Errorf("after reset %s = %s, want %s", f, got, want)
		}
	}
}

// On v2 the total is memory.max with swap off, cpu.max and pids.max on
// DELEGATED/PARENT (here as root: /PARENT, created with its controllers).
func TestApplyTotalV2(t *testing.T) {
	root := fakeCgroupfs(t, map[string]string{
		"cgroup.subtree_control": "",
	})
	r := &Runtime{cgroups: cgroupHost{root: root, mode: func() cgroupsv3.CGMode { return cgroupsv3.Unified }}}
	p := &policy.Plan{Name: "a", Total: policy.Limits{MemoryBytes: 32 << 20, Pids: 10}}
	// A fake cgroupfs creates no interface files: make them as the kernel
	// would once the parent exists.
	dir := filepath.Join(root, "sys/fs/cgroup/clawrun")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, c := range map[string]string{"cgroup.subtree_control": "", "memory.max": "max", "memory.swap.max": "max", "pids.max": "max"} {
		os.WriteFile(filepath.Join(dir, f), []byte(c), 0o644)
	}
	if err := r.applyTotal(p, "/clawrun/a"); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"clawrun/memory.max": "33554432", "clawrun/memory.swap.max": "0", "clawrun/pids.max": "10", "cgroup.subtree_control": "+memory +pids"} {
		if got := readFake(t, root, f); got != want {
			t.Errorf("%s = %s, want %s", f, got, want)
		}
	}
}

// Rootless on cgroup v1 a host total cannot be enforced, and best-effort
// does not relax it.
func TestCheckTotalRootlessV1(t *testing.T) {
	r := &Runtime{Host: Host{UID: 1000, GID: 1000}, cgroups: cgroupHost{root: t.TempDir(), mode: func() cgroupsv3.CGMode { return cgroupsv3.Hybrid }}}
	p := &policy.Plan{Name: "a", Limits: policy.Limits{Enforce: policy.EnforceBestEffort}, Total: policy.Limits{Pids: 20, MemoryBytes: 64 << 20}}
	err := r.checkLimits(p, "")
	if err == nil {
		t.Fatal("total accepted rootless on cgroup v1")
	}
	for _, w := range []string{"total.memory, total.pids", "cgroup v1", "best-effort does not relax", "remove total from the allowlist", "clawrun doctor"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

// io_weight acts only with a weight the scheduler honours.
func TestIOWeightUnenforced(t *testing.T) {
	p := &policy.Plan{Name: "a", Limits: policy.Limits{IOWeight: 200}}
	root := fakeCgroupfs(t, map[string]string{"blkio/cgroup.procs": ""})
	r := &Runtime{cgroups: cgroupHost{root: root, mode: func() cgroupsv3.CGMode { return cgroupsv3.Hybrid }}}
	if why := r.ioWeightUnenforced(p, "/clawrun/a"); !strings.Contains(why, "BFQ") {
		t.Fatalf("no BFQ disk: %q", why)
	}
	sched := filepath.Join(root, "sys/block/sda/queue/scheduler")
	os.MkdirAll(filepath.Dir(sched), 0o755)
	os.WriteFile(sched, []byte("mq-deadline [bfq] none\n"), 0o644)
	if why := r.ioWeightUnenforced(p, "/clawrun/a"); why != "" {
		t.Fatalf("BFQ disk: %q", why)
	}
	if why := r.ioWeightUnenforced(p, ""); why == "" {
		t.Fatal("no cgroup: io_weight reported enforced")
	}
}
