package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policyCheck runs `clawrun policy check` in-process and returns its
// stdout and exit code.
func policyCheck(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"policy", "check"}, args...))
	err := cmd.Execute()
	if err == nil {
		return out.String(), 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return out.String(), ee.code
	}
	return out.String() + err.Error(), exitFailure
}

func TestPolicyCheck(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"rootfs", "data", "home/.ssh"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	allow := filepath.Join(dir, "allowlist.yaml")
	if err := os.WriteFile(allow, []byte("agent_dir: rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("agents:\n  demo:\n    rootfs: rootfs\n    command: [/agent]\n    grants: [{host: data, path: /data, mode: rw}]\n    slack: {channels: [C0123ABC]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := []string{"--root", filepath.Join(dir, "state"), "--data", filepath.Join(dir, "state-data")}
	out, code := policyCheck(t, append(state, "--allowlist", allow, good)...)
	if code != 0 || !strings.Contains(out, "OK, 1 agent") || !strings.Contains(out, "/data <- "+filepath.Join(dir, "data")+" (rw)") || !strings.Contains(out, "channels C0123ABC") {
		t.Fatalf("good file: exit %d\n%s", code, out)
	}
	// The file is valid, but this host cannot run the agent: its command
	// is not in the (empty) root filesystem. A warning, not a failure.
	if !strings.Contains(out, "this host     WARN: ") || !strings.Contains(out, "/agent") {
		t.Errorf("good file with a missing command: no host warning:\n%s", out)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs", "agent"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, _ := policyCheck(t, append(state, "--allowlist", allow, good)...); !strings.Contains(out, "this host     OK: this host can run it as declared") {
		t.Errorf("runnable agent: no host OK line:\n%s", out)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`agents:
  demo:
    rootfs: rootfs
    command: [/agent]
    grants:
      - {host: home, path: /home}
      - {host: data, path: /all, mode: rw}
    capabilities: [CAP_SYS_ADMIN]
    slack: {channels: ["#general"]}
    tmp_size: huge
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// An allowlist inside a rw grant could be rewritten by the agent.
	allow2 := filepath.Join(dir, "data", "allowlist.yaml")
	if err := os.WriteFile(allow2, []byte("agent_dir: rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = policyCheck(t, "--allowlist", allow2, bad)
	if code != 1 {
		t.Fatalf("bad file: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"bad.yaml:6: agents.demo.grants[0].host: ", "(policy: blocked paths)",
		"bad.yaml:7: agents.demo.grants[1]: ", "(policy: self-edit protection)",
		"bad.yaml:8: agents.demo.capabilities[0]: ", "(policy: capabilities)", "contains the allowlist " + allow2,
		"bad.yaml:9: agents.demo.slack.channels[0]: ", "(policy: slack routing)",
		"bad.yaml:10: agents.demo.tmp_size: ", "(policy: schema)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
