package test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/clawrun/clawrun/rootfs"
)

// An agent's /workspace is clawrun's own directory under the data dir: it
// outlives the container, belongs to the invoking user on the host, and goes
// only with 'clawrun workspace rm'.
func TestWorkspacePersists(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  ws:
    rootfs: %s
    command: ["/agent"]
    workspace: true
`, baseRootfs))
	// Each foreground run without --name is removed when it ends.
	e.ok("run", "ws", "--", "/bin/sh", "-c", "echo one > /workspace/f && mkdir /workspace/d")
	if out := e.ok("run", "ws", "--", "/bin/cat", "/workspace/f"); out != "one\n" {
		t.Fatalf("second run read %q from /workspace/f, want the first run's %q", out, "one\n")
	}
	if n := e.stateEntries(); len(n) != 0 {
		t.Fatalf("containers left behind: %v", n)
	}
	dir := filepath.Join(e.data, "workspaces", "ws")
	for p, perm := range map[string]fs.FileMode{dir: 0o700, filepath.Join(dir, "f"): 0, filepath.Join(dir, "d"): 0} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
			t.Errorf("%s is owned by %d:%d on the host, want the invoking user %d:%d", p, st.Uid, st.Gid, os.Geteuid(), os.Getegid())
		}
		if perm != 0 && fi.Mode().Perm() != perm {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), perm)
		}
	}
	if out := e.ok("inspect", "ws"); !strings.Contains(out, "workspace") || !strings.Contains(out, dir) {
		t.Errorf("inspect does not show the workspace %s:\n%s", dir, out)
	}
	// rm of a named container leaves the workspace.
	e.ok("run", "--name", "ws1", "ws", "--", "/bin/sh", "-c", "echo two >> /workspace/f")
	e.ok("rm", "ws1")
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "one\ntwo\n" {
		t.Fatalf("after rm the workspace holds %q (%v), want both runs' lines", b, err)
	}
	if out := e.ok("workspace", "ls"); !strings.Contains(out, "ws\t"+dir) {
		t.Errorf("workspace ls: %q", out)
	}
	e.ok("workspace", "rm", "ws")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("workspace rm left %s: %v", dir, err)
	}
	if r := e.run("workspace", "rm", "ws"); r.code == 0 {
		t.Fatalf("removing a missing workspace succeeded: %s", r)
	}
}

// A workspace in which the agent file lies would let the agent edit its own
// permissions.
func TestWorkspaceSelfEdit(t *testing.T) {
	e := newEnv(t)
	ws := filepath.Join(e.data, "workspaces", "ws")
	if err := os.MkdirAll(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(ws, "clawrun.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("agents:\n  ws:\n    rootfs: %s\n    command: [\"/agent\"]\n    workspace: true\n", baseRootfs)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("--config", file, "run", "ws", "--", "/bin/true")
	if r.code == 0 || !strings.Contains(r.stderr, "self-edit protection") {
		t.Fatalf("a workspace holding the agent file was accepted: %s", r)
	}
}

// treeSnapshot lists every entry under dir with its mode, size and mtime.
func treeSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.Walk(dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %v %d %d", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// writable_rootfs gives each container its own writable root over the
// base: writes and deletions stay in that container, the base on the host
// is untouched, and a second agent (or container) on the same base sees
// none of them.
func TestWritableRootfs(t *testing.T) {
	e := newEnv(t)
	base := filepath.Join(e.dir, "base")
	if err := rootfs.Copy(baseRootfs, base); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeFile("clawrun.yaml", `agents:
  a:
    rootfs: ./base
    command: ["/agent"]
    writable_rootfs: true
  b:
    rootfs: ./base
    command: ["/agent"]
    writable_rootfs: true
  ro:
    rootfs: ./base
    command: ["/agent"]
`)
	before := treeSnapshot(t, base)
	out := e.ok("run", "--name", "a1", "a", "--", "/bin/sh", "-c",
		"mkdir -p /etc && echo mine > /etc/x && rm /agent && cat /etc/x && ls /agent 2>&1 || true")
	if !strings.HasPrefix(out, "mine\n") || !strings.Contains(out, "No such file") {
		t.Fatalf("agent a could not write its root (or delete from it): %q", out)
	}
	insp := e.ok("inspect", "a1")
	if !strings.Contains(insp, "read-only: false") || !(strings.Contains(insp, "overlayfs") || strings.Contains(insp, "copy")) {
		t.Fatalf("inspect does not say how the writable root was made:\n%s", insp)
	}
	for _, l := range strings.Split(insp, "\n") {
		if strings.HasPrefix(l, "writable") {
			t.Logf("%s", l)
		}
	}
	for _, agent := range []string{"b", "a"} {
		out := e.ok("run", agent, "--", "/bin/sh", "-c", "cat /etc/x 2>&1; ls /agent")
		if strings.Contains(out, "mine") || !strings.Contains(out, "/agent") {
			t.Fatalf("agent %s sees another container's writes: %q", agent, out)
		}
	}
	// The anonymous runs removed themselves, their writable roots with them.
	if left, _ := os.ReadDir(filepath.Join(e.data, "containers")); len(left) != 1 || left[0].Name() != "a1" {
		var names []string
		for _, l := range left {
			names = append(names, l.Name())
		}
		t.Fatalf("writable roots left in the data dir: %v, want only a1's", names)
	}
	if after := treeSnapshot(t, base); after != before {
		t.Fatalf("the base changed on the host:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if r := e.run("run", "ro", "--", "/bin/sh", "-c", "echo x > /etc/x"); r.code == 0 {
		t.Fatalf("an agent without writable_rootfs wrote to its root: %s", r)
	}
	area := filepath.Join(e.data, "containers", "a1")
	if _, err := os.Stat(area); err != nil {
		t.Fatalf("writable root of a1: %v", err)
	}
	e.ok("rm", "a1")
	if _, err := os.Stat(area); !os.IsNotExist(err) {
		t.Fatalf("rm left the writable root %s: %v", area, err)
	}
	if after := treeSnapshot(t, base); after != before {
		t.Fatalf("the base changed on the host after rm")
	}
}
