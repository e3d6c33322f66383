package test

import (
	"fmt"
	"os"
	"path/filepath"
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
