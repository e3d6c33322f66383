package rootfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// testLayout writes testImage as an OCI layout and returns its reference.
func testLayout(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(testImage(t)); err != nil {
		t.Fatal(err)
	}
	return "oci-layout:" + dir
}

// The prune-vs-start race, step by step without timing: a run that has
// resolved its image holds a lease until its container exists; prune and
// rm keep a leased base, and remove it once the lease is gone. The
// container list is asked for only after the bases are claimed.
func TestLeaseKeepsBaseFromPruneAndRm(t *testing.T) {
	s, ref := newStore(t), testLayout(t)
	img, lease, err := ResolveLeased(ref, func() (*Image, error) { return s.Resolve(context.Background(), ref) })
	if err != nil {
		t.Fatal(err)
	}

	// The last reference goes while the run is between resolving and
	// creating its container: rm untags but keeps the base; rm by ID
	// says why it refuses; prune keeps it and never needs the list.
	if _, removed, err := s.Remove(ref, nil); err != nil || removed {
		t.Fatalf("rm %s while leased: removed %v, %v", ref, removed, err)
	}
	if _, _, err := s.Remove(img.ID, nil); err == nil || !strings.Contains(err.Error(), "being started") {
		t.Errorf("rm by ID of a leased base: %v", err)
	}
	asked := 0
	count := func() ([]string, error) { asked++; return nil, nil }
	if gone, err := s.Prune(count); err != nil || len(gone) != 0 {
		t.Fatalf("prune while leased: removed %v, %v", gone, err)
	}
	if asked != 0 {
		t.Errorf("prune listed containers %d times with nothing it could remove", asked)
	}
	if _, err := os.Stat(filepath.Join(img.Rootfs(), "etc/motd")); err != nil {
		t.Fatalf("the leased base lost its files: %v", err)
	}

	// The run created its container and released the lease: the container
	// list, asked for after claiming, now keeps the base.
	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.Prune(Paths(img.Rootfs())); err != nil || len(gone) != 0 {
		t.Fatalf("prune with the container listed: removed %v, %v", gone, err)
	}
	// The container went too: prune removes the base.
	if gone, err := s.Prune(count); err != nil || !slices.Equal(gone, []string{img.ID}) {
		t.Fatalf("prune after release: removed %v, %v", gone, err)
	}
	if asked != 1 {
		t.Errorf("prune listed containers %d times, want once", asked)
	}
	if _, err := os.Stat(img.Dir); err == nil {
		t.Error("the base is still there")
	}
}

// A lease taken on a base removed since it was resolved fails, and
// ResolveLeased resolves again (here: unpacks the layout again).
func TestLeaseOfRemovedBase(t *testing.T) {
	s, ref := newStore(t), testLayout(t)
	img, err := s.Resolve(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Remove(img.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := img.Lease(); !errors.Is(err, ErrBaseGone) {
		t.Fatalf("lease of a removed base: %v", err)
	}
	// The first resolve hands back the stale image (a prune won the race
	// after it); the second finds the base gone and pulls again.
	calls := 0
	got, l, err := ResolveLeased(ref, func() (*Image, error) {
		calls++
		if calls == 1 {
			return img, nil
		}
		return s.Resolve(context.Background(), ref)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if calls != 2 || got.ID != img.ID {
		t.Errorf("resolved %d times, image %s", calls, got.ID)
	}
	if _, err := os.Stat(filepath.Join(got.Rootfs(), "etc/motd")); err != nil {
		t.Errorf("the base was not unpacked again: %v", err)
	}
}
