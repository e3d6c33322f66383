package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeCgroups is the test CgroupReader: canned usage per cgroup path.
type fakeCgroups struct {
	version int
	usage   map[string]*Usage
	err     error
}

func (f fakeCgroups) Version() int { return f.version }

// Limits: the stats tests read no limits (parent_live_test.go reads a fake
// cgroupfs through the real readers).
func (f fakeCgroups) Limits(string) (*CgroupLimits, error) { return nil, ErrNoCgroup }

func (f fakeCgroups) Read(path string) (*Usage, error) {
	if f.err != nil {
		return nil, f.err
	}
	u, ok := f.usage[path]
	if !ok {
		return nil, ErrNoCgroup
	}
	return u, nil
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func val(t *testing.T, what string, p *uint64) uint64 {
	t.Helper()
	if p == nil {
		t.Fatalf("%s missing", what)
	}
	return *p
}

func TestCgroupV1Reader(t *testing.T) {
	root := t.TempDir()
	cg := "clawrun/a"
	writeTree(t, root, map[string]string{
		"memory/memory.usage_in_bytes":                "1",
		"memory/" + cg + "/memory.stat":               "cache 4096\nrss 8192\n",
		"memory/" + cg + "/memory.usage_in_bytes":     "12288",
		"memory/" + cg + "/memory.max_usage_in_bytes": "20480",
		"memory/" + cg + "/memory.limit_in_bytes":     "67108864",
		"memory/" + cg + "/memory.failcnt":            "0",
		"memory/" + cg + "/memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"cpuacct/" + cg + "/cpuacct.usage":            "5000000",
		"cpuacct/" + cg + "/cpuacct.usage_percpu":     "2500000 2500000",
		"cpuacct/" + cg + "/cpuacct.stat":             "user 1\nsystem 1\n",
		"cpu/" + cg + "/cpu.stat":                     "nr_periods 10\nnr_throttled 7\nthrottled_time 300000\n",
		"pids/" + cg + "/pids.current":                "3",
		"pids/" + cg + "/pids.max":                    "16",
	})
	r := NewCgroupV1Reader(root)
	u, err := r.Read("/" + cg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		got  *uint64
		want uint64
	}{
		{"cpu", u.CPUNanos, 5000000},
		{"memory", u.MemoryBytes, 12288},
		{"peak", u.MemoryPeakBytes, 20480},
		{"pids", u.Pids, 3},
		{"oom", u.OOMKills, 2},
		{"periods", u.CPUPeriods, 10},
		{"throttled", u.CPUThrottled, 7},
		{"throttled ns", u.CPUThrottledNanos, 300000},
	} {
		if g := val(t, c.what, c.got); g != c.want {
			t.Errorf("%s = %d, want %d", c.what, g, c.want)
		}
	}

	// An old kernel without oom_kill: unknown, not zero.
	writeTree(t, root, map[string]string{"memory/" + cg + "/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n"})
	if u, err = r.Read("/" + cg); err != nil || u.OOMKills != nil {
		t.Fatalf("oom kills without oom_kill line: %v, %v", u.OOMKills, err)
	}

	if _, err := r.Read("/clawrun/gone"); !errors.Is(err, ErrNoCgroup) {
		t.Fatalf("missing cgroup: %v, want ErrNoCgroup", err)
	}
}

func TestCgroupV2Reader(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"clawrun/a/cgroup.procs":     "",
		"clawrun/a/cpu.stat":         "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 40\nnr_throttled 9\nthrottled_usec 2000\n",
		"clawrun/a/cpu.max":          "20000 100000\n",
		"clawrun/a/memory.current":   "4096\n",
		"clawrun/a/memory.peak":      "8192\n",
		"clawrun/a/memory.stat":      "anon 4096\n",
		"clawrun/a/memory.events":    "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
		"clawrun/a/pids.current":     "2\n",
		"clawrun/a/pids.max":         "max\n",
		"clawrun/nocpu/cgroup.procs": "",
		"clawrun/nocpu/cpu.stat":     "usage_usec 7\nuser_usec 7\nsystem_usec 0\n",
	})
	r := NewCgroupV2Reader(root)
	u, err := r.Read("/clawrun/a")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		got  *uint64
		want uint64
	}{
		{"cpu", u.CPUNanos, 1500000},
		{"memory", u.MemoryBytes, 4096},
		{"peak", u.MemoryPeakBytes, 8192},
		{"pids", u.Pids, 2},
		{"oom", u.OOMKills, 1},
		{"periods", u.CPUPeriods, 40},
		{"throttled", u.CPUThrottled, 9},
		{"throttled ns", u.CPUThrottledNanos, 2000000},
	} {
		if g := val(t, c.what, c.got); g != c.want {
			t.Errorf("%s = %d, want %d", c.what, g, c.want)
		}
	}

	// Only the cpu usage exists when no controller is enabled: the rest
	// is unknown, not zero.
	u, err = r.Read("/clawrun/nocpu")
	if err != nil {
		t.Fatal(err)
	}
	if val(t, "cpu", u.CPUNanos) != 7000 || u.MemoryBytes != nil || u.Pids != nil || u.CPUThrottled != nil || u.OOMKills != nil {
		t.Fatalf("controller-less cgroup: %+v", u)
	}

	if _, err := r.Read("/clawrun/gone"); !errors.Is(err, ErrNoCgroup) {
		t.Fatalf("missing cgroup: %v, want ErrNoCgroup", err)
	}
}

func TestContainerStats(t *testing.T) {
	busy := &Usage{CPUNanos: ptr(42)}
	for _, c := range []struct {
		name      string
		in        Info
		cg        fakeCgroups
		wantUsage bool
		wantNote  string
	}{
		{"root v1", Info{Name: "a", Status: "running", Meta: &Meta{CgroupsPath: "/clawrun/a"}},
			fakeCgroups{version: 1, usage: map[string]*Usage{"/clawrun/a": busy}}, true, ""},
		{"rootless v1", Info{Name: "a", Status: "running", Meta: &Meta{}},
			fakeCgroups{version: 1}, false, "no cgroup (rootless on cgroup v1)"},
		{"rootless v2 undelegated", Info{Name: "a", Status: "running", Meta: &Meta{}},
			fakeCgroups{version: 2}, false, "no cgroup of its own (rootless, no delegated cgroup)"},
		{"no meta", Info{Name: "a", Status: "running"},
			fakeCgroups{version: 1}, false, "no cgroup (rootless on cgroup v1)"},
		{"gone", Info{Name: "a", Status: "stopped", Meta: &Meta{CgroupsPath: "/clawrun/a"}},
			fakeCgroups{version: 1}, false, "cgroup gone (container stopped)"},
		{"read error", Info{Name: "a", Status: "running", Meta: &Meta{CgroupsPath: "/clawrun/a"}},
			fakeCgroups{version: 2, err: errors.New("permission denied")}, false, "permission denied"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ContainerStats(c.in, c.cg)
			if (s.Usage != nil) != c.wantUsage || s.Note != c.wantNote {
				t.Fatalf("got usage %v note %q, want usage %v note %q", s.Usage, s.Note, c.wantUsage, c.wantNote)
			}
			if c.wantUsage && (s.Cgroup != "/clawrun/a" || s.CgroupVersion != c.cg.version) {
				t.Fatalf("cgroup %q v%d", s.Cgroup, s.CgroupVersion)
			}
		})
	}
}
