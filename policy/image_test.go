package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadImage(t *testing.T) {
	f := newFixture(t)
	layout := filepath.Join(f.dir, "layout")
	if err := os.Mkdir(layout, 0o755); err != nil {
		t.Fatal(err)
	}
	f.write(t, "img.tar", "x")
	digest := "@sha256:" + strings.Repeat("ab", 32)
	for _, tt := range []struct{ image, want string }{
		{"alpine:3.20", "alpine:3.20"},
		{"localhost:5000/team/agent" + digest, "localhost:5000/team/agent" + digest},
		{"oci-layout:./layout", "oci-layout:" + layout},
		{"oci-layout:./layout" + digest, "oci-layout:" + layout + digest},
		{"docker-archive:img.tar", "docker-archive:" + filepath.Join(f.dir, "img.tar")},
	} {
		file, err := Load(f.write(t, "clawrun.yaml", "agents:\n  a:\n    image: "+tt.image+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", tt.image, err)
		}
		p := file.Agents["a"]
		if p.Image != tt.want || p.Rootfs != "" || p.Command != nil {
			t.Errorf("%s: Image %q Rootfs %q Command %q, want image %q and nothing else", tt.image, p.Image, p.Rootfs, p.Command, tt.want)
		}
	}
}

func TestLoadImageBad(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		line       int
		field, msg string
	}{
		{"both", "agents:\n  a:\n    rootfs: ./rootfs\n    image: alpine\n    command: [x]\n", 4, "agents.a.image", "rootfs (line 3) and image are both set"},
		{"neither", "agents:\n  a:\n    command: [x]\n", 2, "agents.a.rootfs", "or image:"},
		{"bad ref", "agents:\n  a:\n    image: Alpine:3.20\n", 3, "agents.a.image", "invalid image reference"},
		{"list", "agents:\n  a:\n    image: [alpine]\n", 3, "agents.a.image", "must be an image reference"},
		{"missing layout", "agents:\n  a:\n    image: oci-layout:./nope\n", 3, "agents.a.image", "does not exist"},
		{"layout is a file", "agents:\n  a:\n    image: oci-layout:./notes.txt\n", 3, "agents.a.image", "not a directory"},
		{"archive is a dir", "agents:\n  a:\n    image: docker-archive:./data\n", 3, "agents.a.image", "not a file"},
		{"no path", "agents:\n  a:\n    image: 'docker-archive:'\n", 3, "agents.a.image", "names no path"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := Load(f.write(t, "clawrun.yaml", tt.body))
			for _, fe := range FieldErrors(err) {
				if fe.Line == tt.line && fe.Field == tt.field && strings.Contains(fe.Msg, tt.msg) {
					return
				}
			}
			t.Errorf("no error at line %d field %q containing %q in:\n%v", tt.line, tt.field, tt.msg, err)
		})
	}
}

func TestWithImage(t *testing.T) {
	f := newFixture(t)
	file, err := Load(f.write(t, "clawrun.yaml", `agents:
  bare:
    image: alpine
  set:
    image: alpine
    command: [/agent]
    env: {A: file, PATH: /file}
    workdir: /w
    user: "7:8"
`))
	if err != nil {
		t.Fatal(err)
	}
	d := ImageDefaults{
		Entrypoint: []string{"/entry"}, Cmd: []string{"arg"},
		Env:        []string{"A=image", "B=image", "PATH=/image"},
		WorkingDir: "/img", User: &User{UID: 5, GID: 6},
	}
	bare, err := file.Agents["bare"].WithImage(f.rootfs, "sha256:x", d)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bare.Command, []string{"/entry", "arg"}) || bare.Workdir != "/img" || bare.User != (User{5, 6}) || !bare.UserSet ||
		!slices.Equal(bare.Env, []string{"A=image", "B=image", "HOME=/", "PATH=/image"}) || bare.Rootfs != f.rootfs || bare.ImageID != "sha256:x" {
		t.Errorf("image defaults not applied: %+v", bare)
	}
	set, err := file.Agents["set"].WithImage(f.rootfs, "sha256:x", d)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(set.Command, []string{"/agent"}) || set.Workdir != "/w" || set.User != (User{7, 8}) ||
		!slices.Equal(set.Env, []string{"A=file", "B=image", "HOME=/", "PATH=/file"}) {
		t.Errorf("the agent file did not win: %+v", set)
	}
	// run AGENT -- CMD replaces Entrypoint and Cmd as a whole.
	over, err := file.Agents["bare"].WithCommand([]string{"/bin/sh"}).WithImage(f.rootfs, "sha256:x", d)
	if err != nil || !slices.Equal(over.Command, []string{"/bin/sh"}) {
		t.Errorf("WithCommand then WithImage: %v %q", err, over.Command)
	}
	if _, err := file.Agents["bare"].WithImage(f.rootfs, "x", ImageDefaults{}); err == nil || !strings.Contains(err.Error(), "neither Entrypoint nor Cmd") {
		t.Errorf("image without a command: %v", err)
	}
	if _, err := file.Agents["bare"].WithImage(f.rootfs, "x", ImageDefaults{Cmd: []string{"x"}, WorkingDir: "rel"}); err == nil {
		t.Error("relative WorkingDir accepted")
	}
}
