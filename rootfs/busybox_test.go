package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const hostBusybox = "/bin/busybox"

func needBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(hostBusybox); err != nil {
		t.Skipf("%s not found (%v): install a static busybox (Debian: apt-get install busybox-static) to run the busybox rootfs tests", hostBusybox, err)
	}
}

func TestBuildBusybox(t *testing.T) {
	needBusybox(t)
	agentSrc := filepath.Join(t.TempDir(), "agent-bin")
	if err := os.WriteFile(agentSrc, []byte("#!/bin/sh\necho hi\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	shSrc := filepath.Join(t.TempDir(), "my-sh")
	if err := os.WriteFile(shSrc, []byte("custom shell"), 0o750); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "new", "rootfs")
	err := BuildBusybox(dir, hostBusybox, map[string]string{
		"/agent":          agentSrc,
		"/opt/tools/sh2":  shSrc,
		"/usr/bin/custom": shSrc,
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct{ cmd, want string }{
		{"sh", "/bin/sh"},
		{"ls", "/bin/ls"},
		{"id", "/bin/id"},
		{"sleep", "/bin/sleep"},
		{"custom", "/usr/bin/custom"},
		{"/agent", "/agent"},
		{"/opt/tools/sh2", "/opt/tools/sh2"},
	} {
		got, err := LookPath(dir, tt.cmd, nil)
		if err != nil || got != tt.want {
			t.Errorf("LookPath(%q) = %q, %v; want %q", tt.cmd, got, err, tt.want)
		}
	}
	if _, err := LookPath(dir, "busybox-does-not-have-this", nil); !errors.Is(err, ErrCommandNotFound) {
		t.Errorf("LookPath of a missing command: %v, want ErrCommandNotFound", err)
	}

	modes := []struct {
		path string
		want fs.FileMode
	}{
		{"/", fs.ModeDir | 0o755},
		{"/bin", fs.ModeDir | 0o755},
		{"/tmp", fs.ModeDir | fs.ModeSticky | 0o777},
		{"/proc", fs.ModeDir | 0o755},
		{"/sys", fs.ModeDir | 0o755},
		{"/dev", fs.ModeDir | 0o755},
		{"/home/agent", fs.ModeDir | 0o755},
		{"/root", fs.ModeDir | 0o755},
		{"/usr/bin", fs.ModeDir | 0o755},
		{"/data", fs.ModeDir | 0o755},
		{"/opt/tools", fs.ModeDir | 0o755},
		{"/bin/busybox", 0o755},
		{"/etc/passwd", 0o644},
		{"/etc/group", 0o644},
		{"/etc/hostname", 0o644},
		{"/agent", 0o744},         // 0700 kept, read added for mapped ids
		{"/opt/tools/sh2", 0o754}, // 0750 kept, read added
	}
	for _, m := range modes {
		fi, err := os.Lstat(filepath.Join(dir, m.path))
		if err != nil {
			t.Errorf("%s: %v", m.path, err)
			continue
		}
		if fi.Mode() != m.want {
			t.Errorf("%s: mode %v, want %v", m.path, fi.Mode(), m.want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("/bin/sh -> %q, %v; want a link to busybox", target, err)
	}

	passwd, err := os.ReadFile(filepath.Join(dir, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"root:x:0:0:",
		"agent:x:1000:1000:agent:/home/agent:/bin/sh",
		"nobody:x:65534:65534:",
	} {
		if !strings.Contains(string(passwd), line) {
			t.Errorf("/etc/passwd lacks %q:\n%s", line, passwd)
		}
	}
	group, err := os.ReadFile(filepath.Join(dir, "etc", "group"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"root:x:0:", "agent:x:1000:", "nobody:x:65534:"} {
		if !strings.Contains(string(group), line) {
			t.Errorf("/etc/group lacks %q:\n%s", line, group)
		}
	}

	// The copied busybox works and knows its applets through the links.
	out, err := exec.Command(filepath.Join(dir, "bin", "echo"), "from", "rootfs").Output()
	if err != nil || string(out) != "from rootfs\n" {
		t.Errorf("rootfs /bin/echo: %q, %v", out, err)
	}
}

func TestBuildBusyboxExtraReplacesApplet(t *testing.T) {
	needBusybox(t)
	src := filepath.Join(t.TempDir(), "mysh")
	if err := os.WriteFile(src, []byte("mine"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() // exists and is empty
	if err := BuildBusybox(dir, hostBusybox, map[string]string{"/bin/sh": src}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "bin", "sh"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("/bin/sh: %v, %v; want the extra regular file", fi, err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "bin", "sh"))
	if string(got) != "mine" {
		t.Fatalf("/bin/sh = %q, want the extra's content", got)
	}
	// busybox itself must be untouched (the link was replaced, not written through).
	if fi, err := os.Stat(filepath.Join(dir, "bin", "busybox")); err != nil || fi.Size() < 1000 {
		t.Fatalf("/bin/busybox after replacing /bin/sh: %v, %v", fi, err)
	}
}

func TestBuildBusyboxErrors(t *testing.T) {
	needBusybox(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		busybox string
		extra   map[string]string
		wantErr string
		gone    bool // dir must not exist afterwards
	}{
		{name: "not empty", dir: nonEmpty, busybox: hostBusybox, wantErr: "is not empty"},
		{name: "target is a file", dir: file, busybox: hostBusybox, wantErr: "must be an empty directory"},
		{name: "no busybox", dir: filepath.Join(t.TempDir(), "r"), busybox: "/nonexistent/busybox", wantErr: "busybox-static", gone: true},
		{name: "extra missing", dir: filepath.Join(t.TempDir(), "r"), busybox: hostBusybox,
			extra: map[string]string{"/agent": "/nonexistent/agent"}, wantErr: "/nonexistent/agent", gone: true},
		{name: "extra relative path", dir: filepath.Join(t.TempDir(), "r"), busybox: hostBusybox,
			extra: map[string]string{"agent": file}, wantErr: "must be absolute", gone: true},
		{name: "extra is a directory", dir: filepath.Join(t.TempDir(), "r"), busybox: hostBusybox,
			extra: map[string]string{"/agent": t.TempDir()}, wantErr: "not a regular file", gone: true},
		{name: "extra over a directory", dir: filepath.Join(t.TempDir(), "r"), busybox: hostBusybox,
			extra: map[string]string{"/tmp": file}, wantErr: "a directory is already there", gone: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := BuildBusybox(tt.dir, tt.busybox, tt.extra)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("BuildBusybox: %v, want error containing %q", err, tt.wantErr)
			}
			if _, serr := os.Stat(tt.dir); tt.gone && !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("%s left behind after failure (%v)", tt.dir, serr)
			}
		})
	}
	if entries, _ := os.ReadDir(nonEmpty); len(entries) != 1 {
		t.Errorf("non-empty target was modified: %v", entries)
	}
}

func TestBuildBusyboxCleansExistingDirOnError(t *testing.T) {
	needBusybox(t)
	dir := t.TempDir()
	err := BuildBusybox(dir, hostBusybox, map[string]string{"/agent": "/nonexistent/agent"})
	if err == nil {
		t.Fatal("BuildBusybox with a missing extra succeeded")
	}
	entries, rerr := os.ReadDir(dir)
	if rerr != nil || len(entries) != 0 {
		t.Fatalf("after failure dir holds %v (%v); want it kept and empty", entries, rerr)
	}
}
