package test

import (
	"path/filepath"
	"strings"
	"testing"
)

// An image whose config runs as another user than the default agent id
// (here nobody, 65534) needs a base for that user's id map. The first run
// unpacks the image for the default map to read whom it runs as, then for
// the right one; the first base then loses its reference, so prune takes
// it, and later runs go straight to the right base without unpacking.
func TestImageUserPicksTheMapOnce(t *testing.T) {
	e := newEnv(t)
	if isRoot() {
		withRootRange(t, e) // without a range there is one (unpacker) map only
	}
	img := nobodyImage(t)
	writeLayout(t, filepath.Join(e.dir, "layout"), img)
	e.writeFile("clawrun.yaml", `agents:
  usernobody:
    image: oci-layout:./layout
`)
	if !strings.Contains(e.ok("inspect", "usernobody"), "subordinate ids from /etc/subuid") {
		t.Fatal("the agent got no subordinate ids: nothing to test")
	}
	first := e.run("run", "usernobody")
	if first.code != 0 || !strings.Contains(first.stdout, "runs as 65534:65534") {
		t.Fatalf("first run: %s", first)
	}
	named := 0
	for _, b := range e.images() {
		if len(b.Refs) > 0 {
			named++
		}
	}
	if named != 1 {
		t.Errorf("after the first run %d bases are named by the reference, want only the one for the image's user: %+v", named, e.images())
	}
	e.ok("image", "prune")
	if bases := e.images(); len(bases) != 1 {
		t.Fatalf("after prune: %+v, want the image's user's base alone", bases)
	}
	again := e.run("run", "usernobody")
	if again.code != 0 || !strings.Contains(again.stdout, "runs as 65534:65534") {
		t.Fatalf("second run: %s", again)
	}
	if strings.Contains(again.stderr, "layer 1/") {
		t.Errorf("the second run unpacked the image again:\n%s", again.stderr)
	}
	if bases := e.images(); len(bases) != 1 {
		t.Errorf("after the second run: %+v, want still one base", bases)
	}
}
