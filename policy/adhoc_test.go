package policy

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestAdHoc(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	got, err := AdHoc(AdHocOptions{
		Name:    "job_1",
		Rootfs:  "rootfs",
		Command: []string{"/bin/sh", "-c", "echo hi"},
		Mounts:  []string{"data:/data:rw", f.dir + "/notes.txt:/notes"},
		Memory:  "512m",
		CPUs:    1.5,
		Pids:    32,
		Env:     []string{"B=2", "A=x=y", "EMPTY="},
		Workdir: "/data",
		User:    "1000",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &Plan{
		Name:    "job_1",
		Rootfs:  f.rootfs,
		Command: []string{"/bin/sh", "-c", "echo hi"},
		Env:     []string{"A=x=y", "B=2", "EMPTY=", "HOME=/", "PATH=" + DefaultPath},
		Workdir: "/data",
		User:    User{UID: 1000, GID: 1000},
		UserSet: true,
		Grants: []Grant{
			{Host: f.data, Path: "/data", Mode: ReadWrite},
			{Host: filepath.Join(f.dir, "notes.txt"), Path: "/notes", Mode: ReadOnly},
		},
		Network:  NetworkNone,
		Limits:   Limits{MemoryBytes: 512 << 20, CPUs: 1.5, Pids: 32},
		Seccomp:  DefaultSeccomp,
		TmpSize:  DefaultTmpSize,
		IDMap:    IDMapAuto,
		Hostname: "job-1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AdHoc:\n got %+v\nwant %+v", got, want)
	}
}

func TestAdHocBad(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	good := func() AdHocOptions {
		return AdHocOptions{Name: "x", Rootfs: "rootfs", Command: []string{"/agent"}}
	}
	tests := []struct {
		name string
		mod  func(*AdHocOptions)
		flag string
		msg  string
	}{
		{"mount one part", func(o *AdHocOptions) { o.Mounts = []string{"a"} }, "--mount", `"a" is not SRC:DST[:ro|rw]`},
		{"mount four parts", func(o *AdHocOptions) { o.Mounts = []string{"a:/b:ro:x"} }, "--mount", "is not SRC:DST"},
		{"mount bad mode", func(o *AdHocOptions) { o.Mounts = []string{"data:/b:xx"} }, "--mount", `invalid mode "xx"`},
		{"mount bad mode and src", func(o *AdHocOptions) { o.Mounts = []string{"a:b:xx"} }, "--mount", `invalid mode "xx"`},
		{"mount relative dst", func(o *AdHocOptions) { o.Mounts = []string{"data:b"} }, "--mount", `destination "b" is not absolute`},
		{"mount missing src", func(o *AdHocOptions) { o.Mounts = []string{"nope:/b"} }, "--mount", "does not exist"},
		{"mount proc", func(o *AdHocOptions) { o.Mounts = []string{"data:/proc"} }, "--mount", "inside /proc"},
		{"mount dup", func(o *AdHocOptions) { o.Mounts = []string{"data:/d", "cache:/d"} }, "--mount", "already mounted"},
		{"memory", func(o *AdHocOptions) { o.Memory = "12X" }, "--memory", "invalid size"},
		{"memory small", func(o *AdHocOptions) { o.Memory = "1k" }, "--memory", "minimum"},
		{"cpus", func(o *AdHocOptions) { o.CPUs = -1 }, "--cpus", "from 0.01"},
		{"pids", func(o *AdHocOptions) { o.Pids = -3 }, "--pids", "at least 1"},
		{"enforce", func(o *AdHocOptions) { o.Enforce = "maybe" }, "--enforce", `invalid enforce "maybe": use strict`},
		{"env no =", func(o *AdHocOptions) { o.Env = []string{"FOO"} }, "--env", "not KEY=VALUE"},
		{"env key", func(o *AdHocOptions) { o.Env = []string{"1=x"} }, "--env", "invalid variable name"},
		{"env dup", func(o *AdHocOptions) { o.Env = []string{"A=1", "A=2"} }, "--env", "twice"},
		{"workdir", func(o *AdHocOptions) { o.Workdir = "rel" }, "--workdir", "not absolute"},
		{"user", func(o *AdHocOptions) { o.User = "root" }, "--user", "numeric uid"},
		{"name", func(o *AdHocOptions) { o.Name = "a/b" }, "--name", "invalid name"},
		{"no name", func(o *AdHocOptions) { o.Name = "" }, "--name", "missing"},
		{"rootfs", func(o *AdHocOptions) { o.Rootfs = "notes.txt" }, "--rootfs", "not a directory"},
		{"no rootfs", func(o *AdHocOptions) { o.Rootfs = "" }, "--rootfs", "missing"},
		{"no command", func(o *AdHocOptions) { o.Command = nil }, "command", "missing"},
		{"rootfs and image", func(o *AdHocOptions) { o.Image = "alpine:3.20" }, "--image", "--rootfs and --image are both given"},
		{"entrypoint without image", func(o *AdHocOptions) { o.EntrypointSet = true }, "--entrypoint", "is for --image runs"},
		{"bad image", func(o *AdHocOptions) { o.Rootfs, o.Image = "", "Alpine:3.20" }, "--image", "invalid image reference"},
		{"missing archive", func(o *AdHocOptions) { o.Rootfs, o.Image = "", "docker-archive:./nope.tar:a:1" }, "--image", "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.mod(&o)
			p, err := AdHoc(o)
			if err == nil {
				t.Fatalf("AdHoc succeeded: %+v", p)
			}
			for _, fe := range FieldErrors(err) {
				if fe.Field == tt.flag && strings.Contains(fe.Msg, tt.msg) {
					if !strings.HasPrefix(fe.Error(), tt.flag+": ") {
						t.Errorf("formatted %q does not start with the flag", fe.Error())
					}
					return
				}
			}
			t.Errorf("no %s error containing %q in:\n%v", tt.flag, tt.msg, err)
		})
	}
}

func TestAdHocReportsAll(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	_, err := AdHoc(AdHocOptions{Name: "x", Rootfs: "rootfs", Command: []string{"/a"}, Mounts: []string{"a:b:xx"}, Memory: "lots"})
	fes := FieldErrors(err)
	// source missing, destination relative, bad mode, bad memory.
	if len(fes) != 4 {
		t.Errorf("got %d errors, want 4:\n%v", len(fes), err)
	}
}

// An ad-hoc image run follows docker: CMD after -- replaces the image's
// Cmd and keeps its Entrypoint; --entrypoint replaces the Entrypoint and
// drops the image's Cmd; --env, --workdir and --user override the config.
func TestAdHocImage(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	f.write(t, "images.tar", "x")
	d := ImageDefaults{
		Entrypoint: []string{"/bin/tool"}, Cmd: []string{"serve"},
		Env: []string{"PATH=/image/bin", "A=image", "B=image"}, WorkingDir: "/srv", User: &User{UID: 7, GID: 8},
	}
	for _, tt := range []struct {
		name    string
		o       AdHocOptions
		command []string
		env     []string
		workdir string
		user    User
	}{
		{"image as is", AdHocOptions{}, []string{"/bin/tool", "serve"}, []string{"A=image", "B=image", "HOME=/", "PATH=/image/bin"}, "/srv", User{UID: 7, GID: 8}},
		{"cmd replaces Cmd", AdHocOptions{Command: []string{"check", "-v"}}, []string{"/bin/tool", "check", "-v"}, nil, "/srv", User{UID: 7, GID: 8}},
		{"entrypoint drops Cmd", AdHocOptions{Entrypoint: []string{"/bin/sh"}, EntrypointSet: true}, []string{"/bin/sh"}, nil, "", User{}},
		{"entrypoint and cmd", AdHocOptions{Entrypoint: []string{"/bin/sh"}, EntrypointSet: true, Command: []string{"-c", "id"}}, []string{"/bin/sh", "-c", "id"}, nil, "", User{}},
		{"empty entrypoint", AdHocOptions{EntrypointSet: true, Command: []string{"/bin/id"}}, []string{"/bin/id"}, nil, "", User{}},
		{"flags override config", AdHocOptions{Env: []string{"A=flag"}, Workdir: "/w", User: "1:2"}, []string{"/bin/tool", "serve"}, []string{"A=flag", "B=image", "HOME=/", "PATH=/image/bin"}, "/w", User{UID: 1, GID: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Name, o.Image = "job", "docker-archive:images.tar:team/agent:v1"
			p, err := AdHoc(o)
			if err != nil {
				t.Fatal(err)
			}
			if want := "docker-archive:" + filepath.Join(f.dir, "images.tar") + ":team/agent:v1"; p.Image != want || p.Rootfs != "" {
				t.Errorf("Image %q Rootfs %q, want image %q", p.Image, p.Rootfs, want)
			}
			got, err := p.WithImage("/base/rootfs", "sha256:x", d)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Command, tt.command) {
				t.Errorf("command %q, want %q", got.Command, tt.command)
			}
			if tt.env != nil && !reflect.DeepEqual(got.Env, tt.env) {
				t.Errorf("env %q, want %q", got.Env, tt.env)
			}
			if tt.workdir != "" && got.Workdir != tt.workdir {
				t.Errorf("workdir %q, want %q", got.Workdir, tt.workdir)
			}
			if tt.user != (User{}) && got.User != tt.user {
				t.Errorf("user %+v, want %+v", got.User, tt.user)
			}
			if got.Rootfs != "/base/rootfs" || got.ImageID != "sha256:x" {
				t.Errorf("rootfs %q id %q", got.Rootfs, got.ImageID)
			}
		})
	}
	// An image with no command and none given: the error says how to give one.
	p, err := AdHoc(AdHocOptions{Name: "job", Image: "alpine:3.20"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WithImage("/r", "sha256:x", ImageDefaults{}); err == nil || !strings.Contains(err.Error(), "-- CMD...") {
		t.Errorf("no command anywhere: %v", err)
	}
}

// --enforce best-effort is limits.enforce of an agent file.
func TestAdHocEnforce(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	p, err := AdHoc(AdHocOptions{Name: "x", Rootfs: "rootfs", Command: []string{"/agent"}, Memory: "64M", Enforce: "best-effort"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Limits.BestEffort() || p.Limits.MemoryBytes != 64<<20 {
		t.Errorf("limits %+v, want 64M best-effort", p.Limits)
	}
}
