package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/internal/units"
)

// Bounds of an unpack. A layer is a compressed stream chosen by whoever
// built the image: a few kilobytes of gzip can expand to terabytes, or to
// millions of empty files, so both are bounded.
const (
	// DefaultMaxUnpackSize bounds the bytes of uncompressed layer streams
	// (file contents, tar headers and padding) of one image.
	DefaultMaxUnpackSize int64 = 8 << 30
	// DefaultMaxEntries bounds the tar entries of one image.
	DefaultMaxEntries = 2_000_000
)

// Whiteout markers of the OCI image layer format: ".wh.NAME" deletes NAME
// of the layers below, ".wh..wh..opq" hides everything a lower layer put in
// its directory.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// ErrUnsafeLayer is wrapped by every refusal of a layer entry that would
// write outside the root filesystem (or through a symlink) or exceed a bound.
var ErrUnsafeLayer = errors.New("unsafe image layer")

// unpacker applies the layers of one image, in order, to an empty directory
// that nobody else writes to (a private temporary directory), so a check
// made with lstat still holds when the entry is written.
//
// What it does with each entry, and why:
//   - names are cleaned and must stay below the root: "..", absolute names
//     and names whose parent is a symlink are refused, never resolved. An
//     in-root symlink could be followed safely, but no image builder emits
//     such entries, and refusing keeps the applier simple to audit.
//   - hardlinks must name an earlier regular file, fifo or symlink inside
//     the root, found the same way; a link to a directory is refused.
//   - symlinks are created as they are, whatever they point at: they are
//     only ever resolved inside the container, never by the unpacker.
//   - device nodes are skipped (the container gets its own /dev); fifos
//     are created.
//   - files are owned by the unpacking user (an "unpacker" base), or, with
//     an id map (a "mapped" base), by the id the map gives the entry's uid
//     and gid: the map is a container's, whose ids are the invoking user
//     and its subordinate range, so an image id never becomes host
//     ownership of another real user (see Store.Map). Directories the
//     stream omits, and the root, belong to the image's root. setuid and setgid bits of non-directories are
//     dropped: every agent runs with no_new_privileges, where they do
//     nothing, and a root-owned setuid file in the data dir would otherwise
//     be a real setuid-root program on the host. Extended attributes
//     (file capabilities among them) are not applied for the same reason.
//   - modes of directories are applied at the end, so that a directory the
//     image makes read-only can still be filled by later entries.
type unpacker struct {
	root       string
	maxSize    int64 // remaining bytes of uncompressed stream
	maxEntries int   // remaining entries
	limitSize  int64 // the configured bounds, for messages
	limitCount int
	dirs       map[string]dirMeta
	layer      map[string]bool // paths written by the current layer
	skipped    int             // device nodes not created
	written    int64           // bytes of regular files written
	chown      *IDMap          // nil: files stay the unpacking user's
	unmapped   int             // entries whose ids the map lacks (now the image root's)
}

type dirMeta struct {
	mode  fs.FileMode
	mtime time.Time
}

func newUnpacker(root string, maxSize int64, maxEntries int) *unpacker {
	if maxSize <= 0 {
		maxSize = DefaultMaxUnpackSize
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	return &unpacker{root: root, maxSize: maxSize, limitSize: maxSize, maxEntries: maxEntries, limitCount: maxEntries, dirs: map[string]dirMeta{}}
}

// boundedReader fails once more than the unpacker's remaining budget has
// been read, whatever the tar headers claim.
type boundedReader struct {
	r io.Reader
	u *unpacker
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.u.maxSize <= 0 {
		return 0, b.u.tooBig()
	}
	if int64(len(p)) > b.u.maxSize {
		p = p[:b.u.maxSize]
	}
	n, err := b.r.Read(p)
	b.u.maxSize -= int64(n)
	return n, err
}

func (u *unpacker) tooBig() error {
	return fmt.Errorf("image unpacks to more than %s (a decompression bomb, or a very large image): %w; raise the bound (clawrun image pull --max-size) if the image is really that big", formatBytes(u.limitSize), ErrUnsafeLayer)
}

// apply unpacks one uncompressed layer stream, reading it to its end (past
// the tar trailer) so that a reader verifying a digest at EOF gets to.
func (u *unpacker) apply(r io.Reader) error {
	u.layer = map[string]bool{}
	br := &boundedReader{r: r, u: u}
	tr := tar.NewReader(br)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if _, err := io.Copy(io.Discard, br); err != nil {
				if u.maxSize <= 0 {
					return u.tooBig()
				}
				return fmt.Errorf("reading layer: %w", err)
			}
			return nil
		}
		if err != nil {
			if u.maxSize <= 0 {
				return u.tooBig()
			}
			return fmt.Errorf("reading layer: %w", err)
		}
		u.maxEntries--
		if u.maxEntries < 0 {
			return fmt.Errorf("image has more than %d entries (a flood of files?): %w", u.limitCount, ErrUnsafeLayer)
		}
		if err := u.entry(hdr, tr); err != nil {
			if u.maxSize <= 0 {
				return u.tooBig()
			}
			return err
		}
	}
}

// clean turns a tar name into a path relative to the root, or refuses it.
func clean(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.ContainsRune(name, 0) {
		return "", errors.New("name contains a NUL byte")
	}
	if path.IsAbs(name) {
		return "", errors.New("absolute name")
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", errors.New("name contains \"..\"")
		}
	}
	p := path.Clean(name)
	if p == "." {
		return ".", nil
	}
	return p, nil
}

// parent checks that every directory above rel exists as a real directory,
// never a symlink, and returns the host path of rel. Missing directories
// are created when create is set, and reported as fs.ErrNotExist otherwise.
func (u *unpacker) parent(rel string, create bool) (string, error) {
	dir := path.Dir(rel)
	cur := u.root
	if dir != "." {
		for _, c := range strings.Split(dir, "/") {
			cur = filepath.Join(cur, c)
			fi, err := os.Lstat(cur)
			switch {
			case errors.Is(err, fs.ErrNotExist) && !create:
				return "", err
			case errors.Is(err, fs.ErrNotExist):
				// Tar streams may omit parent directories; make them as a
				// layer tool would (0755) unless an entry says otherwise.
				if err := os.Mkdir(cur, 0o755); err != nil {
					return "", err
				}
				if err := os.Chmod(cur, 0o755); err != nil {
					return "", err
				}
				if err := u.own(cur, 0, 0); err != nil {
					return "", err
				}
				u.layer[cur] = true
				continue
			case err != nil:
				return "", err
			case fi.Mode()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(cur)
				return "", fmt.Errorf("its parent /%s is a symlink (to %q): writing through symlinks is refused", u.rel(cur), target)
			case !fi.IsDir():
				return "", fmt.Errorf("its parent /%s is not a directory", u.rel(cur))
			}
		}
	}
	return filepath.Join(u.root, rel), nil
}

func (u *unpacker) rel(host string) string {
	r, _ := filepath.Rel(u.root, host)
	return filepath.ToSlash(r)
}

func (u *unpacker) entry(hdr *tar.Header, tr io.Reader) error {
	refuse := func(why string, a ...any) error {
		return fmt.Errorf("tar entry %q refused: %s: %w", hdr.Name, fmt.Sprintf(why, a...), ErrUnsafeLayer)
	}
	rel, err := clean(hdr.Name)
	if err != nil {
		return refuse("%v", err)
	}
	if rel == "." {
		// The root itself: its mode stays ours (0755), so every mapped id
		// can reach the tree.
		return nil
	}
	base := path.Base(rel)

	if strings.HasPrefix(base, whiteoutPrefix) {
		host, err := u.parent(rel, false)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nothing below to hide
		}
		if err != nil {
			return refuse("%v", err)
		}
		dir := filepath.Dir(host)
		if base == whiteoutOpaque {
			return u.opaque(dir)
		}
		name := strings.TrimPrefix(base, whiteoutPrefix)
		if name == "" || name == "." || name == ".." {
			return refuse("invalid whiteout")
		}
		if err := u.remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("whiteout %q: %w", hdr.Name, err)
		}
		return nil
	}

	host, err := u.parent(rel, true)
	if err != nil {
		return refuse("%v", err)
	}
	mode := fs.FileMode(hdr.Mode).Perm()

	switch hdr.Typeflag {
	case tar.TypeDir:
		fi, err := os.Lstat(host)
		if err != nil || !fi.IsDir() {
			if err := u.replace(host); err != nil {
				return err
			}
			if err := os.Mkdir(host, 0o700); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		}
		if hdr.Mode&unix.S_ISGID != 0 {
			mode |= fs.ModeSetgid
		}
		if hdr.Mode&unix.S_ISVTX != 0 {
			mode |= fs.ModeSticky
		}
		if err := u.own(host, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		u.dirs[host] = dirMeta{mode: mode, mtime: hdr.ModTime}
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size < 0 || hdr.Size > u.maxSize {
			return u.tooBig()
		}
		if err := u.replace(host); err != nil {
			return err
		}
		if err := writeEntry(host, tr, hdr.Size); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		u.written += hdr.Size
		// Before the chmod: a chown may clear mode bits.
		if err := u.own(host, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		// Sticky on a file means nothing on Linux; setuid and setgid are
		// dropped (see unpacker).
		if err := os.Chmod(host, mode); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		setTimes(host, hdr.ModTime)
	case tar.TypeSymlink:
		if strings.ContainsRune(hdr.Linkname, 0) || hdr.Linkname == "" {
			return refuse("invalid symlink target")
		}
		if err := u.replace(host); err != nil {
			return err
		}
		if err := os.Symlink(hdr.Linkname, host); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		if err := u.own(host, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		setTimes(host, hdr.ModTime)
	case tar.TypeLink:
		trel, err := clean(hdr.Linkname)
		if err != nil || trel == "." {
			return refuse("hardlink to %q leaves the image", hdr.Linkname)
		}
		target, err := u.parent(trel, false)
		if errors.Is(err, fs.ErrNotExist) {
			return refuse("hardlink target %q does not exist in the image", hdr.Linkname)
		}
		if err != nil {
			return refuse("hardlink target %q: %v", hdr.Linkname, err)
		}
		fi, err := os.Lstat(target)
		if err != nil {
			return refuse("hardlink target %q does not exist in the image", hdr.Linkname)
		}
		if fi.IsDir() {
			return refuse("hardlink to the directory %q", hdr.Linkname)
		}
		if target == host {
			return nil
		}
		if err := u.replace(host); err != nil {
			return err
		}
		if err := os.Link(target, host); err != nil {
			return fmt.Errorf("tar entry %q: hardlink to %q: %w", hdr.Name, hdr.Linkname, err)
		}
	case tar.TypeFifo:
		if err := u.replace(host); err != nil {
			return err
		}
		if err := unix.Mkfifo(host, uint32(mode)); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		if err := u.own(host, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock:
		u.skipped++
		return nil
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return refuse("unsupported entry type %q", string(hdr.Typeflag))
	}
	u.layer[host] = true
	return nil
}

// own gives host the owner the map gives the image's uid:gid; without a
// map (an "unpacker" base) it leaves the unpacking user's ids.
func (u *unpacker) own(host string, uid, gid int) error {
	if u.chown == nil {
		return nil
	}
	hu, hg, unmapped, err := u.chown.Owner(uid, gid)
	if err != nil {
		return fmt.Errorf("/%s: %w", u.rel(host), err)
	}
	if unmapped {
		u.unmapped++
	}
	if err := os.Lchown(host, hu, hg); err != nil {
		return fmt.Errorf("/%s: chown to %d:%d (image %d:%d): %w", u.rel(host), hu, hg, uid, gid, err)
	}
	return nil
}

// replace removes whatever a lower layer (or an earlier entry) left at host.
// An entry replaces a directory only if it is not one itself.
func (u *unpacker) replace(host string) error {
	fi, err := os.Lstat(host)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return u.remove(host)
	}
	return os.Remove(host)
}

// remove removes the tree at p and forgets the modes of its directories.
func (u *unpacker) remove(p string) error {
	for d := range u.dirs {
		if d == p || strings.HasPrefix(d, p+"/") {
			delete(u.dirs, d)
		}
	}
	return removeTree(p)
}

// opaque removes from dir everything that lower layers put there.
func (u *unpacker) opaque(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("opaque whiteout in /%s: %w", u.rel(dir), err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if u.layer[p] {
			continue
		}
		if err := u.remove(p); err != nil {
			return fmt.Errorf("opaque whiteout in /%s: %w", u.rel(dir), err)
		}
	}
	return nil
}

// finish applies the directory modes and times, deepest first so that a
// parent's mode never blocks a child's chmod.
func (u *unpacker) finish() error {
	dirs := make([]string, 0, len(u.dirs))
	for d := range u.dirs {
		dirs = append(dirs, d)
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, d := range dirs {
		m := u.dirs[d]
		if err := os.Chmod(d, m.mode); err != nil {
			return fmt.Errorf("directory /%s: %w", u.rel(d), err)
		}
		setTimes(d, m.mtime)
	}
	return nil
}

func writeEntry(host string, r io.Reader, size int64) (err error) {
	f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	n, err := io.Copy(f, io.LimitReader(r, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("truncated: %d of %d bytes", n, size)
	}
	return nil
}

func setTimes(host string, t time.Time) {
	if t.IsZero() {
		return
	}
	ts := unix.NsecToTimespec(t.UnixNano())
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, host, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// removeTree removes a tree that may hold directories without write or
// search permission for their owner (images have 0555 and 0700 ones).
func removeTree(p string) error {
	err := os.RemoveAll(p)
	if err == nil {
		return nil
	}
	// WalkDir calls us for a directory before reading it, so the chmod
	// comes first, top down.
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// formatBytes is a size in prose ("8.0 GiB") for progress and messages.
func formatBytes(n int64) string { return units.Bytes(uint64(max(n, 0)), " ") }
