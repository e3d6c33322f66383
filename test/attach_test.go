package test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// A signal sent to a foreground clawrun reaches the agent, which can shut
// down cleanly; clawrun then exits with the agent's code.
func TestForegroundForwardsSignals(t *testing.T) {
	e := newEnv(t)
	c := e.cmd("run", "--name", "graceful", "--rootfs", baseRootfs, "--", "/bin/sh", "-c",
		"trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done")
	var out bytes.Buffer
	c.Stdout = &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "agent ready", func() bool { return strings.Contains(out.String(), "ready") })
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := c.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 42 {
		t.Fatalf("clawrun exit %v, want the agent's 42; output %q", err, out.String())
	}
	if !strings.Contains(out.String(), "got-term") {
		t.Fatalf("agent did not see SIGTERM: %q", out.String())
	}
	e.ok("rm", "graceful")
}

// exec -t gives the process a real terminal inside the container. The
// caller's side is a pseudo-terminal made by script(1).
func TestExecTTY(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatalf("script(1) from util-linux is needed for the tty test: %v", err)
	}
	e := newEnv(t)
	e.ok("run", "-d", "--name", "tty", "--rootfs", baseRootfs, "--", "/bin/sleep", "1000")
	cmdline := strings.Join([]string{clawrunBin, "--root", e.root, "--data", e.data, "exec", "-t", "tty", "/bin/sh", "-c", "'tty; [ -t 0 ] && echo stdin-is-tty; exit 3'"}, " ")
	c := exec.Command(script, "-qefc", cmdline, "/dev/null")
	c.Stdin = strings.NewReader("")
	out, err := c.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 3 {
		t.Fatalf("exec -t exit %v, want 3; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "stdin-is-tty") {
		t.Fatalf("exec -t gave no terminal:\n%s", out)
	}
}

// Two host users never see or touch each other's agents: state directories
// belong to one user, and clawrun refuses another user's.
func TestOtherUsersStateIsRefused(t *testing.T) {
	if !isRoot() {
		t.Skip("needs root to act as a second user; the rootless half of the suite runs as that user")
	}
	user := envOr("CLAWRUN_TEST_USER", "clawrun-test")
	if _, err := exec.LookPath("runuser"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.ok("run", "-d", "--name", "mine", "--rootfs", baseRootfs, "--", "/bin/sleep", "1000")
	c := exec.Command("runuser", "-u", user, "--", clawrunBin, "--root", e.root, "--data", e.data, "ps")
	c.Dir = os.TempDir()
	out, err := c.CombinedOutput()
	if err == nil {
		t.Fatalf("user %s could use root's state dir:\n%s", user, out)
	}
	if !strings.Contains(string(out), "not to you") && !strings.Contains(string(out), "permission denied") {
		t.Fatalf("unexpected refusal: %s", out)
	}
	if strings.Contains(string(out), "mine") {
		t.Fatalf("another user saw root's container:\n%s", out)
	}
}
