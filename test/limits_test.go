package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// As root on cgroup v1 the limits are real cgroup limits; rootless on cgroup
// v1 they cannot be enforced and the run must refuse rather than drop them.
func TestLimits(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  limited:
    rootfs: %s
    command: ["/bin/sleep", "1000"]
    limits: {memory: 64M, cpus: 0.5, pids: 16}
`, baseRootfs))
	if !isRoot() {
		r := e.run("run", "-d", "limited")
		if r.code == 0 {
			t.Fatalf("rootless run with limits on this host succeeded: %s", r)
		}
		for _, w := range []string{"limits.memory", "limits.cpus", "limits.pids", "cannot be enforced", "best-effort", "clawrun doctor"} {
			if !strings.Contains(r.stderr, w) {
				t.Fatalf("error lacks %q: %s", w, r)
			}
		}
		if len(e.stateEntries()) != 0 {
			t.Fatalf("refused run left state: %v", e.stateEntries())
		}
		return
	}
	e.ok("run", "-d", "limited")
	read := func(ctl, file string) string {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctl, "clawrun", "limited", file))
		if err != nil {
			t.Fatalf("cgroup file: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := read("pids", "pids.max"); got != "16" {
		t.Fatalf("pids.max %s", got)
	}
	if got := read("memory", "memory.limit_in_bytes"); got != "67108864" {
		t.Fatalf("memory limit %s", got)
	}
	if got := read("cpu", "cpu.cfs_quota_us"); got != "50000" {
		t.Fatalf("cpu quota %s", got)
	}
	// A fork storm stops at the pids limit from inside: the shell's fork
	// fails with EAGAIN and the cgroup never holds more than the limit.
	r := e.run("exec", "limited", "/bin/sh", "-c", "for i in $(seq 40); do sleep 5 & done")
	if r.code == 0 || !strings.Contains(r.stderr, "can't fork") {
		t.Fatalf("fork storm was not stopped by the pids limit: %s", r)
	}
	var current int
	fmt.Sscan(read("pids", "pids.current"), &current)
	if current > 16 || current < 2 {
		t.Fatalf("pids.current %d with pids.max 16", current)
	}
	e.ok("rm", "-f", "limited")
	if _, err := os.Stat("/sys/fs/cgroup/pids/clawrun/limited"); !os.IsNotExist(err) {
		t.Fatalf("rm left the cgroup: %v", err)
	}
}

// totalEnv is an env whose host allowlist (through $CLAWRUN_ALLOWLIST)
// caps all its agents together, under a cgroup_parent of this test's own:
// other tests run agents under /clawrun at the same time, and a total on
// their parent would break them (or be reset by their runs).
func totalEnv(t *testing.T, parent, total string) *env {
	if isRoot() {
		// Cleanups run last-registered first: newEnv's removes this env's
		// containers, then this one the parent libcontainer and the total
		// created in every hierarchy.
		t.Cleanup(func() {
			dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
			for _, d := range dirs {
				os.Remove(d)
			}
		})
	}
	e := newEnv(t)
	allow := e.writeFile("allowlist.yaml", fmt.Sprintf("agent_dir: rw\nroots:\n  - {path: %s, mode: ro}\ncgroup_parent: %s\ntotal: %s\n", filepath.Dir(baseRootfs), parent, total))
	t.Setenv("CLAWRUN_ALLOWLIST", allow)
	return e
}

func readCgroup(t *testing.T, ctrl, cg, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, cg, file))
	if err != nil {
		t.Fatalf("cgroup file: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// Two agents, each allowed 64 tasks, under a host total of 24: tasks
// across both stop at the total, which the second agent's fork storm
// proves from inside.
func TestTotalPids(t *testing.T) {
	const parent = "clawrun-ha-pids"
	e := totalEnv(t, parent, "{pids: 24}")
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  a:
    rootfs: %[1]s
    command: ["/bin/sh", "-c", "for i in $(seq 16); do sleep 1000 & done; wait"]
    limits: {pids: 64}
  b:
    rootfs: %[1]s
    command: ["/bin/sleep", "1000"]
    limits: {pids: 64}
`, baseRootfs))
	if !isRoot() {
		r := e.run("run", "-d", "--name", "ha-tot-a", "a")
		if r.code == 0 {
			t.Fatalf("rootless run with a host total on this cgroup v1 host succeeded: %s", r)
		}
		for _, w := range []string{"total.pids", "cannot be enforced rootless", "best-effort does not relax", "remove total from the allowlist", "clawrun doctor"} {
			if !strings.Contains(r.stderr, w) {
				t.Fatalf("error lacks %q: %s", w, r)
			}
		}
		if len(e.stateEntries()) != 0 {
			t.Fatalf("refused run left state: %v", e.stateEntries())
		}
		return
	}
	e.ok("run", "-d", "--name", "ha-tot-a", "a")
	e.ok("run", "-d", "--name", "ha-tot-b", "b")
	if got := readCgroup(t, "pids", parent, "pids.max"); got != "24" {
		t.Fatalf("parent pids.max %s, want the total 24", got)
	}
	if got := readCgroup(t, "pids", parent+"/ha-tot-b", "pids.max"); got != "64" {
		t.Fatalf("agent pids.max %s, want its own 64", got)
	}
	waitFor(t, "agent a's 16 sleepers", func() bool {
		var n int
		fmt.Sscan(readCgroup(t, "pids", parent+"/ha-tot-a", "pids.current"), &n)
		return n >= 17
	})
	// b may fork far below its own 64, yet the total stops it.
	r := e.run("exec", "ha-tot-b", "/bin/sh", "-c", "for i in $(seq 40); do sleep 5 & done")
	if r.code == 0 || !strings.Contains(r.stderr, "can't fork") {
		t.Fatalf("fork storm in b was not stopped by the total: %s", r)
	}
	var cur int
	fmt.Sscan(readCgroup(t, "pids", parent, "pids.current"), &cur)
	if cur > 24 {
		t.Fatalf("parent pids.current %d above the total 24", cur)
	}
	// The kernel (before 6.2) counts the refusal in the forking cgroup's
	// pids.events, b's, although the parent's limit was the one hit.
	if ev := readCgroup(t, "pids", parent+"/ha-tot-b", "pids.events"); ev == "max 0" {
		t.Fatalf("b's pids.events %q: no fork was refused", ev)
	}
	out := e.ok("inspect", "ha-tot-b")
	if !strings.Contains(out, "pids=24 for all agents together") {
		t.Fatalf("inspect does not show the total:\n%s", out)
	}
	// inspect reads the parent's live files: what holds, not what was
	// configured. A parent changed behind clawrun's back is a mismatch.
	live := regexp.MustCompile(`total\.pids \(cgroup /` + parent + `\) +24 \(ok\)`)
	if !live.MatchString(out) || strings.Contains(out, "MISMATCH") {
		t.Fatalf("inspect does not read the parent's pids.max:\n%s", out)
	}
	pidsMax := filepath.Join("/sys/fs/cgroup/pids", parent, "pids.max")
	if err := os.WriteFile(pidsMax, []byte("30"), 0); err != nil {
		t.Fatal(err)
	}
	r = e.run("inspect", "ha-tot-b")
	if r.code == 0 || !regexp.MustCompile(`total\.pids \(cgroup /`+parent+`\) +30 \(MISMATCH\)`).MatchString(r.stdout) {
		t.Fatalf("a parent pids.max of 30 under a total of 24 is not a mismatch: %s", r)
	}
	if err := os.WriteFile(pidsMax, []byte("24"), 0); err != nil {
		t.Fatal(err)
	}
	st := e.ok("stats")
	if !strings.Contains(st, "(all agents)") || !strings.Contains(st, "cap pids 24") {
		t.Fatalf("stats lacks the parent row:\n%s", st)
	}
	e.ok("rm", "-f", "ha-tot-a", "ha-tot-b")
	// Without total in the allowlist the next run resets the parent.
	allow := e.writeFile("allowlist.yaml", fmt.Sprintf("agent_dir: rw\nroots:\n  - {path: %s, mode: ro}\ncgroup_parent: %s\n", filepath.Dir(baseRootfs), parent))
	t.Setenv("CLAWRUN_ALLOWLIST", allow)
	e.ok("run", "--name", "ha-tot-c", "b", "--", "/bin/true")
	if got := readCgroup(t, "pids", parent, "pids.max"); got != "max" {
		t.Fatalf("parent pids.max %s after total was removed, want max", got)
	}
}

// A memory total smaller than the sum of two agents' limits: the hog in
// one agent is OOM-killed by the parent's limit although its own would
// allow it.
func TestTotalMemory(t *testing.T) {
	if !isRoot() {
		t.Skip("rootless on cgroup v1 a total is refused (TestTotalPids)")
	}
	const parent = "clawrun-ha-mem"
	e := totalEnv(t, parent, "{memory: 48M, cpus: 1}")
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  hog:
    rootfs: %s
    command: ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=56M count=1; echo dd: $?"]
    limits: {memory: 64M}
`, baseRootfs))
	r := e.run("run", "--name", "ha-mem-hog", "hog")
	if r.code == 0 && strings.Contains(r.stdout, "dd: 0") {
		t.Fatalf("a 56M buffer fit under a 48M total: %s", r)
	}
	if got := readCgroup(t, "memory", parent, "memory.limit_in_bytes"); got != "50331648" {
		t.Fatalf("parent memory.limit_in_bytes %s, want 48M", got)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/" + parent + "/memory.memsw.limit_in_bytes"); err == nil {
		if got := readCgroup(t, "memory", parent, "memory.memsw.limit_in_bytes"); got != "50331648" {
			t.Fatalf("parent memsw %s: swap must not extend the total", got)
		}
	}
	if s := e.status("ha-mem-hog"); !strings.Contains(s, "oom") && !strings.Contains(r.stderr+r.stdout, "Killed") {
		t.Fatalf("hog not reported OOM-killed: status %q, %s", s, r)
	}
	// cpus above the total is refused on the agent's line (cgroup v1
	// would refuse the quota).
	e.writeFile("clawrun.yaml", fmt.Sprintf("agents:\n  big:\n    rootfs: %s\n    command: [\"/bin/true\"]\n    limits: {cpus: 2}\n", baseRootfs))
	r = e.run("run", "big")
	if r.code == 0 || !strings.Contains(r.stderr, "clawrun.yaml:5: agents.big.limits.cpus: 2 is above the host's total.cpus 1") {
		t.Fatalf("agent limit above the total not refused: %s", r)
	}
}

// An ad-hoc run's --cpus above the total is refused by policy, before any
// cgroup is touched (cgroup v1 would refuse the quota below the parent's),
// rootless too.
func TestTotalAdHocCPUs(t *testing.T) {
	e := totalEnv(t, "clawrun-ha-adhoc", "{cpus: 1}")
	r := e.run("run", "--rootfs", baseRootfs, "--name", "ha-adhoc-cpus", "--cpus", "2", "--", "/bin/true")
	for _, w := range []string{"--cpus: 2 is above the host's total.cpus 1", "lower it to at most 1", "(policy: allowlist)"} {
		if r.code == 0 || !strings.Contains(r.stderr, w) {
			t.Fatalf("ad-hoc --cpus above the total: error lacks %q: %s", w, r)
		}
	}
	if len(e.stateEntries()) != 0 {
		t.Fatalf("refused run left state: %v", e.stateEntries())
	}
}

// io_weight needs a weight that acts: here (cgroup v1, no CFQ, no disk on
// BFQ) strict refuses it, best-effort runs and inspect says it is not
// enforced.
func TestIOWeight(t *testing.T) {
	if bfq, _ := filepath.Glob("/sys/block/*/queue/scheduler"); len(bfq) > 0 {
		for _, f := range bfq {
			if b, _ := os.ReadFile(f); strings.Contains(string(b), "[bfq]") {
				t.Skip("a disk uses BFQ here: io_weight is enforceable")
			}
		}
	}
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  strict:
    rootfs: %[1]s
    command: ["/bin/sleep", "1000"]
    limits: {io_weight: 200}
  loose:
    rootfs: %[1]s
    command: ["/bin/sleep", "1000"]
    limits: {io_weight: 200, enforce: best-effort}
`, baseRootfs))
	r := e.run("run", "-d", "--name", "ha-io-strict", "strict")
	if r.code == 0 || !strings.Contains(r.stderr, "limits.io_weight 200 cannot be enforced") || !strings.Contains(r.stderr, "best-effort") {
		t.Fatalf("strict io_weight not refused clearly: %s", r)
	}
	// doctor says so before any run: WARN with the fix, and io_weight no
	// enforced for you: no under its limits line.
	doc := e.run("doctor").stdout
	if !regexp.MustCompile(`(?m)^WARN +io_weight +limits\.io_weight cannot be enforced: `).MatchString(doc) ||
		!strings.Contains(doc, "io_weight enforced for you: no") || !strings.Contains(doc, "fix: ") {
		t.Fatalf("doctor does not warn that io_weight is not enforced:\n%s", doc)
	}
	e.ok("run", "-d", "--name", "ha-io-loose", "loose")
	out := e.ok("inspect", "ha-io-loose")
	if !strings.Contains(out, "io_weight=200 NOT ENFORCED") {
		t.Fatalf("inspect does not say io_weight is not enforced:\n%s", out)
	}
	e.ok("rm", "-f", "ha-io-loose")
}
