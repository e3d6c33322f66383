package rootfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Store keeps unpacked images under one directory (DATA/images):
//
//	index.json          references → image ID (and manifest digest)
//	sha256/HEX/         one read-only base per image ID (config digest)
//	    image.json      what was unpacked: layers, config, size
//	    rootfs/         the unpacked root filesystem, shared by every agent
//	tmp/                unpacks in progress; renamed into sha256/ when done
//	lock                serialises changes of the index and the bases
//
// and, shared by the stores of every map, the blob cache (BlobDir) of the
// compressed layers pulled from registries.
//
// A base is keyed by the image ID, the digest of the image's config, which
// names its layers by their uncompressed digests: the same image pulled
// from a registry and loaded from `docker save` shares one base. A base is
// complete or absent: unpacking happens in tmp/ and a failed pull (digest
// mismatch, truncated blob, unsafe entry, size bound) leaves nothing behind.
//
// A store either keeps the image's ownership through one container id map
// (Map set: "mapped" bases, under MappedStoreDir) or leaves every file the
// unpacking user's ("unpacker" bases: in a container with a single-id map
// they all appear owned by root). See Ownership.
type Store struct {
	Dir string
	// Keychain finds registry credentials; nil means authn.DefaultKeychain
	// (~/.docker/config.json, $DOCKER_CONFIG, credential helpers).
	Keychain authn.Keychain
	// Transport for registry requests; nil for the default.
	Transport http.RoundTripper
	// MaxSize and MaxEntries bound one unpack (0: the defaults).
	MaxSize    int64
	MaxEntries int
	// Progress receives pull progress: a live line per layer on a
	// terminal, a line per finished layer otherwise. Nil is silent.
	Progress io.Writer
	// Map, when set, makes the bases this store unpacks keep the image's
	// uids and gids through it (ContainerID: the image's id, HostID: the
	// host id), and is recorded in their image.json. Nil: "unpacker" bases.
	Map *IDMap
	// Chown is the map in the ids of the process that unpacks, when they
	// are not host ids: rootless, the unpack runs in a user namespace
	// holding the subordinate range, where host ids have other numbers.
	// Nil: Map.
	Chown *IDMap
	// RemoveTree removes a base or an abandoned unpack for rm and prune;
	// nil removes it here. Rootless, a mapped base's files belong to
	// subordinate ids, which only a process in a user namespace holding
	// the range can remove.
	RemoveTree func(path string) error
	// Platform is the one taken from an image index (and that an image
	// must be for); nil means linux/<host arch>. See platform.go.
	Platform *v1.Platform
	// BlobDir caches the compressed layer blobs of registry pulls, shared
	// by the stores of every map (DATA/images/blobs; see blobCache). "":
	// layers always come from the registry.
	BlobDir string
}

// MappedStoreDir is where the store of bases mapped through m lives, below
// the "unpacker" store in dir: one store (index, bases) per map, so that
// agents whose maps differ never share a base.
func MappedStoreDir(dir string, m IDMap) string {
	return filepath.Join(dir, "mapped", m.Key())
}

// MappedStoreDirs lists the mapped stores below the store in dir.
func MappedStoreDirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "mapped"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, "mapped", e.Name()))
		}
	}
	return out, nil
}

// OpenStore opens (creating if needed, mode 0700) the store in dir.
func OpenStore(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return &Store{Dir: real}, nil
}

// Image is an unpacked image in the store.
type Image struct {
	imageRecord
	Refs []string `json:"refs"` // canonical references naming it
	Dir  string   `json:"dir"`  // the base: image.json and rootfs/
}

type imageRecord struct {
	ID           string    `json:"id"`                 // sha256 of the config
	Manifest     string    `json:"manifest,omitempty"` // manifest digest; none for docker-archive
	Source       string    `json:"source"`             // the reference it was unpacked from
	Created      time.Time `json:"created,omitzero"`   // from the image config
	Unpacked     time.Time `json:"unpacked"`
	OS           string    `json:"os,omitempty"`
	Architecture string    `json:"architecture,omitempty"`
	Layers       []string  `json:"layers"` // diff IDs, bottom first
	// Blobs are the manifest's compressed layer digests, bottom first,
	// which keep their blobs in the cache from prune (PruneBlobs). Absent
	// for docker-archive and in records from before the cache.
	Blobs   []string    `json:"blobs,omitempty"`
	Size    int64       `json:"size"` // bytes of regular files written
	Devices int         `json:"devices_skipped,omitempty"`
	Config  ImageConfig `json:"config"`
	// Ownership is nil in bases unpacked before it was recorded; they
	// were unpacked the same way (see Image.Ownership).
	Ownership *Ownership `json:"ownership,omitempty"`
}

// OwnedByUnpacker is the ownership mode of a base where every file
// belongs to the host user who unpacked it and the image's uids and gids
// are not applied (see unpacker): what a single-id map can offer, since it
// has no other id to give a file. No container id is assumed when
// unpacking, so such a base fits any container map.
const OwnedByUnpacker = "unpacker"

// Ownership records whose ids the files of a base carry on the host.
type Ownership struct {
	Mode string `json:"mode"` // OwnedByUnpacker or OwnedByMap
	// UID and GID: the host user who unpacked the base ("unpacker"), or
	// the host ids of the image's root ("mapped").
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Map is the container map the image's ids went through ("mapped").
	Map *IDMap `json:"map,omitempty"`
	// Unmapped counts entries whose ids the map lacks: they belong to the
	// image's root (see beyondMapOwner).
	Unmapped int `json:"unmapped,omitempty"`
}

// String reads like an inspect line.
func (o Ownership) String() string {
	if o.Mode == OwnedByMap && o.Map != nil {
		s := fmt.Sprintf("image uids and gids kept through the map %s (image root is host %d:%d)", o.Map, o.UID, o.GID)
		if o.Unmapped > 0 {
			s += fmt.Sprintf("; %d entries had ids beyond the map and belong to the image's root", o.Unmapped)
		}
		return s
	}
	return fmt.Sprintf("image uids and gids not applied: every file belongs to host %d:%d, who unpacked the base", o.UID, o.GID)
}

// Ownership says whose ids the files of the base carry. Bases from before
// the record read their owner from the root directory, which the unpacker
// created.
func (img *Image) Ownership() Ownership {
	if img.imageRecord.Ownership != nil {
		return *img.imageRecord.Ownership
	}
	o := Ownership{Mode: OwnedByUnpacker, UID: -1, GID: -1}
	var st unix.Stat_t
	if err := unix.Lstat(img.Rootfs(), &st); err == nil {
		o.UID, o.GID = int(st.Uid), int(st.Gid)
	}
	return o
}

// Rootfs is the host path of the unpacked root filesystem.
func (img *Image) Rootfs() string { return filepath.Join(img.Dir, "rootfs") }

// Config is how the image says it should run; the caller merges it with
// what the agent file sets.
func (img *Image) Config() ImageConfig { return img.imageRecord.Config }

// ShortID is the first 12 hex digits of the ID, as docker shows it.
func (img *Image) ShortID() string {
	h := strings.TrimPrefix(img.ID, "sha256:")
	return h[:min(12, len(h))]
}

type index struct {
	Version int                   `json:"version"`
	Refs    map[string]indexEntry `json:"refs"`
}

type indexEntry struct {
	ID       string `json:"id"`
	Manifest string `json:"manifest,omitempty"`
}

func (s *Store) keychain() authn.Keychain {
	if s.Keychain != nil {
		return s.Keychain
	}
	return authn.DefaultKeychain
}

func (s *Store) baseDir(id string) string {
	return filepath.Join(s.Dir, "sha256", strings.TrimPrefix(id, "sha256:"))
}

// Pull fetches ref from its source (the registry, the layout, the archive)
// and unpacks it unless its image is already in the store, then records
// ref (and, for a registry tag, the digest it resolved to) in the index.
func (s *Store) Pull(ctx context.Context, ref string) (*Image, error) {
	r, err := ParseImageRef(ref)
	if err != nil {
		return nil, err
	}
	return s.pull(ctx, r)
}

// Resolve returns the image ref names, from the store when it has it and
// pulling otherwise. A registry reference already in the index is used
// without asking the registry (run `clawrun image pull` to refresh a tag);
// local sources are always read again, so a rebuilt layout or archive is
// picked up, and only unpacked when their content changed.
func (s *Store) Resolve(ctx context.Context, ref string) (*Image, error) {
	r, err := ParseImageRef(ref)
	if err != nil {
		return nil, err
	}
	if r.Transport == TransportRegistry {
		if img, err := s.Get(r.String()); err == nil && s.fits(img) {
			return img, nil
		}
	}
	return s.pull(ctx, r)
}

func (s *Store) pull(ctx context.Context, r ImageRef) (*Image, error) {
	if r.pinned() {
		// Content named by digest never changes: no network if we have it.
		if img, err := s.Get(r.String()); err == nil && s.fits(img) {
			return img, nil
		}
	}
	src, err := s.open(ctx, r)
	if err != nil {
		return nil, err
	}
	id, cf, err := src.config()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	if r.pinned() && src.top != r.Name.Identifier() {
		return nil, fmt.Errorf("%s: the registry served manifest %s: %w", r, src.top, ErrDigestMismatch)
	}
	if _, err := s.readRecord(id); err != nil {
		if err := s.unpack(ctx, r, src, id, cf); err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
	}
	refs := []string{r.String()}
	if r.Transport == TransportRegistry && src.manifest != "" && !r.pinned() {
		refs = append(refs, r.Name.Context().Digest(src.manifest).Name())
	}
	if err := s.withLock(func(ix *index) error {
		// The base may have been pruned since we looked.
		if _, err := s.readRecord(id); err != nil {
			return fmt.Errorf("image %s vanished while it was being tagged (a concurrent prune?): pull again", id)
		}
		for _, ref := range refs {
			ix.Refs[ref] = indexEntry{ID: id, Manifest: src.manifest}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return s.Get(id)
}

func (s *Store) unpack(ctx context.Context, r ImageRef, src *source, id string, cf *v1.ConfigFile) (err error) {
	tmp, err := os.MkdirTemp(filepath.Join(s.Dir, "tmp"), "pull-")
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	// The lock tells prune that this unpack is alive.
	lock, err := lockFile(tmp+".lock", unix.LOCK_EX)
	if err != nil {
		os.Remove(tmp)
		return err
	}
	defer func() {
		if err != nil {
			removeTree(tmp)
		}
		os.Remove(tmp + ".lock")
		lock.Close()
	}()
	root := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	u := newUnpacker(root, s.MaxSize, s.MaxEntries)
	own := &Ownership{Mode: OwnedByUnpacker, UID: os.Geteuid(), GID: os.Getegid()}
	if s.Map != nil {
		u.chown = s.Map
		if s.Chown != nil {
			u.chown = s.Chown
		}
		if err := u.own(root, 0, 0); err != nil {
			return err
		}
		own = &Ownership{Mode: OwnedByMap, Map: s.Map}
		own.UID, own.GID, _, _ = s.Map.Owner(0, 0)
	}
	prog := newProgress(s.Progress)
	diffIDs := cf.RootFS.DiffIDs
	var blobs []string
	if src.compressed {
		m, err := src.img.Manifest()
		if err != nil {
			return fmt.Errorf("image manifest: %w", err)
		}
		if len(m.Layers) != len(diffIDs) {
			return fmt.Errorf("the manifest lists %d layers, the config %d: the image is malformed", len(m.Layers), len(diffIDs))
		}
		for i, d := range m.Layers {
			if err := ctx.Err(); err != nil {
				return err
			}
			what := fmt.Sprintf("layer %d/%d (%s)", i+1, len(m.Layers), d.Digest)
			blobs = append(blobs, d.Digest.String())
			l, err := src.img.LayerByDigest(d.Digest)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			var rc io.ReadCloser
			keep := func() {}
			if src.remote && s.BlobDir != "" {
				var cl *cachedLayer
				cl, err = blobCache{s.BlobDir}.layer(d.Digest.String(), d.Size, l.Compressed)
				rc, keep = cl, func() { cl.keep() }
			} else {
				rc, err = l.Compressed()
			}
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			err = applyLayer(u, rc, d.Digest.String(), d.Size, diffIDs[i].String(), what, prog.layer(i, len(m.Layers), d.Digest.String(), d.Size))
			if err == nil {
				keep() // verified: the blob may enter the cache
			}
			rc.Close()
			if err != nil {
				return err
			}
		}
	} else {
		for i, diff := range diffIDs {
			what := fmt.Sprintf("layer %d/%d (%s)", i+1, len(diffIDs), diff)
			l, err := src.img.LayerByDiffID(diff)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			rc, err := l.Uncompressed()
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			err = applyLayer(u, rc, "", -1, diff.String(), what, prog.layer(i, len(diffIDs), diff.String(), -1))
			rc.Close()
			if err != nil {
				return err
			}
		}
	}
	if err := u.finish(); err != nil {
		return err
	}
	own.Unmapped = u.unmapped
	rec := imageRecord{
		ID: id, Manifest: src.manifest, Source: r.String(), Created: cf.Created.Time, Unpacked: time.Now().UTC(),
		OS: cf.OS, Architecture: cf.Architecture, Size: u.written, Devices: u.skipped,
		Ownership: own, Blobs: blobs,
		Config: ImageConfig{
			Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Env: cf.Config.Env,
			WorkingDir: cf.Config.WorkingDir, User: cf.Config.User,
		},
	}
	for _, d := range diffIDs {
		rec.Layers = append(rec.Layers, d.String())
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, "image.json"), b); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return s.withLock(func(*index) error {
		err := os.Rename(tmp, s.baseDir(id))
		if err != nil && (errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY)) {
			// Another pull of the same image finished first.
			removeTree(tmp)
			return nil
		}
		return err
	})
}

// applyLayer verifies and unpacks one layer: the compressed stream against
// the manifest (when it has a digest), the uncompressed one against the
// config's diff ID. Both are checked at EOF, which unpacker.apply reaches.
func applyLayer(u *unpacker, rc io.Reader, digest string, size int64, diffID, what string, p *layerProgress) error {
	in := rc
	var v *verifier
	if digest != "" {
		var err error
		if v, err = newVerifier(rc, digest, size, "the blob"); err != nil {
			return err
		}
		v.onRead = p.add
		in = v
	}
	dr, closeDR, err := decompress(in)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer closeDR()
	dv, err := newVerifier(dr, diffID, -1, "the uncompressed layer")
	if err != nil {
		return err
	}
	if digest == "" {
		dv.onRead = p.add
	}
	if err := u.apply(dv); err != nil {
		if v != nil && !errors.Is(err, ErrUnsafeLayer) && !errors.Is(err, ErrDigestMismatch) {
			// A damaged blob usually shows up first as a gzip or tar
			// error; its digest says what really happened. The read is
			// bounded by the declared size.
			if _, derr := io.Copy(io.Discard, v); errors.Is(derr, ErrDigestMismatch) {
				err = derr
			}
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	p.done()
	return nil
}

func writeFileSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (s *Store) readRecord(id string) (*imageRecord, error) {
	b, err := os.ReadFile(filepath.Join(s.baseDir(id), "image.json"))
	if err != nil {
		return nil, err
	}
	var rec imageRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("image %s: image.json: %w", id, err)
	}
	return &rec, nil
}

func (s *Store) readIndex() (*index, error) {
	ix := &index{Version: 1, Refs: map[string]indexEntry{}}
	b, err := os.ReadFile(filepath.Join(s.Dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return ix, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	if err := json.Unmarshal(b, ix); err != nil {
		return nil, fmt.Errorf("image index %s: %w: remove it and pull the images again", filepath.Join(s.Dir, "index.json"), err)
	}
	if ix.Refs == nil {
		ix.Refs = map[string]indexEntry{}
	}
	return ix, nil
}

// withLock runs f with the store locked and writes the index back when f
// succeeds.
func (s *Store) withLock(f func(*index) error) error {
	l, err := lockFile(filepath.Join(s.Dir, "lock"), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer l.Close()
	ix, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := f(ix); err != nil {
		return err
	}
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, "index.json.tmp")
	if err := writeFileSync(tmp, b); err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	return os.Rename(tmp, filepath.Join(s.Dir, "index.json"))
}

func lockFile(p string, how int) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("image store lock %s: %w", p, err)
	}
	return f, nil
}

// ErrImageNotFound is wrapped when the store has no image by that name.
var ErrImageNotFound = errors.New("no such image")

// Get finds an image in the store, never pulling: by reference (as given
// to Pull, canonicalised: "alpine:3.20" finds
// index.docker.io/library/alpine:3.20), by ID ("sha256:HEX") or by a
// unique prefix of at least 4 hex digits of the ID.
func (s *Store) Get(refOrID string) (*Image, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	id, err := s.lookup(ix, refOrID)
	if err != nil {
		return nil, err
	}
	return s.image(ix, id)
}

func (s *Store) lookup(ix *index, refOrID string) (string, error) {
	if r, err := ParseImageRef(refOrID); err == nil {
		if e, ok := ix.Refs[r.String()]; ok {
			return e.ID, nil
		}
	}
	hexid := strings.TrimPrefix(refOrID, "sha256:")
	if len(hexid) >= 4 && strings.Trim(hexid, "0123456789abcdef") == "" {
		ids, err := s.ids()
		if err != nil {
			return "", err
		}
		var match []string
		for _, id := range ids {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), hexid) {
				match = append(match, id)
			}
		}
		switch len(match) {
		case 1:
			return match[0], nil
		case 0:
		default:
			return "", fmt.Errorf("image ID prefix %q is ambiguous (%s): give more digits", refOrID, strings.Join(match, ", "))
		}
	}
	return "", fmt.Errorf("image %q: %w in %s (see clawrun image ls; pull it with clawrun image pull %s)", refOrID, ErrImageNotFound, s.Dir, refOrID)
}

func (s *Store) ids() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.Dir, "sha256"))
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, "sha256:"+e.Name())
		}
	}
	return ids, nil
}

func (s *Store) image(ix *index, id string) (*Image, error) {
	rec, err := s.readRecord(id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("image %s: %w (the index names it but its base is gone: pull it again)", id, ErrImageNotFound)
		}
		return nil, err
	}
	img := &Image{imageRecord: *rec, Dir: s.baseDir(id)}
	for ref, e := range ix.Refs {
		if e.ID == id {
			img.Refs = append(img.Refs, ref)
		}
	}
	slices.Sort(img.Refs)
	return img, nil
}

// List returns every unpacked image, referenced or not, by ID.
func (s *Store) List() ([]*Image, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, id := range ids {
		img, err := s.image(ix, id)
		if err != nil {
			continue // not a base (a stray directory)
		}
		out = append(out, img)
	}
	return out, nil
}

// Remove removes a reference from the index, or every reference to an
// image given by ID, and then the image's base if no reference is left,
// no container uses it (inUse lists the root filesystems of existing
// containers) and no run holds a Lease on it. It returns the image and
// whether its base was removed.
func (s *Store) Remove(refOrID string, inUse InUse) (*Image, bool, error) {
	var img *Image
	removed := false
	err := s.withLock(func(ix *index) error {
		id, err := s.lookup(ix, refOrID)
		if err != nil {
			return err
		}
		if img, err = s.image(ix, id); err != nil {
			if !errors.Is(err, ErrImageNotFound) {
				return err
			}
			img = &Image{imageRecord: imageRecord{ID: id}, Dir: s.baseDir(id)}
		}
		byRef := false
		if r, err := ParseImageRef(refOrID); err == nil {
			if _, ok := ix.Refs[r.String()]; ok {
				delete(ix.Refs, r.String())
				byRef = true
			}
		}
		if !byRef {
			for ref, e := range ix.Refs {
				if e.ID == id {
					delete(ix.Refs, ref)
				}
			}
		}
		for _, e := range ix.Refs {
			if e.ID == id {
				return nil // still named by another reference
			}
		}
		// Claim the base before listing containers (see Lease).
		release, leased, err := s.claim(id)
		if err != nil {
			return err
		}
		if leased {
			if !byRef {
				return fmt.Errorf("image %s is being started by a clawrun run or serve: remove it when that run has its container (clawrun ps), then remove the container first", id)
			}
			return nil
		}
		defer release()
		paths, err := inUse.list()
		if err != nil {
			return err
		}
		if s.used(id, paths) {
			if !byRef {
				return fmt.Errorf("image %s is used by a container: remove the container first (clawrun ps)", id)
			}
			return nil
		}
		if err := s.removeTree(s.baseDir(id)); err != nil {
			return fmt.Errorf("remove image %s: %w", id, err)
		}
		removed = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return img, removed, nil
}

func (s *Store) removeTree(p string) error {
	if s.RemoveTree != nil {
		return s.RemoveTree(p)
	}
	return removeTree(p)
}

func (s *Store) used(id string, inUse []string) bool {
	base := s.baseDir(id)
	for _, p := range inUse {
		if p == base || strings.HasPrefix(p, base+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// Prune removes every base no reference names, no container uses and no
// run holds a Lease on, and what failed or interrupted pulls left in tmp/.
// It returns the IDs removed.
func (s *Store) Prune(inUse InUse) ([]string, error) {
	var removed []string
	err := s.withLock(func(ix *index) error {
		named := map[string]bool{}
		for ref, e := range ix.Refs {
			if _, err := s.readRecord(e.ID); err != nil {
				delete(ix.Refs, ref) // its base is gone
				continue
			}
			named[e.ID] = true
		}
		ids, err := s.ids()
		if err != nil {
			return err
		}
		// Claim every candidate first and list containers after: a run
		// that created its container before is listed, one that had not
		// yet holds its lease and is skipped here (see Lease).
		var claimed []string
		for _, id := range ids {
			if named[id] {
				continue
			}
			release, leased, err := s.claim(id)
			if err != nil {
				return err
			}
			if leased {
				continue
			}
			defer release()
			claimed = append(claimed, id)
		}
		var paths []string
		if len(claimed) > 0 {
			if paths, err = inUse.list(); err != nil {
				return err
			}
		}
		for _, id := range claimed {
			if s.used(id, paths) {
				continue
			}
			if err := s.removeTree(s.baseDir(id)); err != nil {
				return fmt.Errorf("remove image %s: %w", id, err)
			}
			removed = append(removed, id)
		}
		return s.pruneTmp()
	})
	return removed, err
}

// pruneTmp removes unpacks whose pull no longer holds their lock.
func (s *Store) pruneTmp() error {
	dir := filepath.Join(s.Dir, "tmp")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		l, err := lockFile(p+".lock", unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			continue // a pull in progress
		}
		_ = s.removeTree(p)
		os.Remove(p + ".lock")
		l.Close()
	}
	return nil
}

// Canonical returns the canonical form of a reference as the index keys
// it, or ref itself if it does not parse.
func Canonical(ref string) string {
	r, err := ParseImageRef(ref)
	if err != nil {
		return ref
	}
	return r.String()
}

// Familiar shortens a canonical registry reference the way docker prints
// it: "index.docker.io/library/alpine:3.20" is "alpine:3.20".
func Familiar(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil || strings.Contains(ref, ":/") {
		return ref
	}
	s := r.Context().RepositoryStr()
	if r.Context().RegistryStr() != name.DefaultRegistry {
		s = r.Context().RegistryStr() + "/" + s
	} else {
		s = strings.TrimPrefix(s, "library/")
	}
	switch t := r.(type) {
	case name.Tag:
		return s + ":" + t.TagStr()
	case name.Digest:
		return s + "@" + t.DigestStr()
	}
	return ref
}
