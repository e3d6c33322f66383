package policy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// wantErr asserts that err holds a *FieldError at line (0: any) for field
// whose message contains msg and whose rule is rule.
func wantErr(t *testing.T, err error, line int, field, rule, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s: %s", field, msg)
	}
	for _, fe := range FieldErrors(err) {
		if (line == 0 || fe.Line == line) && fe.Field == field && fe.Rule == rule && strings.Contains(fe.Msg, msg) {
			if rule != "" && !strings.HasSuffix(fe.Error(), "(policy: "+rule+")") {
				t.Errorf("formatted %q does not end with the rule", fe.Error())
			}
			return
		}
	}
	t.Fatalf("no error at line %d field %q rule %q containing %q in:\n%v", line, field, rule, msg, err)
}

// agentFile writes an agent file with one agent "demo" whose extra lines
// (indented by four spaces) follow rootfs and command.
func (f fixture) agentFile(t *testing.T, extra string) string {
	t.Helper()
	return f.write(t, "clawrun.yaml", "agents:\n  demo:\n"+goodAgent+extra)
}

// only is an allowlist with the fixture's directory tree as the agent
// directory, the mode given, and nothing else.
func only(m Mode) *Allowlist {
	return &Allowlist{Path: "/nonexistent/allowlist.yaml", AgentDir: m}
}

func TestGrantOutsideAllowlist(t *testing.T) {
	f := newFixture(t)
	other := t.TempDir()
	path := f.agentFile(t, "    grants:\n      - {host: "+other+", path: /o}\n")
	_, err := Load(path, WithAllowlist(only(ReadWrite)))
	wantErr(t, err, 6, "agents.demo.grants[0].host", RuleAllowlist, "outside every allowed root")
	wantErr(t, err, 6, "agents.demo.grants[0].host", RuleAllowlist, "/nonexistent/allowlist.yaml")

	// The same grant under a root of the allowlist is fine.
	a := only(ReadWrite)
	a.Roots = []AllowedRoot{{Path: resolveExisting(other), Mode: ReadOnly}}
	if _, err := Load(path, WithAllowlist(a)); err != nil {
		t.Fatal(err)
	}
}

func TestGrantModeCappedByAllowlist(t *testing.T) {
	f := newFixture(t)
	path := f.agentFile(t, "    grants:\n      - host: data\n        path: /d\n        mode: rw\n")
	_, err := Load(path, WithAllowlist(only(ReadOnly)))
	wantErr(t, err, 8, "agents.demo.grants[0].mode", RuleAllowlist, "allows at most ro")

	// The deepest root decides: data is rw although the agent dir is ro.
	a := only(ReadOnly)
	a.Roots = []AllowedRoot{{Path: f.data, Mode: ReadWrite}}
	if _, err := Load(path, WithAllowlist(a)); err != nil {
		t.Fatal(err)
	}
	// ... and narrows: the agent dir is rw but data is ro.
	a = only(ReadWrite)
	a.Roots = []AllowedRoot{{Path: f.data, Mode: ReadOnly}}
	_, err = Load(path, WithAllowlist(a))
	wantErr(t, err, 8, "agents.demo.grants[0].mode", RuleAllowlist, "at most ro under "+f.data)
}

func TestDefaultAllowlist(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	a := DefaultAllowlist("/x/allowlist.yaml")
	if !a.Default || a.AgentDir != ReadWrite || len(a.Roots) != 1 || a.Roots[0].Path != resolveExisting(home) || a.Roots[0].Mode != ReadWrite {
		t.Fatalf("DefaultAllowlist = %+v", a)
	}
	f := newFixture(t)
	proj := filepath.Join(home, "proj")
	if err := os.Mkdir(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	path := f.agentFile(t, "    grants:\n      - {host: "+proj+", path: /p, mode: rw}\n      - {host: "+t.TempDir()+", path: /o}\n")
	_, err := Load(path, WithAllowlist(a))
	fes := FieldErrors(err)
	if len(fes) != 1 {
		t.Fatalf("want one error (the grant outside home and the agent dir), got %v", err)
	}
	wantErr(t, err, 7, "agents.demo.grants[1].host", RuleAllowlist, "no allowlist at /x/allowlist.yaml, so the defaults allow")

	// The home directory itself may hold credentials: refused even when
	// it holds none yet, since a rw grant could plant ~/.ssh/authorized_keys.
	path = f.agentFile(t, "    grants:\n      - {host: "+home+", path: /home}\n")
	_, err = Load(path, WithAllowlist(a))
	wantErr(t, err, 6, "agents.demo.grants[0].host", RuleBlocked, filepath.Join(resolveExisting(home), ".ssh"))
}

func TestFindAllowlist(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv(AllowlistEnv, "")
	if os.Geteuid() != 0 {
		a, err := FindAllowlist()
		if err != nil || !a.Default || a.Path != filepath.Join(dir, "clawrun", "allowlist.yaml") {
			t.Fatalf("FindAllowlist = %+v, %v", a, err)
		}
	}
	t.Setenv(AllowlistEnv, filepath.Join(dir, "missing.yaml"))
	if _, err := FindAllowlist(); err == nil || !strings.Contains(err.Error(), "missing.yaml") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing $%s file: %v", AllowlistEnv, err)
	}
	p := filepath.Join(dir, "a.yaml")
	if err := os.WriteFile(p, []byte("roots: [{path: /srv, mode: rw}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(AllowlistEnv, p)
	a, err := FindAllowlist()
	if err != nil || a.Default || a.Path != p || a.AgentDir != "" || len(a.Roots) != 1 {
		t.Fatalf("FindAllowlist = %+v, %v", a, err)
	}
}

func TestLoadAllowlist(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := t.TempDir()
	p := filepath.Join(dir, "allowlist.yaml")
	body := `version: 1
agent_dir: ro
roots:
  - {path: ~/projects, mode: rw}
  - path: /srv/agents
blocked: [.vault-token, /srv/agents/secrets, "*.kdbx"]
capabilities: [sys_ptrace, CAP_NET_ADMIN]
`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAllowlist(p)
	if err != nil {
		t.Fatal(err)
	}
	want := &Allowlist{
		Path:     p,
		AgentDir: ReadOnly,
		Roots: []AllowedRoot{
			{Path: filepath.Join(resolveExisting(home), "projects"), Mode: ReadWrite, Line: 4},
			{Path: resolveExisting("/srv/agents"), Mode: ReadOnly, Line: 5},
		},
		Blocked:      []string{".vault-token", "/srv/agents/secrets", "*.kdbx"},
		Capabilities: []string{"CAP_SYS_PTRACE", "CAP_NET_ADMIN"},
	}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("LoadAllowlist:\n got %+v\nwant %+v", a, want)
	}
	// An empty file allows nothing.
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err := LoadAllowlist(p); err != nil || a.AgentDir != "" || len(a.Roots) != 0 {
		t.Fatalf("empty allowlist = %+v, %v", a, err)
	}
}

func TestLoadAllowlistBad(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		line  int
		field string
		msg   string
	}{
		{"syntax", "roots: [\n", 0, "", "invalid YAML"},
		{"unknown", "rots: []\n", 1, "rots", `did you mean "roots"`},
		{"relative root", "roots: [{path: srv}]\n", 1, "roots[0].path", "not absolute"},
		{"root mode", "roots: [{path: /srv, mode: rwx}]\n", 1, "roots[0].mode", "use ro"},
		{"root dup", "roots:\n  - {path: /srv}\n  - {path: /srv/}\n", 3, "roots[1].path", "already listed on line 2"},
		{"root missing path", "roots:\n  - {mode: ro}\n", 2, "roots[0].path", "missing"},
		{"agent_dir", "agent_dir: yes\n", 1, "agent_dir", "use none, ro or rw"},
		{"bad pattern", "blocked: [\"a/../b\"]\n", 1, "blocked[0]", "'..'"},
		{"bad glob", "blocked: [\"[x\"]\n", 1, "blocked[0]", "bad glob"},
		{"root pattern", "blocked: [/]\n", 1, "blocked[0]", "blocks everything"},
		{"bad capability", "capabilities: [CAP_FLY]\n", 1, "capabilities[0]", "unknown capability"},
		{"newline in root", "roots: [{path: \"/srv\\nx\"}]\n", 1, "roots[0].path", "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "allowlist.yaml")
			if err := os.WriteFile(p, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadAllowlist(p)
			wantErr(t, err, tt.line, tt.field, RuleAllowlistFile, tt.msg)
			if !strings.HasPrefix(err.Error(), p) {
				t.Errorf("error does not name the allowlist: %v", err)
			}
		})
	}
}

// An allowlist that exists but cannot be read or parsed stops Load: a host
// that meant to restrict agents must not silently get the defaults.
func TestLoadBadAllowlistStopsLoad(t *testing.T) {
	f := newFixture(t)
	path := f.agentFile(t, "")
	al := filepath.Join(t.TempDir(), "allowlist.yaml")
	if err := os.WriteFile(al, []byte("roots: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, WithAllowlistFile(al))
	wantErr(t, err, 1, "roots", RuleAllowlistFile, "must be a list")
	if os.Geteuid() != 0 { // root reads a mode-000 file anyway
		if err := os.Chmod(al, 0); err != nil {
			t.Fatal(err)
		}
		_, err = Load(path, WithAllowlistFile(al))
		wantErr(t, err, 0, "", RuleAllowlistFile, "cannot read the allowlist")
	}
	t.Setenv(AllowlistEnv, filepath.Join(t.TempDir(), "nope.yaml"))
	_, err = Load(path)
	wantErr(t, err, 0, "", RuleAllowlistFile, "does not exist")
}

func TestBlockedGrants(t *testing.T) {
	f := newFixture(t)
	mk := func(rel, body string) string {
		p := filepath.Join(f.dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if body != "-" {
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mk("home/.ssh", "-")
	mk("home/.ssh/id_ed25519", "key")
	mk("proj/.env", "TOKEN=x")
	mk("proj2/.env.example", "TOKEN=")
	mk("proj2/src/main.go", "package main")
	mk("certs/ca.pem", "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
	mk("keys/server.key", "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n")
	mk("deep/a/b/.config/gcloud/creds.json", "{}")
	mk("deep2/id_rsa.pub", "ssh-rsa AAAA")
	mk("vault/.vault-token", "s.x")
	if err := os.Symlink(filepath.Join(f.dir, "home/.ssh"), filepath.Join(f.dir, "sshlink")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host string
		msg  string // "" means allowed
	}{
		{"home/.ssh", `matches blocked pattern ".ssh" (built-in)`},
		{"home/.ssh/id_ed25519", `blocked pattern ".ssh"`},
		{"home", `contains ` + filepath.Join(f.dir, "home/.ssh") + ` (blocked pattern ".ssh"`},
		{"sshlink", `blocked pattern ".ssh"`},
		{"proj", `blocked pattern ".env"`},
		{"proj/.env", `blocked pattern ".env"`},
		{"proj2", ""},
		{"certs", ""},
		{"certs/ca.pem", ""},
		{"keys", `blocked pattern "*.key" (built-in: private key)`},
		{"keys/server.key", `blocked pattern "*.key"`},
		{"deep", `blocked pattern ".config/gcloud"`},
		{"deep2", `blocked pattern "id_rsa*"`},
		{"vault", `blocked pattern ".vault-token" (the allowlist)`},
		{"/proc/self/root", `blocked pattern "/proc"`},
		{"/dev/null", `blocked pattern "/dev"`},
		{"/etc/shadow", `blocked pattern "/etc/shadow"`},
		{"/etc", `/etc/shadow`},
		{"/", `blocked pattern`},
	}
	a := only(ReadWrite)
	a.Roots = []AllowedRoot{{Path: "/", Mode: ReadOnly}}
	a.Blocked = []string{".vault-token"}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			path := f.agentFile(t, "    grants:\n      - {host: \""+tt.host+"\", path: /g}\n")
			_, err := Load(path, WithAllowlist(a))
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantErr(t, err, 6, "agents.demo.grants[0].host", RuleBlocked, tt.msg)
		})
	}
}

// clawrun's own directories, as named with --root and --data, are blocked.
func TestBlockedClawrunDirs(t *testing.T) {
	f := newFixture(t)
	state := filepath.Join(f.dir, "cache", "state")
	path := f.agentFile(t, "    grants:\n      - {host: cache, path: /c}\n")
	_, err := Load(path, WithAllowlist(only(ReadWrite)), WithClawrunDirs(state))
	wantErr(t, err, 6, "agents.demo.grants[0].host", RuleBlocked, "clawrun's own state, data and config")
}

func TestRootfsBlocked(t *testing.T) {
	f := newFixture(t)
	path := f.write(t, "clawrun.yaml", "agents:\n  demo:\n    rootfs: /\n    command: [x]\n")
	_, err := Load(path)
	wantErr(t, err, 3, "agents.demo.rootfs", RuleBlocked, "root filesystem / refused")
}

func TestSelfEdit(t *testing.T) {
	f := newFixture(t)
	// The allowlist in data: a rw grant of data could rewrite it.
	al := filepath.Join(f.data, "allowlist.yaml")
	if err := os.WriteFile(al, []byte("agent_dir: rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := f.agentFile(t, "    grants:\n      - {host: data, path: /d, mode: rw}\n")
	_, err := Load(path, WithAllowlistFile(al))
	wantErr(t, err, 6, "agents.demo.grants[0]", RuleSelfEdit, "contains the allowlist "+al)

	// The clawrun binary, through a symlink.
	bin := filepath.Join(f.dir, "cache", "clawrun")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(f.rootfs, "clawrun-link")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	path = f.agentFile(t, "    grants:\n      - {host: cache, path: /c, mode: rw}\n")
	_, err = Load(path, WithAllowlist(only(ReadWrite)), WithExecutable(link))
	wantErr(t, err, 6, "agents.demo.grants[0]", RuleSelfEdit, "contains the clawrun binary "+bin)
	// Read-only is fine.
	path = f.agentFile(t, "    grants:\n      - {host: cache, path: /c}\n")
	if _, err := Load(path, WithAllowlist(only(ReadWrite)), WithExecutable(link)); err != nil {
		t.Fatal(err)
	}
}

// A rw grant of one agent may not reach the custom seccomp profile of
// another agent declared later in the file.
func TestSelfEditCustomSeccompAcrossAgents(t *testing.T) {
	f := newFixture(t)
	prof := filepath.Join(f.data, "p.json")
	if err := os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	path := f.write(t, "clawrun.yaml", `agents:
  a:
    rootfs: rootfs
    command: [x]
    grants: [{host: data, path: /d, mode: rw}]
  b:
    rootfs: rootfs
    command: [x]
    seccomp: {custom: data/p.json}
`)
	_, err := Load(path, WithAllowlist(only(ReadWrite)))
	wantErr(t, err, 5, "agents.a.grants[0]", RuleSelfEdit, "the seccomp profile "+prof)
}

// A symlink in a grant path may point only within its own directory: one
// an agent planted in its rw grant cannot redirect a later grant elsewhere.
func TestGrantSymlinkLeavingItsDirectory(t *testing.T) {
	f := newFixture(t)
	shared := filepath.Join(f.dir, "shared")
	if err := os.MkdirAll(filepath.Join(shared, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.data, filepath.Join(shared, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(shared, "inside")); err != nil {
		t.Fatal(err)
	}
	path := f.agentFile(t, "    grants:\n      - {host: shared/sub, path: /s}\n")
	_, err := Load(path, WithAllowlist(only(ReadWrite)))
	wantErr(t, err, 6, "agents.demo.grants[0].host", RuleHostPath, "passes through the symlink "+filepath.Join(shared, "sub")+", which points out of its directory to "+f.data)
	path = f.agentFile(t, "    grants:\n      - {host: shared/inside, path: /s}\n")
	if file, err := Load(path, WithAllowlist(only(ReadWrite))); err != nil || file.Agents["demo"].Grants[0].Host != filepath.Join(shared, "real") {
		t.Fatalf("symlink within its directory: %v", err)
	}
}

func TestContainerPathRules(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, grants string
		line         int
		field, msg   string
	}{
		{"newline", "      - {host: data, path: \"/a\\nb\"}\n", 6, "agents.demo.grants[0].path", "control character"},
		{"nul", "      - {host: data, path: \"/a\\0b\"}\n", 6, "agents.demo.grants[0].path", "control character"},
		{"hides earlier", "      - {host: cache, path: /d/sub}\n      - {host: data, path: /d}\n", 7, "agents.demo.grants[1].path", "would be mounted over /d/sub"},
		{"dup", "      - {host: cache, path: /d}\n      - {host: data, path: /d/.}\n", 7, "agents.demo.grants[1].path", "already granted on line 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := f.agentFile(t, "    grants:\n"+tt.grants)
			_, err := Load(path, WithAllowlist(only(ReadWrite)))
			wantErr(t, err, tt.line, tt.field, RuleContainerPath, tt.msg)
		})
	}
	t.Run("host control char rule", func(t *testing.T) {
		path := f.agentFile(t, "    grants:\n      - {host: \"da\\nta\", path: /a}\n")
		_, err := Load(path, WithAllowlist(only(ReadWrite)))
		wantErr(t, err, 6, "agents.demo.grants[0].host", RuleHostPath, "control character")
	})
	// Parent first, then child, is the right order.
	path := f.agentFile(t, "    grants:\n      - {host: data, path: /d}\n      - {host: cache, path: /d/sub}\n")
	if _, err := Load(path, WithAllowlist(only(ReadWrite))); err != nil {
		t.Fatal(err)
	}
}

func TestCapabilities(t *testing.T) {
	f := newFixture(t)
	path := f.agentFile(t, "    capabilities: [CAP_NET_BIND_SERVICE, chown, Kill]\n")
	file, err := Load(path, WithAllowlist(only(ReadWrite)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := file.Agents["demo"].Capabilities, []string{"CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_KILL"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Capabilities = %v, want %v", got, want)
	}

	tests := []struct {
		caps, field, rule, msg string
	}{
		{"[CAP_NET_BIND_SERVICES]", "agents.demo.capabilities[0]", RuleCapabilities, "did you mean CAP_NET_BIND_SERVICE?"},
		{"[CAP_SYS_ADMIN]", "agents.demo.capabilities[0]", RuleCapabilities, "privileged"},
		{"[SYS_PTRACE]", "agents.demo.capabilities[0]", RuleCapabilities, "list it under capabilities: in /nonexistent/allowlist.yaml"},
		{"[CAP_KILL, kill]", "agents.demo.capabilities[1]", "", "already listed"},
		{"CAP_KILL", "agents.demo.capabilities", "", "must be a list"},
	}
	for _, tt := range tests {
		t.Run(tt.caps, func(t *testing.T) {
			path := f.agentFile(t, "    capabilities: "+tt.caps+"\n")
			_, err := Load(path, WithAllowlist(only(ReadWrite)))
			wantErr(t, err, 5, tt.field, tt.rule, tt.msg)
		})
	}
	a := only(ReadWrite)
	a.Capabilities = []string{"CAP_SYS_PTRACE"}
	path = f.agentFile(t, "    capabilities: [CAP_SYS_PTRACE]\n")
	if _, err := Load(path, WithAllowlist(a)); err != nil {
		t.Fatalf("allowlisted privileged capability: %v", err)
	}
}

func TestSeccompField(t *testing.T) {
	f := newFixture(t)
	good := filepath.Join(f.dir, "cache", "good.json")
	if err := os.WriteFile(good, []byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := f.write(t, "bad.json", `{"defaultAction":"SCMP_ACT_ERRNO","archMap":[]}`)
	_ = bad
	path := f.agentFile(t, "    seccomp:\n      custom: ./cache/good.json\n")
	file, err := Load(path, WithAllowlist(only(ReadWrite)))
	if err != nil {
		t.Fatal(err)
	}
	if got := file.Agents["demo"].Seccomp; got != CustomSeccompPrefix+good {
		t.Errorf("Seccomp = %q, want %q", got, CustomSeccompPrefix+good)
	}
	path = f.agentFile(t, "    seccomp: custom:cache/good.json\n")
	if file, err := Load(path, WithAllowlist(only(ReadWrite))); err != nil || file.Agents["demo"].Seccomp != CustomSeccompPrefix+good {
		t.Fatalf("seccomp: custom:cache/good.json: %v", err)
	}
	path = f.agentFile(t, "    seccomp: agent\n")
	if file, err := Load(path); err != nil || file.Agents["demo"].Seccomp != "agent" {
		t.Fatalf("seccomp: agent: %v", err)
	}
	tests := []struct {
		body, field, rule, msg string
		line                   int
	}{
		{"    seccomp: {custom: nope.json}\n", "agents.demo.seccomp.custom", RuleSeccomp, "does not exist", 5},
		{"    seccomp: {custom: bad.json}\n", "agents.demo.seccomp.custom", RuleSeccomp, "Docker", 5},
		{"    seccomp: {custom: cache}\n", "agents.demo.seccomp.custom", RuleSeccomp, "not a regular file", 5},
		{"    seccomp: {file: x.json}\n", "agents.demo.seccomp.file", "", `unknown field "file"`, 5},
		{"    seccomp: \"custom:x.json\"\n", "agents.demo.seccomp", RuleSeccomp, "does not exist", 5},
		{"    seccomp: \"custom:\"\n", "agents.demo.seccomp", RuleSeccomp, "no file after", 5},
		{"    seccomp: custom\n", "agents.demo.seccomp", RuleSeccomp, "name the file", 5},
		{"    seccomp: defualt\n", "agents.demo.seccomp", RuleSeccomp, `did you mean "default"`, 5},
		{"    seccomp: [default]\n", "agents.demo.seccomp", "", "must be a profile name", 5},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			path := f.agentFile(t, tt.body)
			_, err := Load(path, WithAllowlist(only(ReadWrite)))
			wantErr(t, err, tt.line, tt.field, tt.rule, tt.msg)
		})
	}
}

func TestSlackRoute(t *testing.T) {
	f := newFixture(t)
	path := f.write(t, "clawrun.yaml", `slack:
  api_url: http://127.0.0.1:9999/api/
agents:
  demo:
`+goodAgent+`    slack:
      channels: [C0123ABC, G0456DEF]
      dm: true
      mentions_only: false
      users: [U0123ABC, W0999]
      post_to: [C0777]
      concurrency: 2
      queue_limit: 10
  quiet:
`+goodAgent+`    slack: {dm: true}
  none:
`+goodAgent)
	file, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if file.SlackAPIURL != "http://127.0.0.1:9999/api/" {
		t.Errorf("SlackAPIURL = %q", file.SlackAPIURL)
	}
	want := &SlackRoute{
		Channels: []string{"C0123ABC", "G0456DEF"}, DM: true, Users: []string{"U0123ABC", "W0999"},
		PostTo: []string{"C0777"}, Concurrency: 2, QueueLimit: 10,
	}
	if got := file.Agents["demo"].Slack; !reflect.DeepEqual(got, want) {
		t.Errorf("demo route = %+v, want %+v", got, want)
	}
	if got := file.Agents["quiet"].Slack; !reflect.DeepEqual(got, &SlackRoute{DM: true, Concurrency: 1, QueueLimit: 100}) {
		t.Errorf("defaults = %+v", got)
	}
	if got := file.Agents["none"].Slack; got != nil {
		t.Errorf("no slack section: %+v", got)
	}

	tests := []struct {
		body, field, rule, msg string
		line                   int
	}{
		{"    slack: {channels: [\"#general\"]}\n", "agents.demo.slack.channels[0]", RuleSlack, "not a Slack channel ID", 5},
		{"    slack: {channels: [U0123]}\n", "agents.demo.slack.channels[0]", RuleSlack, "start with C, G or D", 5},
		{"    slack:\n      dm: true\n      users: [C0123]\n", "agents.demo.slack.users[0]", RuleSlack, "start with U or W", 7},
		{"    slack:\n      channels:\n        - C01\n        - C01\n", "agents.demo.slack.channels[1]", RuleSlack, "already listed on line 7", 8},
		{"    slack: {dm: yes}\n", "agents.demo.slack.dm", "", "must be true or false", 5},
		{"    slack: {dm: true, concurrency: 0}\n", "agents.demo.slack.concurrency", "", "from 1 to 64", 5},
		{"    slack: {dm: true, queue_limit: lots}\n", "agents.demo.slack.queue_limit", "", "whole number", 5},
		{"    slack: {channel: [C01]}\n", "agents.demo.slack.channel", "", `did you mean "channels"`, 5},
		{"    slack: {dm: false}\n", "agents.demo.slack", RuleSlack, "matches no message", 5},
		{"    slack: [C01]\n", "agents.demo.slack", "", "must be a mapping", 5},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			path := f.agentFile(t, tt.body)
			_, err := Load(path)
			wantErr(t, err, tt.line, tt.field, tt.rule, tt.msg)
		})
	}
	for _, u := range []string{"ftp://x/", "slack.com/api", "https://", "https://u:p@x/"} {
		path := f.write(t, "clawrun.yaml", "slack: {api_url: \""+u+"\"}\nagents:\n  demo:\n"+goodAgent)
		_, err := Load(path)
		wantErr(t, err, 1, "slack.api_url", "", "invalid api_url")
	}
}

func TestAdHocPolicy(t *testing.T) {
	f := newFixture(t)
	t.Chdir(filepath.Join(f.dir, "cache"))
	other := t.TempDir()
	if err := os.Mkdir(filepath.Join(f.dir, "cache", ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.dir, "cache", "w"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := AdHocOptions{Name: "x", Rootfs: f.rootfs, Command: []string{"/a"}}
	tests := []struct {
		mount, rule, msg string
	}{
		{other + ":/o", RuleAllowlist, "outside every allowed root"},
		{".:/c", RuleBlocked, `blocked pattern ".ssh"`},
		{".ssh:/s", RuleBlocked, `blocked pattern ".ssh"`},
		{"w:/w:rw", RuleSelfEdit, "the clawrun binary"},
		{"w:/a\n:rw", RuleContainerPath, "control character"},
	}
	bin := filepath.Join(f.dir, "cache", "w", "clawrun")
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.mount, func(t *testing.T) {
			o := base
			o.Mounts = []string{tt.mount}
			_, err := AdHoc(o, WithAllowlist(only(ReadWrite)), WithExecutable(bin))
			wantErr(t, err, 0, "--mount", tt.rule, tt.msg)
		})
	}
	o := base
	o.Mounts = []string{"w:/w", "w:/w/sub", "w:/x:rw"}
	if _, err := AdHoc(o, WithAllowlist(only(ReadWrite))); err != nil {
		t.Fatal(err)
	}
	o.Mounts = []string{"w:/w/sub", "w:/w"}
	_, err := AdHoc(o, WithAllowlist(only(ReadWrite)))
	wantErr(t, err, 0, "--mount", RuleContainerPath, "would be mounted over /w/sub")
	o = base
	o.Rootfs = "/"
	_, err = AdHoc(o, WithAllowlist(only(ReadWrite)))
	wantErr(t, err, 0, "--rootfs", RuleBlocked, "root filesystem / refused")
	// The current directory / is no agent directory.
	t.Chdir("/")
	o = base
	o.Mounts = []string{"usr:/u"}
	_, err = AdHoc(o, WithAllowlist(only(ReadWrite)))
	wantErr(t, err, 0, "--mount", RuleAllowlist, "allows nothing")
}

func TestPatterns(t *testing.T) {
	for _, tt := range []struct {
		pat, path string
		covers    bool
	}{
		{".ssh", "/home/u/.ssh", true},
		{".ssh", "/home/u/.ssh/config", true},
		{".ssh", "/home/u/.sshx", false},
		{".config/gcloud", "/h/.config/gcloud/x", true},
		{".config/gcloud", "/h/gcloud", false},
		{"id_rsa*", "/h/id_rsa.pub", true},
		{".env.*", "/p/.env.local", true},
		{".env.*", "/p/.env.example", false},
		{"/proc", "/proc", true},
		{"/proc", "/proc/1/root", true},
		{"/proc", "/procx", false},
		{"/proc", "/x/proc", false},
	} {
		p, err := parsePattern(tt.pat, "/home/u", "test")
		if err != nil {
			t.Fatal(err)
		}
		if got := p.covers(components(tt.path)); got != tt.covers {
			t.Errorf("%q covers %q = %v, want %v", tt.pat, tt.path, got, tt.covers)
		}
	}
	p, _ := parsePattern("~/.ssh", "/home/u", "test")
	if !p.holds(components("/home/u")) || !p.holds(nil) || p.holds(components("/home/v")) || p.holds(components("/home/u/.ssh")) {
		t.Errorf("holds of %v wrong", p)
	}
}

func TestAllowlistTotal(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("cgroup_parent: ci-agents\ntotal: {memory: 1G, cpus: 2, pids: 200}\n"), 0o644)
	a, err := LoadAllowlist(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.ParentName() != "ci-agents" || a.Total.MemoryBytes != 1<<30 || a.Total.CPUs != 2 || a.Total.Pids != 200 || a.TotalLine != 2 {
		t.Fatalf("allowlist %+v", a)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("cgroup_parent: ../etc\ntotal:\n  pids: 0\n  enforce: best-effort\n"), 0o644)
	_, err = LoadAllowlist(bad)
	for _, w := range []string{"bad.yaml:1: cgroup_parent", "bad.yaml:3: total.pids", "bad.yaml:4: total.enforce"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}
