package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An ad-hoc run's --cpus is held to the host total like an agent file's
// cpus (TestTotalMemory covers the file): cgroup v1 would refuse the quota
// under the parent's at create time, with a kernel error instead of this.
func TestAdHocCPUsAboveTotal(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	al := filepath.Join(t.TempDir(), "allowlist.yaml")
	if err := os.WriteFile(al, []byte("agent_dir: rw\ncgroup_parent: ci\ntotal: {cpus: 1.5, pids: 100}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := AdHocOptions{Name: "x", Rootfs: "rootfs", Command: []string{"/agent"}, CPUs: 2}
	_, err := AdHoc(o, WithAllowlistFile(al))
	var hit *FieldError
	for _, fe := range FieldErrors(err) {
		if fe.Field == "--cpus" {
			hit = fe
		}
	}
	if hit == nil || hit.Rule != RuleAllowlist {
		t.Fatalf("--cpus 2 under total.cpus 1.5 not refused by the allowlist rule: %v", err)
	}
	for _, w := range []string{"--cpus: 2 is above the host's total.cpus 1.5", "allowlist.yaml, line 3", "lower it to at most 1.5", "(policy: allowlist)"} {
		if !strings.Contains(hit.Error(), w) {
			t.Errorf("error lacks %q: %v", w, hit)
		}
	}
	o.CPUs = 1.5
	p, err := AdHoc(o, WithAllowlistFile(al))
	if err != nil {
		t.Fatal(err)
	}
	if p.Limits.CPUs != 1.5 || p.Total.CPUs != 1.5 || p.CgroupParentName() != "ci" {
		t.Fatalf("plan %+v", p)
	}
}

// cgroup_parent names a cgroup clawrun owns: each run writes the total to
// it or resets it to unlimited, so a systemd unit's cgroup (whose limits
// systemd set, with the host's services below) is refused, as are paths.
func TestCgroupParentNames(t *testing.T) {
	for _, ok := range []string{"clawrun", "ci-agents", "team_a.v2"} {
		if err := checkCgroupParent(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"system.slice", "user.slice", "init.scope", "app.slice", "docker.service", "../etc", "a/b", ".hidden", ""} {
		err := checkCgroupParent(bad)
		if err == nil {
			t.Errorf("cgroup_parent %q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "such as clawrun") {
			t.Errorf("%q: the error names no fix: %v", bad, err)
		}
	}
}
