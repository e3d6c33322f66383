package test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"
)

// A registry image unpacked for two id maps (the default agent map to read
// the image's user, then nobody's) is fetched from the registry once: the
// second unpack reads the layers from DATA/images/blobs, which rootless is
// written from the mapped store's user namespace and must still be the
// user's. Prune keeps the blobs a base lists and removes them with the
// last one. The registry is go-containerregistry's, on loopback.
func TestImageBlobCacheAcrossMaps(t *testing.T) {
	e := newEnv(t)
	if isRoot() {
		withRootRange(t, e) // without a range there is one (unpacker) map only
	}
	var mu sync.Mutex
	gets := map[string]int{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.LastIndex(r.URL.Path, "/blobs/"); r.Method == http.MethodGet && i >= 0 {
			mu.Lock()
			gets[r.URL.Path[i+len("/blobs/"):]]++
			mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	img := nobodyImage(t)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/blobcache/agent:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clear(gets) // remote.Write may have asked for blobs
	mu.Unlock()

	e.writeFile("clawrun.yaml", "agents:\n  blobcache:\n    image: "+ref+"\n")
	res := e.run("run", "blobcache")
	if res.code != 0 || !strings.Contains(res.stdout, "runs as 65534:65534") {
		t.Fatalf("run: %s", res)
	}
	if n := len(e.images()); n != 2 {
		t.Fatalf("%d bases, want one per map (the default's and nobody's): the test needs two maps", n)
	}
	blobs := filepath.Join(e.data, "images", "blobs")
	for _, l := range m.Layers {
		if n := gets[l.Digest.String()]; n != 1 {
			t.Errorf("layer %s was fetched %d times for two maps, want once", l.Digest, n)
		}
		var st unix.Stat_t
		p := filepath.Join(blobs, "sha256", l.Digest.Hex)
		if err := unix.Stat(p, &st); err != nil {
			t.Fatalf("blob not cached: %v", err)
		}
		if int(st.Uid) != os.Getuid() || st.Mode&0o077 != 0 {
			t.Errorf("%s is %d mode %o; want the user's (%d), private", p, st.Uid, st.Mode&0o777, os.Getuid())
		}
	}

	// The default map's base lost its reference: prune takes it, and the
	// blobs stay, listed by nobody's base.
	e.ok("image", "prune")
	if left, _ := os.ReadDir(filepath.Join(blobs, "sha256")); len(left) != len(m.Layers) {
		t.Errorf("after pruning one base %d blobs are left, want %d", len(left), len(m.Layers))
	}
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	e.ok("image", "rm", id.String())
	if left, _ := os.ReadDir(filepath.Join(blobs, "sha256")); len(left) != len(m.Layers) {
		t.Errorf("image rm removed blobs (that is prune's job): %d left", len(left))
	}
	e.ok("image", "prune")
	if left, _ := os.ReadDir(filepath.Join(blobs, "sha256")); len(left) != 0 {
		t.Errorf("after the last base went, prune left %d blobs", len(left))
	}
}

// nobodyImage is agentImage run as nobody (65534:65534), printing whom it
// runs as: an image whose user needs a map other than the default agent's.
func nobodyImage(t *testing.T) v1.Image {
	t.Helper()
	img := agentImage(t)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.User = "65534:65534"
	cf.Config.Entrypoint, cf.Config.Cmd = []string{"/bin/sh", "-c"}, []string{`echo "runs as $(id -u):$(id -g)"`}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}
