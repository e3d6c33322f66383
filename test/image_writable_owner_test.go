package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A writable root over a mapped base keeps the base's owners, its own /
// included: the overlay's root takes the attributes of its upper dir,
// which clawrun creates, so without care / would belong to whoever made
// it (the invoking user, that is the agent's kept id) and the agent could
// replace /etc and plant its own top-level directories. Proved from
// inside: / shows the image's root and the agent cannot create in it.
func TestImageWritableRootOwner(t *testing.T) {
	e := newEnv(t)
	if isRoot() {
		// Root has no range here: give it one, or the base is the
		// unpacker's and there is nothing to check.
		withRootRange(t, e)
	}
	writeLayout(t, filepath.Join(e.dir, "layout"), ownedImage(t))
	e.writeFile("clawrun.yaml", `agents:
  wrownmapped:
    image: oci-layout:./layout
    writable_rootfs: true
`)
	if !strings.Contains(e.ok("inspect", "wrownmapped"), "subordinate ids from /etc/subuid") {
		t.Skip("no subordinate ids: an unpacker base, whose files are all the agent's anyway (TestImageOwnershipMapped)")
	}
	out := e.ok("run", "--name", "wrownmapped1", "wrownmapped", "--", "/bin/sh", "-c",
		`stat -c 'root %u:%g %a' /; echo "me=$(id -u)"; mkdir /planted 2>&1 && echo "planted /planted"; echo x > /home/agent/new && echo "wrote home"; true`)
	if !strings.Contains(out, "me=1000") {
		t.Fatalf("the agent does not run as 1000:\n%s", out)
	}
	if !strings.Contains(out, "root 0:0 755") {
		t.Errorf("the writable root's / should show the image's root 0:0 (mode 755), as the base does:\n%s", out)
	}
	if strings.Contains(out, "planted /planted") {
		t.Errorf("the agent created a directory in / of its writable root: it owns /:\n%s", out)
	}
	if !strings.Contains(out, "wrote home") {
		t.Errorf("the agent cannot write its own home in its writable root:\n%s", out)
	}
	// The writable root, now holding directories of the image's ids, goes
	// with the container.
	e.ok("rm", "wrownmapped1")
	if left, _ := os.ReadDir(filepath.Join(e.data, "containers")); len(left) != 0 {
		t.Errorf("rm left writable roots in the data dir: %v", left)
	}
}
