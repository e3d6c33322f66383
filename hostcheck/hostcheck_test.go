package hostcheck

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	cgroupsv3 "github.com/containerd/cgroups/v3"
)

// fakeHost is a healthy rootless host on cgroup v2 with everything
// delegated, laid out under a temporary root; tests break one thing each.
func fakeHost(t *testing.T) *Host {
	t.Helper()
	root := t.TempDir()
	h := &Host{
		Root: root, UID: os.Getuid(), GID: os.Getgid(), User: "alice",
		Kernel: "6.1.0-18-amd64", CgroupMode: cgroupsv3.Unified,
		Libseccomp: [3]uint{2, 5, 4}, PathDirs: []string{"/usr/bin"},
	}
	write(t, root, map[string]string{
		"proc/sys/user/max_user_namespaces":                                "63450\n",
		"proc/sys/kernel/seccomp/actions_avail":                            "kill_process kill_thread trap errno user_notif trace log allow\n",
		"proc/self/status":                                                 "Name:\tx\nSeccomp:\t0\n",
		"proc/self/cgroup":                                                 "0::/user@1000.service/app.slice\n",
		"etc/subuid":                                                       "alice:100000:65536\n",
		"etc/subgid":                                                       "alice:100000:65536\n",
		"sys/fs/cgroup/cgroup.controllers":                                 "cpuset cpu io memory hugetlb pids rdma misc\n",
		"sys/fs/cgroup/user@1000.service/cgroup.controllers":               "cpu memory pids\n",
		"sys/fs/cgroup/user@1000.service/cgroup.subtree_control":           "memory pids\n",
		"sys/fs/cgroup/user@1000.service/cgroup.procs":                     "",
		"sys/fs/cgroup/user@1000.service/app.slice/cgroup.procs":           "",
		"sys/fs/cgroup/user@1000.service/app.slice/cgroup.controllers":     "memory pids\n",
		"sys/fs/cgroup/user@1000.service/app.slice/cgroup.subtree_control": "",
		"usr/bin/newuidmap":                                                "#!/bin/sh\n",
		"usr/bin/newgidmap":                                                "#!/bin/sh\n",
	})
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if err := os.Chmod(filepath.Join(root, "usr/bin", tool), 0o755|os.ModeSetuid); err != nil {
			t.Fatal(err)
		}
	}
	h.StateDir = filepath.Join(t.TempDir(), "state")
	h.DataDir = filepath.Join(t.TempDir(), "data")
	return h
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(t *testing.T, h *Host, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(h.Root, name)); err != nil {
		t.Fatal(err)
	}
}

// rootless makes h a non-root host even when the test runs as root; the
// checks that compare file owners to it are set up accordingly.
func rootless(h *Host) {
	if h.UID == 0 {
		h.UID = 4242
	}
}

func find(t *testing.T, rs []Result, check string) Result {
	t.Helper()
	for _, r := range rs {
		if r.Check == check {
			return r
		}
	}
	t.Fatalf("no %q result in %+v", check, rs)
	return Result{}
}

func expect(t *testing.T, r Result, status Status, detail string) {
	t.Helper()
	if r.Status != status || !strings.Contains(r.Detail, detail) {
		t.Fatalf("%s: got %s %q, want %s containing %q", r.Check, r.Status, r.Detail, status, detail)
	}
	if status != OK && r.Fix == "" && r.Check != "kernel" {
		t.Fatalf("%s: %s without a fix", r.Check, status)
	}
}

func TestKernel(t *testing.T) {
	for _, c := range []struct {
		release string
		want    Status
	}{
		{"6.1.0-18-amd64", OK}, {"4.18.0-513.el8.x86_64", OK}, {"5.4.0", OK},
		{"4.9.0-8-amd64", Warn}, {"3.2.0", Fail}, {"garbage", Warn},
	} {
		r := Kernel(&Host{Kernel: c.release})
		if r.Status != c.want {
			t.Errorf("kernel %s: %s, want %s (%s)", c.release, r.Status, c.want, r.Detail)
		}
	}
}

func TestUserNamespaces(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		h := fakeHost(t)
		rs := UserNamespaces(h)
		expect(t, find(t, rs, "user namespaces"), OK, "max_user_namespaces=63450")
		if len(rs) != 1 {
			t.Fatalf("switches absent, probe nil: want one result, got %+v", rs)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		h := fakeHost(t)
		write(t, h.Root, map[string]string{"proc/sys/user/max_user_namespaces": "0\n"})
		r := find(t, UserNamespaces(h), "user namespaces")
		expect(t, r, Fail, "disabled")
		if !r.Essential {
			t.Fatal("disabled user namespaces must be essential")
		}
	})
	t.Run("few", func(t *testing.T) {
		h := fakeHost(t)
		write(t, h.Root, map[string]string{"proc/sys/user/max_user_namespaces": "10\n"})
		expect(t, find(t, UserNamespaces(h), "user namespaces"), Warn, "only a few")
	})
	t.Run("no kernel support", func(t *testing.T) {
		h := fakeHost(t)
		remove(t, h, "proc/sys/user/max_user_namespaces")
		expect(t, find(t, UserNamespaces(h), "user namespaces"), Fail, "no user namespaces")
	})
	t.Run("debian switch", func(t *testing.T) {
		h := fakeHost(t)
		rootless(h)
		write(t, h.Root, map[string]string{"proc/sys/kernel/unprivileged_userns_clone": "0\n"})
		expect(t, find(t, UserNamespaces(h), "unprivileged user namespaces"), Fail, "unprivileged_userns_clone=0")
		h.UID = 0
		expect(t, find(t, UserNamespaces(h), "unprivileged user namespaces"), OK, "root is not affected")
		write(t, h.Root, map[string]string{"proc/sys/kernel/unprivileged_userns_clone": "1\n"})
		rootless(h)
		expect(t, find(t, UserNamespaces(h), "unprivileged user namespaces"), OK, "=1")
	})
	t.Run("ubuntu apparmor", func(t *testing.T) {
		h := fakeHost(t)
		rootless(h)
		write(t, h.Root, map[string]string{"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"})
		r := find(t, UserNamespaces(h), "AppArmor user namespaces")
		expect(t, r, Fail, "apparmor_restrict_unprivileged_userns=1")
		if !strings.Contains(r.Fix, "userns,") {
			t.Fatalf("fix should name the AppArmor rule: %s", r.Fix)
		}
		write(t, h.Root, map[string]string{"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "0\n"})
		expect(t, find(t, UserNamespaces(h), "AppArmor user namespaces"), OK, "=0")
	})
	t.Run("probe", func(t *testing.T) {
		h := fakeHost(t)
		h.ProbeUserNS = func() error { return nil }
		expect(t, find(t, UserNamespaces(h), "create a user namespace"), OK, "works")
		h.ProbeUserNS = func() error { return errors.New("operation not permitted") }
		expect(t, find(t, UserNamespaces(h), "create a user namespace"), Fail, "operation not permitted")
	})
}

func TestSubIDs(t *testing.T) {
	h := fakeHost(t)
	expect(t, SubIDs(h), OK, "65536 subuids, 65536 subgids")
	// By uid rather than name, and split over two lines.
	write(t, h.Root, map[string]string{
		"etc/subuid": "bob:200000:65536\n" + strconv.Itoa(h.UID) + ":100000:30000\n" + strconv.Itoa(h.UID) + ":300000:35536\n",
	})
	expect(t, SubIDs(h), OK, "65536 subuids")
	write(t, h.Root, map[string]string{"etc/subgid": "alice:100000:1000\n"})
	expect(t, SubIDs(h), Warn, "1000 subgids")
	write(t, h.Root, map[string]string{"etc/subgid": "bob:100000:65536\n"})
	expect(t, SubIDs(h), Warn, "single-id map")
	remove(t, h, "etc/subuid")
	expect(t, SubIDs(h), Warn, "no range for alice")
	// The fix proposes a range past every one in the files, so that two
	// users never share subordinate ids (bob has 100000-165535 here).
	if fix := SubIDs(h).Fix; !strings.Contains(fix, "--add-subuids 165536-231071 --add-subgids 165536-231071 alice") {
		t.Errorf("fix %q, want a range after bob's", fix)
	}
	remove(t, h, "etc/subgid")
	if fix := SubIDs(h).Fix; !strings.Contains(fix, "--add-subuids 100000-165535") {
		t.Errorf("fix %q, want useradd's first range on a host without ranges", fix)
	}
}

func TestIDMapTools(t *testing.T) {
	t.Run("root", func(t *testing.T) {
		h := fakeHost(t)
		h.UID = 0
		expect(t, IDMapTools(h), OK, "not needed as root")
	})
	t.Run("setuid root", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("a setuid-root fixture needs root to chown")
		}
		h := fakeHost(t)
		rootless(h)
		expect(t, IDMapTools(h), OK, "/usr/bin/newuidmap, /usr/bin/newgidmap")
	})
	t.Run("missing", func(t *testing.T) {
		h := fakeHost(t)
		rootless(h)
		remove(t, h, "usr/bin/newuidmap")
		remove(t, h, "usr/bin/newgidmap")
		expect(t, IDMapTools(h), Warn, "newuidmap, newgidmap not found on PATH")
	})
	t.Run("not setuid", func(t *testing.T) {
		h := fakeHost(t)
		rootless(h)
		if err := os.Chmod(filepath.Join(h.Root, "usr/bin/newuidmap"), 0o755); err != nil {
			t.Fatal(err)
		}
		r := IDMapTools(h)
		expect(t, r, Fail, "/usr/bin/newuidmap is not setuid")
		// Without subordinate ids clawrun never uses them: a warning only.
		remove(t, h, "etc/subuid")
		expect(t, IDMapTools(h), Warn, "is not setuid")
	})
	t.Run("setuid but not root's", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("as root the fixture is owned by root")
		}
		h := fakeHost(t)
		expect(t, IDMapTools(h), Fail, "owned by uid")
	})
}

func TestCgroupsV1(t *testing.T) {
	h := fakeHost(t)
	h.CgroupMode = cgroupsv3.Hybrid
	for _, c := range []string{"memory", "cpu", "pids"} {
		if err := os.MkdirAll(filepath.Join(h.Root, "sys/fs/cgroup", c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.UID = 0
	r, lim := Cgroups(h)
	expect(t, r, OK, "cgroup v1 (hybrid), as root: controllers memory, cpu, pids")
	if !lim.Memory || !lim.CPU || !lim.Pids {
		t.Fatalf("root v1 limits %+v", lim)
	}
	remove(t, h, "sys/fs/cgroup/pids")
	r, lim = Cgroups(h)
	expect(t, r, Warn, "not mounted: pids")
	if lim.Pids || !lim.Memory {
		t.Fatalf("limits without pids controller %+v", lim)
	}

	rootless(h)
	h.CgroupMode = cgroupsv3.Legacy
	r, lim = Cgroups(h)
	expect(t, r, Warn, "an unprivileged user cannot own a cgroup")
	if lim.Memory || lim.CPU || lim.Pids || !strings.Contains(lim.Why, "rootless on cgroup v1") {
		t.Fatalf("rootless v1 limits %+v", lim)
	}
}

func TestCgroupsV2(t *testing.T) {
	t.Run("root", func(t *testing.T) {
		h := fakeHost(t)
		h.UID = 0
		r, lim := Cgroups(h)
		expect(t, r, OK, "cgroup v2, as root: controllers memory, cpu, pids")
		if !lim.Memory || !lim.CPU || !lim.Pids {
			t.Fatalf("root v2 limits %+v", lim)
		}
	})
	t.Run("delegated", func(t *testing.T) {
		h := fakeHost(t)
		if h.UID == 0 {
			t.Skip("the fake delegated tree belongs to the test user, who must not be root")
		}
		r, lim := Cgroups(h)
		expect(t, r, OK, "delegated /user@1000.service: controllers cpu, memory, pids (enabled for children: memory, pids)")
		// Rootless agents go below the delegated subtree, so what is
		// delegated there is enforced.
		if !lim.Memory || !lim.CPU || !lim.Pids || !strings.Contains(lim.Why, "clawrun places agents in /user@1000.service/clawrun/NAME") {
			t.Fatalf("delegated limits %+v", lim)
		}
		write(t, h.Root, map[string]string{"sys/fs/cgroup/user@1000.service/cgroup.controllers": "memory pids\n"})
		r, lim = Cgroups(h)
		expect(t, r, Warn, "not delegated: cpu")
		if !lim.Memory || lim.CPU || !lim.Pids {
			t.Fatalf("partly delegated limits %+v", lim)
		}
		d, err := FindDelegation(h.Root, h.UID)
		if err != nil || d.Path != "/user@1000.service" || strings.Join(d.Controllers, " ") != "memory pids" {
			t.Fatalf("FindDelegation = %+v, %v", d, err)
		}
	})
	t.Run("not delegated", func(t *testing.T) {
		h := fakeHost(t)
		h.UID = 4242 // owns nothing in the fake tree
		r, lim := Cgroups(h)
		expect(t, r, Warn, "no cgroup delegated to you")
		if lim.Memory || lim.CPU || lim.Pids {
			t.Fatalf("undelegated limits %+v", lim)
		}
	})
	t.Run("no v2 entry", func(t *testing.T) {
		h := fakeHost(t)
		rootless(h)
		write(t, h.Root, map[string]string{"proc/self/cgroup": "4:memory:/x\n"})
		r, _ := Cgroups(h)
		if r.Status != Warn || !strings.Contains(r.Detail, "no cgroup v2 entry") {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		h := fakeHost(t)
		h.CgroupMode = cgroupsv3.Unavailable
		r, lim := Cgroups(h)
		expect(t, r, Warn, "no cgroup hierarchy")
		if lim.Memory || lim.CPU || lim.Pids {
			t.Fatalf("limits without cgroups %+v", lim)
		}
	})
}

func TestSeccomp(t *testing.T) {
	h := fakeHost(t)
	rs := Seccomp(h)
	expect(t, find(t, rs, "seccomp (kernel)"), OK, "errno")
	expect(t, find(t, rs, "libseccomp"), OK, "2.5.4")

	h.Libseccomp = [3]uint{2, 4, 1}
	expect(t, find(t, Seccomp(h), "libseccomp"), Warn, "older than 2.5")
	h.Libseccomp = [3]uint{}
	expect(t, find(t, Seccomp(h), "libseccomp"), Warn, "unknown")

	write(t, h.Root, map[string]string{"proc/sys/kernel/seccomp/actions_avail": "kill allow\n"})
	expect(t, find(t, Seccomp(h), "seccomp (kernel)"), Fail, "lack errno")
	remove(t, h, "proc/sys/kernel/seccomp/actions_avail")
	expect(t, find(t, Seccomp(h), "seccomp (kernel)"), Warn, "older than 4.14")
	write(t, h.Root, map[string]string{"proc/self/status": "Name:\tx\n"})
	r := find(t, Seccomp(h), "seccomp (kernel)")
	expect(t, r, Fail, "no seccomp support")
	if !r.Essential {
		t.Fatal("seccomp missing must be essential")
	}
}

func TestOverlay(t *testing.T) {
	h := fakeHost(t)
	expect(t, Overlay(h), OK, "5.11 or later (not tried)")
	h.Kernel = "5.10.0-28-amd64"
	expect(t, Overlay(h), Warn, "older than 5.11")
	h.ProbeOverlay = func() error { return nil }
	expect(t, Overlay(h), OK, "tried in a user namespace: works")
	h.ProbeOverlay = func() error { return errors.New("mount overlay: operation not permitted") }
	expect(t, Overlay(h), Warn, "operation not permitted")
}

func TestDir(t *testing.T) {
	h := fakeHost(t)
	h.UID = os.Geteuid()
	expect(t, Dir(h, "state directory", h.StateDir, "--root"), OK, "created with mode 0700")
	if err := os.Mkdir(h.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	expect(t, Dir(h, "state directory", h.StateDir, "--root"), OK, "yours, mode 0700")
	if err := os.Chmod(h.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	expect(t, Dir(h, "state directory", h.StateDir, "--root"), Warn, "mode 0755")
	h.UID = os.Geteuid() + 1
	r := Dir(h, "state directory", h.StateDir, "--root")
	expect(t, r, Fail, "not to you")
	if !r.Essential || !strings.Contains(r.Fix, "--root") {
		t.Fatalf("foreign state dir: %+v", r)
	}
}

func TestRun(t *testing.T) {
	h := fakeHost(t)
	rep := Run(h)
	if !rep.CanRun {
		t.Fatalf("healthy host cannot run: %+v", rep)
	}
	write(t, h.Root, map[string]string{"proc/sys/user/max_user_namespaces": "0\n"})
	if rep := Run(h); rep.CanRun {
		t.Fatal("host without user namespaces can run")
	}
	// A non-essential failure leaves the host usable.
	write(t, h.Root, map[string]string{"proc/sys/user/max_user_namespaces": "100\n"})
	rootless(h)
	if err := os.Chmod(filepath.Join(h.Root, "usr/bin/newuidmap"), 0o755); err != nil {
		t.Fatal(err)
	}
	rep = Run(h)
	if find(t, rep.Checks, "newuidmap/newgidmap").Status != Fail || !rep.CanRun {
		t.Fatalf("broken newuidmap should fail without stopping everything: %+v", rep)
	}
}

func TestNsenter(t *testing.T) {
	h := fakeHost(t)
	expect(t, Nsenter(h), Warn, "not found on PATH: bundles of egress agents")
	p := filepath.Join(h.Root, "usr/bin/nsenter")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	expect(t, Nsenter(h), OK, "/usr/bin/nsenter (for egress bundles")
}
