package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestErrors(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  good:
    rootfs: %s
    command: ["/bin/true"]
`, baseRootfs))
	norootfs := e.writeFile("norootfs.yaml", "agents:\n  norootfs:\n    rootfs: /does/not/exist\n    command: [/bin/true]\n")
	bad := e.writeFile("bad.yaml", "agents:\n  x:\n    rootfs: [unclosed\n")
	unknown := e.writeFile("unknown.yaml", fmt.Sprintf("agents:\n  x:\n    rootfs: %s\n    command: [/bin/true]\n    limts: {pids: 3}\n", baseRootfs))
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"missing rootfs", []string{"--config", norootfs, "run", "norootfs"}, []string{"norootfs.yaml:3", "rootfs", "/does/not/exist"}},
		{"unknown agent", []string{"run", "nosuch"}, []string{`"nosuch"`, "good"}},
		{"malformed YAML", []string{"--config", bad, "run", "x"}, []string{"bad.yaml:"}},
		{"unknown field", []string{"--config", unknown, "run", "x"}, []string{"unknown.yaml:5", "limts"}},
		{"no agent file", []string{"--config", filepath.Join(e.dir, "absent.yaml"), "run", "x"}, []string{"absent.yaml"}},
		{"ad-hoc missing rootfs", []string{"run", "--rootfs", "/does/not/exist", "--", "/bin/true"}, []string{"/does/not/exist"}},
		{"ad-hoc bad mount", []string{"run", "--rootfs", baseRootfs, "--mount", "nocolon", "--", "/bin/true"}, []string{"--mount"}},
		{"exec unknown container", []string{"exec", "ghost", "/bin/true"}, []string{"ghost", "no such container"}},
		{"kill bad signal", []string{"kill", "ghost", "NOTASIG"}, []string{"NOTASIG"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(tc.args...)
			if r.code == 0 {
				t.Fatalf("succeeded, want an error:\n%s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Fatalf("stderr lacks %q:\n%s", w, r)
				}
			}
		})
	}
	if left := e.stateEntries(); len(left) != 0 {
		t.Fatalf("failed runs left state behind: %v", left)
	}
}

// A run that fails after the container was created leaves nothing: no
// state, no log, no cgroup.
func TestFailedRunLeavesNothing(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  broken:
    rootfs: %s
    command: ["/bin/true"]
    workdir: /not/in/rootfs
`, baseRootfs))
	r := e.run("run", "-d", "--name", "broken1", "broken")
	if r.code == 0 || !strings.Contains(r.stderr, "workdir") {
		t.Fatalf("run with a missing workdir: %s", r)
	}
	// A grant mounted over a file fails inside libcontainer's init, after
	// the container, its namespaces and its cgroup were created.
	grant := e.mkdir("grant")
	r = e.run("run", "-d", "--name", "broken2", "--rootfs", baseRootfs, "--mount", grant+":/agent/sub", "--", "/bin/sleep", "100")
	if r.code == 0 {
		t.Fatalf("mounting a grant below a file succeeded: %s", r)
	}
	if left := e.stateEntries(); len(left) != 0 {
		t.Fatalf("failed runs left state behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(e.data, "logs", "broken2.log")); !os.IsNotExist(err) {
		t.Fatalf("failed run left its log: %v", err)
	}
	if isRoot() {
		for _, ctl := range []string{"pids", "memory", "cpu"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctl, "clawrun", "broken2")); !os.IsNotExist(err) {
				t.Fatalf("failed run left a %s cgroup: %v", ctl, err)
			}
		}
	}
}

// Two agents see neither each other's processes nor each other's files,
// and nothing of the host beyond what they were granted.
func TestAgentsAreIsolated(t *testing.T) {
	e := newEnv(t)
	aDir, bDir := e.mkdir("a-work"), e.mkdir("b-work")
	if err := os.WriteFile(filepath.Join(bDir, "secret"), []byte("b's secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  a:
    rootfs: %[1]s
    command: ["/bin/sleep", "1000"]
    grants: [{host: %[2]s, path: /work, mode: rw}]
  b:
    rootfs: %[1]s
    command: ["/bin/sleep", "1000"]
    grants: [{host: %[3]s, path: /work, mode: rw}]
`, baseRootfs, aDir, bDir))
	e.ok("run", "-d", "a")
	e.ok("run", "-d", "b")

	ps := e.ok("exec", "a", "/bin/ps", "-o", "pid,args")
	if strings.Count(strings.TrimSpace(ps), "\n") != 2 { // header, sleep, ps
		t.Fatalf("agent a sees other processes:\n%s", ps)
	}
	if r := e.run("exec", "a", "/bin/cat", "/work/secret"); r.code == 0 {
		t.Fatalf("agent a read agent b's file: %s", r)
	}
	e.ok("exec", "a", "/bin/sh", "-c", "echo from-a > /work/note")
	if r := e.run("exec", "b", "/bin/cat", "/work/note"); r.code == 0 {
		t.Fatalf("agent b read agent a's file: %s", r)
	}
	// The host's root is not visible: / is exactly the agent's rootfs.
	entries, err := os.ReadDir(baseRootfs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"work": true}
	for _, en := range entries {
		want[en.Name()] = true
	}
	for _, name := range strings.Fields(e.ok("exec", "a", "/bin/ls", "-A", "/")) {
		if !want[name] {
			t.Fatalf("agent a sees %q at /, which is neither in its rootfs nor granted", name)
		}
	}
	// Each agent has its own hostname and network (loopback only).
	if h := strings.TrimSpace(e.ok("exec", "b", "/bin/hostname")); h != "b" {
		t.Fatalf("hostname %q", h)
	}
	ifaces := e.ok("exec", "a", "/bin/cat", "/proc/net/dev")
	if strings.Count(ifaces, ":") != 1 || !strings.Contains(ifaces, "lo:") {
		t.Fatalf("agent a has network interfaces beyond loopback:\n%s", ifaces)
	}
}

// What a rootless agent writes to a read-write grant belongs to the host
// user who ran clawrun (keep-id), and the read-only root stays read-only.
func TestGrantsAndReadOnlyRoot(t *testing.T) {
	e := newEnv(t)
	rw, ro := e.mkdir("rw"), e.mkdir("ro")
	if err := os.WriteFile(filepath.Join(ro, "data"), []byte("read me"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "echo hi > /rw/out && cat /ro/data && " +
		"if touch /ro/x 2>/dev/null; then echo RO-WRITABLE; fi; " +
		"if touch /etc/x 2>/dev/null; then echo ROOT-WRITABLE; fi; " +
		"touch /tmp/ok && echo tmp-ok"
	out := e.ok("run", "--rootfs", baseRootfs, "--mount", rw+":/rw:rw", "--mount", ro+":/ro", "--", "/bin/sh", "-c", script)
	if strings.Contains(out, "WRITABLE") || !strings.Contains(out, "read me") || !strings.Contains(out, "tmp-ok") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	st, err := os.Stat(filepath.Join(rw, "out"))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != os.Geteuid() || int(sys.Gid) != os.Getegid() {
		t.Fatalf("file written by the agent is owned by %d:%d on the host, want the invoking user %d:%d", sys.Uid, sys.Gid, os.Geteuid(), os.Getegid())
	}
}

// Secure defaults, proven from inside: the escape attempt is made and fails.
func TestSecureDefaultsFromInside(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		script string
		want   string
	}{
		{"no capabilities", "grep CapEff /proc/self/status", "CapEff:\t0000000000000000"},
		{"no_new_privileges", "grep NoNewPrivs /proc/self/status", "NoNewPrivs:\t1"},
		{"seccomp filter", "grep '^Seccomp:' /proc/self/status", "Seccomp:\t2"},
		{"cannot create namespaces", "unshare -U -r true 2>&1; echo rc=$?", "rc=1"},
		{"cannot mount", "mount -t tmpfs none /tmp 2>&1; echo rc=$?", "rc=1"},
		{"cannot remount root rw", "mount -o remount,rw / 2>&1; echo rc=$?", "rc=1"},
		{"proc keys masked", "wc -c < /proc/keys", "0"},
		{"proc timer_list masked", "wc -c < /proc/timer_list", "0"},
		{"proc sys read-only", "echo 1 > /proc/sys/kernel/ns_last_pid 2>&1; echo rc=$?", "rc=1"},
		{"tmp is size-limited tmpfs", "grep ' /tmp ' /proc/mounts", "tmpfs /tmp tmpfs rw,nosuid,nodev"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := e.ok("run", "--rootfs", baseRootfs, "--", "/bin/sh", "-c", tc.script)
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

// inspect audits a running container against what the kernel enforces.
func TestInspect(t *testing.T) {
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf("agents:\n  audited:\n    rootfs: %s\n    command: [/bin/sleep, '1000']\n", baseRootfs))
	plan := e.ok("inspect", "audited")
	for _, want := range []string{"rootfs", "namespace", "capabilities", "effective=none", "masked", "/proc/keys", "seccomp", "no_new_privileges", "idmap"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("inspect AGENT lacks %q:\n%s", want, plan)
		}
	}
	e.ok("run", "-d", "audited")
	live := e.ok("inspect", "audited")
	if !strings.Contains(live, "enforced (read from /proc and the cgroup files)") || strings.Contains(live, "MISMATCH") {
		t.Fatalf("inspect of a running container:\n%s", live)
	}
	if strings.Count(live, "(ok)") < 13 {
		t.Fatalf("expected 13 live checks ok:\n%s", live)
	}
}

// A grant marked noexec holds files the agent can read but never run.
func TestNoExecGrant(t *testing.T) {
	e := newEnv(t)
	tools := e.mkdir("tools")
	if err := os.WriteFile(filepath.Join(tools, "run.sh"), []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  careful:
    rootfs: %s
    command: ["/bin/sh", "-c", "cat /tools/run.sh >/dev/null && echo readable; /tools/run.sh 2>&1; echo rc=$?"]
    grants: [{host: %s, path: /tools, noexec: true}]
`, baseRootfs, tools))
	out := e.ok("run", "careful")
	if !strings.Contains(out, "readable") || strings.Contains(out, "\nran") || !strings.Contains(out, "Permission denied") {
		t.Fatalf("noexec grant: %q", out)
	}
}
