package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/policy"
)

func TestSpecWorkspaceAndWritableRoot(t *testing.T) {
	p := testPlan()
	s, err := Spec(p, testIdentity(), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != p.Rootfs || !s.Root.Readonly {
		t.Fatalf("default root: %+v", s.Root)
	}
	p.Workspace, p.WorkspaceDir = true, "/var/lib/clawrun/workspaces/reviewer"
	p.WritableRootfs = true
	p, err = p.WithWritableRoot("/var/lib/clawrun/containers/r1/root")
	if err != nil {
		t.Fatal(err)
	}
	s, err = Spec(p, testIdentity(), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != p.WritableRoot || s.Root.Readonly {
		t.Fatalf("writable root: %+v", s.Root)
	}
	ws, grant := -1, -1
	for i, m := range s.Mounts {
		switch m.Destination {
		case policy.WorkspacePath:
			ws = i
			if m.Source != p.WorkspaceDir || m.Type != "bind" || !slices.Contains(m.Options, "rw") || slices.Contains(m.Options, "ro") {
				t.Errorf("workspace mount: %+v", m)
			}
		case "/work":
			grant = i
		}
	}
	if ws < 0 || grant < ws {
		t.Fatalf("workspace mount at %d, first grant at %d: the workspace goes first", ws, grant)
	}
}

// Where overlayfs is refused, the base is copied; the copy is the
// container's and the base stays as it was.
func TestSetupWritableRootCopyFallback(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "ba:se") // ':' cannot go into lowerdir=
	if err := os.MkdirAll(filepath.Join(base, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "etc", "os"), []byte("base\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &policy.Plan{Name: "a", Rootfs: base, WritableRootfs: true}
	p, err := p.WithWritableRoot(filepath.Join(dir, "containers", "a1", "root"))
	if err != nil {
		t.Fatal(err)
	}
	how, err := setupWritableRoot(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(how, WritableCopy+" (overlayfs refused") {
		t.Fatalf("method %q, want a copy with the reason", how)
	}
	if err := os.WriteFile(filepath.Join(p.WritableRoot, "etc", "os"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "etc", "os")); string(b) != "base\n" {
		t.Fatalf("base changed: %q", b)
	}
	r := &Runtime{}
	if err := r.dropWritableRoot(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "containers", "a1")); !os.IsNotExist(err) {
		t.Fatalf("writable root left: %v", err)
	}
}
