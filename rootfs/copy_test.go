package rootfs

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCopy(t *testing.T) {
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(src, "bin", "tool"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(src, "bin", "tool"), 0o755|fs.ModeSetuid))
	must(os.Symlink("tool", filepath.Join(src, "bin", "alias")))
	must(os.Symlink("/etc/passwd", filepath.Join(src, "hostlink")))
	must(os.Mkdir(filepath.Join(src, "tmp"), 0o777))
	must(os.Chmod(filepath.Join(src, "tmp"), 0o777|fs.ModeSticky))
	must(syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))

	dst := filepath.Join(t.TempDir(), "copy")
	must(Copy(src, dst))

	st, err := os.Stat(filepath.Join(dst, "bin", "tool"))
	must(err)
	if st.Mode()&fs.ModeSetuid == 0 || st.Mode().Perm() != 0o755 {
		t.Fatalf("tool mode %v, want setuid 0755 kept", st.Mode())
	}
	if l, err := os.Readlink(filepath.Join(dst, "bin", "alias")); err != nil || l != "tool" {
		t.Fatalf("relative symlink: %q %v", l, err)
	}
	// Absolute symlinks are copied as links, never followed into the host.
	if l, err := os.Readlink(filepath.Join(dst, "hostlink")); err != nil || l != "/etc/passwd" {
		t.Fatalf("absolute symlink: %q %v", l, err)
	}
	st, err = os.Stat(filepath.Join(dst, "tmp"))
	must(err)
	if st.Mode()&fs.ModeSticky == 0 {
		t.Fatalf("sticky bit lost: %v", st.Mode())
	}
	if _, err := os.Lstat(filepath.Join(dst, "fifo")); !os.IsNotExist(err) {
		t.Fatalf("special file copied: %v", err)
	}
}

func TestStatScoped(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink("/", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Stat(root, "/work"); err != nil {
		t.Fatalf("Stat /work: %v", err)
	}
	// /escape/etc resolves inside the rootfs (to /etc there), not the host's.
	if _, err := Stat(root, "/escape/etc"); !os.IsNotExist(err) {
		t.Fatalf("symlink escaped the rootfs: %v", err)
	}
}
