package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree builds a directory tree under a fresh temp dir. Keys are slash
// paths; a value "->target" makes a symlink, "dir" a directory, "x:..." an
// executable file with that content, anything else a 0644 file.
func tree(t *testing.T, entries map[string]string) string {
	t.Helper()
	root := t.TempDir()
	// t.TempDir may itself sit below a symlink (e.g. /tmp -> /private/tmp).
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range entries {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(strings.TrimPrefix(v, "->"), p)
		case v == "dir":
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(v, "x:"):
			err = os.WriteFile(p, []byte(strings.TrimPrefix(v, "x:")), 0o755)
		default:
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDir(t *testing.T) {
	base := tree(t, map[string]string{
		"root/bin":     "dir",
		"file":         "data",
		"link-to-root": "->root",
		"link-to-file": "->file",
		"dangling":     "->nowhere",
	})
	tests := []struct {
		name    string
		path    string
		want    string // "" when an error is expected
		wantErr string
	}{
		{name: "directory", path: filepath.Join(base, "root"), want: filepath.Join(base, "root")},
		{name: "unclean path", path: base + "/./root/bin/..", want: filepath.Join(base, "root")},
		{name: "symlink to directory is resolved", path: filepath.Join(base, "link-to-root"), want: filepath.Join(base, "root")},
		{name: "file", path: filepath.Join(base, "file"), wantErr: "is not a directory"},
		{name: "symlink to file", path: filepath.Join(base, "link-to-file"), wantErr: "is not a directory"},
		{name: "missing", path: filepath.Join(base, "missing"), wantErr: "does not exist"},
		{name: "dangling symlink", path: filepath.Join(base, "dangling"), wantErr: "does not exist"},
		{name: "empty", path: "", wantErr: "empty path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Dir(tt.path)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Dir(%q) = %q, want error containing %q", tt.path, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
					t.Fatalf("Dir(%q) error %q: want it to contain %q and the path", tt.path, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dir(%q): %v", tt.path, err)
			}
			if got != tt.want {
				t.Fatalf("Dir(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestDirRelative(t *testing.T) {
	root := tree(t, map[string]string{"r": "dir"})
	t.Chdir(root)
	got, err := Dir("r")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "r"); got != want {
		t.Fatalf("Dir(%q) = %q, want %q", "r", got, want)
	}
}

func TestLookPath(t *testing.T) {
	// A host file outside the rootfs that an escaping symlink would reach.
	outside := tree(t, map[string]string{"usr/bin/hostonly": "x:#!/bin/sh\n"})
	root := tree(t, map[string]string{
		"bin/busybox":         "x:ELF",
		"bin/sh":              "->busybox",
		"bin/ls":              "->/bin/busybox",
		"usr/bin/printenv":    "->../../bin/busybox",
		"usr/local/bin/tool":  "x:tool",
		"opt/app/run":         "x:run",
		"opt/app/data":        "data",
		"opt/app/subdir":      "dir",
		"bin/evil":            "->" + filepath.Join(outside, "usr/bin/hostonly"),
		"bin/dotdot":          "->../../../../../../../../usr/bin/env",
		"bin/hostenv":         "->/usr/bin/env",
		"bin/dangling":        "->/nowhere",
		"bin/loop":            "->loop",
		"sbin/shadowed":       "data",
		"bin/shadowed":        "x:real",
		"agent":               "x:agent",
		"custom/bin/mine":     "x:mine",
		"home/agent/notaprog": "text",
	})
	// An absolute symlink in the rootfs, pointing at a path that exists on
	// the host only when read from the host's root.
	if err := os.Symlink(filepath.Join(outside, "usr/bin/hostonly"), filepath.Join(root, "bin/evil2")); err != nil {
		t.Fatal(err)
	}
	// Both host targets must really exist, or the escape cases below would
	// pass for the wrong reason.
	for _, p := range []string{"/usr/bin/env", filepath.Join(outside, "usr/bin/hostonly")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("host target of the escape tests: %v", err)
		}
	}
	// The same target, recreated inside the rootfs: now the link resolves
	// within it.
	inside := tree(t, map[string]string{
		"bin/evil":         "->/usr/bin/hostonly",
		"usr/bin/hostonly": "x:inside",
		"bin/busybox":      "x:ELF",
	})

	tests := []struct {
		name     string
		rootfs   string
		cmd      string
		env      []string
		want     string
		notFound bool
		wantErr  []string // substrings of the error
	}{
		{name: "absolute", cmd: "/agent", want: "/agent"},
		{name: "absolute unclean", cmd: "/opt/./app/../app/run", want: "/opt/app/run"},
		{name: "slash relative to root", cmd: "opt/app/run", want: "/opt/app/run"},
		{name: "absolute dotdot stays in root", cmd: "/../../../agent", want: "/agent"},
		{name: "absolute symlink applet", cmd: "/bin/sh", want: "/bin/sh"},
		{name: "default PATH finds applet symlink", cmd: "sh", want: "/bin/sh"},
		{name: "absolute-target applet symlink", cmd: "ls", want: "/bin/ls"},
		{name: "relative-target symlink in /usr/bin", cmd: "printenv", want: "/usr/bin/printenv"},
		{name: "default PATH order", cmd: "tool", want: "/usr/local/bin/tool"},
		{name: "non-executable earlier in PATH is skipped", cmd: "shadowed", want: "/bin/shadowed"},
		{name: "PATH from env", cmd: "mine", env: []string{"HOME=/", "PATH=/custom/bin:/bin"}, want: "/custom/bin/mine"},
		{name: "last PATH wins", cmd: "mine", env: []string{"PATH=/bin", "PATH=/custom/bin"}, want: "/custom/bin/mine"},
		{name: "relative PATH entries skipped", cmd: "mine", env: []string{"PATH=custom/bin::/bin"}, notFound: true},
		{
			name: "not in PATH", cmd: "mine", notFound: true,
			wantErr: []string{`command "mine" not found in rootfs ` + root, "searched PATH " + DefaultPath},
		},
		{
			name: "absolute symlink to host path resolves inside rootfs", cmd: "evil", notFound: true,
			wantErr: []string{`command "evil" not found`},
		},
		{name: "host-absolute symlink by path", cmd: "/bin/evil2", notFound: true},
		{name: "symlink to host /usr/bin/env", cmd: "hostenv", notFound: true},
		{name: "dotdot symlink cannot leave rootfs", cmd: "dotdot", notFound: true},
		{name: "escaping symlink resolved inside another rootfs", rootfs: inside, cmd: "evil", want: "/bin/evil"},
		{name: "dangling symlink", cmd: "dangling", notFound: true},
		{name: "symlink loop", cmd: "/bin/loop", wantErr: []string{"too many levels of symbolic links"}},
		{
			name: "non-executable file", cmd: "/opt/app/data", notFound: true,
			wantErr: []string{"not executable"},
		},
		{
			name: "non-executable in PATH is reported", cmd: "notaprog", env: []string{"PATH=/home/agent"}, notFound: true,
			wantErr: []string{"/home/agent/notaprog: not executable"},
		},
		{name: "directory", cmd: "/opt/app/subdir", notFound: true, wantErr: []string{"not a regular file"}},
		{name: "path through a file", cmd: "/agent/x", notFound: true},
		{name: "missing absolute", cmd: "/no/such", notFound: true},
		{name: "empty command", cmd: "", notFound: true},
		{name: "missing rootfs", rootfs: filepath.Join(root, "nope"), cmd: "sh", wantErr: []string{"does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rfs := root
			if tt.rootfs != "" {
				rfs = tt.rootfs
			}
			got, err := LookPath(rfs, tt.cmd, tt.env)
			if tt.want != "" {
				if err != nil {
					t.Fatalf("LookPath(%q): %v", tt.cmd, err)
				}
				if got != tt.want {
					t.Fatalf("LookPath(%q) = %q, want %q", tt.cmd, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LookPath(%q) = %q, want error", tt.cmd, got)
			}
			if errors.Is(err, ErrCommandNotFound) != tt.notFound {
				t.Fatalf("LookPath(%q) error %q: errors.Is(ErrCommandNotFound) = %v, want %v",
					tt.cmd, err, !tt.notFound, tt.notFound)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("LookPath(%q) error %q: want it to contain %q", tt.cmd, err, s)
				}
			}
		})
	}
}
