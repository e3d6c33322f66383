package runtime

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
)

func apply(t *testing.T, o SpecOpt) (*specs.Spec, error) {
	t.Helper()
	s := &specs.Spec{}
	return s, o(s)
}

func TestWithRootfs(t *testing.T) {
	tests := []struct {
		path     string
		readonly bool
		wantErr  bool
	}{
		{"/var/lib/agent/rootfs", true, false},
		{"/rootfs", false, false},
		{"rootfs", true, true},
		{"./rootfs", true, true},
		{"", true, true},
	}
	for _, tt := range tests {
		s, err := apply(t, WithRootfs(tt.path, tt.readonly))
		if tt.wantErr {
			if err == nil {
				t.Errorf("WithRootfs(%q): no error, root %+v", tt.path, s.Root)
			} else if !strings.Contains(err.Error(), "absolute") {
				t.Errorf("WithRootfs(%q): error %q does not say the path must be absolute", tt.path, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("WithRootfs(%q): %v", tt.path, err)
			continue
		}
		if want := (&specs.Root{Path: tt.path, Readonly: tt.readonly}); !reflect.DeepEqual(s.Root, want) {
			t.Errorf("WithRootfs(%q, %v): root %+v, want %+v", tt.path, tt.readonly, s.Root, want)
		}
	}
}

func TestWithProcess(t *testing.T) {
	args := []string{"/bin/agent", "--serve"}
	env := []string{"HOME=/", "PATH=/bin"}
	u := policy.User{UID: 1000, GID: 1001}
	s, err := apply(t, WithProcess(args, env, "/work", u))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if !slices.Equal(p.Args, args) || !slices.Equal(p.Env, env) || p.Cwd != "/work" ||
		!reflect.DeepEqual(p.User, specs.User{UID: 1000, GID: 1001}) {
		t.Errorf("process %+v", p)
	}
	// The spec must not alias the plan's slices: a plan is immutable and
	// shared, a spec is edited afterwards (runNested, WriteBundle).
	args[0], env[0] = "/changed", "CHANGED=1"
	if p.Args[0] != "/bin/agent" || p.Env[0] != "HOME=/" {
		t.Errorf("process shares the caller's slices: args %q env %q", p.Args, p.Env)
	}

	for _, empty := range [][]string{nil, {}} {
		if _, err := apply(t, WithProcess(empty, env, "/", u)); err == nil {
			t.Errorf("WithProcess(%#v): no error for an empty command", empty)
		}
	}
}

func TestWithProcessKeepsOtherFields(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{NoNewPrivileges: true, Terminal: true}}
	if err := WithProcess([]string{"/a"}, nil, "/", policy.User{})(s); err != nil {
		t.Fatal(err)
	}
	if !s.Process.NoNewPrivileges || !s.Process.Terminal {
		t.Errorf("WithProcess reset other process fields: %+v", s.Process)
	}
}

func TestWithHostname(t *testing.T) {
	s, err := apply(t, WithHostname("agent-1"))
	if err != nil || s.Hostname != "agent-1" {
		t.Errorf("hostname %q, err %v", s.Hostname, err)
	}
}

func TestWithNewNamespaces(t *testing.T) {
	// Start from a spec that shares the host network: the option must
	// replace the list, not add to it.
	s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"},
	}}}
	if err := WithNewNamespaces()(s); err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxNamespace{
		{Type: specs.UserNamespace}, {Type: specs.MountNamespace}, {Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.CgroupNamespace},
		{Type: specs.NetworkNamespace},
	}
	if !reflect.DeepEqual(s.Linux.Namespaces, want) {
		t.Errorf("namespaces %+v, want %+v", s.Linux.Namespaces, want)
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			t.Errorf("namespace %s joins %s instead of being new", ns.Type, ns.Path)
		}
	}
}

func TestWithIDMappings(t *testing.T) {
	id := &Identity{
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1001, Size: 1}},
	}
	s, err := apply(t, WithIDMappings(id))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Linux.UIDMappings, id.UIDMappings) || !reflect.DeepEqual(s.Linux.GIDMappings, id.GIDMappings) {
		t.Errorf("mappings uid %+v gid %+v", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	s.Linux.UIDMappings[0].HostID = 7
	if id.UIDMappings[0].HostID != 1000 {
		t.Error("spec shares the identity's mapping slice")
	}
}

func TestWithNoCapabilities(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: []string{"CAP_SYS_ADMIN"}, Effective: []string{"CAP_SYS_ADMIN"},
		Permitted: []string{"CAP_SYS_ADMIN"}, Ambient: []string{"CAP_SYS_ADMIN"},
		Inheritable: []string{"CAP_SYS_ADMIN"},
	}}}
	if err := WithNoCapabilities()(s); err != nil {
		t.Fatal(err)
	}
	c := s.Process.Capabilities
	// Empty and non-nil: a nil set in config.json is "absent", which some
	// runtimes read as "keep the default set".
	for name, set := range map[string][]string{
		"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "ambient": c.Ambient,
	} {
		if set == nil || len(set) != 0 {
			t.Errorf("%s capabilities %#v, want empty and non-nil", name, set)
		}
	}
	if len(c.Inheritable) != 0 {
		t.Errorf("inheritable capabilities %q survive", c.Inheritable)
	}
}

func TestWithNoCapabilitiesNoProcess(t *testing.T) {
	s, err := apply(t, WithNoCapabilities())
	if err != nil || s.Process == nil || s.Process.Capabilities == nil || s.Process.Capabilities.Bounding == nil {
		t.Errorf("process %+v, err %v", s.Process, err)
	}
}

func TestWithNoNewPrivileges(t *testing.T) {
	s, err := apply(t, WithNoNewPrivileges())
	if err != nil || !s.Process.NoNewPrivileges {
		t.Errorf("NoNewPrivileges %v, err %v", s.Process != nil && s.Process.NoNewPrivileges, err)
	}
}

func TestWithMaskedPaths(t *testing.T) {
	masked := []string{"/proc/kcore"}
	ro := []string{"/proc/sys"}
	s, err := apply(t, WithMaskedPaths(masked, ro))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Linux.MaskedPaths, masked) || !slices.Equal(s.Linux.ReadonlyPaths, ro) {
		t.Errorf("masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	masked[0] = "/changed"
	if s.Linux.MaskedPaths[0] != "/proc/kcore" {
		t.Error("spec shares the caller's masked paths")
	}
}

func TestWithSystemMounts(t *testing.T) {
	s, err := apply(t, WithSystemMounts())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
		"/dev/mqueue": "mqueue", "/sys": "sysfs",
	}
	if len(s.Mounts) != len(want) {
		t.Fatalf("%d mounts, want %d: %+v", len(s.Mounts), len(want), s.Mounts)
	}
	for _, m := range s.Mounts {
		if want[m.Destination] != m.Type {
			t.Errorf("mount %s type %q, want %q", m.Destination, m.Type, want[m.Destination])
		}
		if m.Type == "bind" || strings.HasPrefix(m.Source, "/") {
			t.Errorf("system mount %s comes from the host (%s %s)", m.Destination, m.Type, m.Source)
		}
		if !slices.Contains(m.Options, "nosuid") {
			t.Errorf("mount %s options %q lack nosuid", m.Destination, m.Options)
		}
		if m.Destination == "/sys" && !slices.Contains(m.Options, "ro") {
			t.Errorf("/sys options %q: not read-only", m.Options)
		}
	}
}

func TestWithTmpfs(t *testing.T) {
	tests := []struct {
		size    int64
		wantOpt string
		wantErr bool
	}{
		{64 << 20, "size=67108864", false},
		{1, "size=1", false},
		{0, "", true},
		{-1, "", true},
	}
	for _, tt := range tests {
		s, err := apply(t, WithTmpfs("/tmp", tt.size))
		if tt.wantErr {
			if err == nil {
				t.Errorf("WithTmpfs(%d): no error, mounts %+v", tt.size, s.Mounts)
			}
			continue
		}
		if err != nil {
			t.Errorf("WithTmpfs(%d): %v", tt.size, err)
			continue
		}
		if len(s.Mounts) != 1 {
			t.Fatalf("WithTmpfs(%d): mounts %+v", tt.size, s.Mounts)
		}
		m := s.Mounts[0]
		if m.Destination != "/tmp" || m.Type != "tmpfs" || !slices.Contains(m.Options, tt.wantOpt) {
			t.Errorf("WithTmpfs(%d): mount %+v, want tmpfs on /tmp with %s", tt.size, m, tt.wantOpt)
		}
		for _, o := range []string{"nosuid", "nodev"} {
			if !slices.Contains(m.Options, o) {
				t.Errorf("WithTmpfs(%d): options %q lack %s", tt.size, m.Options, o)
			}
		}
	}
}

func TestWithGrant(t *testing.T) {
	tests := []struct {
		name    string
		mode    policy.Mode
		want    []string // options that must be present
		never   []string // options that must be absent
		wantErr bool
	}{
		{"ro", policy.ReadOnly, []string{"rbind", "nosuid", "nodev", "ro", "rro"}, []string{"rw"}, false},
		{"empty mode is read-only", "", []string{"rbind", "nosuid", "nodev", "ro", "rro"}, []string{"rw"}, false},
		{"rw", policy.ReadWrite, []string{"rbind", "nosuid", "nodev", "rw"}, []string{"ro", "rro"}, false},
		{"unknown", "wo", nil, nil, true},
		{"uppercase is unknown", "RO", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := policy.Grant{Host: "/home/u/project", Path: "/work", Mode: tt.mode}
			s, err := apply(t, WithGrant(g))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error, mounts %+v", s.Mounts)
				}
				if !strings.Contains(err.Error(), "/work") || !strings.Contains(err.Error(), string(tt.mode)) {
					t.Errorf("error %q does not name the grant and its mode", err)
				}
				if len(s.Mounts) != 0 {
					t.Errorf("failed grant left mounts %+v", s.Mounts)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Mounts) != 1 {
				t.Fatalf("mounts %+v", s.Mounts)
			}
			m := s.Mounts[0]
			if m.Type != "bind" || m.Source != g.Host || m.Destination != g.Path {
				t.Errorf("mount %+v, want bind %s -> %s", m, g.Host, g.Path)
			}
			for _, o := range tt.want {
				if !slices.Contains(m.Options, o) {
					t.Errorf("options %q lack %s", m.Options, o)
				}
			}
			for _, o := range tt.never {
				if slices.Contains(m.Options, o) {
					t.Errorf("options %q contain %s", m.Options, o)
				}
			}
		})
	}
}

func TestWithSeccomp(t *testing.T) {
	s, err := apply(t, WithSeccomp("default"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("seccomp %+v, want default action %s", s.Linux.Seccomp, specs.ActErrno)
	}
	for _, name := range []string{"", "unconfined", "nonexistent"} {
		s, err := apply(t, WithSeccomp(name))
		if err == nil {
			t.Errorf("WithSeccomp(%q): no error", name)
		}
		if s.Linux != nil && s.Linux.Seccomp != nil {
			t.Errorf("WithSeccomp(%q): installed %+v despite the error", name, s.Linux.Seccomp)
		}
	}
}

func TestWithLimits(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name string
		l    policy.Limits
		want *specs.LinuxResources
	}{
		{"zero leaves resources nil", policy.Limits{}, nil},
		{"memory pins swap", policy.Limits{MemoryBytes: 512 << 20},
			&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(512 << 20), Swap: i64(512 << 20)}}},
		{"half a cpu", policy.Limits{CPUs: 0.5},
			&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(50000), Period: u64(100000)}}},
		{"two cpus", policy.Limits{CPUs: 2},
			&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(200000), Period: u64(100000)}}},
		{"pids", policy.Limits{Pids: 64},
			&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(64)}}},
		{"all", policy.Limits{MemoryBytes: 1 << 30, CPUs: 1.5, Pids: 32},
			&specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: i64(1 << 30), Swap: i64(1 << 30)},
				CPU:    &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)},
				Pids:   &specs.LinuxPids{Limit: i64(32)},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := apply(t, WithLimits(tt.l))
			if err != nil {
				t.Fatal(err)
			}
			var got *specs.LinuxResources
			if s.Linux != nil {
				got = s.Linux.Resources
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("resources %s, want %s", resourcesString(got), resourcesString(tt.want))
			}
		})
	}
}

func resourcesString(r *specs.LinuxResources) string {
	if r == nil {
		return "nil"
	}
	var parts []string
	if m := r.Memory; m != nil && m.Limit != nil && m.Swap != nil {
		parts = append(parts, fmt.Sprintf("memory=%d swap=%d", *m.Limit, *m.Swap))
	}
	if c := r.CPU; c != nil && c.Quota != nil && c.Period != nil {
		parts = append(parts, fmt.Sprintf("quota=%d period=%d", *c.Quota, *c.Period))
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		parts = append(parts, fmt.Sprintf("pids=%d", *r.Pids.Limit))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func TestCompose(t *testing.T) {
	var ran []string
	step := func(name string, err error) SpecOpt {
		return func(*specs.Spec) error { ran = append(ran, name); return err }
	}
	errSecond := errors.New("second failed")
	tests := []struct {
		name    string
		opts    []SpecOpt
		wantRan []string
		wantErr error
	}{
		{"none", nil, nil, nil},
		{"all succeed in order", []SpecOpt{step("a", nil), step("b", nil), step("c", nil)}, []string{"a", "b", "c"}, nil},
		{"stops at first error", []SpecOpt{step("a", nil), step("b", errSecond), step("c", nil)}, []string{"a", "b"}, errSecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran = nil
			err := Compose(tt.opts...)(&specs.Spec{})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(ran, tt.wantRan) {
				t.Errorf("ran %q, want %q", ran, tt.wantRan)
			}
		})
	}
}

// testPlan is a representative agent: a read-write and a read-only grant,
// limits, a non-default /tmp size.
func testPlan() *policy.Plan {
	return &policy.Plan{
		Name:    "reviewer",
		Source:  "/home/u/agents/clawrun.yaml",
		Rootfs:  "/var/lib/clawrun/rootfs/alpine",
		Command: []string{"/bin/agent", "--once"},
		Env:     []string{"HOME=/", "PATH=/usr/bin:/bin"},
		Workdir: "/work",
		Grants: []policy.Grant{
			{Host: "/home/u/project", Path: "/work", Mode: policy.ReadWrite},
			{Host: "/home/u/docs", Path: "/docs", Mode: policy.ReadOnly},
		},
		Network:  policy.NetworkNone,
		Limits:   policy.Limits{MemoryBytes: 256 << 20, CPUs: 0.5, Pids: 64},
		Seccomp:  "default",
		TmpSize:  32 << 20,
		IDMap:    policy.IDMapAuto,
		Hostname: "reviewer",
	}
}

func testIdentity() *Identity {
	return &Identity{
		Kind:    "subordinate",
		User:    policy.User{UID: 1000, GID: 1000},
		HostUID: 1234, HostGID: 1234,
		UIDMappings: []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 100000, Size: 1000},
			{ContainerID: 1000, HostID: 1234, Size: 1},
			{ContainerID: 1001, HostID: 101000, Size: 64535},
		},
		GIDMappings: []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 100000, Size: 1000},
			{ContainerID: 1000, HostID: 1234, Size: 1},
			{ContainerID: 1001, HostID: 101000, Size: 64535},
		},
	}
}

func TestSpec(t *testing.T) {
	p := testPlan()
	id := testIdentity()
	s, err := Spec(p, id, "/clawrun/reviewer")
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != specs.Version {
		t.Errorf("version %q, want %q", s.Version, specs.Version)
	}
	if s.Root == nil || s.Root.Path != p.Rootfs || !s.Root.Readonly {
		t.Errorf("root %+v, want read-only %s", s.Root, p.Rootfs)
	}
	if s.Hostname != "reviewer" {
		t.Errorf("hostname %q", s.Hostname)
	}
	if s.Linux.CgroupsPath != "/clawrun/reviewer" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("NoNewPrivileges is false")
	}
	if !reflect.DeepEqual(s.Process.User, specs.User{UID: 1000, GID: 1000}) {
		t.Errorf("process user %+v, want the identity's 1000:1000", s.Process.User)
	}
	if !slices.Equal(s.Process.Args, p.Command) || s.Process.Cwd != p.Workdir || !slices.Equal(s.Process.Env, p.Env) {
		t.Errorf("process args %q cwd %q env %q", s.Process.Args, s.Process.Cwd, s.Process.Env)
	}
	if len(s.Linux.Namespaces) != 7 {
		t.Errorf("%d namespaces, want 7", len(s.Linux.Namespaces))
	}
	if !reflect.DeepEqual(s.Linux.UIDMappings, id.UIDMappings) || !reflect.DeepEqual(s.Linux.GIDMappings, id.GIDMappings) {
		t.Errorf("id maps uid %+v gid %+v", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	if c := s.Process.Capabilities; c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Ambient)+len(c.Inheritable) != 0 {
		t.Errorf("capabilities %+v, want none", c)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("seccomp %+v, want default action %s", s.Linux.Seccomp, specs.ActErrno)
	}
	r := s.Linux.Resources
	if r == nil || r.Memory == nil || *r.Memory.Limit != 256<<20 || r.CPU == nil || *r.CPU.Quota != 50000 || r.Pids == nil || *r.Pids.Limit != 64 {
		t.Errorf("resources %s", resourcesString(r))
	}

	// Mounts: the system mounts, then /tmp with the plan's size, then the
	// grants in the plan's order, so a grant can never be shadowed by a
	// later system mount.
	var dsts []string
	for _, m := range s.Mounts {
		dsts = append(dsts, m.Destination)
	}
	wantDsts := []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/tmp", "/work", "/docs"}
	if !slices.Equal(dsts, wantDsts) {
		t.Errorf("mount order %q, want %q", dsts, wantDsts)
	}
	tmp := s.Mounts[slices.Index(dsts, "/tmp")]
	if tmp.Type != "tmpfs" || !slices.Contains(tmp.Options, "size=33554432") {
		t.Errorf("/tmp mount %+v, want tmpfs with size=33554432", tmp)
	}
	for i, g := range p.Grants {
		m := s.Mounts[len(s.Mounts)-len(p.Grants)+i]
		if m.Type != "bind" || m.Source != g.Host || m.Destination != g.Path {
			t.Errorf("grant %d: mount %+v, want bind %s -> %s", i, m, g.Host, g.Path)
		}
	}
	if o := s.Mounts[len(s.Mounts)-1].Options; !slices.Contains(o, "rro") {
		t.Errorf("read-only grant options %q lack rro", o)
	}

	if !slices.Equal(s.Linux.MaskedPaths, MaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, ReadonlyPaths) {
		t.Errorf("masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}

// TestMaskedPathsCoverRunc checks that clawrun hides at least what runc's
// own example spec hides (clawrun adds /proc/interrupts and powercap, as
// containerd does), and makes read-only exactly what runc does.
func TestMaskedPathsCoverRunc(t *testing.T) {
	ex := specconv.Example()
	for _, p := range ex.Linux.MaskedPaths {
		if !slices.Contains(MaskedPaths, p) {
			t.Errorf("runc masks %s, clawrun does not", p)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(ReadonlyPaths)), slices.Sorted(slices.Values(ex.Linux.ReadonlyPaths))) {
		t.Errorf("read-only paths %q, runc's %q", ReadonlyPaths, ex.Linux.ReadonlyPaths)
	}
}

func TestSpecErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*policy.Plan)
		want string
	}{
		{"relative rootfs", func(p *policy.Plan) { p.Rootfs = "rootfs" }, "absolute"},
		{"empty command", func(p *policy.Plan) { p.Command = nil }, "empty command"},
		{"zero tmp size", func(p *policy.Plan) { p.TmpSize = 0 }, "tmpfs /tmp"},
		{"bad grant mode", func(p *policy.Plan) { p.Grants[1].Mode = "x" }, "grant /docs"},
		{"unknown seccomp", func(p *policy.Plan) { p.Seccomp = "nope" }, `"nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPlan()
			tt.mod(p)
			s, err := Spec(p, testIdentity(), "")
			if err == nil {
				t.Fatalf("no error, spec %+v", s)
			}
			if s != nil {
				t.Error("spec returned along with an error")
			}
			if !strings.Contains(err.Error(), "agent reviewer") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to name the agent and contain %q", err, tt.want)
			}
		})
	}
}

func TestSpecNoLimitsNoCgroup(t *testing.T) {
	p := testPlan()
	p.Limits = policy.Limits{}
	s, err := Spec(p, testIdentity(), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Resources != nil || s.Linux.CgroupsPath != "" {
		t.Errorf("resources %s cgroups path %q, want none", resourcesString(s.Linux.Resources), s.Linux.CgroupsPath)
	}
}

func TestWithGrantNoExec(t *testing.T) {
	s := &specs.Spec{}
	if err := WithGrant(policy.Grant{Host: "/h", Path: "/c", Mode: policy.ReadOnly, NoExec: true})(s); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Mounts[0].Options, "noexec") {
		t.Fatalf("noexec grant options %v", s.Mounts[0].Options)
	}
	s = &specs.Spec{}
	if err := WithGrant(policy.Grant{Host: "/h", Path: "/c", Mode: policy.ReadWrite})(s); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(s.Mounts[0].Options, "noexec") {
		t.Fatalf("noexec without asking: %v", s.Mounts[0].Options)
	}
}
