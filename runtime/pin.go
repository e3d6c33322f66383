package runtime

import (
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// A grant is checked by policy (its host path resolved, no symlink left in
// it) and mounted later by libcontainer, by path. An agent holding a
// read-write grant above that path could swap a directory for a symlink in
// between and have another container mount whatever the link points to
// (the CVE-2021-30465 class). clawrun closes that gap in two steps:
//
//  1. pinGrants opens every bind source again, refusing any symlink
//     (openat2 RESOLVE_NO_SYMLINKS), and remembers the object it found;
//  2. after libcontainer has set up the container but before the agent's
//     process is released (Start, then Exec), verifyGrants opens each mount
//     point inside the container and checks it is that same object.
//
// A mismatch destroys the container before any agent code runs.

type pinnedGrant struct {
	source, dest string
	dev, ino     uint64
}

func pinGrants(mounts []*configs.Mount) ([]pinnedGrant, error) {
	var pins []pinnedGrant
	for _, m := range mounts {
		if !m.IsBind() {
			continue
		}
		fd, err := unix.Openat2(unix.AT_FDCWD, m.Source, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			if errors.Is(err, unix.ELOOP) {
				return nil, fmt.Errorf("grant %s -> %s: a symlink appeared in the host path after it was checked (something rewrote it, maybe an agent with a read-write grant above it); refusing to mount it", m.Source, m.Destination)
			}
			return nil, fmt.Errorf("grant %s -> %s: open host path: %w", m.Source, m.Destination, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("grant %s: %w", m.Source, err)
		}
		pins = append(pins, pinnedGrant{source: m.Source, dest: m.Destination, dev: st.Dev, ino: st.Ino})
	}
	return pins, nil
}

// verifyGrants checks, through the container's own root, that each grant's
// mount point is the object pinned before the container was created.
func verifyGrants(initPid int, pins []pinnedGrant) error {
	if len(pins) == 0 {
		return nil
	}
	root, err := os.OpenFile(fmt.Sprintf("/proc/%d/root", initPid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("verify grants: open container root: %w", err)
	}
	defer root.Close()
	for _, p := range pins {
		fd, err := unix.Openat2(int(root.Fd()), p.dest, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return fmt.Errorf("verify grant %s: open in container: %w", p.dest, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("verify grant %s: %w", p.dest, err)
		}
		if st.Dev != p.dev || st.Ino != p.ino {
			return fmt.Errorf("grant %s -> %s: the mounted directory is not the one that was checked (the host path changed while the container started, maybe an agent swapped in a symlink); refusing to start", p.source, p.dest)
		}
	}
	return nil
}
