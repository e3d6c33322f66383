package rootfs

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Stat stats a path inside a root filesystem, resolving symlinks scoped to
// the rootfs so nothing outside it is ever consulted.
func Stat(root, path string) (fs.FileInfo, error) {
	p, err := securejoin.SecureJoin(root, path)
	if err != nil {
		return nil, err
	}
	return os.Stat(p)
}

// Copy copies a root filesystem tree: regular files, directories and
// symlinks with their modes (ownership is kept when the caller may set it).
// Device nodes, sockets and fifos are skipped: a container gets its own /dev.
func Copy(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			if err := os.MkdirAll(target, mode.Perm()|0o700); err != nil {
				return err
			}
			// Sticky and setgid bits need an explicit chmod after mkdir.
			if err := os.Chmod(target, mode.Perm()|mode&(fs.ModeSticky|fs.ModeSetgid)); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := copyFile(path, target, mode, info); err != nil {
				return err
			}
			return nil
		default:
			return nil
		}
		keepOwner(target, info)
		return nil
	})
}

// keepOwner copies ownership when the caller may set it (root building a
// bundle); an unprivileged copy keeps the copier's ids.
func keepOwner(target string, info fs.FileInfo) {
	if st, ok := info.Sys().(*unix.Stat_t); ok {
		_ = os.Lchown(target, int(st.Uid), int(st.Gid))
	}
}

func copyFile(src, dst string, mode fs.FileMode, info fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	// chown clears setuid/setgid, so it comes first; the bits are then kept
	// as in the source image (no_new_privileges still neutralises them).
	keepOwner(dst, info)
	return os.Chmod(dst, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
}
