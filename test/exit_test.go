package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// psExit is a ps --json row with how a stopped container ended.
type psExit struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Exit   *struct {
		Code      int    `json:"code"`
		Signal    string `json:"signal"`
		OOMKilled bool   `json:"oom_killed"`
		Text      string `json:"text"`
	} `json:"exit"`
}

func (e *env) exitOf(name string) psExit {
	e.t.Helper()
	var list []psExit
	if err := json.Unmarshal([]byte(e.ok("ps", "--json")), &list); err != nil {
		e.t.Fatalf("ps --json: %v", err)
	}
	for _, c := range list {
		if c.Name == name {
			return c
		}
	}
	e.t.Fatalf("%s not in ps", name)
	return psExit{}
}

// waitExit waits until the monitor of a detached container has recorded how
// it ended, and returns the ps row.
func (e *env) waitExit(name string) psExit {
	e.t.Helper()
	var c psExit
	waitFor(e.t, name+" exit recorded", func() bool {
		c = e.exitOf(name)
		return c.Exit != nil
	})
	if c.Status != "stopped" {
		e.t.Fatalf("%s: exit recorded while %s", name, c.Status)
	}
	return c
}

// psRow is the text ps line of a container.
func (e *env) psRow(name string) string {
	for _, l := range strings.Split(e.ok("ps"), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return l
		}
	}
	return ""
}

// A detached container's init is the child of a monitor that `run -d` leaves
// behind; it records the exit code in the state and the log.
func TestExitDetached(t *testing.T) {
	e := newEnv(t)
	start := time.Now()
	e.ok("run", "-d", "--name", "three", "--rootfs", baseRootfs, "--", "/bin/sh", "-c", "echo working; sleep 0.3; exit 3")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("run -d took %v: it must return once the agent runs", d)
	}
	c := e.waitExit("three")
	if c.Exit.Code != 3 || c.Exit.Text != "exited (3)" || c.Exit.Signal != "" || c.Exit.OOMKilled {
		t.Fatalf("exit %+v, want exited (3)", *c.Exit)
	}
	if row := e.psRow("three"); !strings.Contains(row, "exited (3)") {
		t.Fatalf("ps row %q lacks exited (3)", row)
	}
	logs := e.ok("logs", "three")
	if !strings.Contains(logs, "working\n") || !regexp.MustCompile(`(?m)^--- \S+ clawrun: container three exited \(3\)$`).MatchString(logs) {
		t.Fatalf("log does not record the exit:\n%s", logs)
	}
	if out := e.ok("inspect", "three"); !strings.Contains(out, "exited (3)") {
		t.Fatalf("inspect lacks the exit status:\n%s", out)
	}
	e.ok("rm", "three")
	if _, err := os.Stat(filepath.Join(e.data, "logs", "three.log")); !os.IsNotExist(err) {
		t.Fatalf("rm left the log: %v", err)
	}
}

// An agent killed by a signal is shown as killed (SIGNAL), with code 128+N
// in the JSON, as `run` in the foreground would return. That is the init's
// own wait status: a shell that exits 137 after its child was killed shows
// exited (137).
func TestExitKilled(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "victim", "--rootfs", baseRootfs, "--", "/bin/sleep", "1000")
	e.ok("kill", "victim", "KILL")
	c := e.waitExit("victim")
	if c.Exit.Text != "killed (SIGKILL)" || c.Exit.Signal != "SIGKILL" || c.Exit.Code != 137 {
		t.Fatalf("exit %+v, want killed (SIGKILL), code 137", *c.Exit)
	}
	if row := e.psRow("victim"); !strings.Contains(row, "killed (SIGKILL)") {
		t.Fatalf("ps row %q", row)
	}
	// stop returns after the exit is recorded.
	e.ok("run", "-d", "--name", "stopped", "--rootfs", baseRootfs, "--", "/bin/sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done")
	// run -d returns once the init is released to exec the agent; a
	// SIGTERM before the trap is set would find clawrun's init instead.
	waitFor(t, "trap set", func() bool { return strings.Contains(e.ok("logs", "stopped"), "ready") })
	e.ok("stop", "stopped")
	if c := e.exitOf("stopped"); c.Exit == nil || c.Exit.Text != "exited (0)" {
		t.Fatalf("right after stop: %+v %+v", c, c.Exit)
	}
}

// As root a memory hog is OOM-killed inside its own cgroup; clawrun and its
// monitor survive (they are outside that cgroup) and report it.
func TestExitOOMKilled(t *testing.T) {
	if !isRoot() {
		t.Skip("rootless on this cgroup v1 host there is no cgroup, so no OOM killer of its own and no OOM counter to read")
	}
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  hog:
    rootfs: %s
    command: ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=200M count=1; echo dd: $?"]
    limits: {memory: 32M}
`, baseRootfs))
	e.ok("run", "-d", "hog")
	c := e.waitExit("hog")
	if !c.Exit.OOMKilled || c.Exit.Text != "oom-killed" {
		t.Fatalf("exit %+v, want oom-killed", *c.Exit)
	}
	if row := e.psRow("hog"); !strings.Contains(row, "oom-killed") {
		t.Fatalf("ps row %q", row)
	}
	// dd's 200M buffer is what the OOM killer picks; the shell reports it.
	if logs := e.ok("logs", "hog"); !strings.Contains(logs, "dd: 137") || !strings.Contains(logs, "clawrun: container hog oom-killed") {
		t.Fatalf("log does not record the OOM kill:\n%s", logs)
	}
	// clawrun itself is fine: another agent runs.
	if out := e.ok("run", "--rootfs", baseRootfs, "--", "/bin/echo", "alive"); out != "alive\n" {
		t.Fatalf("after the OOM kill: %q", out)
	}
}

// limits.enforce: best-effort. Rootless on this cgroup v1 host the limits
// become rlimits the agent can see in /proc/self/limits, and the pids limit
// really stops a fork storm; inspect says which mechanism enforces what. As
// root the cgroup enforces them and no rlimit is added.
func TestLimitsBestEffort(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  approx:
    rootfs: %s
    command: ["/bin/sleep", "1000"]
    limits: {memory: 64M, pids: 32, enforce: best-effort}
`, baseRootfs))
	limits := e.ok("run", "approx", "--", "/bin/cat", "/proc/self/limits")
	row := func(name string) string {
		for _, l := range strings.Split(limits, "\n") {
			if strings.HasPrefix(l, name) {
				return strings.Join(strings.Fields(strings.TrimPrefix(l, name)), " ")
			}
		}
		return ""
	}
	if isRoot() {
		if got := row("Max data size"); !strings.HasPrefix(got, "unlimited") {
			t.Fatalf("as root the cgroup enforces memory, yet Max data size is %q", got)
		}
		e.ok("run", "-d", "approx")
		if out := e.ok("inspect", "approx"); !strings.Contains(out, "enforced by cgroup /clawrun/approx") {
			t.Fatalf("inspect:\n%s", out)
		}
		return
	}
	for name, want := range map[string]string{
		"Max data size":  "67108864 67108864 bytes",
		"Max processes":  "32 32 processes",
		"Max open files": "1024 1024 files",
		"Max file size":  "1073741824 1073741824 bytes",
	} {
		if got := row(name); got != want {
			t.Errorf("%s: %q, want %q\n%s", name, got, want, limits)
		}
	}
	// RLIMIT_NPROC counts the agent's tasks in its own user namespace: a
	// fork storm stops near 32, while this user's other processes on the
	// host do not count.
	r := e.run("run", "approx", "--", "/bin/sh", "-c", "for i in $(seq 40); do sleep 5 & done; wait")
	if r.code == 0 || !strings.Contains(r.stderr, "can't fork") {
		t.Fatalf("fork storm was not stopped by RLIMIT_NPROC: %s", r)
	}
	// RLIMIT_DATA holds for the agent: a 100M buffer is refused.
	if r := e.run("run", "approx", "--", "/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"); r.code == 0 {
		t.Fatalf("dd with a 100M buffer under a 64M best-effort memory limit: %s", r)
	}
	// inspect of the running agent: each limit with its mechanism, and the
	// rlimits read back from /proc/PID/limits.
	e.ok("run", "-d", "approx")
	var rep struct {
		Lines []struct{ Kind, Value string }
		Live  []struct {
			Property, Expected, Actual string
			OK                         bool
		}
		Limits []struct {
			Limit string `json:"limit"`
			By    string `json:"enforced_by"`
		}
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", "--json", "approx")), &rep); err != nil {
		t.Fatal(err)
	}
	by := map[string]string{}
	for _, l := range rep.Limits {
		by[l.Limit] = l.By
	}
	if by["memory"] != "rlimit" || by["pids"] != "rlimit" || by["open files"] != "rlimit" || by["file size"] != "rlimit" {
		t.Fatalf("inspect limits %+v", rep.Limits)
	}
	checked := 0
	for _, c := range rep.Live {
		if strings.HasPrefix(c.Property, "RLIMIT_") {
			checked++
			if !c.OK {
				t.Errorf("live %s: %s, expected %s", c.Property, c.Actual, c.Expected)
			}
		}
	}
	if checked != 4 {
		t.Errorf("%d rlimits checked live, want 4: %+v", checked, rep.Live)
	}
	if out := e.ok("inspect", "approx"); !strings.Contains(out, "memory=67108864 bytes enforced by rlimit RLIMIT_DATA=67108864") {
		t.Fatalf("inspect text:\n%s", out)
	}
	// cpus has no rlimit: best-effort says so rather than pretend.
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  cpuonly:
    rootfs: %s
    command: ["/bin/true"]
    limits: {cpus: 0.5, enforce: best-effort}
`, baseRootfs))
	if out := e.ok("inspect", "cpuonly"); !strings.Contains(out, "cpus=0.5 NOT ENFORCED") {
		t.Fatalf("inspect of the agent:\n%s", out)
	}
}

// An ad-hoc run takes --enforce best-effort as an agent file takes
// limits.enforce: rootless on this cgroup v1 host, --memory then becomes
// RLIMIT_DATA, and without it the run is refused with that flag named.
func TestAdHocEnforceBestEffort(t *testing.T) {
	e := newEnv(t)
	limits := e.ok("run", "--rootfs", baseRootfs, "--memory", "64M", "--enforce", "best-effort", "--", "/bin/cat", "/proc/self/limits")
	var data string
	for _, l := range strings.Split(limits, "\n") {
		if strings.HasPrefix(l, "Max data size") {
			data = strings.Join(strings.Fields(strings.TrimPrefix(l, "Max data size")), " ")
		}
	}
	if isRoot() {
		if !strings.HasPrefix(data, "unlimited") {
			t.Errorf("as root the cgroup enforces --memory, yet Max data size is %q", data)
		}
		return
	}
	if data != "67108864 67108864 bytes" {
		t.Errorf("Max data size %q under --memory 64M --enforce best-effort:\n%s", data, limits)
	}
	r := e.run("run", "--rootfs", baseRootfs, "--memory", "64M", "--", "/bin/true")
	if r.code != 125 || !strings.Contains(r.stderr, "add --enforce best-effort") {
		t.Errorf("strict ad-hoc limit rootless on cgroup v1: %s", r)
	}
}
