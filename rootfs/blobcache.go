package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// blobCache keeps the compressed layer blobs pulled from registries, by
// digest, for every store of the data dir (Store.BlobDir):
//
//	sha256/HEX   a blob whose content hashed to HEX when it was written
//	tmp/         blobs being fetched, each locked by its pull
//
// The stores keep one base per id map, so an image already unpacked for
// one map is unpacked again for another: the blobs let that unpack read the
// layers from disk instead of the registry. A blob enters the cache only
// once its bytes hashed to its digest with the declared size, and is hashed
// again before every use: a damaged one is removed and fetched again, never
// trusted. Caching is an optimisation: a cache that cannot be written (a
// full disk, a concurrent prune) never fails a pull.
type blobCache struct{ dir string }

// blobPath is where the blob digest lives, or "" for a digest that cannot
// name a file (only sha256 is cached, and only well-formed hex).
func (c blobCache) blobPath(digest string) string {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexd) != 64 || strings.Trim(hexd, "0123456789abcdef") != "" {
		return ""
	}
	return filepath.Join(c.dir, "sha256", hexd)
}

// layer returns the compressed stream of the blob digest: the cached copy
// when it is intact, else fetch's, copied into the cache as it is read.
// The caller calls keep once the layer was applied (its digest checked):
// only then does a fetched copy land in the cache. Close drops a copy that
// was not kept.
func (c blobCache) layer(digest string, size int64, fetch func() (io.ReadCloser, error)) (*cachedLayer, error) {
	p := c.blobPath(digest)
	if p == "" {
		rc, err := fetch()
		if err != nil {
			return nil, err
		}
		return &cachedLayer{ReadCloser: rc}, nil
	}
	if f := c.intact(p, digest, size); f != nil {
		return &cachedLayer{ReadCloser: f}, nil
	}
	rc, err := fetch()
	if err != nil {
		return nil, err
	}
	l := &cachedLayer{ReadCloser: rc, path: p, digest: digest, size: size}
	if err := c.mkdirs(); err == nil {
		if f, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), "blob-"); err == nil {
			// The lock tells PruneBlobs the copy is alive.
			if unix.Flock(int(f.Fd()), unix.LOCK_EX) == nil {
				l.tmp, l.h = f, sha256.New()
			} else {
				f.Close()
				os.Remove(f.Name())
			}
		}
	}
	return l, nil
}

func (c blobCache) mkdirs() error {
	for _, d := range []string{c.dir, filepath.Join(c.dir, "sha256"), filepath.Join(c.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// intact opens the cached blob p if its content hashes to digest with the
// declared size, and removes it if it does not (a disk error, a write
// from outside): the unpack would refuse it anyway, halfway through a
// layer, where fetching again is no longer possible.
func (c blobCache) intact(p, digest string, size int64) *os.File {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	v, err := newVerifier(f, digest, size, "cached blob "+p)
	if err == nil {
		_, err = io.Copy(io.Discard, v)
	}
	if err == nil {
		if _, err = f.Seek(0, io.SeekStart); err == nil {
			return f
		}
	}
	f.Close()
	if errors.Is(err, ErrDigestMismatch) {
		os.Remove(p)
	}
	return nil
}

// cachedLayer is a layer's compressed stream, from the cache or from the
// registry with a copy (tmp) being written as it is read.
type cachedLayer struct {
	io.ReadCloser
	path, digest string
	size         int64
	tmp          *os.File // nil: nothing to cache
	h            hash.Hash
	n            int64
}

func (l *cachedLayer) Read(p []byte) (int, error) {
	n, err := l.ReadCloser.Read(p)
	if l.tmp != nil && n > 0 {
		if _, werr := l.tmp.Write(p[:n]); werr != nil {
			l.drop() // the cache is best effort; the pull goes on
		} else {
			l.h.Write(p[:n])
			l.n += int64(n)
		}
	}
	return n, err
}

// keep moves the copy into the cache if it is the whole blob: the bytes
// the unpacker read, hashed here again so that no path that skipped its
// check (an early return, a reader that stopped short) can cache them.
func (l *cachedLayer) keep() {
	if l.tmp == nil {
		return
	}
	if l.n != l.size || "sha256:"+hex.EncodeToString(l.h.Sum(nil)) != l.digest {
		l.drop()
		return
	}
	if l.tmp.Sync() != nil || l.tmp.Chmod(0o600) != nil || os.Rename(l.tmp.Name(), l.path) != nil {
		l.drop()
		return
	}
	l.tmp.Close()
	l.tmp = nil
}

func (l *cachedLayer) drop() {
	if l.tmp != nil {
		os.Remove(l.tmp.Name())
		l.tmp.Close()
		l.tmp = nil
	}
}

// Close closes the stream and drops a copy keep did not take.
func (l *cachedLayer) Close() error {
	l.drop()
	return l.ReadCloser.Close()
}

// PruneBlobs removes from the blob cache in dir (Store.BlobDir) every blob
// that no image of the stores lists among its layers, and the copies of
// fetches no pull holds any more. It returns the digests removed. A pull
// that fetches while it runs may lose its blobs before its base is
// recorded: they are fetched again when next needed, nothing breaks.
func PruneBlobs(dir string, stores []*Store) ([]string, error) {
	listed := map[string]bool{}
	for _, s := range stores {
		ids, err := s.ids()
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			rec, err := s.readRecord(id)
			if err != nil {
				continue // not a base, or one being removed
			}
			for _, b := range rec.Blobs {
				listed[b] = true
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "sha256"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blob cache: %w", err)
	}
	var removed []string
	for _, e := range entries {
		digest := "sha256:" + e.Name()
		if listed[digest] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, "sha256", e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("blob cache: %w", err)
		}
		removed = append(removed, digest)
	}
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, e := range tmps {
		p := filepath.Join(dir, "tmp", e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p) // its pull is gone
		}
		f.Close()
	}
	return removed, nil
}
