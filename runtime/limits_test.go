package runtime

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
)

func TestWithRlimits(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Rlimits: []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096},
		{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
	}}}
	err := WithRlimits(
		specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024},
		specs.POSIXRlimit{Type: "RLIMIT_DATA", Hard: 64 << 20, Soft: 64 << 20},
	)(s)
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.POSIXRlimit{
		{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
		{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024},
		{Type: "RLIMIT_DATA", Hard: 64 << 20, Soft: 64 << 20},
	}
	if !reflect.DeepEqual(s.Process.Rlimits, want) {
		t.Errorf("rlimits %+v, want %+v (same type replaced, others kept)", s.Process.Rlimits, want)
	}
	if _, err := apply(t, WithRlimits(specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 1, Soft: 2})); err == nil || !strings.Contains(err.Error(), "above hard") {
		t.Errorf("soft above hard: %v", err)
	}
	if _, err := apply(t, WithRlimits(specs.POSIXRlimit{Type: "RLIMIT_BOGUS"})); err == nil {
		t.Errorf("unknown rlimit type accepted")
	}
	s, err = apply(t, WithRlimits())
	if err != nil || s.Process != nil {
		t.Errorf("no rlimits changed the spec: %+v %v", s.Process, err)
	}
}

func TestEnforcement(t *testing.T) {
	all := policy.Limits{MemoryBytes: 64 << 20, CPUs: 0.5, Pids: 32}
	best := all
	best.Enforce = policy.EnforceBestEffort
	by := func(es []LimitEnforcement) map[string]string {
		m := map[string]string{}
		for _, e := range es {
			m[e.Limit] = e.By
			if e.Rlimit != nil {
				m[e.Limit] += " " + e.Rlimit.Type
			}
		}
		return m
	}
	pids := ByRlimit + " RLIMIT_NPROC"
	if !nprocPerUserns() {
		pids = ByNotEnforced
	}
	tests := []struct {
		name   string
		l      policy.Limits
		cgroup string
		want   map[string]string
	}{
		{"none", policy.Limits{}, "", map[string]string{}},
		{"enforce alone sets nothing", policy.Limits{Enforce: policy.EnforceBestEffort}, "", map[string]string{}},
		{"cgroup", all, "/clawrun/a", map[string]string{"memory": ByCgroup, "cpus": ByCgroup, "pids": ByCgroup}},
		{"cgroup wins over best-effort", best, "/clawrun/a", map[string]string{"memory": ByCgroup, "cpus": ByCgroup, "pids": ByCgroup}},
		{"strict without cgroup", all, "", map[string]string{"memory": ByNotEnforced, "cpus": ByNotEnforced, "pids": ByNotEnforced}},
		{"best-effort without cgroup", best, "", map[string]string{
			"memory": ByRlimit + " RLIMIT_DATA", "cpus": ByNotEnforced, "pids": pids,
			"open files": ByRlimit + " RLIMIT_NOFILE", "file size": ByRlimit + " RLIMIT_FSIZE",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := by(Enforcement(tt.l, tt.cgroup))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("enforcement %v, want %v", got, tt.want)
			}
		})
	}
	// Every limit that is not enforced says why.
	for _, e := range Enforcement(best, "") {
		if e.By == ByNotEnforced && e.Note == "" {
			t.Errorf("%s not enforced without a reason", e.Limit)
		}
	}
}

func TestBestEffortSpec(t *testing.T) {
	p := testPlan()
	p.Limits = policy.Limits{MemoryBytes: 64 << 20, Pids: 32, Enforce: policy.EnforceBestEffort}
	s, err := Spec(p, testIdentity(), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Resources != nil {
		t.Errorf("cgroup resources %s without a cgroup", resourcesString(s.Linux.Resources))
	}
	got := map[string]uint64{}
	for _, r := range s.Process.Rlimits {
		if r.Soft != r.Hard {
			t.Errorf("%s soft %d hard %d: the agent could raise it", r.Type, r.Soft, r.Hard)
		}
		got[r.Type] = r.Hard
	}
	if got["RLIMIT_DATA"] != 64<<20 || got["RLIMIT_NOFILE"] != BestEffortNofile || got["RLIMIT_FSIZE"] != BestEffortFsize {
		t.Errorf("rlimits %v", got)
	}
	if _, ok := got["RLIMIT_AS"]; ok {
		t.Errorf("RLIMIT_AS set: Go agents reserve more address space than they use")
	}
	// With a cgroup the same plan gets cgroup limits and no rlimits.
	s, err = Spec(p, testIdentity(), "/clawrun/reviewer")
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Resources == nil || len(s.Process.Rlimits) != 0 {
		t.Errorf("with a cgroup: resources %s rlimits %v", resourcesString(s.Linux.Resources), s.Process.Rlimits)
	}

	r := Describe("x", &Prepared{Plan: p, Identity: testIdentity(), Spec: mustSpec(t, p, "")})
	lines := linesOf(r, "limits")
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "memory=67108864 bytes enforced by rlimit RLIMIT_DATA=67108864")
	}) {
		t.Errorf("limits lines %q", lines)
	}
	if c := linesOf(r, "cgroup"); len(c) != 1 || !strings.Contains(c[0], "best-effort") {
		t.Errorf("cgroup lines %q", c)
	}
	if len(r.Limits) == 0 {
		t.Errorf("report has no structured limits")
	}
}

func mustSpec(t *testing.T, p *policy.Plan, cg string) *specs.Spec {
	t.Helper()
	s, err := Spec(p, testIdentity(), cg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckLimits(t *testing.T) {
	rootless := &Runtime{Host: Host{UID: 1000, GID: 1000}}
	p := testPlan()
	err := rootless.checkLimits(p, "")
	if err == nil {
		t.Fatal("rootless strict limits accepted")
	}
	for _, w := range []string{"limits.memory", "limits.cpus", "limits.pids", "cannot be enforced", "best-effort", "clawrun doctor"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	p.Limits.Enforce = policy.EnforceBestEffort
	if err := rootless.checkLimits(p, ""); err != nil {
		t.Errorf("best-effort refused: %v", err)
	}
	root := &Runtime{Host: Host{UID: 0, GID: 0}}
	p.Limits.Enforce = ""
	if err := root.checkLimits(p, "/clawrun/x"); err != nil {
		t.Errorf("root refused limits: %v", err)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tt := range []struct {
		rel  string
		want bool
	}{
		{"5.14.0", true}, {"5.13.19", false}, {"6.1.0-18-amd64", true}, {"4.19.0", false},
		{"5.15.0-91-generic", true}, {"5.14-rc1", true}, {"garbage", false}, {"", false},
	} {
		if got := kernelAtLeast(tt.rel, 5, 14); got != tt.want {
			t.Errorf("kernelAtLeast(%q) = %v", tt.rel, got)
		}
	}
}

func TestRlimitChecksSelf(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	cs := rlimitChecks(os.Getpid(), []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: rl.Cur, Hard: rl.Max},
		{Type: "RLIMIT_NOFILE", Soft: rl.Cur + 1, Hard: rl.Max},
	})
	if len(cs) != 2 || !cs[0].OK || cs[1].OK {
		t.Errorf("checks %+v: the first must match, the second must not", cs)
	}
}

func TestExitStatusText(t *testing.T) {
	for _, tt := range []struct {
		ws   syscall.WaitStatus
		ooms uint64
		text string
		code int
	}{
		{3 << 8, 0, "exited (3)", 3},
		{0, 0, "exited (0)", 0},
		{syscall.WaitStatus(syscall.SIGKILL), 0, "killed (SIGKILL)", 137},
		{syscall.WaitStatus(syscall.SIGTERM), 0, "killed (SIGTERM)", 143},
		{137 << 8, 1, "oom-killed", 137},
	} {
		e := newExitStatus(tt.ws, tt.ooms)
		if e.Text != tt.text || e.Code != tt.code {
			t.Errorf("status %#x ooms %d: %q code %d, want %q code %d", uint32(tt.ws), tt.ooms, e.Text, e.Code, tt.text, tt.code)
		}
	}
}
