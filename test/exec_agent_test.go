package test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/test/fakeslack"
)

// `clawrun exec AGENT` and `clawrun logs AGENT` reach the one running
// container of an agent when no container has that name: the way to debug
// the agent `clawrun serve` runs, whose containers are named AGENT-gw-XXXXXX.

func TestExecByAgentName(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  resolveme:
    rootfs: %s
    command: ["/bin/sh", "-c", "echo up; exec sleep 1000"]
`, baseRootfs))
	e.ok("run", "-d", "--name", "execres1", "resolveme")
	if out := e.ok("exec", "resolveme", "/bin/sh", "-c", "echo hi from $(hostname)"); !strings.Contains(out, "hi from") {
		t.Errorf("exec by agent name: %q", out)
	}
	if out := e.ok("logs", "resolveme"); !strings.Contains(out, "up") {
		t.Errorf("logs by agent name: %q", out)
	}
	// A container name still wins, and an unknown name says what was tried.
	if out := e.ok("exec", "execres1", "echo", "by name"); !strings.Contains(out, "by name") {
		t.Errorf("exec by container name: %q", out)
	}
	r := e.run("exec", "nosuchagent", "true")
	if r.code != 125 || !strings.Contains(r.stderr, `no running container of an agent "nosuchagent"`) {
		t.Errorf("exec of an unknown name: %s", r)
	}
	// Two running containers of the agent: clawrun does not guess.
	e.ok("run", "-d", "--name", "execres2", "resolveme")
	r = e.run("exec", "resolveme", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "agent resolveme has 2 running containers (execres1, execres2): name one of them") {
		t.Errorf("exec of an ambiguous agent: %s", r)
	}
	// inspect neither: showing the agent's plan instead would pass for an
	// audit of what runs.
	r = e.run("inspect", "resolveme")
	if r.code == 0 || !strings.Contains(r.stderr, "agent resolveme has 2 running containers") {
		t.Errorf("inspect of an ambiguous agent: %s", r)
	}
}

// The agent that `clawrun serve` runs, reached by its agent name.
func TestExecServeAgent(t *testing.T) {
	fs := fakeslack.New(fakeslack.Options{})
	t.Cleanup(fs.Close)
	e := newEnv(t)
	writeServeFile(e)
	startServe(t, e, fs, 1)
	// serve logs "agent started" as it starts the container; wait until
	// the container runs.
	waitFor(t, "serve's container to run", func() bool { return serveContainerRuns(e) })
	out := e.ok("exec", "echo", "/bin/sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline")
	if !strings.Contains(out, "/agent -status") {
		t.Errorf("exec echo ran beside %q, want the agent serve started", out)
	}
	// inspect AGENT reads that container live.
	if out := e.ok("inspect", "echo"); !strings.Contains(out, "name               echo-gw-") || !strings.Contains(out, "enforced (read from /proc") {
		t.Errorf("inspect echo did not inspect serve's container live:\n%s", out)
	}
}

func serveContainerRuns(e *env) bool {
	for _, c := range e.ps() {
		if strings.HasPrefix(c.Name, "echo-gw-") && c.Status == "running" {
			return true
		}
	}
	return false
}
