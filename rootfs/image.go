package rootfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/zstd"
)

// Transports an image reference can name. A reference without a prefix is
// a registry reference.
const (
	TransportRegistry      = "registry"
	TransportOCILayout     = "oci-layout"
	TransportDockerArchive = "docker-archive"
)

// ImageRef is a parsed image reference: a registry reference
// ("alpine:3.20", "host:5000/app@sha256:…"), an OCI image layout directory
// ("oci-layout:DIR" or "oci-layout:DIR@sha256:…" to pick one manifest) or a
// docker-archive tarball ("docker-archive:FILE", as written by docker save;
// "docker-archive:FILE:TAG" or "docker-archive:FILE@sha256:ID" to pick one
// image of several).
type ImageRef struct {
	Transport string
	Path      string         // local transports: absolute path
	Digest    string         // oci-layout: the manifest to pick; docker-archive: the image ID
	Tag       string         // docker-archive: the tag (RepoTags) to pick, as written
	Name      name.Reference // registry
}

// SplitLocal splits a reference of a local transport into its transport,
// its path as written and what picks one image inside ("@sha256:…" or,
// for docker-archive, ":TAG"). ok is false for registry references. A
// docker-archive FILE cannot contain ':' (the first one starts the TAG,
// which may hold more, as in "docker-archive:x.tar:host:5000/app:v1").
// It only splits: the policy package resolves the path against the agent
// file's directory, ParseImageRef against the current one.
func SplitLocal(s string) (transport, path, pick string, ok bool) {
	for _, t := range []string{TransportOCILayout, TransportDockerArchive} {
		rest, found := strings.CutPrefix(s, t+":")
		if !found {
			continue
		}
		if i := strings.LastIndex(rest, "@sha256:"); i >= 0 {
			return t, rest[:i], rest[i:], true
		}
		if i := strings.IndexByte(rest, ':'); t == TransportDockerArchive && i >= 0 {
			return t, rest[:i], rest[i:], true
		}
		return t, rest, "", true
	}
	return "", "", "", false
}

// ParseImageRef parses s. Relative paths of local transports are taken from
// the current directory. It never touches the network.
func ParseImageRef(s string) (ImageRef, error) {
	if s == "" {
		return ImageRef{}, errors.New("empty image reference: name an image, e.g. alpine:3.20, oci-layout:./dir or docker-archive:./image.tar")
	}
	if strings.ContainsAny(s, "\x00\n") {
		return ImageRef{}, fmt.Errorf("image reference %q contains a NUL byte or newline", s)
	}
	if t, rest, pick, ok := SplitLocal(s); ok {
		r := ImageRef{Transport: t}
		switch {
		case strings.HasPrefix(pick, "@"):
			if _, err := v1.NewHash(pick[1:]); err != nil {
				return ImageRef{}, fmt.Errorf("image reference %q: bad digest: %w", s, err)
			}
			r.Digest = pick[1:]
		case pick != "":
			if _, err := name.NewTag(pick[1:]); err != nil {
				return ImageRef{}, fmt.Errorf("image reference %q: bad tag %q: %w: write docker-archive:FILE:NAME:TAG, e.g. docker-archive:./images.tar:alpine:3.20", s, pick[1:], err)
			}
			r.Tag = pick[1:]
		}
		if rest == "" {
			return ImageRef{}, fmt.Errorf("image reference %q names no path: write %s:./path", s, t)
		}
		abs, err := filepath.Abs(rest)
		if err != nil {
			return ImageRef{}, fmt.Errorf("image reference %q: %w", s, err)
		}
		r.Path = abs
		return r, nil
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return ImageRef{}, fmt.Errorf("image reference %q: %w: write e.g. alpine:3.20, registry.example.com/team/agent@sha256:…, oci-layout:./dir or docker-archive:./image.tar", s, err)
	}
	return ImageRef{Transport: TransportRegistry, Name: ref}, nil
}

// String is the canonical form, the key of the store's index:
// "index.docker.io/library/alpine:3.20", "oci-layout:/abs/dir".
func (r ImageRef) String() string {
	switch r.Transport {
	case TransportRegistry:
		return r.Name.Name()
	}
	switch {
	case r.Digest != "":
		return r.Transport + ":" + r.Path + "@" + r.Digest
	case r.Tag != "":
		return r.Transport + ":" + r.Path + ":" + r.Tag
	}
	return r.Transport + ":" + r.Path
}

// pinned reports whether the reference names content by digest, so a
// cached copy is always the right one.
func (r ImageRef) pinned() bool {
	_, ok := r.Name.(name.Digest)
	return r.Transport == TransportRegistry && ok
}

// ImageConfig is the part of an image's configuration that says how to run
// it. The agent file overrides each field it sets (see policy.ImageDefaults).
type ImageConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// source is an opened image, before it is unpacked.
type source struct {
	img      v1.Image
	manifest string // manifest digest; "" for docker-archive (synthesised)
	// top is what a registry served for the reference: the manifest, or
	// the index the manifest was picked from. A reference by digest names
	// top, not the platform's manifest.
	top string
	// compressed: layers are checked against the manifest's digests and
	// sizes; docker-archive has no manifest digests, only diff IDs.
	compressed bool
	// remote: layers come from a registry, through the blob cache.
	remote   bool
	platform v1.Platform // the platform asked for: the config must match
	wantID   string      // docker-archive@sha256:ID: the config must hash to it
}

// open resolves ref to one image, for the store's platform. Registry pulls
// use the keychain (by default ~/.docker/config.json and its credential
// helpers).
func (s *Store) open(ctx context.Context, ref ImageRef) (*source, error) {
	plat := s.platform()
	var src *source
	var err error
	switch ref.Transport {
	case TransportRegistry:
		src, err = s.openRemote(ctx, ref, plat)
	case TransportOCILayout:
		src, err = openLayout(ref, plat)
	case TransportDockerArchive:
		src, err = openArchive(ref)
	default:
		err = fmt.Errorf("unknown image transport %q", ref.Transport)
	}
	if err != nil {
		return nil, err
	}
	src.platform = plat
	return src, nil
}

// openRemote fetches what the registry has for ref and, for an index,
// picks the manifest of plat itself (rather than remote.Image's platform
// option) so a missing platform can be reported with the ones offered.
func (s *Store) openRemote(ctx context.Context, ref ImageRef, plat v1.Platform) (*source, error) {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(s.keychain()),
	}
	if s.Transport != nil {
		opts = append(opts, remote.WithTransport(s.Transport))
	}
	desc, err := remote.Get(ref.Name, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref.Name, err)
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref.Name, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("pull %s: index: %w", ref.Name, err)
		}
		pick, err := pickPlatform(im.Manifests, plat)
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref.Name, err)
		}
		if img, err = idx.Image(pick.Digest); err != nil {
			return nil, fmt.Errorf("pull %s: %s manifest %s: %w", ref.Name, plat, pick.Digest, err)
		}
	} else if img, err = desc.Image(); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref.Name, err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref.Name, err)
	}
	return &source{img: img, manifest: d.String(), top: desc.Digest.String(), compressed: true, remote: true}, nil
}

// openLayout picks the image of an OCI layout: the one named by digest, or
// the only one (for an index, the one for plat).
func openLayout(ref ImageRef, plat v1.Platform) (*source, error) {
	p, err := layout.FromPath(ref.Path)
	if err != nil {
		return nil, fmt.Errorf("oci-layout %s: %w (an OCI image layout directory holds index.json and blobs/)", ref.Path, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("oci-layout %s: %w", ref.Path, err)
	}
	for depth := 0; depth < 4; depth++ {
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("oci-layout %s: index.json: %w", ref.Path, err)
		}
		var pick *v1.Descriptor
		var names []string
		for i := range im.Manifests {
			d := &im.Manifests[i]
			names = append(names, d.Digest.String())
			if ref.Digest != "" && d.Digest.String() == ref.Digest {
				pick = d
			}
		}
		switch {
		case pick != nil:
		case ref.Digest == "" && len(im.Manifests) == 1:
			pick = &im.Manifests[0]
		case ref.Digest == "" && (depth > 0 || allPlatforms(im.Manifests)):
			// A nested index (or one named by digest), or a top
			// index whose every entry names its platform, is a
			// multi-platform image: choose by platform.
			if pick, err = pickPlatform(im.Manifests, plat); err != nil {
				return nil, fmt.Errorf("oci-layout %s: %w", ref.Path, err)
			}
		case ref.Digest != "":
			return nil, fmt.Errorf("oci-layout %s holds no manifest %s (it holds %s)", ref.Path, ref.Digest, strings.Join(names, ", "))
		default:
			return nil, fmt.Errorf("oci-layout %s holds %d manifests: pick one with oci-layout:%s@DIGEST (one of %s)", ref.Path, len(names), ref.Path, strings.Join(names, ", "))
		}
		if pick.MediaType.IsIndex() {
			idx, err = idx.ImageIndex(pick.Digest)
			if err != nil {
				return nil, fmt.Errorf("oci-layout %s: %w", ref.Path, err)
			}
			ref.Digest = ""
			continue
		}
		img, err := idx.Image(pick.Digest)
		if err != nil {
			return nil, fmt.Errorf("oci-layout %s: %w", ref.Path, err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("oci-layout %s: manifest %s: %w", ref.Path, pick.Digest, err)
		}
		if got := digestOf(raw); got != pick.Digest.String() {
			return nil, fmt.Errorf("oci-layout %s: manifest %s has digest %s: the layout is corrupt", ref.Path, pick.Digest, got)
		}
		return &source{img: img, manifest: pick.Digest.String(), compressed: true}, nil
	}
	return nil, fmt.Errorf("oci-layout %s: image indexes nested too deep", ref.Path)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// configOf reads and checks the image's config: its digest is the image ID.
func (src *source) config() (id string, cf *v1.ConfigFile, err error) {
	raw, err := src.img.RawConfigFile()
	if err != nil {
		return "", nil, fmt.Errorf("image config: %w", err)
	}
	id = digestOf(raw)
	if src.compressed {
		m, err := src.img.Manifest()
		if err != nil {
			return "", nil, fmt.Errorf("image manifest: %w", err)
		}
		if m.Config.Digest.String() != id {
			return "", nil, fmt.Errorf("image config has digest %s, the manifest says %s: %w", id, m.Config.Digest, ErrDigestMismatch)
		}
	}
	cf, err = v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return "", nil, fmt.Errorf("image config: %w", err)
	}
	if src.wantID != "" && id != src.wantID {
		return "", nil, fmt.Errorf("image config has digest %s, not the ID %s asked for: %w", id, src.wantID, ErrDigestMismatch)
	}
	if err := checkPlatform(cf, src.platform); err != nil {
		return "", nil, err
	}
	return id, cf, nil
}

// ErrDigestMismatch is wrapped when content does not match its digest or
// size: a corrupt or truncated blob, or a registry serving other content.
var ErrDigestMismatch = errors.New("content does not match its digest")

// verifier hashes what is read through it and checks digest and size at
// EOF. A blob that ends early or runs long fails.
type verifier struct {
	r      io.Reader
	h      hash.Hash
	want   string
	size   int64 // -1: unknown
	n      int64
	what   string
	onRead func(int64)
}

func newVerifier(r io.Reader, want string, size int64, what string) (*verifier, error) {
	if !strings.HasPrefix(want, "sha256:") {
		return nil, fmt.Errorf("%s: unsupported digest %q (only sha256)", what, want)
	}
	return &verifier{r: r, h: sha256.New(), want: want, size: size, what: what}, nil
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.size >= 0 && v.n >= v.size {
		// Do not read past the declared size: a registry streaming
		// forever is cut off here.
		var one [1]byte
		if n, _ := v.r.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%s is longer than its declared %d bytes: %w", v.what, v.size, ErrDigestMismatch)
		}
		return 0, v.check()
	}
	if v.size >= 0 && int64(len(p)) > v.size-v.n {
		p = p[:v.size-v.n]
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.onRead != nil && n > 0 {
		v.onRead(int64(n))
	}
	if errors.Is(err, io.EOF) {
		return n, v.check()
	}
	return n, err
}

func (v *verifier) check() error {
	if v.size >= 0 && v.n != v.size {
		return fmt.Errorf("%s is truncated: %d of %d bytes: %w", v.what, v.n, v.size, ErrDigestMismatch)
	}
	if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.want {
		return fmt.Errorf("%s has digest %s, expected %s: %w", v.what, got, v.want, ErrDigestMismatch)
	}
	return io.EOF
}

// decompress detects gzip, zstd or a plain tar by the stream's first bytes.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case len(magic) == 4 && bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}
