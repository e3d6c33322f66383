package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// entry is one crafted tar entry; body is the content of a regular file.
type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	size             int64 // overrides len(body) in the header, for bombs
	uid, gid         int   // the image's owner of the entry
}

func file(name, body string) entry {
	return entry{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) entry {
	return entry{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}
func hardlink(name, target string) entry { return entry{name: name, link: target, typ: tar.TypeLink} }

func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Uid: e.uid, Gid: e.gid, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// unpackLayers applies layers to a fresh root inside a sandbox directory,
// so that anything escaping the root lands in the sandbox and is seen.
func unpackLayers(t *testing.T, u func(root string) *unpacker, layers ...[]byte) (root string, err error) {
	t.Helper()
	sandbox := t.TempDir()
	root = filepath.Join(sandbox, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	up := newUnpacker(root, 0, 0)
	if u != nil {
		up = u(root)
	}
	for _, l := range layers {
		if err = up.apply(bytes.NewReader(l)); err != nil {
			return root, err
		}
	}
	return root, up.finish()
}

func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	return out
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, tt := range []struct {
		name   string
		layers [][]byte
		msg    string
	}{
		{"dotdot", [][]byte{layerTar(t, file("../evil", "x"))}, `".."`},
		{"dotdot inside", [][]byte{layerTar(t, dir("a"), file("a/../../evil", "x"))}, `".."`},
		{"absolute", [][]byte{layerTar(t, file("/evil", "x"))}, "absolute"},
		{"through symlink same layer", [][]byte{layerTar(t, symlink("l", ".."), file("l/evil", "x"))}, "is a symlink"},
		{"through absolute symlink", [][]byte{layerTar(t, symlink("l", "/tmp")), layerTar(t, file("l/evil", "x"))}, "is a symlink"},
		{"through in-root symlink", [][]byte{layerTar(t, dir("usr"), symlink("bin", "usr")), layerTar(t, file("bin/sh", "x"))}, "is a symlink"},
		{"whiteout through symlink", [][]byte{layerTar(t, symlink("l", "..")), layerTar(t, file("l/.wh.root", ""))}, "is a symlink"},
		{"opaque through symlink", [][]byte{layerTar(t, symlink("l", "..")), layerTar(t, file("l/.wh..wh..opq", ""))}, "is a symlink"},
		{"hardlink dotdot", [][]byte{layerTar(t, hardlink("h", "../outside"))}, "leaves the image"},
		{"hardlink absolute", [][]byte{layerTar(t, hardlink("h", "/etc/passwd"))}, "leaves the image"},
		{"hardlink through symlink", [][]byte{layerTar(t, symlink("etc", "/etc"), hardlink("h", "etc/passwd"))}, "is a symlink"},
		{"hardlink to missing", [][]byte{layerTar(t, hardlink("h", "nothing"))}, "does not exist"},
		{"hardlink into missing dir", [][]byte{layerTar(t, hardlink("h", "no/such"))}, "does not exist"},
		{"hardlink to dir", [][]byte{layerTar(t, dir("d"), hardlink("h", "d"))}, "directory"},
		{"bad whiteout", [][]byte{layerTar(t, file(".wh..", ""))}, "invalid whiteout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root, err := unpackLayers(t, nil, tt.layers...)
			if !errors.Is(err, ErrUnsafeLayer) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want an unsafe-layer error containing %q", err, tt.msg)
			}
			if got := listTree(t, filepath.Dir(root)); slices.ContainsFunc(got, func(s string) bool { return !strings.HasPrefix(s, "root") }) {
				t.Errorf("something was written outside the root: %q", got)
			}
			if _, err := os.Lstat("/evil"); err == nil {
				t.Error("/evil exists")
			}
		})
	}
}

func TestUnpackWhiteouts(t *testing.T) {
	lower := layerTar(t,
		dir("a"), file("a/x", "x"), file("a/y", "y"),
		dir("b"), file("b/z", "z"),
		dir("c"), file("c/old", "old"), dir("c/sub"), file("c/sub/old2", "old2"),
		file("f", "file becomes dir"),
	)
	upper := layerTar(t,
		file("a/.wh.x", ""),
		file(".wh.b", ""),
		dir("c"), file("c/.wh..wh..opq", ""), file("c/new", "new"),
		dir("f"), file("f/inside", "i"),
		file(".wh.never-existed", ""),
		file("no/such/dir/.wh.x", ""),
	)
	root, err := unpackLayers(t, nil, lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "a/y", "c", "c/new", "f", "f/inside"}
	if got := listTree(t, root); !slices.Equal(got, want) {
		t.Errorf("tree %q, want %q", got, want)
	}
	// The opaque marker may also come first in its directory.
	upper2 := layerTar(t, file("c/.wh..wh..opq", ""), file("c/new", "new"))
	root, err = unpackLayers(t, nil, lower, upper2)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadDir(filepath.Join(root, "c")); len(got) != 1 || got[0].Name() != "new" {
		t.Errorf("opaque dir holds %v", got)
	}
}

func TestUnpackModesLinksDevices(t *testing.T) {
	l := layerTar(t,
		entry{name: "ro", typ: tar.TypeDir, mode: 0o555},
		file("ro/f", "in a read-only dir"),
		entry{name: "suid", body: "x", typ: tar.TypeReg, mode: 0o4755},
		entry{name: "sgid", body: "x", typ: tar.TypeReg, mode: 0o2711},
		entry{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
		entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		entry{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660},
		entry{name: "fifo", typ: tar.TypeFifo, mode: 0o644},
		symlink("abs", "/etc/passwd"),
		hardlink("ro/f2", "ro/f"),
		file("implicit/parent/f", "parents created"),
	)
	root, err := unpackLayers(t, nil, l)
	if err != nil {
		t.Fatal(err)
	}
	defer removeTree(root)
	mode := func(p string) fs.FileMode {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	for p, want := range map[string]fs.FileMode{
		"ro":   fs.ModeDir | 0o555,
		"suid": 0o755, "sgid": 0o711,
		"tmp":  fs.ModeDir | fs.ModeSticky | 0o777,
		"fifo": fs.ModeNamedPipe | 0o644,
		"abs":  fs.ModeSymlink | 0o777,
	} {
		if got := mode(p); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/null")); err == nil {
		t.Error("a device node was created")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "ro/f2")); string(b) != "in a read-only dir" {
		t.Errorf("hardlink reads %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "implicit/parent/f")); string(b) != "parents created" {
		t.Errorf("implicit parents: %q", b)
	}
}

func TestUnpackBounds(t *testing.T) {
	big := layerTar(t, file("big", strings.Repeat("0", 1<<20)))
	_, err := unpackLayers(t, func(root string) *unpacker { return newUnpacker(root, 64<<10, 0) }, big)
	if !errors.Is(err, ErrUnsafeLayer) || !strings.Contains(err.Error(), "more than 64.0 KiB") {
		t.Errorf("size bound: %v", err)
	}
	// Across layers, and counting headers too.
	small := layerTar(t, file("s", strings.Repeat("0", 40<<10)))
	_, err = unpackLayers(t, func(root string) *unpacker { return newUnpacker(root, 64<<10, 0) }, small, small)
	if !errors.Is(err, ErrUnsafeLayer) {
		t.Errorf("size bound across layers: %v", err)
	}
	var many []entry
	for i := range 20 {
		many = append(many, file(strings.Repeat("f", i+1), ""))
	}
	_, err = unpackLayers(t, func(root string) *unpacker { return newUnpacker(root, 0, 10) }, layerTar(t, many...))
	if !errors.Is(err, ErrUnsafeLayer) || !strings.Contains(err.Error(), "more than 10 entries") {
		t.Errorf("entry bound: %v", err)
	}
}
