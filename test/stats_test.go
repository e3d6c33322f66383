package test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/internal/syncbuf"
)

type doctorReport struct {
	Checks []struct {
		Check     string `json:"check"`
		Status    string `json:"status"`
		Detail    string `json:"detail"`
		Fix       string `json:"fix"`
		Essential bool   `json:"essential"`
	} `json:"checks"`
	Limits struct {
		Memory, CPU, Pids bool
		Why               string
	} `json:"limits"`
	CanRun bool `json:"can_run"`
}

func (r doctorReport) status(check string) string {
	for _, c := range r.Checks {
		if c.Check == check {
			return c.Status
		}
	}
	return "absent"
}

// doctor on this host: agents can run, root enforces every limit through
// cgroups, and a rootless user on cgroup v1 is told that none is.
func TestDoctor(t *testing.T) {
	e := newEnv(t)
	var rep doctorReport
	if err := json.Unmarshal([]byte(e.ok("doctor", "--json")), &rep); err != nil {
		t.Fatalf("doctor --json: %v", err)
	}
	if !rep.CanRun {
		t.Fatalf("doctor says nothing can run on the host the suite runs on: %+v", rep)
	}
	for _, c := range []string{"kernel", "user namespaces", "create a user namespace", "seccomp (kernel)", "libseccomp", "state directory", "data directory"} {
		if st := rep.status(c); st != "OK" {
			t.Errorf("check %q: %s, want OK\n%+v", c, st, rep)
		}
	}
	v1 := cgroupsv3.Mode() != cgroupsv3.Unified
	switch {
	case isRoot():
		if !rep.Limits.Memory || !rep.Limits.CPU || !rep.Limits.Pids || rep.status("cgroups") != "OK" {
			t.Fatalf("as root every limit is enforced by cgroups: %+v", rep)
		}
	case v1:
		if rep.Limits.Memory || rep.Limits.CPU || rep.Limits.Pids || rep.status("cgroups") != "WARN" {
			t.Fatalf("rootless on cgroup v1 no limit is enforceable: %+v", rep)
		}
		if !strings.Contains(rep.Limits.Why, "rootless on cgroup v1") {
			t.Fatalf("limits reason: %q", rep.Limits.Why)
		}
	}

	table := e.ok("doctor")
	for _, w := range []string{"STATUS", "user namespaces", "limits enforced for you:", "agents can run on this host"} {
		if !strings.Contains(table, w) {
			t.Errorf("doctor table lacks %q:\n%s", w, table)
		}
	}
	if !isRoot() && v1 && !strings.Contains(table, "memory no, cpu no, pids no") {
		t.Errorf("rootless v1 summary:\n%s", table)
	}

	// A state directory that belongs to someone else stops everything:
	// doctor says so and exits non-zero.
	foreign := "/"
	if isRoot() {
		foreign = e.mkdir("foreign")
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	r := e.run("--root", foreign, "doctor")
	if r.code == 0 || !strings.Contains(r.stdout, "not to you") || !strings.Contains(r.stderr, "no agent can run") {
		t.Fatalf("doctor with a foreign state dir: %s", r)
	}
}

type statsEntry struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Cgroup string `json:"cgroup"`
	Usage  *struct {
		CPU        *uint64 `json:"cpu_usage_ns"`
		Memory     *uint64 `json:"memory_current_bytes"`
		MemoryPeak *uint64 `json:"memory_peak_bytes"`
		Pids       *uint64 `json:"pids_current"`
		OOMKills   *uint64 `json:"oom_kills"`
		Periods    *uint64 `json:"cpu_periods"`
		Throttled  *uint64 `json:"cpu_throttled_periods"`
		ThrottleNs *uint64 `json:"cpu_throttled_ns"`
	} `json:"usage"`
	Note string `json:"note"`
}

func (e *env) stats(names ...string) []statsEntry {
	e.t.Helper()
	var list []statsEntry
	out := e.ok(append([]string{"stats", "--json"}, names...)...)
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatalf("stats --json: %v\n%s", err, out)
	}
	return list
}

func nz(p *uint64) bool { return p != nil && *p > 0 }

const busyAgent = `agents:
  busy:
    rootfs: %s
    command: ["/bin/sh", "-c", "while :; do :; done"]
%s`

// A busy agent shows cpu time and memory; a 0.2 cpu quota throttles it,
// which the cgroup's own counters say (never judged by wall time).
func TestStats(t *testing.T) {
	e := newEnv(t)
	if !isRoot() {
		if cgroupsv3.Mode() == cgroupsv3.Unified {
			t.Skip("rootless on cgroup v2: depends on delegation")
		}
		e.writeFile("clawrun.yaml", fmt.Sprintf(busyAgent, baseRootfs, ""))
		e.ok("run", "-d", "busy")
		list := e.stats("busy")
		if len(list) != 1 || list[0].Usage != nil || list[0].Note != "no cgroup (rootless on cgroup v1)" {
			t.Fatalf("rootless stats on cgroup v1: %+v", list)
		}
		table := e.ok("stats")
		if !strings.Contains(table, "busy: no cgroup (rootless on cgroup v1)") {
			t.Fatalf("table lacks the note:\n%s", table)
		}
		for _, line := range strings.Split(table, "\n") {
			if strings.HasPrefix(line, "busy ") && strings.Count(line, " - ") < 5 {
				t.Fatalf("rootless figures must be dashes, not zeros: %q", line)
			}
		}
		return
	}
	e.writeFile("clawrun.yaml", fmt.Sprintf(busyAgent, baseRootfs, "    limits: {cpus: 0.2, memory: 64M, pids: 16}\n"))
	e.ok("run", "-d", "busy")
	var last statsEntry
	waitFor(t, "busy agent to be throttled", func() bool {
		list := e.stats("busy")
		if len(list) != 1 || list[0].Usage == nil {
			t.Fatalf("stats busy: %+v", list)
		}
		last = list[0]
		u := last.Usage
		return nz(u.CPU) && nz(u.Memory) && nz(u.Pids) && nz(u.Throttled) && nz(u.ThrottleNs)
	})
	u := last.Usage
	if last.Cgroup != "/clawrun/busy" || last.Note != "" || !nz(u.MemoryPeak) || *u.MemoryPeak < *u.Memory || !nz(u.Periods) || *u.Throttled > *u.Periods {
		t.Fatalf("stats: %+v usage %+v", last, *u)
	}
	if u.OOMKills == nil || *u.OOMKills != 0 {
		t.Fatalf("oom kills of a loop in 64M: %v", u.OOMKills)
	}
	// The cgroup's own file agrees that the quota bites.
	if b, err := os.ReadFile("/sys/fs/cgroup/cpu/clawrun/busy/cpu.stat"); cgroupsv3.Mode() != cgroupsv3.Unified && (err != nil || !strings.Contains(string(b), "nr_throttled")) {
		t.Fatalf("cpu.stat: %v %s", err, b)
	}

	// All containers without names; an unknown name is an error.
	// Without names, a last row is the parent cgroup holding all agents.
	if all := e.stats(); len(all) != 2 || all[0].Name != "busy" || all[1].Name != "(all agents)" || all[1].Cgroup != "/clawrun" {
		t.Fatalf("stats without names: %+v", all)
	}
	if r := e.run("stats", "nosuch"); r.code == 0 || !strings.Contains(r.stderr, "no such container") {
		t.Fatalf("stats of an unknown container: %s", r)
	}
	table := e.ok("stats", "busy")
	if !strings.Contains(table, "THROTTLED") || !strings.Contains(table, "busy") {
		t.Fatalf("table:\n%s", table)
	}

	// --watch redraws until interrupted, and an interrupt is a clean exit.
	c := e.cmd("stats", "--watch", "busy")
	out := &syncBuffer{}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two frames", func() bool { return strings.Count(out.String(), "THROTTLED") >= 2 })
	_ = c.Process.Signal(unix.SIGINT)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stats --watch after SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		_ = c.Process.Kill()
		t.Fatal("stats --watch ignored SIGINT")
	}

	// After rm the cgroup is gone and so is the container.
	e.ok("rm", "-f", "busy")
	if r := e.run("stats", "busy"); r.code == 0 {
		t.Fatalf("stats of a removed container: %s", r)
	}
}

// syncBuffer collects a child's output (a container's, serve's stderr) while
// the test reads it.
type syncBuffer = syncbuf.Buffer
