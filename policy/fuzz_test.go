package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The seed corpus is in testdata/fuzz/FuzzLoad and testdata/fuzz/FuzzGrant;
// `go test` runs it as ordinary tests. To fuzz:
//
//	go test -tags seccomp -run '^$' -fuzz FuzzLoad -fuzztime 30s ./policy
//	go test -tags seccomp -run '^$' -fuzz FuzzGrant -fuzztime 30s ./policy

// FuzzLoad feeds arbitrary agent files to Load: it must never panic, and a
// file it accepts must hold only resolved, checked plans.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("agents:\n  demo:\n    rootfs: ./rootfs\n    command: [/agent]\n"))
	f.Add([]byte("agents:\n  demo:\n    rootfs: ./rootfs\n    command: [/agent]\n    grants:\n      - {host: data, path: /data, mode: rw}\n      - {host: ../, path: /up}\n"))
	dir := fuzzDir(f)
	fx := fixture{dir: dir, rootfs: filepath.Join(dir, "rootfs"), data: filepath.Join(dir, "data")}
	for _, d := range []string{fx.rootfs, fx.data, filepath.Join(dir, "cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	allow := only(ReadWrite)
	path := filepath.Join(dir, "clawrun.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		file, err := Load(path, WithAllowlist(allow))
		if err != nil {
			if file != nil {
				t.Fatalf("Load returned a File and an error")
			}
			if len(FieldErrors(err)) == 0 {
				t.Fatalf("error without a *FieldError: %v", err)
			}
			return
		}
		if len(file.Order) == 0 || len(file.Order) != len(file.Agents) {
			t.Fatalf("accepted a file with agents %v / %v", file.Order, file.Agents)
		}
		for _, name := range file.Order {
			checkPlan(t, file.Agents[name], fx.dir)
		}
	})
}

// fuzzDir is a resolved temporary directory that outlives the inputs.
func fuzzDir(f *testing.F) string {
	dir, err := filepath.EvalSymlinks(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	return dir
}

// checkPlan asserts what every accepted plan guarantees.
func checkPlan(t *testing.T, p *Plan, allowed string) {
	t.Helper()
	if ValidName(p.Name) != nil || !filepath.IsAbs(p.Rootfs) || len(p.Command) == 0 || !strings.HasPrefix(p.Workdir, "/") {
		t.Fatalf("invalid plan accepted: %+v", p)
	}
	seen := map[string]bool{}
	for _, g := range p.Grants {
		if !within(g.Host, allowed) {
			t.Fatalf("grant of %s outside the allowed %s", g.Host, allowed)
		}
		if _, err := containerPath(g.Path); err != nil || g.Path != filepath.Clean(g.Path) || seen[g.Path] {
			t.Fatalf("bad container path %q accepted", g.Path)
		}
		seen[g.Path] = true
		if g.Mode != ReadOnly && g.Mode != ReadWrite {
			t.Fatalf("bad mode %q", g.Mode)
		}
		if g.Mode == ReadWrite && within(p.Source, g.Host) {
			t.Fatalf("rw grant %s holds the agent file", g.Host)
		}
	}
	for _, c := range p.Capabilities {
		if !slices.Contains(knownCapabilities, c) || slices.Contains(PrivilegedCapabilities, c) {
			t.Fatalf("capability %q accepted", c)
		}
	}
	if r := p.Slack; r != nil {
		if r.Concurrency < 1 || r.QueueLimit < 1 || (len(r.Channels) == 0 && !r.DM) {
			t.Fatalf("bad slack route accepted: %+v", r)
		}
	}
}

// FuzzGrant feeds arbitrary host paths, container paths and modes to the
// grant resolver shared by agent files and --mount.
func FuzzGrant(f *testing.F) {
	f.Add("data", "/data", "rw")
	f.Add("../..", "/x", "")
	f.Add("data/../cache", "/a/../b", "ro")
	dir := fuzzDir(f)
	for _, d := range []string{"rootfs", "data/.ssh", "cache", "keys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "keys", "k.pem"), []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600)
	_ = os.Symlink("/etc", filepath.Join(dir, "etc-link"))
	_ = os.Symlink("data/.ssh", filepath.Join(dir, "ssh-link"))
	_ = os.Symlink("loop", filepath.Join(dir, "loop"))
	o := collectOptions([]Option{WithAllowlist(only(ReadWrite)), WithExecutable(filepath.Join(dir, "cache", "clawrun"))})
	ck, err := newChecker(o, dir, filepath.Join(dir, "clawrun.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, cpath, mode string) {
		g, issues := ck.grant(dir, host, cpath, mode)
		for _, is := range issues {
			if is.msg == "" {
				t.Fatalf("empty message for %q %q %q", host, cpath, mode)
			}
		}
		if len(issues) > 0 {
			return
		}
		if !within(g.Host, dir) || strings.ContainsAny(g.Host+g.Path, "\x00\n") {
			t.Fatalf("grant %+v accepted", g)
		}
		if _, err := containerPath(g.Path); err != nil {
			t.Fatalf("container path %q accepted: %v", g.Path, err)
		}
		if _, hit := blockedAt(ck.blocked, g.Host); hit {
			t.Fatalf("blocked %s accepted", g.Host)
		}
		if hits, _ := blockedWalk(ck.blocked, g.Host); len(hits) > 0 {
			t.Fatalf("%s holding %v accepted", g.Host, hits)
		}
	})
}
