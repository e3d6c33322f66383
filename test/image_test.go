package test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/clawrun/clawrun/internal/imagetest"
	"github.com/clawrun/clawrun/rootfs"
)

// dirLayer tars a directory tree into one image layer.
func dirLayer(t *testing.T, root string) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = rel
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fileLayer is a layer holding one file.
func fileLayer(t *testing.T, name, body string) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	tw.Close()
	l, err := tarball.LayerFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// agentImage builds an image from the suite's busybox rootfs plus a layer
// with /etc/motd-image, whose own command prints what it sees.
func agentImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, dirLayer(t, baseRootfs), fileLayer(t, "etc/motd-image", "from the image layer\n"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Config = v1.Config{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{`echo "image-cmd-ran FROM_IMAGE=$FROM_IMAGE pwd=$(pwd)"; cat /etc/motd-image`},
		Env:        []string{"PATH=/bin", "FROM_IMAGE=yes"},
		WorkingDir: "/etc",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func writeLayout(t *testing.T, dir string, img v1.Image) {
	t.Helper()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
}

type imageInfo struct {
	ID   string   `json:"id"`
	Refs []string `json:"refs"`
	Dir  string   `json:"dir"`
}

// An image's own command runs, with its Env and WorkingDir, from an OCI
// layout and from a docker save tarball; the agent file overrides them.
func TestImageAgentRuns(t *testing.T) {
	e := newEnv(t)
	img := agentImage(t)
	writeLayout(t, filepath.Join(e.dir, "layout"), img)
	tag, _ := name.NewTag("agent:v1")
	if err := tarball.WriteToFile(filepath.Join(e.dir, "agent.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	e.writeFile("clawrun.yaml", `agents:
  fromlayout:
    image: oci-layout:./layout
  fromarchive:
    image: docker-archive:./agent.tar
  override:
    image: oci-layout:./layout
    command: [/bin/sh, -c, 'echo "override FROM_IMAGE=$FROM_IMAGE pwd=$(pwd)"']
    env: {FROM_IMAGE: file}
    workdir: /tmp
  single:
    image: oci-layout:./layout
    idmap: single
`)
	for _, agent := range []string{"fromlayout", "fromarchive", "single"} {
		out := e.ok("run", agent)
		if !strings.Contains(out, "image-cmd-ran FROM_IMAGE=yes pwd=/etc") || !strings.Contains(out, "from the image layer") {
			t.Errorf("%s: the image's command did not run as configured:\n%s", agent, out)
		}
	}
	if out := e.ok("run", "override"); !strings.Contains(out, "override FROM_IMAGE=file pwd=/tmp") {
		t.Errorf("the agent file did not override the image config:\n%s", out)
	}
	if out := e.ok("run", "fromlayout", "--", "/bin/cat", "/etc/motd-image"); !strings.Contains(out, "from the image layer") {
		t.Errorf("run AGENT -- CMD: %s", out)
	}

	// Both sources are the same image: one base.
	var imgs []imageInfo
	if err := json.Unmarshal([]byte(e.ok("image", "ls", "--json")), &imgs); err != nil {
		t.Fatal(err)
	}
	// With subordinate ids the single-id agent has an unpacker base of
	// its own (docs/images.md, "Ownership and privileges"): keep the base
	// the layout and the archive share.
	shared := imgs[:0]
	for _, i := range imgs {
		if len(i.Refs) == 2 {
			shared = append(shared, i)
		}
	}
	imgs = shared
	if len(imgs) != 1 || len(imgs[0].Refs) != 2 {
		t.Fatalf("image ls: %+v, want one image named by the layout and the archive", imgs)
	}
	want, _ := img.ConfigName()
	if imgs[0].ID != want.String() {
		t.Errorf("image ID %s, want the config digest %s", imgs[0].ID, want)
	}

	// spec, bundle and inspect see the unpacked base.
	var spec struct {
		Root    struct{ Path string }
		Process struct {
			Args []string
			Cwd  string
		}
	}
	if err := json.Unmarshal([]byte(e.ok("spec", "fromlayout")), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Root.Path != filepath.Join(imgs[0].Dir, "rootfs") || spec.Process.Cwd != "/etc" || len(spec.Process.Args) != 3 {
		t.Errorf("spec: root %s cwd %s args %q", spec.Root.Path, spec.Process.Cwd, spec.Process.Args)
	}
	if out := e.ok("inspect", "fromlayout"); !strings.Contains(out, "image") || !strings.Contains(out, want.String()) {
		t.Errorf("inspect does not name the image:\n%s", out)
	} else if !strings.Contains(out, "ownership") || !strings.Contains(out, "image uids and gids") || !strings.Contains(out, "every file") {
		t.Errorf("inspect does not say how the base's ownership maps:\n%s", out)
	}
	if out := e.ok("inspect", "single"); !strings.Contains(out, "every file appears owned by 0:0, container root") {
		t.Errorf("inspect of a single-id agent: ownership:\n%s", out)
	}
	bundle := filepath.Join(t.TempDir(), "b")
	e.ok("bundle", "fromlayout", bundle)
	if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "etc", "motd-image")); err != nil || !strings.Contains(string(b), "from the image layer") {
		t.Errorf("bundle rootfs: %q %v", b, err)
	}

	// rm by reference keeps the base while another reference names it;
	// prune then has nothing to do; rm of the last reference deletes it.
	e.ok("image", "rm", "docker-archive:./agent.tar")
	if out := e.ok("image", "prune"); !strings.Contains(out, "nothing to prune") {
		t.Errorf("prune removed a named image: %s", out)
	}
	if out := e.ok("image", "rm", "oci-layout:./layout"); !strings.Contains(out, "removed") {
		t.Errorf("rm of the last reference: %s", out)
	}
	if _, err := os.Stat(imgs[0].Dir); err == nil {
		t.Errorf("base %s still there", imgs[0].Dir)
	}
}

// Two agents share one read-only base; neither sees what the other
// writes (into its tmpfs and its own grant), and neither can write the base.
func TestImageSharedBase(t *testing.T) {
	e := newEnv(t)
	writeLayout(t, filepath.Join(e.dir, "layout"), agentImage(t))
	for _, d := range []string{"a", "b"} {
		os.Chmod(e.mkdir(d), 0o777)
	}
	e.writeFile("clawrun.yaml", `agents:
  a:
    image: oci-layout:./layout
    grants: [{host: ./a, path: /data, mode: rw}]
  b:
    image: oci-layout:./layout
    grants: [{host: ./b, path: /data, mode: rw}]
`)
	script := `echo mine > /tmp/$AGENT; echo mine > /data/$AGENT; ls /tmp /data | tr '\n' ' '; echo; touch /etc/evil 2>/dev/null && echo WROTE-BASE || echo base-read-only`
	e.ok("run", "-d", "a", "--", "/bin/sh", "-c", "AGENT=a; "+script+"; sleep 30")
	out := e.ok("run", "b", "--", "/bin/sh", "-c", "AGENT=b; "+script)
	if strings.Contains(out, "WROTE-BASE") || !strings.Contains(out, "base-read-only") {
		t.Errorf("b could write the shared base:\n%s", out)
	}
	if strings.Contains(out, " a ") || strings.Contains(out, " a\n") || strings.HasPrefix(out, "a ") {
		t.Errorf("b sees a's files:\n%s", out)
	}
	waitFor(t, "a wrote its grant", func() bool { _, err := os.Stat(filepath.Join(e.dir, "a", "a")); return err == nil })
	if _, err := os.Stat(filepath.Join(e.dir, "b", "a")); err == nil {
		t.Error("a's write reached b's grant")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "a", "b")); err == nil {
		t.Error("b's write reached a's grant")
	}
	var imgs []imageInfo
	if err := json.Unmarshal([]byte(e.ok("image", "ls", "--json")), &imgs); err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 {
		t.Fatalf("%d images for two agents naming one", len(imgs))
	}
	if _, err := os.Stat(filepath.Join(imgs[0].Dir, "rootfs", "etc", "evil")); err == nil {
		t.Error("the base was written")
	}
	// The running agent keeps its base through rm and prune.
	e.ok("image", "rm", "oci-layout:./layout")
	e.ok("image", "prune")
	if _, err := os.Stat(imgs[0].Dir); err != nil {
		t.Errorf("the base of a running agent was removed: %v", err)
	}
	e.ok("rm", "-f", "a")
	if out := e.ok("image", "prune"); !strings.Contains(out, "removed "+imgs[0].ID) {
		t.Errorf("prune after the container went: %s", out)
	}
}

// `clawrun run --image` runs an ad-hoc sandbox from an image: here one of
// two images of a docker save tarball, picked by tag. The image's config
// applies, CMD after -- replaces its Cmd (its Entrypoint stays),
// --entrypoint replaces the Entrypoint, and the flags override Env and
// WorkingDir. The sandbox keeps the secure defaults: the base is read-only.
func TestImageAdHocRun(t *testing.T) {
	e := newEnv(t)
	// Rootless with subordinate ids, bases belong to the range and only
	// clawrun can remove them: before the temporary directory goes.
	t.Cleanup(func() {
		for _, img := range e.images() {
			_ = e.cmd("image", "rm", img.ID).Run()
		}
	})
	img := agentImage(t)
	other := imagetest.WithCmd(t, img, `echo other-image-ran`)
	tagA, _ := name.NewTag("team/agent:v1")
	tagB, _ := name.NewTag("localhost:5000/other:v2")
	if err := tarball.MultiRefWriteToFile(filepath.Join(e.dir, "images.tar"), map[name.Reference]v1.Image{tagA: img, tagB: other}); err != nil {
		t.Fatal(err)
	}
	ref := "docker-archive:./images.tar:team/agent:v1"

	r := e.run("run", "--image", "docker-archive:./images.tar")
	if r.code == 0 || !strings.Contains(r.stderr, "holds 2 images") || !strings.Contains(r.stderr, "team/agent:v1") || !strings.Contains(r.stderr, "localhost:5000/other:v2") {
		t.Errorf("an archive of two images without a tag: %s", r)
	}
	if out := e.ok("run", "--image", ref); !strings.Contains(out, "image-cmd-ran FROM_IMAGE=yes pwd=/etc") || !strings.Contains(out, "from the image layer") {
		t.Errorf("the image's own command:\n%s", out)
	}
	if out := e.ok("run", "--image", "docker-archive:./images.tar:localhost:5000/other:v2"); !strings.Contains(out, "other-image-ran") {
		t.Errorf("the other image of the archive:\n%s", out)
	}
	// CMD replaces Cmd; the Entrypoint (/bin/sh -c) runs it as a script.
	if out := e.ok("run", "--image", ref, "--", `echo "cmd-replaced FROM_IMAGE=$FROM_IMAGE"`); !strings.Contains(out, "cmd-replaced FROM_IMAGE=yes") {
		t.Errorf("-- CMD with the image's Entrypoint:\n%s", out)
	}
	if out := e.ok("run", "--image", ref, "--entrypoint", "/bin/cat", "--", "/etc/motd-image"); !strings.Contains(out, "from the image layer") {
		t.Errorf("--entrypoint:\n%s", out)
	}
	if out := e.ok("run", "--image", ref, "--env", "FROM_IMAGE=flag", "--workdir", "/tmp"); !strings.Contains(out, "image-cmd-ran FROM_IMAGE=flag pwd=/tmp") {
		t.Errorf("--env and --workdir over the image config:\n%s", out)
	}
	// Proven from inside: the shared base cannot be written.
	if out := e.ok("run", "--image", ref, "--", `touch /etc/evil 2>/dev/null && echo WROTE-BASE || echo base-read-only`); !strings.Contains(out, "base-read-only") {
		t.Errorf("an ad-hoc image run could write its base:\n%s", out)
	}
	// A foreground run without --name leaves no container behind.
	if ps := e.ps(); len(ps) != 0 {
		t.Errorf("containers left behind: %+v", ps)
	}

	e.mkdir("rootfs")
	if r := e.run("run", "--rootfs", "./rootfs", "--image", ref, "--", "/bin/true"); r.code == 0 || !strings.Contains(r.stderr, "--rootfs and --image are both given") {
		t.Errorf("--rootfs with --image: %s", r)
	}
	if r := e.run("run", "--rootfs", "./rootfs", "--platform", "linux/arm64", "--", "/bin/true"); r.code == 0 || !strings.Contains(r.stderr, "--platform is for --image runs") {
		t.Errorf("--platform with --rootfs: %s", r)
	}
}

// A base a clawrun process has leased (here: this test, as a run does
// between resolving its image and creating its container) survives rm of
// its last reference and prune, in another process; once released, prune
// removes it. No timing: the lease is held or it is not.
func TestImagePruneKeepsLeasedBase(t *testing.T) {
	e := newEnv(t)
	writeLayout(t, filepath.Join(e.dir, "layout"), agentImage(t))
	e.ok("image", "pull", "oci-layout:./layout")
	var imgs []imageInfo
	if err := json.Unmarshal([]byte(e.ok("image", "ls", "--json")), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("image ls: %v %+v", err, imgs)
	}
	lease, err := (&rootfs.Image{Dir: imgs[0].Dir}).Lease()
	if err != nil {
		t.Fatal(err)
	}
	if out := e.ok("image", "rm", "oci-layout:./layout"); !strings.Contains(out, "kept") {
		t.Errorf("rm of a leased base's last reference: %s", out)
	}
	if out := e.ok("image", "prune"); !strings.Contains(out, "nothing to prune") {
		t.Errorf("prune removed a leased base: %s", out)
	}
	if _, err := os.Stat(filepath.Join(imgs[0].Dir, "rootfs", "etc", "motd-image")); err != nil {
		t.Fatalf("the leased base lost its files: %v", err)
	}
	lease.Release()
	if out := e.ok("image", "prune"); !strings.Contains(out, "removed "+imgs[0].ID) {
		t.Errorf("prune after the lease was released: %s", out)
	}
}
