package rootfs

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// blobGets counts the registry's blob GETs by digest.
type blobGets struct {
	mu sync.Mutex
	n  map[string]int
}

func (g *blobGets) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.LastIndex(r.URL.Path, "/blobs/"); r.Method == http.MethodGet && i >= 0 {
			g.mu.Lock()
			g.n[r.URL.Path[i+len("/blobs/"):]]++
			g.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (g *blobGets) count(digest string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n[digest]
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

// storeWithCache is a store in a directory of its own that shares the
// blob cache dir, as the stores of two id maps do.
func storeWithCache(t *testing.T, blobs string) *Store {
	t.Helper()
	s := newStore(t)
	s.BlobDir = blobs
	return s
}

// sameTree compares two root filesystems by their entries and file bytes.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	la, lb := listTree(t, a), listTree(t, b)
	if !slices.Equal(la, lb) {
		t.Fatalf("trees differ: %q vs %q", la, lb)
	}
	for _, p := range la {
		fa, _ := os.ReadFile(filepath.Join(a, p))
		fb, _ := os.ReadFile(filepath.Join(b, p))
		if !bytes.Equal(fa, fb) {
			t.Errorf("%s differs", p)
		}
	}
}

func TestBlobCacheSharedBetweenStores(t *testing.T) {
	gets := &blobGets{n: map[string]int{}}
	host, _ := testRegistry(t, gets.wrap)
	img := testImage(t)
	push(t, host+"/team/agent:v1", img)
	blobs := filepath.Join(t.TempDir(), "blobs")
	layers := layerDigests(t, img)

	a := storeWithCache(t, blobs)
	first, err := a.Pull(context.Background(), host+"/team/agent:v1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first.Blobs, layers) {
		t.Errorf("image.json lists blobs %q, want the manifest's layers %q", first.Blobs, layers)
	}
	for _, d := range layers {
		if gets.count(d) != 1 {
			t.Errorf("first pull fetched layer %s %d times", d, gets.count(d))
		}
		cached, err := os.ReadFile(blobCache{blobs}.blobPath(d))
		if err != nil {
			t.Fatalf("layer %s is not in the cache: %v", d, err)
		}
		if digestOf(cached) != d {
			t.Errorf("cached blob %s hashes to %s", d, digestOf(cached))
		}
	}

	// The second store (another map's) reads the layers from the cache:
	// the manifest and config still come from the registry.
	b := storeWithCache(t, blobs)
	second, err := b.Pull(context.Background(), host+"/team/agent:v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range layers {
		if n := gets.count(d); n != 1 {
			t.Errorf("layer %s was fetched again by the second store (%d GETs)", d, n)
		}
	}
	checkImage(t, second)
	sameTree(t, first.Rootfs(), second.Rootfs())
	if second.ID != first.ID {
		t.Errorf("IDs %s and %s", first.ID, second.ID)
	}

	// A store without the cache always asks the registry.
	c := newStore(t)
	if _, err := c.Pull(context.Background(), host+"/team/agent:v1"); err != nil {
		t.Fatal(err)
	}
	if n := gets.count(layers[0]); n != 2 {
		t.Errorf("a store without BlobDir made %d GETs of layer 1 in all, want 2", n)
	}
}

// A cached blob damaged on disk is never trusted: it is found out by its
// digest, removed and fetched again, and the pull succeeds.
func TestBlobCacheCorruptBlobRefetched(t *testing.T) {
	gets := &blobGets{n: map[string]int{}}
	host, _ := testRegistry(t, gets.wrap)
	img := testImage(t)
	push(t, host+"/x:v1", img)
	blobs := filepath.Join(t.TempDir(), "blobs")
	layers := layerDigests(t, img)
	if _, err := storeWithCache(t, blobs).Pull(context.Background(), host+"/x:v1"); err != nil {
		t.Fatal(err)
	}
	for _, damage := range []struct {
		name string
		f    func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"appended", func(b []byte) []byte { return append(b, "more"...) }},
	} {
		t.Run(damage.name, func(t *testing.T) {
			p := blobCache{blobs}.blobPath(layers[1])
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, damage.f(b), 0o600); err != nil {
				t.Fatal(err)
			}
			before := gets.count(layers[1])
			got, err := storeWithCache(t, blobs).Pull(context.Background(), host+"/x:v1")
			if err != nil {
				t.Fatalf("pull with a damaged cached blob: %v", err)
			}
			checkImage(t, got)
			if n := gets.count(layers[1]) - before; n != 1 {
				t.Errorf("the damaged layer was fetched %d times, want once", n)
			}
			if b, err := os.ReadFile(p); err != nil || digestOf(b) != layers[1] {
				t.Errorf("the cache does not hold the refetched blob: %v", err)
			}
		})
	}
}

// A fetch that ends early or is corrupt fails the pull and leaves nothing
// of that blob in the cache; the next pull fetches it again.
func TestBlobCacheFailedFetchNotCached(t *testing.T) {
	img := testImage(t)
	layers := layerDigests(t, img)
	for _, tt := range corruptions {
		if tt.registryOK {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			var on atomic.Bool
			gets := &blobGets{n: map[string]int{}}
			host, _ := testRegistry(t, func(h http.Handler) http.Handler {
				c := corrupt(layers[1], tt.f)(h)
				return gets.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if on.Load() {
						c.ServeHTTP(w, r)
						return
					}
					h.ServeHTTP(w, r)
				}))
			})
			push(t, host+"/x:v1", img)
			blobs := filepath.Join(t.TempDir(), "blobs")
			on.Store(true)
			s := storeWithCache(t, blobs)
			if _, err := s.Pull(context.Background(), host+"/x:v1"); err == nil {
				t.Fatal("a corrupt blob was accepted")
			}
			assertEmpty(t, s)
			if _, err := os.Stat(blobCache{blobs}.blobPath(layers[1])); err == nil {
				t.Error("the corrupt blob landed in the cache")
			}
			if left := listTree(t, filepath.Join(blobs, "tmp")); len(left) > 0 {
				t.Errorf("blobs/tmp holds %q after the failed pull", left)
			}

			on.Store(false)
			before := gets.count(layers[0])
			got, err := s.Pull(context.Background(), host+"/x:v1")
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, got)
			if gets.count(layers[0]) != before {
				t.Error("the intact first layer, cached by the failed pull, was fetched again")
			}
			if _, err := os.Stat(blobCache{blobs}.blobPath(layers[1])); err != nil {
				t.Errorf("the good blob is not cached after the second pull: %v", err)
			}
		})
	}
}

// Prune keeps the blobs some image of some store lists and removes the
// others, and what interrupted fetches left in tmp/.
func TestPruneBlobs(t *testing.T) {
	host, _ := testRegistry(t, nil)
	shared := layerTar(t, dir("bin"), file("bin/tool", "#!/bin/sh\n"))
	one := imageOf(t, v1.Config{Cmd: []string{"one"}}, shared, layerTar(t, file("one", "1")))
	two := imageOf(t, v1.Config{Cmd: []string{"two"}}, shared, layerTar(t, file("two", "2")))
	push(t, host+"/one:v1", one)
	push(t, host+"/two:v1", two)
	blobs := filepath.Join(t.TempDir(), "blobs")
	a, b := storeWithCache(t, blobs), storeWithCache(t, blobs)
	first, err := a.Pull(context.Background(), host+"/one:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pull(context.Background(), host+"/two:v1"); err != nil {
		t.Fatal(err)
	}
	l1, l2 := layerDigests(t, one), layerDigests(t, two)
	if l1[0] != l2[0] {
		t.Fatal("the test images should share their first layer")
	}
	// An interrupted fetch (no process holds its lock) and a stray blob.
	if err := os.WriteFile(filepath.Join(blobs, "tmp", "blob-123"), []byte("part"), 0o600); err != nil {
		t.Fatal(err)
	}
	stray := "sha256:" + strings.Repeat("ab", 32)
	if err := os.WriteFile(blobCache{blobs}.blobPath(stray), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Both images listed: only the stray goes.
	gone, err := PruneBlobs(blobs, []*Store{a, b})
	if err != nil || !slices.Equal(gone, []string{stray}) {
		t.Fatalf("prune with every image listed removed %q, %v", gone, err)
	}
	if left := listTree(t, filepath.Join(blobs, "tmp")); len(left) > 0 {
		t.Errorf("blobs/tmp holds %q after prune", left)
	}

	// `image rm` leaves the blobs; prune then removes the ones only the
	// removed image listed and keeps the shared layer.
	if _, removed, err := a.Remove(first.ID, nil); err != nil || !removed {
		t.Fatalf("rm: removed %v, %v", removed, err)
	}
	if _, err := os.Stat(blobCache{blobs}.blobPath(l1[1])); err != nil {
		t.Errorf("rm removed a blob (GC is prune's): %v", err)
	}
	gone, err = PruneBlobs(blobs, []*Store{a, b})
	if err != nil || !slices.Equal(gone, []string{l1[1]}) {
		t.Fatalf("prune after rm removed %q, %v; want only %s", gone, err, l1[1])
	}
	for _, d := range l2 {
		if _, err := os.Stat(blobCache{blobs}.blobPath(d)); err != nil {
			t.Errorf("blob %s of the image still in store B was pruned: %v", d, err)
		}
	}
	// A record from before the cache (no "blobs") still reads.
	old := strings.Repeat("0", 64)
	rec := filepath.Join(b.Dir, "sha256", old, "image.json")
	if err := os.MkdirAll(filepath.Dir(rec), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rec, []byte(`{"id":"sha256:`+old+`","source":"x","layers":["sha256:aa"],"size":1,"config":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get("sha256:" + old); err != nil || len(got.Blobs) != 0 || got.Layers[0] != "sha256:aa" {
		t.Errorf("old record: %+v, %v", got, err)
	}
	if gone, err := PruneBlobs(blobs, []*Store{a, b}); err != nil || len(gone) != 0 {
		t.Errorf("prune with an old record removed %q, %v", gone, err)
	}
}
