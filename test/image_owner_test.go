package test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ownedEntry is a file or directory of a crafted layer with its owner.
type ownedEntry struct {
	name     string
	mode     int64
	uid, gid int
	body     string // a directory when empty and the name ends in "/"
}

// ownedLayer is a layer whose entries belong to the given image users.
func ownedLayer(t *testing.T, entries ...ownedEntry) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	l, err := tarball.LayerFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ownedImage is the suite's agent image plus a layer of files owned by
// root, by the agent's default uid (1000) and by nobody.
func ownedImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(agentImage(t), ownedLayer(t,
		ownedEntry{name: "etc/x", mode: 0o644, body: "public\n"},
		ownedEntry{name: "etc/secret", mode: 0o600, body: "root only\n"},
		ownedEntry{name: "home/agent/", mode: 0o755, uid: 1000, gid: 1000},
		ownedEntry{name: "home/agent/mine", mode: 0o600, uid: 1000, gid: 1000, body: "the agent's\n"},
		ownedEntry{name: "srv/nobody", mode: 0o644, uid: 65534, gid: 65534, body: "nobody's\n"},
	))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type ownedImageInfo struct {
	imageInfo
	Ownership struct {
		Mode string `json:"mode"`
	} `json:"ownership"`
}

func (e *env) images() []ownedImageInfo {
	e.t.Helper()
	var imgs []ownedImageInfo
	if err := json.Unmarshal([]byte(e.ok("image", "ls", "--json")), &imgs); err != nil {
		e.t.Fatal(err)
	}
	return imgs
}

func ownerOf(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

const ownerScript = `stat -c '%n %u:%g' / /etc/x /etc/secret /home/agent/mine /srv/nobody; echo "me=$(id -u):$(id -g)"
cat /etc/secret 2>&1; echo "cat-rc=$?"
for f in /etc/new /home/agent/new /srv/new /new; do (echo x > $f) 2>&1 && echo "wrote $f"; done; true`

// With subordinate ids, an image base keeps the image's owners through the
// agent's map: inside, files show the image's uids and gids and a 0600 file
// of root stays closed to the agent; on the host they belong to the
// subordinate range (the agent's own files to the user, nothing to root).
// idmap: single runs the same image from an unpacker base. rm and prune
// remove mapped bases rootless.
func TestImageOwnershipMapped(t *testing.T) {
	checkImageOwnership(t, newEnv(t), false)
}

// As root with a subordinate range (not on this machine's root by default:
// withRootRange gives it one): the image's ids land in root's range and
// the kept agent id on root itself, never on another host user.
func TestImageOwnershipRootRange(t *testing.T) {
	if !isRoot() {
		t.Skip("root with a subordinate range")
	}
	e := newEnv(t)
	withRootRange(t, e)
	checkImageOwnership(t, e, true)
}

// checkImageOwnership runs TestImageOwnershipMapped's checks in e; with
// requireMapped the agent must get subordinate ids.
func checkImageOwnership(t *testing.T, e *env, requireMapped bool) {
	t.Helper()
	layoutDir := filepath.Join(e.dir, "layout")
	writeLayout(t, layoutDir, ownedImage(t))
	e.writeFile("clawrun.yaml", `agents:
  ownmapped:
    image: oci-layout:./layout
  ownsingle:
    image: oci-layout:./layout
    idmap: single
`)
	mapped := strings.Contains(e.ok("inspect", "ownmapped"), "subordinate ids from /etc/subuid")
	if requireMapped && !mapped {
		t.Fatalf("the agent got no subordinate ids:\n%s", e.ok("inspect", "ownmapped"))
	}
	out := e.ok("run", "ownmapped", "--", "/bin/sh", "-c", ownerScript)
	insp := e.ok("inspect", "ownmapped")

	if !mapped {
		// Root without a range in /etc/subuid (this VM), or a user without
		// one: the base is the unpacker's, whose ids are never an image's.
		if !strings.Contains(insp, "unpacker: image uids and gids not applied") {
			t.Errorf("no subordinate ids: inspect should say the base is the unpacker's:\n%s", insp)
		}
		if !strings.Contains(out, "/home/agent/mine 0:0") {
			t.Errorf("single-id map: files should all show container root:\n%s", out)
		}
		for _, img := range e.images() {
			if u, _ := ownerOf(t, filepath.Join(img.Dir, "rootfs", "home/agent/mine")); u != uint32(os.Geteuid()) {
				t.Errorf("unpacker base: image uid 1000's file belongs to host uid %d, want the unpacker %d", u, os.Geteuid())
			}
		}
		return
	}

	// Inside: the image's owners, and the permissions they imply.
	for _, want := range []string{"/ 0:0", "/etc/x 0:0", "/etc/secret 0:0", "/home/agent/mine 1000:1000", "/srv/nobody 65534:65534", "me=1000:1000"} {
		if !strings.Contains(out, want) {
			t.Errorf("inside the container: want %q in:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "Permission denied") || strings.Contains(out, "root only") || strings.Contains(out, "cat-rc=0") {
		t.Errorf("the agent (uid 1000) read root's 0600 /etc/secret, want EACCES:\n%s", out)
	}
	if strings.Contains(out, "wrote ") || strings.Count(out, "Read-only file system") != 4 {
		t.Errorf("the agent wrote into the base, or a write failed otherwise than read-only:\n%s", out)
	}
	if !strings.Contains(insp, "mapped: image uids and gids kept through the map") || !strings.Contains(insp, "this is the container's own map") {
		t.Errorf("inspect does not say the base is mapped through the agent's map:\n%s", insp)
	}

	// On the host: the subordinate range, the user only for the kept id.
	imgs := e.images()
	if len(imgs) != 1 || imgs[0].Ownership.Mode != "mapped" {
		t.Fatalf("image ls: %+v, want one mapped base", imgs)
	}
	base := imgs[0].Dir
	me := uint32(os.Geteuid())
	var mine []string
	err := filepath.WalkDir(filepath.Join(base, "rootfs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// A 0700 directory of another image user: not ours to list,
			// which is the point; its own owner was checked on the way in.
			if errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		u, g := ownerOf(t, p)
		rel, _ := filepath.Rel(filepath.Join(base, "rootfs"), p)
		switch {
		case u == me:
			mine = append(mine, rel) // the kept id: root's own as root
		case u == 0 || g == 0:
			t.Errorf("host %s belongs to root (%d:%d)", rel, u, g)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(mine, " ") != "home/agent home/agent/mine" {
		t.Errorf("host files of the invoking user: %q, want only the image's uid 1000 ones (the kept id)", mine)
	}
	if u, _ := ownerOf(t, filepath.Join(base, "rootfs", "etc/secret")); u == me {
		t.Errorf("host /etc/secret belongs to the user, want a subordinate id")
	}
	var rec struct {
		Ownership struct {
			Mode string
			Map  struct {
				UIDMap []struct{ ContainerID, HostID, Size uint32 } `json:"uid_map"`
			}
		}
	}
	if err := json.Unmarshal([]byte(e.ok("image", "inspect", "oci-layout:./layout")), &rec); err != nil || rec.Ownership.Mode != "mapped" || len(rec.Ownership.Map.UIDMap) == 0 {
		t.Errorf("image inspect: ownership %+v (%v), want mapped with its uid map", rec.Ownership, err)
	}

	// idmap: single gets an unpacker base of the same image.
	sout := e.ok("run", "ownsingle", "--", "/bin/sh", "-c", ownerScript)
	if !strings.Contains(sout, "/home/agent/mine 0:0") || !strings.Contains(sout, "root only") {
		t.Errorf("single-id map: every file is container root's (the user's) and readable:\n%s", sout)
	}
	if s := e.ok("inspect", "ownsingle"); !strings.Contains(s, "unpacker: image uids and gids not applied") {
		t.Errorf("inspect of the single-id agent:\n%s", s)
	}
	imgs = e.images()
	if len(imgs) != 2 {
		t.Fatalf("image ls: %+v, want a mapped and an unpacker base", imgs)
	}
	if ls := e.ok("image", "ls"); !strings.Contains(ls, "mapped (image root = host ") || !strings.Contains(ls, "unpacker (all host ") {
		t.Errorf("image ls should tell the two bases apart by their ownership:\n%s", ls)
	}

	// prune removes a mapped base no reference names: rebuild the layout
	// so that its reference names another image.
	if err := os.RemoveAll(layoutDir); err != nil {
		t.Fatal(err)
	}
	next, err := mutate.AppendLayers(ownedImage(t), fileLayer(t, "etc/next", "next\n"))
	if err != nil {
		t.Fatal(err)
	}
	writeLayout(t, layoutDir, next)
	e.ok("run", "ownmapped", "--", "/bin/true")
	if out := e.ok("image", "prune"); !strings.Contains(out, "removed") {
		t.Errorf("prune: %s", out)
	}
	if _, err := os.Stat(base); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("prune left the mapped base %s: %v", base, err)
	}
	// rm of the reference removes every base it names.
	e.ok("image", "rm", "oci-layout:./layout")
	if left := e.images(); len(left) != 0 {
		t.Errorf("image rm left %+v", left)
	}
}
