package runtime

import (
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func describeTestPlan(t *testing.T, cgroupsPath string) *Report {
	t.Helper()
	p := testPlan()
	id := testIdentity()
	s, err := Spec(p, id, cgroupsPath)
	if err != nil {
		t.Fatal(err)
	}
	return Describe("rev-1", &Prepared{Plan: p, Identity: id, CgroupsPath: cgroupsPath, Spec: s})
}

func linesOf(r *Report, kind string) []string {
	var out []string
	for _, l := range r.Lines {
		if l.Kind == kind {
			out = append(out, l.Value)
		}
	}
	return out
}

func TestDescribe(t *testing.T) {
	r := describeTestPlan(t, "/clawrun/rev-1")
	if r.Name != "rev-1" {
		t.Errorf("name %q", r.Name)
	}
	one := func(kind string) string {
		t.Helper()
		v := linesOf(r, kind)
		if len(v) != 1 {
			t.Errorf("%d %q lines, want 1: %q", len(v), kind, v)
			return ""
		}
		return v[0]
	}
	contains := func(kind, got string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s line %q lacks %q", kind, got, w)
			}
		}
	}

	contains("source", one("source"), "/home/u/agents/clawrun.yaml", "agent reviewer")
	contains("rootfs", one("rootfs"), "/var/lib/clawrun/rootfs/alpine", "read-only: true")
	contains("command", one("command"), `"/bin/agent"`, `"--once"`)
	contains("workdir", one("workdir"), "/work")
	if env := linesOf(r, "env"); !slices.Equal(env, testPlan().Env) {
		t.Errorf("env lines %q", env)
	}
	contains("user", one("user"), "1000:1000 inside", "host uid 1234 gid 1234")
	contains("idmap", one("idmap"), "subordinate")
	uidmap := linesOf(r, "uidmap")
	wantUIDMap := []string{
		"container 0-999 -> host 100000-100999",
		"container 1000-1000 -> host 1234-1234",
		"container 1001-65535 -> host 101000-165534",
	}
	if !slices.Equal(uidmap, wantUIDMap) {
		t.Errorf("uidmap lines %q, want %q", uidmap, wantUIDMap)
	}
	if n := len(linesOf(r, "gidmap")); n != 3 {
		t.Errorf("%d gidmap lines, want 3", n)
	}

	ns := linesOf(r, "namespace")
	wantNS := []string{"user (new)", "mount (new)", "pid (new)", "ipc (new)", "uts (new)", "cgroup (new)", "network (new)"}
	if !slices.Equal(ns, wantNS) {
		t.Errorf("namespace lines %q, want %q", ns, wantNS)
	}
	contains("network", one("network"), "none", "loopback only")
	if h := one("hostname"); h != "reviewer" {
		t.Errorf("hostname line %q", h)
	}
	if c := one("capabilities"); c != "effective=none permitted=none bounding=none ambient=none" {
		t.Errorf("capabilities line %q", c)
	}
	if v := one("no_new_privileges"); v != "true" {
		t.Errorf("no_new_privileges line %q", v)
	}

	grants := linesOf(r, "grant")
	if len(grants) != 2 {
		t.Fatalf("grant lines %q, want 2", grants)
	}
	contains("grant", grants[0], "/work bind <- /home/u/project", "rw")
	contains("grant", grants[1], "/docs bind <- /home/u/docs", "ro", "rro")
	mounts := linesOf(r, "mount")
	if len(mounts) != 7 { // six system mounts and /tmp
		t.Errorf("mount lines %q, want 7", mounts)
	}
	if !slices.ContainsFunc(mounts, func(m string) bool { return strings.HasPrefix(m, "/tmp tmpfs") && strings.Contains(m, "size=33554432") }) {
		t.Errorf("no /tmp line with the plan's size in %q", mounts)
	}

	if m := linesOf(r, "masked"); !slices.Equal(m, MaskedPaths) {
		t.Errorf("masked lines %q", m)
	}
	if ro := linesOf(r, "readonly"); !slices.Equal(ro, ReadonlyPaths) {
		t.Errorf("readonly lines %q", ro)
	}
	sc := linesOf(r, "seccomp")
	if len(sc) < 2 || sc[0] != `profile "default"` || !slices.ContainsFunc(sc, func(l string) bool { return strings.HasPrefix(l, "default action:") }) {
		t.Errorf("seccomp lines %q", sc)
	}
	contains("limits", one("limits"), "memory=268435456 bytes (swap off)", "cpus=0.50 (quota 50000us per 100000us)", "pids=64", "/clawrun/rev-1")
	if c := one("cgroup"); c != "/clawrun/rev-1" {
		t.Errorf("cgroup line %q", c)
	}

	// The report is what `inspect --json` prints.
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
}

func TestDescribeSingleNoLimits(t *testing.T) {
	p := testPlan()
	p.Source = ""
	p.Limits.MemoryBytes, p.Limits.CPUs, p.Limits.Pids = 0, 0, 0
	p.Grants = nil
	id := &Identity{Kind: "single", HostUID: 1234, HostGID: 1234}
	id.UIDMappings = outerMap(1234, SubRange{})[:1]
	id.GIDMappings = id.UIDMappings
	s, err := Spec(p, id, "")
	if err != nil {
		t.Fatal(err)
	}
	r := Describe("adhoc", &Prepared{Plan: p, Identity: id, Spec: s})
	if v := linesOf(r, "source"); v != nil {
		t.Errorf("source lines %q for an ad-hoc run", v)
	}
	if v := linesOf(r, "idmap"); len(v) != 1 || !strings.Contains(v[0], "single-id map") {
		t.Errorf("idmap lines %q", v)
	}
	if v := linesOf(r, "uidmap"); !slices.Equal(v, []string{"container 0-0 -> host 1234-1234"}) {
		t.Errorf("uidmap lines %q", v)
	}
	if v := linesOf(r, "grant"); v != nil {
		t.Errorf("grant lines %q without grants", v)
	}
	if v := linesOf(r, "limits"); !slices.Equal(v, []string{"none declared"}) {
		t.Errorf("limits lines %q", v)
	}
	if v := linesOf(r, "cgroup"); len(v) != 1 || !strings.HasPrefix(v[0], "none of its own") {
		t.Errorf("cgroup lines %q", v)
	}
}

// TestLiveChecksSelf runs the checks against the test process itself: it
// shares every namespace with "clawrun" (us) and has no seccomp filter, so
// the checks must fail. This proves a mismatch is reported, never passed.
func TestLiveChecksSelf(t *testing.T) {
	st, err := procStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	checks := LiveChecks(os.Getpid(), nil)
	byProp := map[string]Check{}
	for _, c := range checks {
		byProp[c.Property] = c
		if c.OK != (c.Expected == c.Actual) {
			t.Errorf("check %+v: OK disagrees with expected/actual", c)
		}
	}
	for _, ns := range []string{"user", "mnt", "pid", "ipc", "uts", "cgroup", "net"} {
		c, ok := byProp["namespace "+ns]
		if !ok {
			t.Errorf("no check for namespace %s", ns)
			continue
		}
		if c.OK || c.Actual != "shared with clawrun" {
			t.Errorf("namespace %s: %+v, want a failed check (shared)", ns, c)
		}
	}
	want := map[string]string{"NoNewPrivs": "1", "CapEff": "0000000000000000", "CapPrm": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000"}
	for prop, exp := range want {
		c, ok := byProp[prop]
		if !ok {
			t.Errorf("no %s check", prop)
			continue
		}
		if c.Expected != exp || c.Actual != st[prop] {
			t.Errorf("%s check %+v, want expected %q actual %q", prop, c, exp, st[prop])
		}
	}
	c := byProp["Seccomp (/proc status)"]
	if c.Expected != "2" || c.Actual != st["Seccomp"] {
		t.Errorf("seccomp check %+v, /proc says %q", c, st["Seccomp"])
	}
	if st["Seccomp"] != "2" && c.OK {
		t.Errorf("seccomp check passes without a filter: %+v", c)
	}
	if len(checks) != 2+4+7 {
		t.Errorf("%d checks, want 13", len(checks))
	}
	if !slices.ContainsFunc(checks, func(c Check) bool { return !c.OK }) {
		t.Error("every check passes for a process that is not sandboxed")
	}
}

func TestLiveChecksNoProcess(t *testing.T) {
	checks := LiveChecks(-1, nil)
	if len(checks) != 1 || checks[0].OK || checks[0].Property != "process" || !strings.Contains(checks[0].Expected, "/proc/-1") {
		t.Errorf("checks %+v, want one failed process check", checks)
	}
}

func TestProcStatus(t *testing.T) {
	pid := os.Getpid()
	st, err := procStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st["Pid"] != strconv.Itoa(pid) {
		t.Errorf("Pid %q, want %d", st["Pid"], pid)
	}
	if st["Name"] == "" {
		t.Error("no Name")
	}
	for _, k := range []string{"Seccomp", "NoNewPrivs", "CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		v, ok := st[k]
		if !ok {
			t.Errorf("key %s missing", k)
		}
		if v != strings.TrimSpace(v) || v == "" {
			t.Errorf("key %s value %q: not trimmed or empty", k, v)
		}
	}
	if len(st["CapEff"]) != 16 {
		t.Errorf("CapEff %q is not 16 hex digits", st["CapEff"])
	}
	if _, err := procStatus(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

func TestCapMask(t *testing.T) {
	cases := []struct {
		names []string
		want  string
	}{
		{nil, "0000000000000000"},
		{[]string{"CAP_CHOWN"}, "0000000000000001"},
		{[]string{"CAP_NET_BIND_SERVICE", "CAP_KILL"}, "0000000000000420"},
		{[]string{"cap_sys_admin"}, "0000000000200000"},
	}
	for _, tc := range cases {
		if got := capMask(tc.names); got != tc.want {
			t.Errorf("capMask(%v) = %s, want %s", tc.names, got, tc.want)
		}
	}
}
