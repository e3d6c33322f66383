package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixture is a directory holding an agent file, a root filesystem and some
// host paths to grant.
type fixture struct {
	dir    string // resolved, so expectations match EvalSymlinks output
	rootfs string
	data   string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{dir: dir, rootfs: filepath.Join(dir, "rootfs"), data: filepath.Join(dir, "data")}
	for _, d := range []string{f.rootfs, f.data, filepath.Join(dir, "cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f fixture) write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGood(t *testing.T) {
	f := newFixture(t)
	// A symlinked grant must resolve to its target.
	if err := os.Symlink(f.data, filepath.Join(f.dir, "data-link")); err != nil {
		t.Fatal(err)
	}
	path := f.write(t, "clawrun.yaml", `version: 1
agents:
  demo:
    rootfs: ./rootfs
    command: ["/agent", "--port", 8080]
    env:
      TOKEN: abc
      RETRIES: 3
      DEBUG: true
      HOME: /home/agent
    workdir: /work/../app
    user: 1000:1001
    grants:
      - {host: data-link, path: /data/, mode: rw}
      - host: notes.txt
        path: /etc/notes.txt
    network: none
    limits: {memory: 256M, cpus: 0.5, pids: 64}
    seccomp: default
    tmp_size: 16M
    idmap: single
    hostname: demo-box
  second_one.x:
    rootfs: `+f.rootfs+`
    command: [/bin/true]
    user: 42
`)
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.Path != path || got.Version != 1 {
		t.Errorf("Path, Version = %q, %d", got.Path, got.Version)
	}
	if want := []string{"demo", "second_one.x"}; !reflect.DeepEqual(got.Order, want) {
		t.Errorf("Order = %v, want %v", got.Order, want)
	}
	want := &Plan{
		Name:    "demo",
		Source:  path,
		Rootfs:  f.rootfs,
		Command: []string{"/agent", "--port", "8080"},
		Env:     []string{"DEBUG=true", "HOME=/home/agent", "PATH=" + DefaultPath, "RETRIES=3", "TOKEN=abc"},
		Workdir: "/app",
		User:    User{UID: 1000, GID: 1001},
		UserSet: true,
		Grants: []Grant{
			{Host: f.data, Path: "/data", Mode: ReadWrite},
			{Host: filepath.Join(f.dir, "notes.txt"), Path: "/etc/notes.txt", Mode: ReadOnly},
		},
		Network:  NetworkNone,
		Limits:   Limits{MemoryBytes: 256 << 20, CPUs: 0.5, Pids: 64},
		Seccomp:  "default",
		TmpSize:  16 << 20,
		IDMap:    IDMapSingle,
		Hostname: "demo-box",
	}
	p, err := got.Agent("demo")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("demo plan:\n got %+v\nwant %+v", p, want)
	}

	want2 := &Plan{
		Name:     "second_one.x",
		Source:   path,
		Rootfs:   f.rootfs,
		Command:  []string{"/bin/true"},
		Env:      []string{"HOME=/", "PATH=" + DefaultPath},
		Workdir:  "/",
		User:     User{UID: 42, GID: 42},
		UserSet:  true,
		Network:  NetworkNone,
		Seccomp:  DefaultSeccomp,
		TmpSize:  64 << 20,
		IDMap:    IDMapAuto,
		Hostname: "second-one-x",
	}
	if p := got.Agents["second_one.x"]; !reflect.DeepEqual(p, want2) {
		t.Errorf("second plan:\n got %+v\nwant %+v", p, want2)
	}

	_, err = got.Agent("nope")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "demo, second_one.x") {
		t.Errorf("Agent(nope) = %v, want the file and the defined names", err)
	}
}

func TestLoadDefaults(t *testing.T) {
	f := newFixture(t)
	path := f.write(t, "clawrun.yml", "agents:\n  a:\n    rootfs: rootfs\n    command: [x]\n    limits:\n    env:\n")
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Agents["a"]
	if p.UserSet || !p.Limits.IsZero() || p.Grants != nil || p.Hostname != "a" || p.TmpSize != DefaultTmpSize {
		t.Errorf("defaults not applied: %+v", p)
	}
}

// limits.enforce: strict unless the file says best-effort.
func TestLoadLimitsEnforce(t *testing.T) {
	for _, tt := range []struct {
		line string
		want Enforce
		best bool
	}{
		{"    limits: {memory: 64M}\n", "", false},
		{"    limits: {memory: 64M, enforce: strict}\n", EnforceStrict, false},
		{"    limits: {memory: 64M, pids: 32, enforce: best-effort}\n", EnforceBestEffort, true},
	} {
		f := newFixture(t)
		got, err := Load(f.write(t, "clawrun.yaml", "agents:\n  a:\n"+goodAgent+tt.line))
		if err != nil {
			t.Fatalf("%q: %v", tt.line, err)
		}
		l := got.Agents["a"].Limits
		if l.Enforce != tt.want || l.BestEffort() != tt.best || l.MemoryBytes != 64<<20 {
			t.Errorf("%q: limits %+v", tt.line, l)
		}
	}
}

const goodAgent = "    rootfs: ./rootfs\n    command: [/agent]\n"

func TestLoadBad(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		line  int
		field string
		msg   string // substring of the message
	}{
		{"syntax", "agents:\n  demo:\n    rootfs: [a\n    command: x\n", 0, "", "invalid YAML"},
		{"tab indent", "agents:\n\tdemo: {}\n", 2, "", "invalid YAML"},
		{"empty", "# nothing\n", 0, "", "empty"},
		{"top not mapping", "- a\n", 1, "(top level)", "must be a mapping"},
		{"bad version", "version: 2\nagents:\n  demo:\n" + goodAgent, 1, "version", "unsupported version"},
		{"unknown top", "agent:\n  demo: {}\n", 1, "agent", `did you mean "agents"`},
		{"missing agents", "version: 1\n", 1, "agents", "missing"},
		{"no agents", "agents: {}\n", 1, "agents", "no agents"},
		{"agents list", "agents:\n  - demo\n", 2, "agents", "must be a mapping"},
		{"bad name", "agents:\n  -bad:\n" + goodAgent, 2, "agents.-bad", "invalid name"},
		{"agent scalar", "agents:\n  demo: yes\n", 2, "agents.demo", "must be a mapping"},
		{"unknown agent field", "agents:\n  demo:\n" + goodAgent + "    comand: [x]\n", 5, "agents.demo.comand", `did you mean "command"`},
		{"unknown lists known", "agents:\n  demo:\n" + goodAgent + "    frobnicate: 1\n", 5, "agents.demo.frobnicate", "known fields: rootfs, command"},
		{"duplicate key", "agents:\n  demo:\n" + goodAgent + "    rootfs: ./rootfs\n", 5, "agents.demo.rootfs", "first on line 3"},
		{"missing rootfs", "agents:\n  demo:\n    command: [x]\n", 2, "agents.demo.rootfs", "missing"},
		{"missing command", "agents:\n  demo:\n    rootfs: ./rootfs\n", 2, "agents.demo.command", "missing"},
		{"command string", "agents:\n  demo:\n    rootfs: ./rootfs\n    command: python agent.py\n", 4, "agents.demo.command", `command: ["python", "agent.py"]`},
		{"command empty", "agents:\n  demo:\n    rootfs: ./rootfs\n    command: []\n", 4, "agents.demo.command", "is empty"},
		{"command nested", "agents:\n  demo:\n    rootfs: ./rootfs\n    command:\n      - /a\n      - [b]\n", 6, "agents.demo.command[1]", "must be a string"},
		{"rootfs missing dir", "agents:\n  demo:\n    rootfs: ./nope\n    command: [x]\n", 3, "agents.demo.rootfs", "does not exist"},
		{"rootfs is file", "agents:\n  demo:\n    rootfs: notes.txt\n    command: [x]\n", 3, "agents.demo.rootfs", "not a directory"},
		{"rootfs tilde", "agents:\n  demo:\n    rootfs: ~/rootfs\n    command: [x]\n", 3, "agents.demo.rootfs", "~ is not expanded"},
		{"rootfs list", "agents:\n  demo:\n    rootfs: [a]\n    command: [x]\n", 3, "agents.demo.rootfs", "must be a path, not a list"},
		{"env key", "agents:\n  demo:\n" + goodAgent + "    env:\n      1BAD: x\n", 6, "agents.demo.env.1BAD", "invalid variable name"},
		{"env null", "agents:\n  demo:\n" + goodAgent + "    env:\n      A:\n", 6, "agents.demo.env.A", "has no value"},
		{"env list value", "agents:\n  demo:\n" + goodAgent + "    env:\n      A: [1]\n", 6, "agents.demo.env.A", "must be a string"},
		{"env list", "agents:\n  demo:\n" + goodAgent + "    env: [A=b]\n", 5, "agents.demo.env", "must be a mapping"},
		{"workdir relative", "agents:\n  demo:\n" + goodAgent + "    workdir: app\n", 5, "agents.demo.workdir", "not absolute"},
		{"user name", "agents:\n  demo:\n" + goodAgent + "    user: nobody\n", 5, "agents.demo.user", "numeric uid"},
		{"user too big", "agents:\n  demo:\n" + goodAgent + "    user: 4294967295\n", 5, "agents.demo.user", "invalid user"},
		{"grants mapping", "agents:\n  demo:\n" + goodAgent + "    grants: {host: data}\n", 5, "agents.demo.grants", "must be a list"},
		{"grant missing host", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - path: /data\n", 6, "agents.demo.grants[0].host", "missing"},
		{"grant missing path", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - host: data\n", 6, "agents.demo.grants[0].path", "missing"},
		{"grant host absent", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - host: gone\n        path: /data\n", 6, "agents.demo.grants[0].host", "does not exist"},
		{"grant relative path", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - host: data\n        path: data\n", 7, "agents.demo.grants[0].path", "not absolute"},
		{"grant root", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - host: data\n        path: /\n", 7, "agents.demo.grants[0].path", "cannot mount a grant over /"},
		{"grant proc", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - host: data\n        path: /proc/sys\n", 7, "agents.demo.grants[0].path", "inside /proc"},
		{"grant dev via dots", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - host: data\n        path: /x/../dev\n", 7, "agents.demo.grants[0].path", "inside /dev"},
		{"grant sys", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - {host: data, path: /sys}\n", 6, "agents.demo.grants[0].path", "inside /sys"},
		{"grant mode", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - {host: data, path: /d, mode: rwx}\n", 6, "agents.demo.grants[0].mode", "use ro"},
		{"grant unknown field", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - {host: data, path: /d, readonly: true}\n", 6, "agents.demo.grants[0].readonly", "known fields: host, path, mode"},
		{"grant dup path", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - {host: data, path: /d}\n      - {host: cache, path: /d/}\n", 7, "agents.demo.grants[1].path", "already granted on line 6"},
		{"grant rw holds file", "agents:\n  demo:\n" + goodAgent + "    grants:\n      - {host: ., path: /d, mode: rw}\n", 6, "agents.demo.grants[0]", "edit its own permissions"},
		{"network", "agents:\n  demo:\n" + goodAgent + "    network: host\n", 5, "agents.demo.network", "unsafe_host_network: true"},
		{"limits scalar", "agents:\n  demo:\n" + goodAgent + "    limits: 5\n", 5, "agents.demo.limits", "must be a mapping"},
		{"memory bad", "agents:\n  demo:\n" + goodAgent + "    limits:\n      memory: 12X\n", 6, "agents.demo.limits.memory", `invalid size "12X": use a number with an optional K, M or G suffix, e.g. 256M`},
		{"memory small", "agents:\n  demo:\n" + goodAgent + "    limits:\n      memory: 1M\n", 6, "agents.demo.limits.memory", "below the minimum of 4M"},
		{"cpus zero", "agents:\n  demo:\n" + goodAgent + "    limits: {cpus: 0}\n", 5, "agents.demo.limits.cpus", "from 0.01"},
		{"cpus huge", "agents:\n  demo:\n" + goodAgent + "    limits: {cpus: 5000}\n", 5, "agents.demo.limits.cpus", "to 1024"},
		{"cpus below kernel minimum", "agents:\n  demo:\n" + goodAgent + "    limits: {cpus: 0.001}\n", 5, "agents.demo.limits.cpus", "from 0.01"},
		{"cpus word", "agents:\n  demo:\n" + goodAgent + "    limits: {cpus: half}\n", 5, "agents.demo.limits.cpus", "invalid cpus"},
		{"pids word", "agents:\n  demo:\n" + goodAgent + "    limits:\n      pids: many\n", 6, "agents.demo.limits.pids", "whole number"},
		{"pids zero", "agents:\n  demo:\n" + goodAgent + "    limits:\n      pids: 0\n", 6, "agents.demo.limits.pids", "at least 1"},
		{"limits unknown", "agents:\n  demo:\n" + goodAgent + "    limits:\n      mem: 1G\n", 6, "agents.demo.limits.mem", `did you mean "memory"`},
		{"enforce bad", "agents:\n  demo:\n" + goodAgent + "    limits:\n      memory: 64M\n      enforce: soft\n", 7, "agents.demo.limits.enforce", `invalid enforce "soft": use strict`},
		{"enforce list", "agents:\n  demo:\n" + goodAgent + "    limits: {enforce: [strict]}\n", 5, "agents.demo.limits.enforce", "strict or best-effort"},
		{"seccomp", "agents:\n  demo:\n" + goodAgent + "    seccomp: unconfined\n", 5, "agents.demo.seccomp", `is not supported: use one of`},
		{"tmp_size", "agents:\n  demo:\n" + goodAgent + "    tmp_size: big\n", 5, "agents.demo.tmp_size", "invalid size"},
		{"idmap", "agents:\n  demo:\n" + goodAgent + "    idmap: full\n", 5, "agents.demo.idmap", "use auto"},
		{"hostname", "agents:\n  demo:\n" + goodAgent + "    hostname: my_host\n", 5, "agents.demo.hostname", "invalid hostname"},
		{"second document", "agents:\n  demo:\n" + goodAgent + "---\nagents: {}\n", 5, "", "second YAML document"},
		{"merge key", "base: &b\n  rootfs: x\nagents:\n  demo:\n    <<: *b\n", 1, "base", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			path := f.write(t, "clawrun.yaml", tt.body)
			got, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", got)
			}
			if got != nil {
				t.Errorf("Load returned a File with an error")
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v has no *FieldError", err)
			}
			for _, fe := range FieldErrors(err) {
				if fe.File != path {
					t.Errorf("File = %q, want %q", fe.File, path)
				}
				if (tt.line == 0 || fe.Line == tt.line) && fe.Field == tt.field && strings.Contains(fe.Msg, tt.msg) {
					// The formatted text carries all three.
					s := fe.Error()
					if !strings.HasPrefix(s, path) || (tt.field != "" && !strings.Contains(s, ": "+tt.field+": ")) {
						t.Errorf("formatted error %q lacks file or field", s)
					}
					return
				}
			}
			t.Errorf("no error at line %d field %q containing %q in:\n%v", tt.line, tt.field, tt.msg, err)
		})
	}
}

func TestLoadSyntaxLine(t *testing.T) {
	f := newFixture(t)
	path := f.write(t, "clawrun.yaml", "agents:\n  demo:\n    rootfs: ./rootfs\n   command: [x]\n")
	_, err := Load(path)
	fes := FieldErrors(err)
	if len(fes) != 1 || fes[0].Line == 0 || !strings.Contains(fes[0].Error(), "clawrun.yaml:") {
		t.Fatalf("want one syntax error with a line, got %v", err)
	}
}

func TestLoadReportsAll(t *testing.T) {
	f := newFixture(t)
	path := f.write(t, "clawrun.yaml", `agents:
  demo:
    rootfs: ./missing
    command: "x"
    limits: {memory: 12X, pids: many}
    grants:
      - {host: data, path: relative}
  other:
    command: [y]
    network: bridge
`)
	_, err := Load(path)
	want := []struct {
		line  int
		field string
	}{
		{3, "agents.demo.rootfs"},
		{4, "agents.demo.command"},
		{5, "agents.demo.limits.memory"},
		{5, "agents.demo.limits.pids"},
		{7, "agents.demo.grants[0].path"},
		{8, "agents.other.rootfs"},
		{10, "agents.other.network"},
	}
	fes := FieldErrors(err)
	if len(fes) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(fes), len(want), err)
	}
	for i, w := range want {
		if fes[i].Line != w.line || fes[i].Field != w.field {
			t.Errorf("error %d = %d %s, want %d %s", i, fes[i].Line, fes[i].Field, w.line, w.field)
		}
	}
	// Joined text lists each on its own line as file:line: field: msg.
	if n := strings.Count(err.Error(), path+":"); n != len(want) {
		t.Errorf("joined text names the file %d times, want %d:\n%v", n, len(want), err)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "clawrun.yaml", Line: 7, Field: "agents.demo.limits.memory", Msg: "bad"}, "clawrun.yaml:7: agents.demo.limits.memory: bad"},
		{FieldError{File: "clawrun.yaml", Msg: "empty"}, "clawrun.yaml: empty"},
		{FieldError{Field: "--mount", Msg: "bad"}, "--mount: bad"},
		{FieldError{File: "a.yaml", Line: 3, Field: "agents.x.grants[0].host", Msg: "refused", Rule: RuleBlocked}, "a.yaml:3: agents.x.grants[0].host: refused (policy: blocked paths)"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestFindFile(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	if _, err := FindFile(""); err == nil || !strings.Contains(err.Error(), "--config") || !strings.Contains(err.Error(), "create clawrun.yaml") {
		t.Errorf("no file: err = %v", err)
	}
	f.write(t, "clawrun.yml", "")
	if got, err := FindFile(""); err != nil || got != "clawrun.yml" {
		t.Errorf("FindFile = %q, %v; want clawrun.yml", got, err)
	}
	f.write(t, "clawrun.yaml", "")
	if _, err := FindFile(""); err == nil || !strings.Contains(err.Error(), "remove one") {
		t.Errorf("both: err = %v", err)
	}
	os.Remove(filepath.Join(f.dir, "clawrun.yml"))
	if got, err := FindFile(""); err != nil || got != "clawrun.yaml" {
		t.Errorf("FindFile = %q, %v; want clawrun.yaml", got, err)
	}
	if got, err := FindFile("notes.txt"); err != nil || got != "notes.txt" {
		t.Errorf("explicit: %q, %v", got, err)
	}
	if _, err := FindFile("nope.yaml"); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("explicit missing: %v", err)
	}
	if _, err := FindFile("data"); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("explicit dir: %v", err)
	}
}

func TestLoadRelativePathAsGiven(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	f.write(t, "clawrun.yaml", "agents:\n  demo:\n    rootfs: rootfs\n    command: [x]\n    limits: {memory: 12X}\n")
	_, err := Load("clawrun.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), `clawrun.yaml:5: agents.demo.limits.memory: invalid size "12X"`) {
		t.Errorf("err = %v", err)
	}
}

func TestValidName(t *testing.T) {
	for _, n := range []string{"a", "demo", "A_b.c-1", "0", strings.Repeat("x", 64)} {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", "-a", ".a", "_a", "a b", "a/b", "é", strings.Repeat("x", 65)} {
		if err := ValidName(n); err == nil {
			t.Errorf("ValidName(%q) = nil", n)
		}
	}
}

func TestDefaultHostname(t *testing.T) {
	for in, want := range map[string]string{"demo": "demo", "a_b.c": "a-b-c", "x_": "x", strings.Repeat("y", 64): strings.Repeat("y", 63)} {
		if got := defaultHostname(in); got != want || checkHostname(got) != nil {
			t.Errorf("defaultHostname(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadRefusesRWGrantOfSymlinkedFile(t *testing.T) {
	f := newFixture(t)
	real := filepath.Join(f.data, "real.yaml")
	body := "agents:\n  demo:\n" + goodAgent + "    grants:\n      - {host: data, path: /data, mode: rw}\n"
	if err := os.WriteFile(real, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(f.dir, "clawrun.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	// Relative paths (./rootfs) resolve against the directory the file is
	// named in, where the rootfs is, not against the link's target.
	_, err := Load(link)
	fes := FieldErrors(err)
	if len(fes) != 1 || fes[0].Line != 6 || fes[0].Field != "agents.demo.grants[0]" || !strings.Contains(fes[0].Msg, real) {
		t.Fatalf("want one error about %s on line 6, got %v", real, err)
	}
	// Read-only is fine.
	if err := os.WriteFile(real, []byte(strings.Replace(body, "rw", "ro", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link); err != nil {
		t.Fatal(err)
	}
}
