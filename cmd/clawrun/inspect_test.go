package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInspectAgentThatCannotRun: inspecting an agent of the file whose
// sandbox cannot be built names the real cause, not "no such agent".
func TestInspectAgentThatCannotRun(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "clawrun.yaml")
	if err := os.WriteFile(cfg, []byte("agents:\n  hq-inspect:\n    rootfs: rootfs\n    command: [/no-such-agent]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want, not string }{
		{"hq-inspect", "agent hq-inspect cannot run on this host", "could be loaded"},
		{"hq-missing", "no agent of that name could be loaded", "cannot run on this host"},
	} {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs([]string{"--root", filepath.Join(dir, "state"), "--data", filepath.Join(dir, "data"), "--config", cfg, "inspect", tc.name})
		err := cmd.Execute()
		if err == nil {
			t.Fatalf("inspect %s succeeded:\n%s", tc.name, out.String())
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.not) {
			t.Errorf("inspect %s: want %q and not %q in: %v", tc.name, tc.want, tc.not, err)
		}
	}
	// The missing command itself is named, so the user knows what to fix.
	cmd := newRootCmd()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"--root", filepath.Join(dir, "state"), "--data", filepath.Join(dir, "data"), "--config", cfg, "inspect", "hq-inspect"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "/no-such-agent") {
		t.Errorf("error does not name the missing command: %v", err)
	}
}
