package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A run resolves its image, then creates its container; prune and rm keep
// the bases of existing containers, but between those two steps the base
// is named by nothing prune can see. A Lease closes that window: the run
// holds a shared flock on the base's image.json from resolving until its
// container exists (in practice, until the clawrun process exits: a
// detached run exits once its container runs, and serve keeps the bases of
// the agents it serves). Prune and rm take the same lock exclusively,
// without waiting, before they list containers and delete: a base whose
// lock they cannot take is being started and is kept.
//
// The lock lives on image.json, not on a separate file, so there is
// nothing to clean up and no lock file can outlive its base. A run that
// waited for the lock while a prune deleted the base holds a lock on an
// unlinked file; it notices (the path no longer names its file) and
// resolves again, pulling the image back.
type Lease struct {
	f *os.File
}

// Release lets prune and rm remove the base again.
func (l *Lease) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// ErrBaseGone is wrapped when a base was removed while being leased.
var ErrBaseGone = errors.New("the base was removed while it was being leased")

// Lease takes the shared lock on img's base. It fails, wrapping
// ErrBaseGone, when the base was removed since img was read.
func (img *Image) Lease() (*Lease, error) {
	p := filepath.Join(img.Dir, "image.json")
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("image %s: %w", img.ID, ErrBaseGone)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: lease: %w", img.ID, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("image %s: lease %s: %w", img.ID, p, err)
	}
	var held, now unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &held); err != nil {
		f.Close()
		return nil, fmt.Errorf("image %s: lease: %w", img.ID, err)
	}
	if err := unix.Stat(p, &now); err != nil || now.Ino != held.Ino || now.Dev != held.Dev {
		f.Close()
		return nil, fmt.Errorf("image %s: %w", img.ID, ErrBaseGone)
	}
	return &Lease{f: f}, nil
}

// ResolveLeased calls resolve (a Store's or runtime.Images' Resolve) and
// leases the base it returns, which the caller holds until its container
// exists. A base removed between resolving and leasing is resolved again
// (a few times: only a prune or rm in a loop keeps removing it).
func ResolveLeased(ref string, resolve func() (*Image, error)) (*Image, *Lease, error) {
	var err error
	for range 3 {
		var img *Image
		if img, err = resolve(); err != nil {
			return nil, nil, err
		}
		var l *Lease
		if l, err = img.Lease(); err == nil {
			return img, l, nil
		}
		if !errors.Is(err, ErrBaseGone) {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("%s: %w three times in a row (is a prune or rm running in a loop?): try again", ref, err)
}

// claim takes id's lock exclusively, without waiting, for removing its
// base. leased is true when a run holds it: the base must stay. A base
// without image.json cannot be leased, so it is not leased.
func (s *Store) claim(id string) (release func(), leased bool, err error) {
	f, err := os.Open(filepath.Join(s.baseDir(id), "image.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("image %s: %w", id, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("image %s: lock: %w", id, err)
	}
	return func() { f.Close() }, false, nil
}

// InUse lists the root filesystems of existing containers. Remove and
// Prune call it only once they hold the bases they may delete, so a
// container created just before is seen and one created after had to
// lease its base first.
type InUse func() ([]string, error)

// Paths is an InUse of a fixed list.
func Paths(paths ...string) InUse {
	return func() ([]string, error) { return paths, nil }
}

// list calls f; nil lists nothing.
func (f InUse) list() ([]string, error) {
	if f == nil {
		return nil, nil
	}
	paths, err := f()
	if err != nil {
		return nil, fmt.Errorf("list the containers using images: %w", err)
	}
	return paths, nil
}
