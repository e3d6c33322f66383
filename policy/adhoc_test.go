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
