package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		cmd  []string
		code int
		err  string
	}{
		{"success", []string{"/bin/true"}, 0, ""},
		{"exit status", []string{"/bin/sh", "-c", "exit 3"}, 3, ""},
		{"exit 255", []string{"/bin/sh", "-c", "exit 255"}, 255, ""},
		{"command not found", []string{"/no/such/agent"}, 127, `command "/no/such/agent" not found`},
		{"not found on PATH", []string{"nosuchcmd"}, 127, "not found in rootfs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(append([]string{"run", "--rootfs", baseRootfs, "--"}, tc.cmd...)...)
			if r.code != tc.code {
				t.Fatalf("exit code %d, want %d\n%s", r.code, tc.code, r)
			}
			if tc.err != "" && !strings.Contains(r.stderr, tc.err) {
				t.Fatalf("stderr lacks %q:\n%s", tc.err, r)
			}
		})
	}
	if left := e.stateEntries(); len(left) != 0 {
		t.Fatalf("anonymous foreground runs left state behind: %v", left)
	}
}

// A signal that kills the agent is reported as 128+N, like a shell.
func TestExitCodeSignal(t *testing.T) {
	e := newEnv(t)
	c := e.cmd("run", "--name", "victim", "--rootfs", baseRootfs, "--", "/bin/sleep", "100")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "victim running", func() bool { return e.status("victim") == "running" })
	e.ok("kill", "victim", "KILL")
	err := c.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 137 {
		t.Fatalf("clawrun exit %v, want 137 (128+SIGKILL)", err)
	}
	if st := e.status("victim"); st != "stopped" {
		t.Fatalf("named foreground container after exit: %s, want stopped", st)
	}
	e.ok("rm", "victim")
}

// The agent protocol over stdin/stdout: one JSON message a line in, one
// reply a line out.
func TestStdinStdoutProtocol(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  echo:
    rootfs: %s
    command: ["/agent"]
`, baseRootfs))
	var in strings.Builder
	for i, text := range []string{"hello", "whoami", "second message"} {
		b, _ := json.Marshal(map[string]string{"id": fmt.Sprint("m", i), "channel": "C1", "thread": "", "user": "U1", "text": text, "ts": "1.0"})
		in.Write(append(b, '\n'))
	}
	e.stdin = in.String()
	out := e.ok("run", "echo")
	var replies []map[string]string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("non-JSON line on stdout %q: %v", sc.Text(), err)
		}
		replies = append(replies, m)
	}
	if len(replies) != 3 {
		t.Fatalf("got %d replies, want 3:\n%s", len(replies), out)
	}
	if replies[0]["reply_to"] != "m0" || replies[0]["text"] != "echo: hello" {
		t.Fatalf("first reply %v", replies[0])
	}
	wantUID := "uid=0"
	if r := e.ok("inspect", "echo"); strings.Contains(r, "subordinate ids") {
		wantUID = "uid=1000"
	}
	if !strings.HasPrefix(replies[1]["text"], wantUID) {
		t.Fatalf("whoami reply %q, want %s...", replies[1]["text"], wantUID)
	}
	if replies[2]["reply_to"] != "m2" {
		t.Fatalf("replies out of order: %v", replies)
	}
}

// Detached agent: ps from another process sees it, exec enters it, logs keep
// its output, stop and rm clean it up.
func TestDetachedExecLogsStopRm(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  worker:
    rootfs: %s
    command: ["/bin/sh", "-c", "echo started; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]
    env: {MARK: visible}
`, baseRootfs))
	if out := e.ok("run", "-d", "worker"); strings.TrimSpace(out) != "worker" {
		t.Fatalf("run -d printed %q, want the name", out)
	}
	ps := e.ps()
	if len(ps) != 1 || ps[0].Name != "worker" || ps[0].Status != "running" || ps[0].Pid <= 0 {
		t.Fatalf("ps: %+v", ps)
	}
	if r := e.run("run", "-d", "worker"); r.code == 0 || !strings.Contains(r.stderr, "already in use") {
		t.Fatalf("second run with the same name: %s", r)
	}
	// exec runs in the agent's namespaces, as its user, with its env.
	out := e.ok("exec", "worker", "/bin/sh", "-c", "echo $MARK; cat /proc/1/cmdline | tr '\\0' ' '; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status")
	for _, want := range []string{"visible", "/bin/sh -c echo started", "CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Fatalf("exec output lacks %q:\n%s", want, out)
		}
	}
	if r := e.run("exec", "worker", "/bin/sh", "-c", "exit 7"); r.code != 7 {
		t.Fatalf("exec exit code %d, want 7\n%s", r.code, r)
	}
	if r := e.run("exec", "worker", "/nope"); r.code != 127 {
		t.Fatalf("exec of a missing command: exit %d, want 127\n%s", r.code, r)
	}
	e.stdin = "piped input\n"
	if out := e.ok("exec", "-i", "worker", "/bin/cat"); out != "piped input\n" {
		t.Fatalf("exec -i: %q", out)
	}
	e.stdin = ""
	waitFor(t, "log output", func() bool {
		return strings.Contains(e.ok("logs", "worker"), "oops")
	})
	logs := e.ok("logs", "worker")
	if !strings.Contains(logs, "started") || !strings.Contains(logs, "oops") {
		t.Fatalf("logs: %q", logs)
	}
	if r := e.run("rm", "worker"); r.code == 0 || !strings.Contains(r.stderr, "stop it first") {
		t.Fatalf("rm of a running container: %s", r)
	}
	// logs -f ends when the container stops, with everything it wrote.
	follow := e.cmd("logs", "-f", "worker")
	var fout strings.Builder
	follow.Stdout = &fout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	e.ok("stop", "-t", "5", "worker")
	if err := follow.Wait(); err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	if !strings.Contains(fout.String(), "bye") {
		t.Fatalf("logs -f missed the agent's last words: %q", fout.String())
	}
	if st := e.status("worker"); st != "stopped" {
		t.Fatalf("after stop: %s", st)
	}
	if r := e.run("exec", "worker", "/bin/true"); r.code == 0 || !strings.Contains(r.stderr, "not running") {
		t.Fatalf("exec in a stopped container: %s", r)
	}
	e.ok("rm", "worker")
	if ps := e.ps(); len(ps) != 0 {
		t.Fatalf("after rm: %+v", ps)
	}
	if left := e.stateEntries(); len(left) != 0 {
		t.Fatalf("rm left state behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(e.data, "logs", "worker.log")); !os.IsNotExist(err) {
		t.Fatalf("rm left the log behind: %v", err)
	}
	if r := e.run("rm", "worker"); r.code == 0 || !strings.Contains(r.stderr, "no such container") {
		t.Fatalf("rm of a removed container: %s", r)
	}
}

// stop escalates to SIGKILL when the agent ignores SIGTERM.
func TestStopEscalates(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "stubborn", "--rootfs", baseRootfs, "--", "/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.1; done")
	start := time.Now()
	e.ok("stop", "-t", "1", "stubborn")
	if st := e.status("stubborn"); st != "stopped" {
		t.Fatalf("after stop: %s", st)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("stop did not wait for the grace period")
	}
	e.ok("rm", "stubborn")
}

// A container whose processes died behind clawrun's back (kill -9, host
// reboot) shows as stopped and rm cleans it up.
func TestDeadContainerShowsStopped(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "doomed", "--rootfs", baseRootfs, "--", "/bin/sleep", "1000")
	ps := e.ps()
	if len(ps) != 1 || ps[0].Pid <= 0 {
		t.Fatalf("ps: %+v", ps)
	}
	p, err := os.FindProcess(ps[0].Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("kill -9 the agent from the host: %v", err)
	}
	waitFor(t, "stopped status", func() bool { return e.status("doomed") == "stopped" })
	e.ok("rm", "doomed")
	if left := e.stateEntries(); len(left) != 0 {
		t.Fatalf("rm left state behind: %v", left)
	}
}

func TestRmForce(t *testing.T) {
	e := newEnv(t)
	e.ok("run", "-d", "--name", "running", "--rootfs", baseRootfs, "--", "/bin/sleep", "1000")
	e.ok("rm", "-f", "running")
	if len(e.ps()) != 0 || len(e.stateEntries()) != 0 {
		t.Fatalf("rm -f left something: %v %v", e.ps(), e.stateEntries())
	}
}

// `run AGENT -- CMD` keeps the agent's sandbox and environment but runs CMD;
// CMD's own flags are not parsed by clawrun.
func TestRunAgentCommandOverride(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  override:
    rootfs: %s
    command: ["/agent"]
    env: {MARK: from-file}
`, baseRootfs))
	out := e.ok("run", "override", "--", "/bin/sh", "-c", "echo $MARK; hostname")
	if out != "from-file\noverride\n" {
		t.Fatalf("override output %q", out)
	}
	if r := e.run("run", "override", "/bin/sh"); r.code == 0 || !strings.Contains(r.stderr, "put the command after --") {
		t.Fatalf("command without --: %s", r)
	}
}
