// Package test holds clawrun's integration suite: the real binary, real
// libcontainer, real namespaces, seccomp and (as root) cgroups. It runs as
// root and, in `make test`, again as an unprivileged user.
package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/rootfs"
)

var (
	clawrunBin string
	agentBin   string
	baseRootfs string // busybox + echo agent, shared read-only by all tests
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	clawrunBin = envOr("CLAWRUN_BIN", "../bin/clawrun")
	agentBin = envOr("CLAWRUN_AGENT_BIN", "../bin/echo-agent")
	for _, p := range []*string{&clawrunBin, &agentBin} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*p = abs
		if _, err := os.Stat(abs); err != nil {
			fmt.Fprintf(os.Stderr, "integration: %v (run 'make build' first, or set CLAWRUN_BIN/CLAWRUN_AGENT_BIN)\n", err)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "clawrun-it-rootfs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	baseRootfs = filepath.Join(dir, "rootfs")
	extra := map[string]string{"/agent": agentBin}
	// The escape suite's prober; if it cannot be built, only that suite fails.
	if proberBin, proberErr = buildProber(dir); proberErr == nil {
		extra["/prober"] = proberBin
	}
	// The interception test's HTTPS client; if it cannot be built, only that test fails.
	tlsClientBin, tlsClientErr = buildTLSClient(dir)
	if err := rootfs.BuildBusybox(baseRootfs, "/bin/busybox", extra); err != nil {
		fmt.Fprintln(os.Stderr, "integration: build rootfs:", err)
		return 1
	}
	return m.Run()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func isRoot() bool { return os.Geteuid() == 0 }

// env is one isolated clawrun installation: its own state and data dirs and
// a directory for agent files and grants.
type env struct {
	t     *testing.T
	root  string
	data  string
	dir   string
	stdin string
	// wrap runs clawrun through a command (e.g. withRootRange's mount
	// namespace); clawrun's path and arguments follow it.
	wrap []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	base := t.TempDir()
	// Containers run as mapped ids that must traverse these directories.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: filepath.Join(base, "state"), data: filepath.Join(base, "data"), dir: filepath.Join(base, "work")}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Never leave a container behind, even when a test fails midway.
		out, _ := e.cmd("ps", "--json").Output()
		var list []struct{ Name string }
		_ = json.Unmarshal(out, &list)
		for _, c := range list {
			_ = e.cmd("rm", "-f", c.Name).Run()
		}
		// Rootless, mapped image bases belong to subordinate ids, which
		// the TempDir cleanup cannot remove: clawrun removes them.
		if _, err := os.Stat(filepath.Join(e.data, "images")); err == nil {
			out, _ := e.cmd("image", "ls", "--json").Output()
			var imgs []struct{ ID string }
			_ = json.Unmarshal(out, &imgs)
			for _, img := range imgs {
				_ = e.cmd("image", "rm", img.ID).Run()
			}
		}
	})
	return e
}

func (e *env) cmd(args ...string) *exec.Cmd {
	full := append([]string{clawrunBin, "--root", e.root, "--data", e.data}, args...)
	if len(e.wrap) > 0 {
		full = append(append([]string(nil), e.wrap...), full...)
	}
	c := exec.Command(full[0], full[1:]...)
	c.Dir = e.dir
	if e.stdin != "" {
		c.Stdin = strings.NewReader(e.stdin)
	}
	return c
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs clawrun and returns its output and exit code; it fails the test
// only if clawrun could not be executed or hangs.
func (e *env) run(args ...string) result {
	e.t.Helper()
	c := e.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		e.t.Fatalf("start clawrun: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		_ = c.Process.Kill()
		e.t.Fatalf("clawrun %v hung; stdout=%s stderr=%s", args, out.String(), errb.String())
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("clawrun %v: %v", args, err)
	}
	return r
}

// ok runs clawrun and fails the test unless it exits 0.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("clawrun %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// writeFile writes an agent file into the env's work dir.
func (e *env) writeFile(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// mkdir makes a host directory for grants, open to the container's ids.
func (e *env) mkdir(name string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return p
}

type psEntry struct {
	Name    string   `json:"name"`
	Agent   string   `json:"agent"`
	Status  string   `json:"status"`
	Pid     int      `json:"pid"`
	Command []string `json:"command"`
}

func (e *env) ps() []psEntry {
	e.t.Helper()
	var list []psEntry
	if err := json.Unmarshal([]byte(e.ok("ps", "--json")), &list); err != nil {
		e.t.Fatalf("ps --json: %v", err)
	}
	return list
}

func (e *env) status(name string) string {
	for _, c := range e.ps() {
		if c.Name == name {
			return c.Status
		}
	}
	return "absent"
}

// stateEntries lists what is left in the state dir.
func (e *env) stateEntries() []string {
	entries, err := os.ReadDir(e.root)
	if err != nil {
		return nil
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rootRangeStart is the subordinate range withRootRange gives root: far
// from the test user's and from any real user's ids.
const rootRangeStart = 2000000

// withRootRange runs e's clawrun (as root) with a subordinate range for
// root in /etc/subuid and /etc/subgid, bind-mounted over the real files in
// a mount namespace of each clawrun's own: the host's files stay as they
// are (Debian gives root no range), and the suite covers root with
// subordinate ids too.
func withRootRange(t *testing.T, e *env) {
	t.Helper()
	if !isRoot() {
		t.Fatal("withRootRange is for root")
	}
	dir := t.TempDir()
	files := make([]string, 2)
	for i, name := range []string{"subuid", "subgid"} {
		old, err := os.ReadFile("/etc/" + name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		files[i] = filepath.Join(dir, name)
		content := fmt.Sprintf("%sroot:%d:65536\n", old, rootRangeStart)
		if err := os.WriteFile(files[i], []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.wrap = []string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
		`mount --bind "$1" /etc/subuid && mount --bind "$2" /etc/subgid && shift 2 && exec "$@"`, "sh", files[0], files[1]}
}
