package runtime

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/seccomp"
)

// Report is what `clawrun inspect` prints: the sandbox as one flat list a
// person can audit top to bottom (the bubblewrap idea), and for a running
// container what the kernel actually enforces.
type Report struct {
	Name  string   `json:"name"`
	Lines []Line   `json:"lines"`
	Live  []Check  `json:"live,omitempty"`
	Notes []string `json:"notes,omitempty"`
	// Limits says, limit by limit, what enforces it: the cgroup, an
	// rlimit (limits.enforce: best-effort) or nothing.
	Limits []LimitEnforcement `json:"limits,omitempty"`
}

// Line is one setting of the sandbox.
type Line struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// Check compares one enforced property of a running container with the
// plan. A check that fails is a defect, never a silent "sandboxed".
type Check struct {
	Property string `json:"property"`
	Expected string `json:"expected"`
	Actual   string `json:"actual"`
	OK       bool   `json:"ok"`
}

// Describe lists every setting of a prepared container.
func Describe(name string, p *Prepared) *Report {
	r := &Report{Name: name}
	add := func(kind, format string, a ...any) { r.Lines = append(r.Lines, Line{kind, fmt.Sprintf(format, a...)}) }
	s := p.Spec
	if p.Plan.Source != "" {
		add("source", "%s (agent %s)", p.Plan.Source, p.Plan.Name)
	}
	if p.Plan.WritableRoot != "" {
		add("rootfs", "%s (read-only: %v): the agent's own root over the base %s, which stays untouched; discarded on rm", s.Root.Path, s.Root.Readonly, p.Plan.Rootfs)
		add("writable", "%s where the kernel allows it, else a %s of the base (decided when the container starts)", WritableOverlay, WritableCopy)
	} else {
		add("rootfs", "%s (read-only: %v)", s.Root.Path, s.Root.Readonly)
	}
	add("command", "%q", s.Process.Args)
	add("workdir", "%s", s.Process.Cwd)
	for _, e := range s.Process.Env {
		add("env", "%s", e)
	}
	id := p.Identity
	add("user", "%d:%d inside = host uid %d gid %d", id.User.UID, id.User.GID, id.HostUID, id.HostGID)
	switch id.Kind {
	case "single":
		add("idmap", "single-id map: only container root exists and it is you on the host (no capabilities); other ids are unmapped (nobody)")
	default:
		add("idmap", "subordinate ids from /etc/subuid and /etc/subgid; agent id kept as the host user")
	}
	for _, m := range s.Linux.UIDMappings {
		add("uidmap", "container %d-%d -> host %d-%d", m.ContainerID, m.ContainerID+m.Size-1, m.HostID, m.HostID+m.Size-1)
	}
	for _, m := range s.Linux.GIDMappings {
		add("gidmap", "container %d-%d -> host %d-%d", m.ContainerID, m.ContainerID+m.Size-1, m.HostID, m.HostID+m.Size-1)
	}
	for _, ns := range s.Linux.Namespaces {
		add("namespace", "%s (new)", ns.Type)
	}
	add("network", "%s", p.Plan.NetworkDescription())
	if p.Plan.Network == policy.NetworkEgress {
		for _, e := range p.Plan.Egress {
			add("egress", "%s", e)
		}
		add("egress", "proxy on the host, listening inside the container on 127.0.0.1:%d (HTTP_PROXY); every connection logged", EgressProxyPort)
	}
	for _, sec := range p.Plan.Secrets {
		add("secret", "%s", sec.Describe())
	}
	add("hostname", "%s", s.Hostname)
	c := s.Process.Capabilities
	add("capabilities", "effective=%s permitted=%s bounding=%s ambient=%s", capList(c.Effective), capList(c.Permitted), capList(c.Bounding), capList(c.Ambient))
	add("no_new_privileges", "%v", s.Process.NoNewPrivileges)
	for _, m := range s.Mounts {
		kind := "mount"
		if m.Type == "bind" {
			kind = "grant"
			if p.Plan.Workspace && m.Destination == policy.WorkspacePath && m.Source == p.Plan.WorkspaceDir {
				kind = "workspace" // persistent: kept across runs and rm
			}
		}
		add(kind, "%s %s <- %s [%s]", m.Destination, m.Type, m.Source, strings.Join(m.Options, ","))
	}
	for _, m := range s.Linux.MaskedPaths {
		add("masked", "%s", m)
	}
	for _, m := range s.Linux.ReadonlyPaths {
		add("readonly", "%s", m)
	}
	add("seccomp", "profile %q", p.Plan.Seccomp)
	for _, l := range seccomp.Summary(s.Linux.Seccomp) {
		add("seccomp", "%s", l)
	}
	r.Limits = withIOWeightNote(Enforcement(p.Plan.Limits, p.CgroupsPath), p.Plan.Limits, p.IOWeightNote)
	switch {
	case p.CgroupsPath != "":
		add("limits", "%s", limitsText(s.Linux.Resources, p.CgroupsPath))
		for _, e := range r.Limits {
			if e.By == ByNotEnforced {
				add("limits", "%s", e) // io_weight where no weight acts
			}
		}
		add("cgroup", "%s", p.CgroupsPath)
	case len(r.Limits) > 0:
		for _, e := range r.Limits {
			add("limits", "%s", e)
		}
		add("cgroup", "none of its own (rootless on this host); limits.enforce: %s", orStrict(p.Plan.Limits.Enforce))
	default:
		add("limits", "none declared")
		add("cgroup", "none of its own (rootless on this host); no limits declared")
	}
	add("total", "%s", totalText(p.Plan))
	return r
}

// totalText describes the host allowlist's cap on all agents together,
// beside the agent's own limits.
func totalText(p *policy.Plan) string {
	t := p.Total
	if t.IsZero() {
		return "none (the host allowlist sets no total for cgroup_parent " + p.CgroupParentName() + ")"
	}
	var parts []string
	if t.MemoryBytes > 0 {
		parts = append(parts, fmt.Sprintf("memory=%d bytes (swap off)", t.MemoryBytes))
	}
	if t.CPUs > 0 {
		parts = append(parts, "cpus="+strconv.FormatFloat(t.CPUs, 'f', -1, 64))
	}
	if t.Pids > 0 {
		parts = append(parts, fmt.Sprintf("pids=%d", t.Pids))
	}
	return strings.Join(parts, " ") + " for all agents together, enforced by the parent cgroup " + p.CgroupParentName() + " (host allowlist)"
}

func orStrict(e policy.Enforce) policy.Enforce {
	if e == "" {
		return policy.EnforceStrict
	}
	return e
}

// String reads like the other inspect lines: "memory=67108864 bytes
// enforced by rlimit RLIMIT_DATA=67108864 (note)".
func (e LimitEnforcement) String() string {
	s := e.Limit
	if e.Value != "" {
		s += "=" + e.Value
	}
	switch {
	case e.Rlimit != nil:
		s += fmt.Sprintf(" enforced by rlimit %s=%d", e.Rlimit.Type, e.Rlimit.Hard)
	case e.By == ByNotEnforced:
		s += " NOT ENFORCED"
	default:
		s += " enforced by " + e.By
	}
	if e.Note != "" {
		s += " (" + e.Note + ")"
	}
	return s
}

func capList(c []string) string {
	if len(c) == 0 {
		return "none"
	}
	return strings.Join(c, ",")
}

func limitsText(r *specs.LinuxResources, cg string) string {
	if r == nil {
		return "none declared"
	}
	var parts []string
	if r.Memory != nil && r.Memory.Limit != nil {
		parts = append(parts, fmt.Sprintf("memory=%d bytes (swap off)", *r.Memory.Limit))
	}
	if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil {
		parts = append(parts, fmt.Sprintf("cpus=%.2f (quota %dus per %dus)", float64(*r.CPU.Quota)/float64(*r.CPU.Period), *r.CPU.Quota, *r.CPU.Period))
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		parts = append(parts, fmt.Sprintf("pids=%d", *r.Pids.Limit))
	}
	if r.BlockIO != nil && r.BlockIO.Weight != nil {
		parts = append(parts, fmt.Sprintf("io_weight=%d", *r.BlockIO.Weight))
	}
	if len(parts) == 0 {
		return "none declared"
	}
	return strings.Join(parts, " ") + " enforced by cgroup " + cg
}

// Inspect describes a container: its plan and, when it runs, what the
// kernel enforces on its init process.
func (r *Runtime) Inspect(name string) (*Report, error) {
	c, m, err := r.load(name)
	if err != nil {
		return nil, err
	}
	if m.Plan == nil || m.Identity == nil {
		return nil, fmt.Errorf("container %s: no clawrun record (created by another tool?)", name)
	}
	s, ioNote, err := r.spec(m.Plan, m.Identity, m.CgroupsPath)
	if err != nil {
		return nil, err
	}
	rep := Describe(name, &Prepared{Plan: m.Plan, Identity: m.Identity, CgroupsPath: m.CgroupsPath, Spec: s, IOWeightNote: ioNote})
	in := info(c, m)
	status := in.Status
	if in.Exit != nil {
		status = in.Exit.Text
	}
	rep.Lines = append([]Line{{"status", status}}, rep.Lines...)
	for i := range rep.Lines {
		if rep.Lines[i].Kind == "writable" && m.Writable != "" {
			rep.Lines[i].Value = m.Writable
		}
	}
	if in.Pid > 0 {
		rep.Live = LiveChecks(in.Pid, s.Process.Capabilities)
		rep.Live = append(rep.Live, rlimitChecks(in.Pid, s.Process.Rlimits)...)
		rep.Live = append(rep.Live, NetworkChecks(in.Pid, m.Plan)...)
		rep.Live = append(rep.Live, TotalChecks(r.cgroupReader(), m.Plan, m.CgroupsPath)...)
	}
	return rep, nil
}

// LiveChecks reads /proc/PID of a container's init and checks that the
// sandbox is really in place: the capability sets must be exactly those the
// spec grants (none unless the agent file says so).
func LiveChecks(pid int, caps *specs.LinuxCapabilities) []Check {
	var out []Check
	st, err := procStatus(pid)
	if err != nil {
		return []Check{{Property: "process", Expected: "readable /proc/" + strconv.Itoa(pid), Actual: err.Error()}}
	}
	want := func(prop, expected, actual string) {
		out = append(out, Check{Property: prop, Expected: expected, Actual: actual, OK: expected == actual})
	}
	want("Seccomp (/proc status)", "2", st["Seccomp"])
	want("NoNewPrivs", "1", st["NoNewPrivs"])
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	for _, c := range []struct {
		key  string
		sets []string
	}{{"CapEff", caps.Effective}, {"CapPrm", caps.Permitted}, {"CapBnd", caps.Bounding}, {"CapAmb", caps.Ambient}} {
		want(c.key, capMask(c.sets), st[c.key])
	}
	for _, ns := range []string{"user", "mnt", "pid", "ipc", "uts", "cgroup", "net"} {
		self, err1 := os.Readlink("/proc/self/ns/" + ns)
		theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err1 != nil || err2 != nil {
			out = append(out, Check{Property: "namespace " + ns, Expected: "separate", Actual: "unreadable"})
			continue
		}
		actual := "separate"
		if self == theirs {
			actual = "shared with clawrun"
		}
		want("namespace "+ns, "separate", actual)
	}
	return out
}

func procStatus(pid int) (map[string]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, sc.Err()
}

// capMask renders capability names as /proc/PID/status shows a set.
func capMask(names []string) string {
	byName := map[string]uint{}
	for _, c := range capability.ListKnown() {
		byName["CAP_"+strings.ToUpper(c.String())] = uint(c)
	}
	var mask uint64
	for _, n := range names {
		if bit, ok := byName[strings.ToUpper(n)]; ok {
			mask |= 1 << bit
		}
	}
	return fmt.Sprintf("%016x", mask)
}
