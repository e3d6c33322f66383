package rootfs

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// keepMap is a container map as runtime.ResolveIdentity builds it: the
// agent id keep is the host user, the ids around it the range from start.
func keepMap(keep, host, start, count uint32) []specs.LinuxIDMapping {
	var m []specs.LinuxIDMapping
	if keep > 0 {
		m = append(m, specs.LinuxIDMapping{ContainerID: 0, HostID: start, Size: keep})
	}
	m = append(m, specs.LinuxIDMapping{ContainerID: keep, HostID: host, Size: 1})
	return append(m, specs.LinuxIDMapping{ContainerID: keep + 1, HostID: start + keep, Size: count - keep})
}

func TestIDMapOwner(t *testing.T) {
	// Rootless user 1001 with 100000:65536, agent kept as 1000.
	user := IDMap{UIDs: keepMap(1000, 1001, 100000, 65535), GIDs: keepMap(1000, 1001, 100000, 65535)}
	// Root with a range: the kept id is root itself, everything else the range.
	root := IDMap{UIDs: keepMap(1000, 0, 200000, 65535), GIDs: keepMap(1000, 0, 200000, 65535)}
	for _, c := range []struct {
		name             string
		m                IDMap
		uid, gid         int
		wantUID, wantGID int
		wantUnmapped     bool
	}{
		{"image root", user, 0, 0, 100000, 100000, false},
		{"below the kept id", user, 999, 999, 100999, 100999, false},
		{"the kept id is the host user", user, 1000, 1000, 1001, 1001, false},
		{"above the kept id shifts by one", user, 1001, 1001, 101000, 101000, false},
		{"nobody", user, 65534, 65534, 165533, 165533, false},
		{"beyond the map is image root, not nobody", user, 70000, 1000, 100000, 1001, true},
		{"root: image root is in the range", root, 0, 0, 200000, 200000, false},
		{"root: image 1001 is in the range, never host 1001", root, 1001, 1001, 201000, 201000, false},
		{"root: the kept id is root", root, 1000, 1000, 0, 0, false},
	} {
		u, g, unmapped, err := c.m.Owner(c.uid, c.gid)
		if err != nil || u != c.wantUID || g != c.wantGID || unmapped != c.wantUnmapped {
			t.Errorf("%s: Owner(%d, %d) = %d, %d, %v, %v; want %d, %d, %v", c.name, c.uid, c.gid, u, g, unmapped, err, c.wantUID, c.wantGID, c.wantUnmapped)
		}
	}
	// A map without root (none clawrun makes) cannot place such ids.
	only := []specs.LinuxIDMapping{{ContainerID: 1000, HostID: 1001, Size: 1}}
	noRoot := IDMap{UIDs: only, GIDs: only}
	if _, _, _, err := noRoot.Owner(5000, 1000); err == nil || !strings.Contains(err.Error(), "uid 5000 is beyond the id map") {
		t.Errorf("a map without root: err %v, want one naming uid 5000", err)
	}
}

func TestIDMapKey(t *testing.T) {
	a := &IDMap{UIDs: keepMap(1000, 1001, 100000, 65535), GIDs: keepMap(1000, 1001, 100000, 65535)}
	b := &IDMap{UIDs: keepMap(1000, 1001, 100000, 65535), GIDs: keepMap(1000, 1001, 100000, 65535)}
	other := &IDMap{UIDs: keepMap(0, 1001, 100000, 65535), GIDs: keepMap(0, 1001, 100000, 65535)}
	if a.Key() != b.Key() || !SameMap(a, b) {
		t.Errorf("equal maps have keys %s and %s", a.Key(), b.Key())
	}
	if a.Key() == other.Key() || SameMap(a, other) {
		t.Errorf("maps with another kept id share key %s: their bases would be shared", a.Key())
	}
	if SameMap(a, nil) || !SameMap(nil, nil) {
		t.Error("SameMap: no map is only the same as no map")
	}
	if got, want := MappedStoreDir("/d/images", *a), "/d/images/mapped/"+a.Key(); got != want {
		t.Errorf("MappedStoreDir = %s, want %s", got, want)
	}
	if s := a.String(); !strings.Contains(s, "1000→1001") || !strings.Contains(s, "0-999→100000-100999") {
		t.Errorf("String() = %q", s)
	}
}

func owner(t *testing.T, p string) (int, int) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid), int(st.Gid)
}

// A mapped store chowns each entry to the id its map gives the image's
// owner, records the map, and leaves an unpacker store's files alone.
// Chowning to other ids needs root here (rootless, the runtime runs the
// unpack in a user namespace; test/image_owner_test.go covers that).
func TestStoreMappedOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chowning to other ids needs root (the rootless path is an integration test)")
	}
	l1 := layerTar(t,
		entry{name: "etc", typ: '5', mode: 0o755},
		entry{name: "etc/x", body: "x", typ: '0', mode: 0o644},
		entry{name: "etc/secret", body: "s", typ: '0', mode: 0o4600},
		entry{name: "home/app/f", body: "a", typ: '0', mode: 0o644, uid: 1000, gid: 1000},
		entry{name: "home/app/link", link: "f", typ: '2', mode: 0o777, uid: 1000, gid: 1000},
		entry{name: "nobody", body: "n", typ: '0', mode: 0o644, uid: 65534, gid: 65534},
		entry{name: "far", body: "f", typ: '0', mode: 0o644, uid: 70000, gid: 70000},
	)
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(imageOf(t, v1.Config{}, l1)); err != nil {
		t.Fatal(err)
	}
	m := &IDMap{UIDs: keepMap(1000, 0, 300000, 65535), GIDs: keepMap(1000, 0, 300000, 65535)}
	s := newStore(t)
	s.Map = m
	img, err := s.Pull(context.Background(), "oci-layout:"+filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	root := img.Rootfs()
	for p, want := range map[string][2]int{
		"":              {300000, 300000}, // the root is the image root's
		"etc":           {300000, 300000},
		"etc/x":         {300000, 300000},
		"etc/secret":    {300000, 300000},
		"home":          {300000, 300000}, // omitted parents too
		"home/app/f":    {0, 0},           // the kept id
		"home/app/link": {0, 0},
		"nobody":        {300000 + 65533, 300000 + 65533},
		"far":           {300000, 300000}, // beyond the map: the image root's
	} {
		if u, g := owner(t, filepath.Join(root, p)); u != want[0] || g != want[1] {
			t.Errorf("/%s owned by %d:%d, want %d:%d", p, u, g, want[0], want[1])
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/secret")); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("etc/secret: mode %v %v, want 0600 without setuid", fi.Mode(), err)
	}
	o := img.Ownership()
	if o.Mode != OwnedByMap || !SameMap(o.Map, m) || o.UID != 300000 || o.Unmapped != 1 {
		t.Errorf("ownership %+v, want mapped through %s, root 300000, 1 unmapped entry", o, m)
	}
	b, err := os.ReadFile(filepath.Join(img.Dir, "image.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct{ Ownership Ownership }
	if err := json.Unmarshal(b, &rec); err != nil || rec.Ownership.Mode != "mapped" || !SameMap(rec.Ownership.Map, m) {
		t.Errorf("image.json ownership %+v %v, want the mode and the map:\n%s", rec.Ownership, err, b)
	}
	if s := o.String(); !strings.Contains(s, "kept through the map") || !strings.Contains(s, "1 entries had ids beyond the map") {
		t.Errorf("String() = %q", s)
	}

	// The same image in an unpacker store: everything the unpacker's.
	plain := newStore(t)
	img2, err := plain.Pull(context.Background(), "oci-layout:"+filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := owner(t, filepath.Join(img2.Rootfs(), "home/app/f")); u != os.Geteuid() || img2.Ownership().Mode != OwnedByUnpacker {
		t.Errorf("unpacker store: owner %d, mode %s", u, img2.Ownership().Mode)
	}

	// rm goes through the store's RemoveTree hook.
	var removedPaths []string
	s.RemoveTree = func(p string) error { removedPaths = append(removedPaths, p); return RemoveTree(p) }
	if _, removed, err := s.Remove(img.ID, nil); err != nil || !removed || len(removedPaths) != 1 || removedPaths[0] != img.Dir {
		t.Errorf("Remove: removed %v, err %v, hook saw %q", removed, err, removedPaths)
	}
}

// imageOf is a linux image of the given layer tarballs, run as c says.
func imageOf(t *testing.T, c v1.Config, tars ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for _, b := range tars {
		l, err := tarball.LayerFromReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", hostPlatform().Architecture
	cf.Config = c
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
