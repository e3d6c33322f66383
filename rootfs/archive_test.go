package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/clawrun/clawrun/internal/imagetest"
)

func imageID(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// A docker save tarball of several images (as `docker save a b c` writes
// it): an image is picked by tag or by ID, and without either the error
// lists what the archive holds.
func TestDockerArchiveSeveralImages(t *testing.T) {
	s := newStore(t)
	one, two, bare := imagetest.WithCmd(t, testImage(t), "one"), imagetest.WithCmd(t, testImage(t), "two"), imagetest.WithCmd(t, testImage(t), "untagged")
	tagOne, _ := name.NewTag("team/one:v1")
	tagTwo, _ := name.NewTag("localhost:5000/two:v2")
	refs := map[name.Reference]v1.Image{tagOne: one, tagTwo: two}
	// An untagged image: docker save by ID writes no RepoTags. tarball
	// writes a digest reference's image without tags.
	untagged, err := name.NewDigest("untagged@sha256:" + strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	refs[untagged] = bare
	p := filepath.Join(t.TempDir(), "images.tar")
	if err := tarball.MultiRefWriteToFile(p, refs); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		ref  string
		want v1.Image
		cmd  string
	}{
		{"docker-archive:" + p + ":team/one:v1", one, "one"},
		{"docker-archive:" + p + ":docker.io/team/one:v1", one, "one"}, // the same tag, in full
		{"docker-archive:" + p + ":localhost:5000/two:v2", two, "two"},
		{"docker-archive:" + p + "@" + imageID(t, two), two, "two"},
		{"docker-archive:" + p + "@" + imageID(t, bare), bare, "untagged"},
	} {
		img, err := s.Pull(context.Background(), tt.ref)
		if err != nil {
			t.Fatalf("%s: %v", tt.ref, err)
		}
		if want := imageID(t, tt.want); img.ID != want || len(img.Config().Cmd) != 1 || img.Config().Cmd[0] != tt.cmd {
			t.Errorf("%s: image %s with Cmd %q, want %s with Cmd [%s]", tt.ref, img.ID, img.Config().Cmd, want, tt.cmd)
		}
		if b, err := os.ReadFile(filepath.Join(img.Rootfs(), "etc/motd")); err != nil || string(b) != "hi" {
			t.Errorf("%s: etc/motd: %q %v", tt.ref, b, err)
		}
	}

	for _, tt := range []struct{ ref, msg string }{
		{"docker-archive:" + p, "holds 3 images: pick one with docker-archive:" + p + ":TAG"},
		{"docker-archive:" + p + ":team/three:v1", "holds no image tagged team/three:v1"},
		{"docker-archive:" + p + "@sha256:" + strings.Repeat("ab", 32), "holds no image with ID"},
	} {
		_, err := s.Pull(context.Background(), tt.ref)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: error %v, want one saying %q", tt.ref, err, tt.msg)
			continue
		}
		// Every error lists what the archive holds, untagged images by ID.
		for _, held := range []string{"team/one:v1", "localhost:5000/two:v2", "untagged @" + imageID(t, bare)} {
			if !strings.Contains(err.Error(), held) {
				t.Errorf("%s: the error does not list %s: %v", tt.ref, held, err)
			}
		}
	}

	// The index keeps each pick as its own reference.
	img, err := s.Get("docker-archive:" + p + ":team/one:v1")
	if err != nil || img.ID != imageID(t, one) {
		t.Errorf("Get by archive tag: %v %v", img, err)
	}
}

// A reference naming a tag or ID parses into its parts; a path with no
// pick stays as it was (a single-image archive, as before).
func TestParseDockerArchivePick(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	id := "sha256:" + strings.Repeat("cd", 32)
	for _, tt := range []struct {
		in        string
		path, tag string
		digest    string
	}{
		{"docker-archive:x.tar", filepath.Join(dir, "x.tar"), "", ""},
		{"docker-archive:./x.tar:alpine:3.20", filepath.Join(dir, "x.tar"), "alpine:3.20", ""},
		{"docker-archive:x.tar:host:5000/a/b:v1", filepath.Join(dir, "x.tar"), "host:5000/a/b:v1", ""},
		{"docker-archive:x.tar@" + id, filepath.Join(dir, "x.tar"), "", id},
	} {
		r, err := ParseImageRef(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if r.Transport != TransportDockerArchive || r.Path != tt.path || r.Tag != tt.tag || r.Digest != tt.digest {
			t.Errorf("%s: %+v", tt.in, r)
		}
		if again, err := ParseImageRef(r.String()); err != nil || again.String() != r.String() {
			t.Errorf("%s: canonical form %q does not parse back: %v", tt.in, r.String(), err)
		}
	}
	for _, bad := range []string{"docker-archive:x.tar:Bad Tag", "docker-archive::alpine", "docker-archive:x.tar@sha256:zz"} {
		if _, err := ParseImageRef(bad); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}
