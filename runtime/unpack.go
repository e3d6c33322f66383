package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
)

// Images is the image store as agents use it: the store in Dir holds
// "unpacker" bases (every file the unpacking user's: what single-id maps
// run), and one store below it per container id map holds "mapped" bases,
// whose files keep the image's uids and gids through that map (see
// rootfs.MappedStoreDir). An agent runs from the store of its identity's
// map, so a base is only ever used under the map it was made for.
//
// Rootless, a mapped base's files belong to subordinate ids, which the user
// can neither create nor remove: unpacking into a mapped store, and
// deleting a base or an abandoned unpack from it, run in a re-executed
// clawrun (ImageStoreCommand) inside a user namespace holding the range,
// mapped like a rootless run's outer namespace (nested.go). Everything
// else (the index, locks, leases) stays in the calling process.
type Images struct {
	Dir      string // DATA/images
	Host     Host
	Progress io.Writer // pull progress; rootless mapped pulls write it to stderr
	MaxSize  int64     // 0: rootfs.DefaultMaxUnpackSize
	// Platform is taken from image indexes; nil: linux/<host arch>.
	Platform *v1.Platform
}

// ImageStoreCommand is argv[1] of a clawrun process re-executed to work on
// a mapped image store inside a user namespace holding the subordinate
// range. main must call ServeImageStore for it before anything else.
const ImageStoreCommand = "__image-store"

// DefaultImageMap is the map of an agent that sets neither user nor idmap:
// what `clawrun image pull` unpacks for.
func (im *Images) DefaultImageMap() *rootfs.IDMap {
	id, err := ResolveIdentity(&policy.Plan{}, im.Host)
	if err != nil {
		return nil
	}
	return id.ImageMap()
}

// open opens the store of bases mapped through m (nil: unpacker bases).
func (im *Images) open(m *rootfs.IDMap) (*rootfs.Store, error) {
	dir := im.Dir
	if m != nil {
		dir = rootfs.MappedStoreDir(im.Dir, *m)
	}
	st, err := rootfs.OpenStore(dir)
	if err != nil {
		return nil, err
	}
	if m != nil {
		// The map is recorded next to its store, so that ls, rm and prune
		// find and open it without the identity that made it.
		if err := writeStoreMap(dir, *m); err != nil {
			return nil, err
		}
	}
	st.Progress, st.MaxSize, st.Map, st.Platform = im.Progress, im.MaxSize, m, im.Platform
	// One blob cache for every map: a registry image unpacked for one map
	// is not fetched again for another.
	st.BlobDir = filepath.Join(im.Dir, "blobs")
	if m != nil && im.Host.Rootless() {
		// In the user namespace the unpack runs in, host ids have their
		// outer-namespace numbers (0 = the user, 1.. = the range).
		subU, _ := firstRange(im.Host.SubUIDs)
		subG, _ := firstRange(im.Host.SubGIDs)
		st.Chown = &rootfs.IDMap{UIDs: toOuter(m.UIDs, im.Host.UID, subU), GIDs: toOuter(m.GIDs, im.Host.GID, subG)}
		st.RemoveTree = func(p string) error {
			return removeInUserns(im.Host, st.Dir, p)
		}
	}
	return st, nil
}

// stores opens every store: the unpacker one first, then each mapped one.
func (im *Images) stores() ([]*rootfs.Store, error) {
	st, err := im.open(nil)
	if err != nil {
		return nil, err
	}
	out := []*rootfs.Store{st}
	dirs, err := rootfs.MappedStoreDirs(im.Dir)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		m, err := storeMap(d)
		if err != nil {
			return nil, err
		}
		if rootfs.MappedStoreDir(im.Dir, *m) != d {
			return nil, fmt.Errorf("image store %s: its map record %s.json names another map: remove both and pull the images again", d, d)
		}
		mst, err := im.open(m)
		if err != nil {
			return nil, err
		}
		out = append(out, mst)
	}
	return out, nil
}

func writeStoreMap(dir string, m rootfs.IDMap) error {
	rec := dir + ".json"
	if _, err := os.Stat(rec); err == nil {
		return nil
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := rec + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	return os.Rename(tmp, rec)
}

// storeMap reads which map a mapped store is for from its record.
func storeMap(dir string) (*rootfs.IDMap, error) {
	b, err := os.ReadFile(dir + ".json")
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w (remove the directory and pull the images again)", dir, err)
	}
	var m rootfs.IDMap
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("image store %s.json: %w", dir, err)
	}
	return &m, nil
}

// Pull fetches and unpacks ref into the store for m (see Store.Pull).
func (im *Images) Pull(ctx context.Context, ref string, m *rootfs.IDMap) (*rootfs.Image, error) {
	return im.fetch(ctx, "pull", ref, m)
}

// Resolve finds or pulls ref in the store for m (see Store.Resolve).
func (im *Images) Resolve(ctx context.Context, ref string, m *rootfs.IDMap) (*rootfs.Image, error) {
	return im.fetch(ctx, "resolve", ref, m)
}

func (im *Images) fetch(ctx context.Context, op, ref string, m *rootfs.IDMap) (*rootfs.Image, error) {
	st, err := im.open(m)
	if err != nil {
		return nil, err
	}
	res, err := im.do(ctx, st, imageRequest{Op: op, Ref: ref})
	if err != nil {
		return nil, err
	}
	return res.Image, nil
}

// Get finds an image without pulling, in the store for m first, then in
// any other store (see Store.Get).
func (im *Images) Get(refOrID string, m *rootfs.IDMap) (*rootfs.Image, error) {
	first, err := im.open(m)
	if err != nil {
		return nil, err
	}
	img, ferr := first.Get(refOrID)
	if ferr == nil || !errors.Is(ferr, rootfs.ErrImageNotFound) {
		return img, ferr
	}
	all, err := im.stores()
	if err != nil {
		return nil, err
	}
	for _, st := range all {
		if st.Dir == first.Dir {
			continue
		}
		if img, err := st.Get(refOrID); err == nil {
			return img, nil
		}
	}
	return nil, ferr
}

// List returns the images of every store: an image unpacked under two maps
// is listed once per base, each with its ownership.
func (im *Images) List() ([]*rootfs.Image, error) {
	all, err := im.stores()
	if err != nil {
		return nil, err
	}
	var out []*rootfs.Image
	for _, st := range all {
		imgs, err := st.List()
		if err != nil {
			return nil, err
		}
		out = append(out, imgs...)
	}
	return out, nil
}

// Untag removes the reference ref from the store for m only (see
// Store.Remove): its base goes unless a run or container holds it, and is
// left to prune otherwise.
func (im *Images) Untag(ref string, m *rootfs.IDMap, inUse rootfs.InUse) (*rootfs.Image, bool, error) {
	st, err := im.open(m)
	if err != nil {
		return nil, false, err
	}
	return st.Remove(ref, inUse)
}

// Remove removes refOrID from every store that has it (see Store.Remove):
// the image and whether any of its bases went.
func (im *Images) Remove(refOrID string, inUse rootfs.InUse) (*rootfs.Image, bool, error) {
	all, err := im.stores()
	if err != nil {
		return nil, false, err
	}
	var img *rootfs.Image
	removed := false
	var notFound error
	var errs []error
	for _, st := range all {
		rimg, rm, err := st.Remove(refOrID, inUse)
		switch {
		case errors.Is(err, rootfs.ErrImageNotFound) && img == nil:
			if notFound == nil {
				notFound = err
			}
		case errors.Is(err, rootfs.ErrImageNotFound):
		case err != nil:
			errs = append(errs, err)
		default:
			if img == nil {
				img = rimg
			}
			removed = removed || rm
		}
	}
	if img == nil && len(errs) == 0 {
		return nil, false, notFound
	}
	return img, removed, errors.Join(errs...)
}

// Prune prunes every store (see Store.Prune) and returns the IDs removed.
func (im *Images) Prune(inUse rootfs.InUse) ([]string, error) {
	all, err := im.stores()
	if err != nil {
		return nil, err
	}
	var ids []string
	var errs []error
	for _, st := range all {
		removed, err := st.Prune(inUse)
		ids = append(ids, removed...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Blobs go after the bases, so those just pruned no longer keep theirs.
	if _, err := rootfs.PruneBlobs(all[0].BlobDir, all); err != nil {
		errs = append(errs, err)
	}
	return ids, errors.Join(errs...)
}

// imageRequest is one operation on a store, done in this process or sent
// to ServeImageStore on fd 3.
type imageRequest struct {
	Op       string        `json:"op"` // pull, resolve, rmtree
	Ref      string        `json:"ref,omitempty"`
	Path     string        `json:"path,omitempty"` // rmtree: below Dir
	Dir      string        `json:"dir"`
	Map      *rootfs.IDMap `json:"map,omitempty"`
	Chown    *rootfs.IDMap `json:"chown,omitempty"`
	MaxSize  int64         `json:"max_size,omitempty"`
	Platform *v1.Platform  `json:"platform,omitempty"`
	Progress bool          `json:"progress,omitempty"`
	BlobDir  string        `json:"blob_dir,omitempty"`
}

// imageResult is what the operation gave, sent back on fd 4.
type imageResult struct {
	Image *rootfs.Image `json:"image,omitempty"`
	Error string        `json:"error,omitempty"`
	Kind  string        `json:"kind,omitempty"`
}

func (req imageRequest) apply(ctx context.Context, st *rootfs.Store) (res imageResult, err error) {
	switch req.Op {
	case "pull":
		res.Image, err = st.Pull(ctx, req.Ref)
	case "resolve":
		res.Image, err = st.Resolve(ctx, req.Ref)
	case "rmtree":
		err = req.rmtree(st.Dir)
	default:
		err = fmt.Errorf("image store: unknown operation %q", req.Op)
	}
	return res, err
}

// rmtree removes req.Path, which must lie below dir: only ever a base or
// an unpack of a store, or a container's writable root (removeInUserns).
// The request comes from our own parent, but a path outside would be a
// host file the range's ids could reach.
func (req imageRequest) rmtree(dir string) error {
	rel, err := filepath.Rel(dir, req.Path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		return fmt.Errorf("image store: refusing to remove %s, outside %s", req.Path, dir)
	}
	return rootfs.RemoveTree(req.Path)
}

// removeInUserns removes the tree p below dir from a user namespace
// holding the subordinate range, where files of the range's ids can be
// removed (see Images.inUserns).
func removeInUserns(h Host, dir, p string) error {
	_, err := (&Images{Host: h}).inUserns(imageRequest{Op: "rmtree", Dir: dir, Path: p})
	return err
}

// do runs req on st: here, or rootless for a mapped store in a user
// namespace holding the subordinate range.
func (im *Images) do(ctx context.Context, st *rootfs.Store, req imageRequest) (imageResult, error) {
	if st.Map == nil || !im.Host.Rootless() {
		return req.apply(ctx, st)
	}
	req.Dir, req.Map, req.Chown, req.MaxSize, req.Platform = st.Dir, st.Map, st.Chown, st.MaxSize, st.Platform
	req.Progress = st.Progress != nil
	req.BlobDir = st.BlobDir
	return im.inUserns(req)
}

func (im *Images) inUserns(req imageRequest) (imageResult, error) {
	var res imageResult
	if !im.Host.MappingTools {
		return res, fmt.Errorf("image store %s keeps image ownership through subordinate ids, which needs newuidmap/newgidmap (Debian: uidmap) on PATH", req.Dir)
	}
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return res, err
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return res, err
	}
	defer resR.Close()
	cmd := exec.Command(self, ImageStoreCommand, req.Op)
	cmd.Env = withEnv(os.Environ(), nestedStageEnv, "1")
	// Progress and the child's own failures go where ours do.
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{reqR, resW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER, Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		reqR.Close()
		reqW.Close()
		resW.Close()
		return res, fmt.Errorf("image store: start user namespace: %w", err)
	}
	reqR.Close()
	resW.Close()
	if err := mapOuter(cmd.Process.Pid, im.Host, reqW); err != nil {
		_, err = killNested(cmd, reqW, err)
		return res, fmt.Errorf("image store: %w", err)
	}
	if err := json.NewEncoder(reqW).Encode(&req); err != nil {
		_, err = killNested(cmd, reqW, err)
		return res, err
	}
	reqW.Close()
	b, _ := io.ReadAll(resR)
	werr := cmd.Wait()
	if len(b) == 0 {
		return res, fmt.Errorf("image store: %s in the user namespace ended without a result: %v", req.Op, werr)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("image store: bad result: %w", err)
	}
	if res.Error != "" {
		return res, &nestedError{msg: res.Error, kind: res.Kind}
	}
	return res, nil
}

// ServeImageStore is the child side of Images.inUserns: it waits for its
// maps (awaitOuterMaps), then, as root of a user namespace holding the
// subordinate range, does one operation on a mapped store (or removes a
// writable root, removeInUserns). It never returns.
func ServeImageStore() {
	awaitOuterMaps()
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	var req imageRequest
	var res imageResult
	err := json.NewDecoder(os.NewFile(3, "request")).Decode(&req)
	if err == nil && req.Op == "rmtree" {
		// No store to open: Dir may be the containers' directory.
		err = req.rmtree(req.Dir)
	} else if err == nil {
		var st *rootfs.Store
		if st, err = rootfs.OpenStore(req.Dir); err == nil {
			st.Map, st.Chown, st.MaxSize, st.Platform, st.BlobDir = req.Map, req.Chown, req.MaxSize, req.Platform, req.BlobDir
			if req.Progress {
				st.Progress = os.Stderr
			}
			res, err = req.apply(context.Background(), st)
		}
	}
	if err != nil {
		res.Error, res.Kind = err.Error(), errorKind(err)
	}
	_ = json.NewEncoder(os.NewFile(4, "result")).Encode(&res)
	os.Exit(0)
}
