package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	cgroupsv3 "github.com/containerd/cgroups/v3"
)

// fakeDelegatedHost is a rootless cgroup v2 host in a temporary directory:
// systemd's user@UID.service is the user's (directly below the mount, so
// that an unprivileged test user owns nothing above it) and the user runs
// in app.slice below it. As root the tree is chowned to uid 1000, who then
// plays the user.
func fakeDelegatedHost(t *testing.T, controllers, enabled string) (*Runtime, string) {
	t.Helper()
	root := t.TempDir()
	uid := os.Geteuid()
	if uid == 0 {
		uid = 1000
	}
	files := map[string]string{
		"proc/self/cgroup":                                             "0::/user@1000.service/app.slice\n",
		"sys/fs/cgroup/cgroup.controllers":                             "cpuset cpu io memory pids\n",
		"sys/fs/cgroup/user@1000.service/cgroup.controllers":           controllers + "\n",
		"sys/fs/cgroup/user@1000.service/cgroup.subtree_control":       enabled + "\n",
		"sys/fs/cgroup/user@1000.service/cgroup.procs":                 "",
		"sys/fs/cgroup/user@1000.service/app.slice/cgroup.procs":       "",
		"sys/fs/cgroup/user@1000.service/app.slice/cgroup.controllers": "",
		// As an earlier run left it: a fake fs creates no cgroup files on
		// mkdir, the kernel would.
		"sys/fs/cgroup/user@1000.service/clawrun/cgroup.subtree_control": "",
	}
	writeTree(t, root, files)
	deleg := filepath.Join(root, "sys/fs/cgroup/user@1000.service")
	if os.Geteuid() == 0 {
		err := filepath.Walk(deleg, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, uid)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	r := &Runtime{
		Host:    Host{UID: uid, GID: uid},
		cgroups: cgroupHost{root: root, mode: func() cgroupsv3.CGMode { return cgroupsv3.Unified }},
	}
	return r, deleg
}

func TestRootlessCgroupV2(t *testing.T) {
	const leaf = "/user@1000.service/clawrun/rev"
	t.Run("delegated", func(t *testing.T) {
		r, deleg := fakeDelegatedHost(t, "cpu memory pids", "memory")
		p := testPlan()
		cg := r.cgroupsPath(p, "rev")
		if cg != leaf {
			t.Fatalf("cgroupsPath = %q, want %q", cg, leaf)
		}
		if err := r.checkLimits(p, cg); err != nil {
			t.Fatalf("delegated limits refused: %v", err)
		}
		if err := r.ensureCgroupParent(cg, false); err != nil {
			t.Fatal(err)
		}
		// Only what was not enabled yet is written (a write replaces the
		// fake file's content; the kernel would add to it).
		for f, want := range map[string]string{
			filepath.Join(deleg, "cgroup.subtree_control"):         "+cpu +pids",
			filepath.Join(deleg, "clawrun/cgroup.subtree_control"): "+memory +cpu +pids",
		} {
			if b, err := os.ReadFile(f); err != nil || string(b) != want {
				t.Errorf("%s = %q, %v; want %q", f, b, err, want)
			}
		}
		l := Enforcement(p.Limits, cg)
		for _, e := range l {
			if e.By != ByCgroup {
				t.Errorf("%s enforced by %s, want cgroup", e.Limit, e.By)
			}
		}
	})
	t.Run("parent ready", func(t *testing.T) {
		r, deleg := fakeDelegatedHost(t, "cpu memory pids", "cpu memory pids")
		f := filepath.Join(deleg, "clawrun/cgroup.subtree_control")
		if err := os.WriteFile(f, []byte("cpu memory pids\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := r.ensureCgroupParent(leaf, false); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(f); string(b) != "cpu memory pids\n" {
			t.Errorf("enabled controllers rewritten: %q", b)
		}
	})
	t.Run("partly delegated", func(t *testing.T) {
		r, _ := fakeDelegatedHost(t, "memory pids", "memory pids")
		p := testPlan()
		cg := r.cgroupsPath(p, "rev")
		if cg != "" {
			t.Fatalf("placed in %q without the cpu controller", cg)
		}
		err := r.checkLimits(p, cg)
		if err == nil {
			t.Fatal("undelegated cpu limit accepted")
		}
		for _, w := range []string{"limits.cpus cannot be enforced rootless", "cpu controller is not delegated to you at /user@1000.service", "best-effort", "clawrun doctor"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q: %v", w, err)
			}
		}
		if strings.Contains(err.Error(), "limits.memory") {
			t.Errorf("delegated memory limit named as refused: %v", err)
		}
		// An ad-hoc run has no agent file to edit: the hint names its flags.
		adhoc := testPlan()
		adhoc.Source = ""
		err = r.checkLimits(adhoc, r.cgroupsPath(adhoc, "rev"))
		for _, w := range []string{"ad-hoc run reviewer", "limits.cpus cannot be enforced rootless", "--enforce best-effort", "drop --memory, --cpus and --pids", "clawrun doctor"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("ad-hoc error lacks %q: %v", w, err)
			}
		}
		if err != nil && strings.Contains(err.Error(), "remove them from the agent file") {
			t.Errorf("ad-hoc error points at an agent file: %v", err)
		}
		// Without a cpu limit the rest is enforced by the cgroup.
		p.Limits.CPUs = 0
		if cg := r.cgroupsPath(p, "rev"); cg != leaf {
			t.Errorf("cgroupsPath = %q, want %q", cg, leaf)
		}
	})
	t.Run("not delegated", func(t *testing.T) {
		r, _ := fakeDelegatedHost(t, "cpu memory pids", "")
		r.Host.UID, r.Host.GID = 4242, 4242 // owns nothing in the tree
		p := testPlan()
		if cg := r.cgroupsPath(p, "rev"); cg != "" {
			t.Fatalf("placed in %q without delegation", cg)
		}
		err := r.checkLimits(p, "")
		if err == nil || !strings.Contains(err.Error(), "no cgroup v2 subtree is delegated to you") {
			t.Fatalf("checkLimits = %v", err)
		}
	})
	t.Run("cgroup v1", func(t *testing.T) {
		r, _ := fakeDelegatedHost(t, "cpu memory pids", "")
		r.cgroups.mode = func() cgroupsv3.CGMode { return cgroupsv3.Hybrid }
		p := testPlan()
		if cg := r.cgroupsPath(p, "rev"); cg != "" {
			t.Fatalf("placed in %q on cgroup v1", cg)
		}
		err := r.checkLimits(p, "")
		if err == nil || !strings.Contains(err.Error(), "cgroup v1 (hybrid), where an unprivileged user cannot own a cgroup") {
			t.Fatalf("checkLimits = %v", err)
		}
	})
	t.Run("root", func(t *testing.T) {
		r := &Runtime{Host: Host{UID: 0}}
		if cg := r.cgroupsPath(testPlan(), "rev"); cg != "/clawrun/rev" {
			t.Fatalf("root cgroupsPath = %q", cg)
		}
	})
}
