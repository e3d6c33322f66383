package rootfs

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testImage is two layers (the second whites out a file of the first) and
// a config with Entrypoint, Cmd, Env, WorkingDir and User.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	l1 := layerTar(t, dir("bin"), file("bin/tool", "#!/bin/sh\n"), dir("etc"), file("etc/gone", "x"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:7:8::/home:/bin/sh\n"))
	l2 := layerTar(t, file("etc/.wh.gone", ""), file("etc/motd", "hi"))
	return imageOf(t, v1.Config{Entrypoint: []string{"/bin/tool"}, Cmd: []string{"run"}, Env: []string{"PATH=/bin", "X=1"}, WorkingDir: "/etc", User: "app"}, l1, l2)
}

// testRegistry serves an in-memory registry on loopback; wrap, if given,
// sits in front of it (auth, corruption). It counts requests.
func testRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (host string, requests *atomic.Int64) {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	requests = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), requests
}

func push(t *testing.T, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	// No ~/.docker of the machine running the tests.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	return s
}

// assertEmpty checks that a failed pull left nothing in the store.
func assertEmpty(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{"sha256", "tmp"} {
		if got := listTree(t, filepath.Join(s.Dir, d)); len(got) > 0 {
			t.Errorf("%s/ holds %q after a failed pull", d, got)
		}
	}
	if imgs, _ := s.List(); len(imgs) > 0 {
		t.Errorf("store lists %d images", len(imgs))
	}
}

func checkImage(t *testing.T, img *Image) {
	t.Helper()
	root := img.Rootfs()
	if b, err := os.ReadFile(filepath.Join(root, "etc/motd")); err != nil || string(b) != "hi" {
		t.Errorf("etc/motd: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/gone")); err == nil {
		t.Error("the whiteout of etc/gone was not applied")
	}
	want := ImageConfig{Entrypoint: []string{"/bin/tool"}, Cmd: []string{"run"}, Env: []string{"PATH=/bin", "X=1"}, WorkingDir: "/etc", User: "app"}
	if got := img.Config(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("config %+v, want %+v", got, want)
	}
	if uid, gid, err := LookupUser(root, img.Config().User); err != nil || uid != 7 || gid != 8 {
		t.Errorf("LookupUser(app) = %d:%d %v", uid, gid, err)
	}
}

func TestStorePullRegistry(t *testing.T) {
	host, requests := testRegistry(t, nil)
	img := testImage(t)
	push(t, host+"/team/agent:v1", img)
	manifest, _ := img.Digest()
	id, _ := img.ConfigName()

	s := newStore(t)
	var progress bytes.Buffer
	s.Progress = &progress
	got, err := s.Pull(context.Background(), host+"/team/agent:v1")
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, got)
	if got.ID != id.String() || got.Manifest != manifest.String() {
		t.Errorf("ID %s manifest %s, want %s %s", got.ID, got.Manifest, id, manifest)
	}
	wantRefs := []string{host + "/team/agent:v1", host + "/team/agent@" + manifest.String()}
	if !slices.Equal(got.Refs, wantRefs) {
		t.Errorf("refs %q, want %q", got.Refs, wantRefs)
	}
	if n := strings.Count(progress.String(), "\n"); n != 2 || !strings.Contains(progress.String(), "layer 2/2") {
		t.Errorf("progress without a terminal should be a line per layer:\n%s", progress.String())
	}

	// Cached: by tag, by digest, by ID prefix, all without the registry.
	before := requests.Load()
	for _, ref := range []string{host + "/team/agent:v1", host + "/team/agent@" + manifest.String()} {
		again, err := s.Resolve(context.Background(), ref)
		if err != nil || again.ID != got.ID {
			t.Errorf("Resolve(%s): %v", ref, err)
		}
	}
	if _, err := s.Get(got.ShortID()[:6]); err != nil {
		t.Errorf("Get by ID prefix: %v", err)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("a cached image cost %d registry requests", n)
	}

	// rm by tag keeps the base (the digest still names it); rm by ID
	// removes it, unless a container uses it.
	if _, removed, err := s.Remove(host+"/team/agent:v1", nil); err != nil || removed {
		t.Errorf("rm tag: removed=%v %v", removed, err)
	}
	if _, _, err := s.Remove(got.ID, Paths(got.Rootfs())); err == nil || !strings.Contains(err.Error(), "used by a container") {
		t.Errorf("rm of an image in use: %v", err)
	}
	if _, removed, err := s.Remove(got.ID, nil); err != nil || !removed {
		t.Errorf("rm id: removed=%v %v", removed, err)
	}
	if _, err := os.Stat(got.Dir); err == nil {
		t.Error("base still there after rm")
	}
}

func TestStorePullAuth(t *testing.T) {
	host, _ := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "agent" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	img := testImage(t)
	ref := host + "/private/agent:v1"
	s := newStore(t)
	cfgDir := os.Getenv("DOCKER_CONFIG")

	// No credentials: refused, nothing cached.
	if _, err := s.Pull(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("pull without credentials: %v", err)
	}
	assertEmpty(t, s)

	// Credentials in DOCKER_CONFIG/config.json, as docker login writes them.
	auth := base64.StdEncoding.EncodeToString([]byte("agent:s3cret"))
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	push(t, ref, img, remote.WithAuthFromKeychain(s.keychain()))
	got, err := s.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, got)
}

// corrupt serves the blob digest altered by f, without Content-Length so
// that only the digest and size checks can notice.
func corrupt(digest string, f func([]byte) []byte) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			b := f(bytes.Clone(rec.Body.Bytes()))
			for k, v := range rec.Header() {
				if k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.Code)
			w.(http.Flusher).Flush() // chunked: no Content-Length
			w.Write(b)
		})
	}
}

// Bytes appended to a registry blob are never read (the client reads the
// declared size and checks that), so only the digest-checked content is
// used; a layout blob with trailing bytes is refused.
var corruptions = []struct {
	name       string
	f          func([]byte) []byte
	registryOK bool
}{
	{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, false},
	{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, false},
	{"appended", func(b []byte) []byte { return append(b, "more"...) }, true},
}

func TestStorePullCorrupt(t *testing.T) {
	img := testImage(t)
	layers, _ := img.Layers()
	layer, _ := layers[1].Digest()
	config, _ := img.ConfigName()
	for _, blob := range []struct{ what, digest string }{{"layer", layer.String()}, {"config", config.String()}} {
		for _, tt := range corruptions {
			t.Run(blob.what+" "+tt.name, func(t *testing.T) {
				var on atomic.Bool
				host, _ := testRegistry(t, func(h http.Handler) http.Handler {
					c := corrupt(blob.digest, tt.f)(h)
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if on.Load() {
							c.ServeHTTP(w, r)
							return
						}
						h.ServeHTTP(w, r)
					})
				})
				push(t, host+"/x:v1", img)
				on.Store(true)
				s := newStore(t)
				got, err := s.Pull(context.Background(), host+"/x:v1")
				if tt.registryOK {
					if err != nil {
						t.Fatal(err)
					}
					checkImage(t, got)
					return
				}
				if err == nil {
					t.Fatal("a corrupt blob was accepted")
				}
				t.Log(err)
				assertEmpty(t, s)
			})
		}
	}
}

// A layout is read from disk without the registry client's checks: the
// store's own verification must catch a damaged blob.
func TestStoreLayoutCorrupt(t *testing.T) {
	img := testImage(t)
	layers, _ := img.Layers()
	layer, _ := layers[1].Digest()
	for _, tt := range corruptions {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			lp, err := layout.Write(dir, empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := lp.AppendImage(img); err != nil {
				t.Fatal(err)
			}
			blob := filepath.Join(dir, "blobs", "sha256", layer.Hex)
			b, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(blob, tt.f(b), 0o644); err != nil {
				t.Fatal(err)
			}
			s := newStore(t)
			_, err = s.Pull(context.Background(), "oci-layout:"+dir)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("got %v, want a digest mismatch", err)
			}
			t.Log(err)
			assertEmpty(t, s)
		})
	}
}

func TestStoreLocalSources(t *testing.T) {
	img := testImage(t)
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("agent:v1")
	archive := filepath.Join(dir, "agent.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	a, err := s.Resolve(context.Background(), "oci-layout:"+filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, a)
	b, err := s.Resolve(context.Background(), "docker-archive:"+archive)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, b)
	// One base for the same image from two sources.
	if a.ID != b.ID || a.Dir != b.Dir || len(b.Refs) != 2 {
		t.Errorf("layout %s and archive %s (refs %q) do not share a base", a.ID, b.ID, b.Refs)
	}
	// A second layout image makes the plain reference ambiguous.
	other, _ := mutate.Config(img, v1.Config{Cmd: []string{"other"}})
	if err := lp.AppendImage(other); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), "oci-layout:"+filepath.Join(dir, "layout")); err == nil || !strings.Contains(err.Error(), "pick one with") {
		t.Errorf("ambiguous layout: %v", err)
	}
	od, _ := other.Digest()
	c, err := s.Pull(context.Background(), "oci-layout:"+filepath.Join(dir, "layout")+"@"+od.String())
	if err != nil || c.Config().Cmd[0] != "other" {
		t.Fatalf("layout by digest: %v", err)
	}
	// Prune keeps what the index names and what a container uses.
	if _, removed, err := s.Remove("oci-layout:"+filepath.Join(dir, "layout")+"@"+od.String(), Paths(c.Rootfs())); err != nil || removed {
		t.Fatalf("rm of a used image's last ref: removed=%v %v", removed, err)
	}
	if gone, err := s.Prune(Paths(c.Rootfs())); err != nil || len(gone) != 0 {
		t.Errorf("prune removed %v (%v) while in use", gone, err)
	}
	if gone, err := s.Prune(nil); err != nil || !slices.Equal(gone, []string{c.ID}) {
		t.Errorf("prune removed %v (%v), want %s", gone, err, c.ID)
	}
	if imgs, _ := s.List(); len(imgs) != 1 || imgs[0].ID != a.ID {
		t.Errorf("after prune: %v", imgs)
	}
}

func TestStoreSizeBomb(t *testing.T) {
	// 64 MiB of zeros gzip to about 64 KiB.
	bomb := layerTar(t, file("zeros", strings.Repeat("\x00", 64<<20)))
	l, err := tarball.LayerFromReader(bytes.NewReader(bomb))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	s.MaxSize = 8 << 20
	_, err = s.Pull(context.Background(), "oci-layout:"+dir)
	if !errors.Is(err, ErrUnsafeLayer) || !strings.Contains(err.Error(), "more than 8.0 MiB") {
		t.Fatalf("bomb: %v", err)
	}
	assertEmpty(t, s)
}

func TestParseImageRef(t *testing.T) {
	wd, _ := os.Getwd()
	for _, tt := range []struct{ in, want string }{
		{"alpine:3.20", "index.docker.io/library/alpine:3.20"},
		{"alpine", "index.docker.io/library/alpine:latest"},
		{"localhost:5000/a/b@sha256:" + strings.Repeat("0", 64), "localhost:5000/a/b@sha256:" + strings.Repeat("0", 64)},
		{"oci-layout:./x", "oci-layout:" + filepath.Join(wd, "x")},
		{"oci-layout:/x@sha256:" + strings.Repeat("0", 64), "oci-layout:/x@sha256:" + strings.Repeat("0", 64)},
		{"docker-archive:/a.tar", "docker-archive:/a.tar"},
	} {
		r, err := ParseImageRef(tt.in)
		if err != nil || r.String() != tt.want {
			t.Errorf("ParseImageRef(%q) = %q, %v; want %q", tt.in, r.String(), err, tt.want)
		}
	}
	for _, bad := range []string{"", "Alpine", "oci-layout:", "oci-layout:/x@sha256:zz", "a\nb"} {
		if _, err := ParseImageRef(bad); err == nil {
			t.Errorf("ParseImageRef(%q) accepted", bad)
		}
	}
	if got := Familiar("index.docker.io/library/alpine:3.20"); got != "alpine:3.20" {
		t.Errorf("Familiar = %q", got)
	}
}

// image.json records whose ids the files carry; a base from before the
// record reads the same from its root directory.
func TestStoreRecordsOwnership(t *testing.T) {
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(testImage(t)); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	img, err := s.Pull(context.Background(), "oci-layout:"+filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	want := Ownership{Mode: OwnedByUnpacker, UID: os.Geteuid(), GID: os.Getegid()}
	if got := img.Ownership(); got != want {
		t.Errorf("ownership %+v, want %+v", got, want)
	}
	b, err := os.ReadFile(filepath.Join(img.Dir, "image.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"mode": "unpacker"`) {
		t.Errorf("image.json does not record the ownership mode:\n%s", b)
	}

	// An older image.json without the field.
	legacy := strings.Replace(string(b), `"ownership"`, `"x_ownership"`, 1)
	if err := os.WriteFile(filepath.Join(img.Dir, "image.json"), []byte(legacy), 0o644); err != nil {
		t.Fatal(err)
	}
	old, err := s.Get(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := old.Ownership(); got != want {
		t.Errorf("legacy base: ownership %+v, want %+v (from its rootfs)", got, want)
	}
	if got := want.String(); !strings.Contains(got, fmt.Sprintf("host %d:%d", want.UID, want.GID)) || !strings.Contains(got, "not applied") {
		t.Errorf("String() = %q", got)
	}
}
