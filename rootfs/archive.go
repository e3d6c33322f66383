package rootfs

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// openArchive picks the image of a docker save tarball: the one tagged
// ref.Tag, the one whose ID is ref.Digest, or the only one.
func openArchive(ref ImageRef) (*source, error) {
	open := func() (io.ReadCloser, error) { return os.Open(ref.Path) }
	m, err := tarball.LoadManifest(open)
	if err != nil {
		return nil, fmt.Errorf("docker-archive %s: %w (it must be a tarball written by docker save)", ref.Path, err)
	}
	switch {
	case ref.Tag != "":
		tag, err := name.NewTag(ref.Tag)
		if err != nil {
			return nil, fmt.Errorf("docker-archive %s: tag %q: %w", ref.Path, ref.Tag, err)
		}
		if archiveByTag(m, tag) < 0 {
			return nil, fmt.Errorf("docker-archive %s holds no image tagged %s (it holds %s)", ref.Path, ref.Tag, archiveImages(m))
		}
		img, err := tarball.Image(open, &tag)
		if err != nil {
			return nil, fmt.Errorf("docker-archive %s:%s: %w", ref.Path, ref.Tag, err)
		}
		return &source{img: img}, nil
	case ref.Digest != "":
		for _, d := range m {
			if archiveID(d) != ref.Digest {
				continue
			}
			// go-containerregistry picks an image by tag or takes the
			// only one; an untagged image of several is reached by
			// showing it an archive whose manifest.json names only
			// that image. config() then checks the config's digest.
			img, err := tarball.Image(onlyImage(open, d), nil)
			if err != nil {
				return nil, fmt.Errorf("docker-archive %s@%s: %w", ref.Path, ref.Digest, err)
			}
			return &source{img: img, wantID: ref.Digest}, nil
		}
		return nil, fmt.Errorf("docker-archive %s holds no image with ID %s (it holds %s)", ref.Path, ref.Digest, archiveImages(m))
	case len(m) == 1:
		img, err := tarball.Image(open, nil)
		if err != nil {
			return nil, fmt.Errorf("docker-archive %s: %w", ref.Path, err)
		}
		return &source{img: img}, nil
	case len(m) == 0:
		return nil, fmt.Errorf("docker-archive %s holds no image (its manifest.json is empty)", ref.Path)
	}
	return nil, fmt.Errorf("docker-archive %s holds %d images: pick one with docker-archive:%s:TAG or docker-archive:%s@sha256:ID (it holds %s)",
		ref.Path, len(m), ref.Path, ref.Path, archiveImages(m))
}

// archiveByTag is the index of the image tagged tag, comparing full names
// as go-containerregistry does ("alpine:3.20" is docker.io/library/alpine:3.20).
func archiveByTag(m tarball.Manifest, tag name.Tag) int {
	for i, d := range m {
		for _, t := range d.RepoTags {
			if rt, err := name.NewTag(t); err == nil && rt.Name() == tag.Name() {
				return i
			}
		}
	}
	return -1
}

// archiveID is an image's ID as its config's file name gives it: docker
// writes "HEX.json" (before 25) or "blobs/sha256/HEX" (OCI-style),
// go-containerregistry "sha256:HEX". The name is only a hint for picking;
// config() hashes the content.
func archiveID(d tarball.Descriptor) string {
	return "sha256:" + strings.TrimPrefix(strings.TrimSuffix(filepath.Base(d.Config), ".json"), "sha256:")
}

// archiveImages lists the images of an archive for an error: their tags,
// or their IDs when untagged.
func archiveImages(m tarball.Manifest) string {
	var out []string
	for _, d := range m {
		if len(d.RepoTags) > 0 {
			out = append(out, strings.Join(d.RepoTags, ", "))
		} else {
			out = append(out, "untagged @"+archiveID(d))
		}
	}
	return strings.Join(out, "; ")
}

// onlyImage opens the archive as a stream in which manifest.json lists d
// alone; every other entry passes through unchanged.
func onlyImage(open tarball.Opener, d tarball.Descriptor) tarball.Opener {
	return func() (io.ReadCloser, error) {
		f, err := open()
		if err != nil {
			return nil, err
		}
		manifest, err := json.Marshal(tarball.Manifest{d})
		if err != nil {
			f.Close()
			return nil, err
		}
		pr, pw := io.Pipe()
		go func() {
			defer f.Close()
			pw.CloseWithError(rewriteManifest(tar.NewReader(f), tar.NewWriter(pw), manifest))
		}()
		return pr, nil
	}
}

// rewriteManifest copies a tar stream, replacing manifest.json's content.
// It stops with the reader's error when the reader is closed early.
func rewriteManifest(tr *tar.Reader, tw *tar.Writer, manifest []byte) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		var body io.Reader = tr
		if filepath.Clean(h.Name) == "manifest.json" {
			hc := *h
			hc.Size = int64(len(manifest))
			h, body = &hc, bytes.NewReader(manifest)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, body); err != nil {
			return err
		}
	}
}
