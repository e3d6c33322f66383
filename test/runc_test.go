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

// An egress agent's bundle runs under plain runc: its createRuntime hook
// starts clawrun's proxy inside the container's network namespace, so the
// agent reaches an allowed host by name and its base-URL secret's host
// with the key injected, a refused host gets the proxy's 403, and the
// secret's value is neither in config.json nor inside. The proxy ends with
// the container. Rootless runc (Debian's 1.1.5, which can only map the
// container's root to the invoking user, hence idmap: single) runs it the
// same way: its unprivileged hook opens the listeners through nsenter,
// joining the container's user namespace first.
func TestBundleEgressUnderRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc not installed (make test installs Debian's runc): %v", err)
	}
	f := newEgressFixture(t)
	p1, p2 := f.port(f.plain), f.port(f.tlsSrv)
	f.e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  hc-portable-net:
    rootfs: %s
    command: ["/bin/sh", "-c", "echo allowed: $(wget -q -O - http://allowed.example:%[2]d/); wget -q -O - http://refused.example:%[2]d/ 2>&1; echo; echo base: $(wget -q -Y off -O - $API_BASE_URL/v1?k=$API_KEY)"]
    idmap: single
    network:
      egress: ["allowed.example:%[2]d", "example.com:%[3]d"]
    secrets:
      - {name: API_KEY, host: "example.com:%[3]d", header: x-api-key, base_url_env: API_BASE_URL}
`, baseRootfs, p1, p2))
	bundle := filepath.Join(t.TempDir(), "bundle")
	if r := f.run("bundle", "hc-portable-net", bundle); r.code == 0 || !strings.Contains(r.stderr, "pass --secrets FILE") {
		t.Fatalf("a bundle with a proxied secret and no secrets file: %s", r)
	}
	secrets := f.e.writeFile("secrets.env", "API_KEY="+f.secret+"\n")
	if err := os.Chmod(secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	r := f.run("bundle", "--secrets", secrets, "hc-portable-net", bundle)
	if r.code != 0 || !strings.Contains(r.stderr, "egress grant") || strings.Contains(r.stderr, "nsenter not found") {
		t.Fatalf("bundle: %s", r)
	}
	cfg, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"createRuntime"`, `"poststop"`, `"clawrun.egress"`, "__egress-hook", secrets} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config.json lacks %s", want)
		}
	}
	if strings.Contains(string(cfg), f.secret) {
		t.Fatal("config.json holds the secret's value")
	}
	state := t.TempDir()
	args := []string{"--root", state}
	if !isRoot() {
		args = append(args, "--rootless", "true")
	}
	id := fmt.Sprintf("hc-runc-egress-%d", os.Getpid())
	cmd := exec.Command(runc, append(args, "run", "-b", bundle, id)...)
	out, err := cmd.CombinedOutput()
	defer exec.Command(runc, append(args, "delete", "-f", id)...).Run()
	t.Logf("runc run:\n%s", out)
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"allowed: " + f.plainMsg,
		"HTTP/1.1 403 Forbidden", // busybox wget prints the status, not the body
		"base: upstream saw GET /v1 with the secret injected query k=clawrun-placeholder-API_KEY",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("runc output lacks %q", want)
		}
	}
	if strings.Contains(string(out), f.secret) {
		t.Error("the secret's value reached the container's output")
	}
	netlog := f.run("logs", "--net", id)
	for _, want := range []string{fmt.Sprintf("ALLOW http GET allowed.example:%d", p1), "not_in_allowlist", "secrets=API_KEY"} {
		if !strings.Contains(netlog.stdout, want) {
			t.Errorf("logs --net %s lacks %q:\n%s", id, want, netlog)
		}
	}
	if out, err := exec.Command(runc, append(args, "delete", "-f", id)...).CombinedOutput(); err != nil {
		t.Fatalf("runc delete: %v\n%s", err, out)
	}
	// The proxy ended with the container (poststop, or init's exit): its
	// pid file is gone and no process runs the hook's proxy for id.
	waitFor(t, "the proxy to end", func() bool {
		_, err := os.Stat(filepath.Join(f.e.data, "egress-hooks", id+".pid"))
		return os.IsNotExist(err) && len(hookProxies(t, id)) == 0
	})
}

// hookProxies are the pids of the processes running the egress hook's
// proxy (`clawrun __egress-hook serve ID`) of container id.
func hookProxies(t *testing.T, id string) []string {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "\x00__egress-hook\x00serve\x00"+id+"\x00") {
			pids = append(pids, d.Name())
		}
	}
	return pids
}
