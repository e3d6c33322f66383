package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The bundle clawrun writes is a plain OCI bundle: Debian's runc runs it.
func TestBundleRunsUnderRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc not installed (make test installs Debian's runc): %v", err)
	}
	e := newEnv(t)
	// runc itself, run by an unprivileged user, can only map the container's
	// root to that user; clawrun's subordinate-id layout needs its outer
	// user namespace, so the rootless bundle uses a single-id map.
	idmap := "auto"
	if !isRoot() {
		idmap = "single"
	}
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  portable:
    rootfs: %s
    command: ["/bin/sh", "-c", "echo from-runc; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"]
    idmap: %s
`, baseRootfs, idmap))
	bundle := filepath.Join(t.TempDir(), "bundle")
	e.ok("bundle", "portable", bundle)
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bundle, "rootfs", "agent")); err != nil {
		t.Fatalf("bundle rootfs: %v", err)
	}
	state := t.TempDir()
	args := []string{"--root", state}
	if !isRoot() {
		args = append(args, "--rootless", "true")
	}
	id := fmt.Sprintf("clawrun-it-%d", os.Getpid())
	cmd := exec.Command(runc, append(args, "run", "-b", bundle, id)...)
	out, err := cmd.CombinedOutput()
	defer exec.Command(runc, append(args, "delete", "-f", id)...).Run()
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	for _, want := range []string{"from-runc", "CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("runc output lacks %q:\n%s", want, out)
		}
	}
}
