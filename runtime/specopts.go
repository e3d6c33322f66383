package runtime

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/seccomp"
)

// SpecOpt changes one aspect of an OCI spec. An agent's container is the
// composition of these options, in order; each is small enough to test alone
// (the shape of containerd's oci.SpecOpts).
type SpecOpt func(*specs.Spec) error

// Compose applies opts in order and stops at the first error.
func Compose(opts ...SpecOpt) SpecOpt {
	return func(s *specs.Spec) error {
		for _, o := range opts {
			if err := o(s); err != nil {
				return err
			}
		}
		return nil
	}
}

// MaskedPaths (runc's defaults plus containerd's /proc/interrupts and
// powercap) and ReadonlyPaths (runc's): host kernel information an agent has
// no business reading or writing.
var (
	MaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	ReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// Namespaces every agent gets: nothing is shared with the host.
var agentNamespaces = []specs.LinuxNamespaceType{
	specs.UserNamespace, specs.MountNamespace, specs.PIDNamespace, specs.IPCNamespace,
	specs.UTSNamespace, specs.CgroupNamespace, specs.NetworkNamespace,
}

// WithRootfs sets the root filesystem and whether it is read-only.
func WithRootfs(path string, readonly bool) SpecOpt {
	return func(s *specs.Spec) error {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("rootfs %q: must be an absolute path", path)
		}
		s.Root = &specs.Root{Path: path, Readonly: readonly}
		return nil
	}
}

// WithProcess sets argv, environment, working directory and user.
func WithProcess(args, env []string, cwd string, u policy.User) SpecOpt {
	return func(s *specs.Spec) error {
		if len(args) == 0 {
			return fmt.Errorf("process: empty command")
		}
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.Args = append([]string(nil), args...)
		s.Process.Env = append([]string(nil), env...)
		s.Process.Cwd = cwd
		s.Process.User = specs.User{UID: u.UID, GID: u.GID}
		return nil
	}
}

// WithEnv adds KEY=value variables to the process environment, replacing
// earlier values of the same keys.
func WithEnv(env ...string) SpecOpt {
	return func(s *specs.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		for _, kv := range env {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("env %q: want KEY=value", kv)
			}
			s.Process.Env = slices.DeleteFunc(s.Process.Env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
			s.Process.Env = append(s.Process.Env, kv)
		}
		return nil
	}
}

// WithHostNetwork leaves the container in the host's network namespace
// (network: {unsafe_host_network: true}).
func WithHostNetwork() SpecOpt {
	return func(s *specs.Spec) error {
		linux(s).Namespaces = slices.DeleteFunc(linux(s).Namespaces, func(n specs.LinuxNamespace) bool {
			return n.Type == specs.NetworkNamespace
		})
		return nil
	}
}

// WithHostname sets the UTS hostname.
func WithHostname(name string) SpecOpt {
	return func(s *specs.Spec) error { s.Hostname = name; return nil }
}

// WithNewNamespaces gives the container its own user, mount, pid, ipc, uts,
// cgroup and network namespaces. A new network namespace has only loopback.
func WithNewNamespaces() SpecOpt {
	return func(s *specs.Spec) error {
		linux(s).Namespaces = nil
		for _, t := range agentNamespaces {
			linux(s).Namespaces = append(linux(s).Namespaces, specs.LinuxNamespace{Type: t})
		}
		return nil
	}
}

// WithIDMappings sets the user-namespace id maps.
func WithIDMappings(id *Identity) SpecOpt {
	return func(s *specs.Spec) error {
		linux(s).UIDMappings = append([]specs.LinuxIDMapping(nil), id.UIDMappings...)
		linux(s).GIDMappings = append([]specs.LinuxIDMapping(nil), id.GIDMappings...)
		return nil
	}
}

// WithNoCapabilities empties every capability set.
func WithNoCapabilities() SpecOpt {
	return func(s *specs.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding: []string{}, Effective: []string{}, Permitted: []string{}, Ambient: []string{},
		}
		return nil
	}
}

// WithNoNewPrivileges stops setuid binaries and file capabilities from
// raising privileges.
func WithNoNewPrivileges() SpecOpt {
	return func(s *specs.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.NoNewPrivileges = true
		return nil
	}
}

// WithMaskedPaths masks and read-only-mounts kernel interfaces under /proc
// and /sys.
func WithMaskedPaths(masked, readonly []string) SpecOpt {
	return func(s *specs.Spec) error {
		linux(s).MaskedPaths = append([]string(nil), masked...)
		linux(s).ReadonlyPaths = append([]string(nil), readonly...)
		return nil
	}
}

// WithSystemMounts mounts fresh /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue
// and a read-only /sys: the container's own instances, nothing of the host's.
func WithSystemMounts() SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			specs.Mount{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			specs.Mount{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			specs.Mount{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		)
		return nil
	}
}

// WithTmpfs mounts a size-limited tmpfs at dst.
func WithTmpfs(dst string, size int64) SpecOpt {
	return func(s *specs.Spec) error {
		if size <= 0 {
			return fmt.Errorf("tmpfs %s: size must be positive", dst)
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: dst, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=1777", "size=" + strconv.FormatInt(size, 10)},
		})
		return nil
	}
}

// WithGrant bind-mounts one granted host path. Read-only grants are
// recursively read-only ("rro", mount_setattr), so no submount under the
// grant stays writable; nosuid and nodev always apply.
func WithGrant(g policy.Grant) SpecOpt {
	return func(s *specs.Spec) error {
		opts := []string{"rbind", "nosuid", "nodev"}
		if g.NoExec {
			opts = append(opts, "noexec")
		}
		switch g.Mode {
		case policy.ReadOnly, "":
			opts = append(opts, "ro", "rro")
		case policy.ReadWrite:
			opts = append(opts, "rw")
		default:
			return fmt.Errorf("grant %s: unknown mode %q", g.Path, g.Mode)
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: g.Path, Type: "bind", Source: g.Host, Options: opts})
		return nil
	}
}

// WithWorkspace bind-mounts the agent's persistent workspace, a directory
// clawrun keeps under its data directory, read-write at /workspace. It is
// mounted before the grants, so a grant below /workspace goes over it.
func WithWorkspace(dir string) SpecOpt {
	return func(s *specs.Spec) error {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("workspace %q: must be an absolute path", dir)
		}
		return WithGrant(policy.Grant{Host: dir, Path: policy.WorkspacePath, Mode: policy.ReadWrite})(s)
	}
}

// WithSeccomp installs the named seccomp profile.
func WithSeccomp(profile string) SpecOpt { return WithSeccompOptions(profile, seccomp.Options{}) }

// WithSeccompOptions installs the named seccomp profile in a variant, e.g.
// with AF_INET/AF_INET6 sockets for an agent with a network grant.
func WithSeccompOptions(profile string, o seccomp.Options) SpecOpt {
	return func(s *specs.Spec) error {
		p, err := seccomp.Resolve(profile, o)
		if err != nil {
			return err
		}
		linux(s).Seccomp = p
		return nil
	}
}

// WithLimits sets cgroup resource limits. Swap is pinned to the memory limit
// so an agent cannot page its way past it.
func WithLimits(l policy.Limits) SpecOpt {
	return func(s *specs.Spec) error {
		if l.IsZero() {
			return nil
		}
		r := linux(s).Resources
		if r == nil {
			r = &specs.LinuxResources{}
			linux(s).Resources = r
		}
		if l.MemoryBytes > 0 {
			limit, swap := l.MemoryBytes, l.MemoryBytes
			r.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
		}
		if l.CPUs > 0 {
			period := uint64(cpuPeriod)
			quota := cpuQuota(l.CPUs)
			if quota < 1000 {
				return fmt.Errorf("limits.cpus %v: below the kernel's minimum quota of 0.01 cores", l.CPUs)
			}
			r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
		}
		if l.Pids > 0 {
			p := l.Pids
			r.Pids = &specs.LinuxPids{Limit: &p}
		}
		if l.IOWeight > 0 {
			// runc writes blkio.weight or blkio.bfq.weight on v1, and on v2
			// io.bfq.weight or io.weight (converted from this range).
			w := l.IOWeight
			r.BlockIO = &specs.LinuxBlockIO{Weight: &w}
		}
		return nil
	}
}

// WithRlimits sets per-process resource limits of the agent (soft and hard,
// so the agent cannot raise them). An rlimit of the same type set earlier is
// replaced.
func WithRlimits(rl ...specs.POSIXRlimit) SpecOpt {
	return func(s *specs.Spec) error {
		if len(rl) == 0 {
			return nil
		}
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		for _, r := range rl {
			if _, ok := rlimitTypes[r.Type]; !ok {
				return fmt.Errorf("rlimit %q: unknown type", r.Type)
			}
			if r.Soft > r.Hard {
				return fmt.Errorf("rlimit %s: soft limit %d above hard limit %d", r.Type, r.Soft, r.Hard)
			}
			s.Process.Rlimits = slices.DeleteFunc(s.Process.Rlimits, func(o specs.POSIXRlimit) bool { return o.Type == r.Type })
			s.Process.Rlimits = append(s.Process.Rlimits, r)
		}
		return nil
	}
}

// WithCgroupsPath places the container in its own cgroup.
func WithCgroupsPath(path string) SpecOpt {
	return func(s *specs.Spec) error { linux(s).CgroupsPath = path; return nil }
}

func linux(s *specs.Spec) *specs.Linux {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	return s.Linux
}

// AgentOpts is the agent's whole policy as spec options, read top to bottom.
// It is the one place a Plan becomes an OCI spec.
func AgentOpts(p *policy.Plan, id *Identity, cgroupsPath string) []SpecOpt {
	root, readonly := p.Rootfs, true
	if p.WritableRoot != "" {
		root, readonly = p.WritableRoot, false // the agent's own layer over the base
	}
	opts := []SpecOpt{
		WithRootfs(root, readonly),
		WithProcess(p.Command, p.Env, p.Workdir, id.User),
		WithHostname(p.Hostname),
		WithNewNamespaces(),
		WithIDMappings(id),
		WithNoCapabilities(),
		WithCapabilities(p.Capabilities),
		WithNoNewPrivileges(),
		WithSystemMounts(),
		WithTmpfs("/tmp", p.TmpSize),
	}
	if p.Workspace {
		opts = append(opts, WithWorkspace(p.WorkspaceDir))
	}
	for _, g := range p.Grants {
		opts = append(opts, WithGrant(g))
	}
	switch p.Network {
	case policy.NetworkEgress:
		// Still only loopback: the sockets reach the proxy's listeners
		// inside the container's network namespace (egress.go).
		opts = append(opts, WithEnv(EgressEnv(p)...))
	case policy.NetworkHost:
		opts = append(opts, WithHostNetwork())
	}
	opts = append(opts,
		WithMaskedPaths(MaskedPaths, ReadonlyPaths),
		WithSeccompOptions(p.Seccomp, seccomp.Options{Network: p.Network != policy.NetworkNone}),
	)
	// Limits go to the container's cgroup; without one (rootless here) a
	// strict plan never gets this far, and a best-effort one is
	// approximated with rlimits (see Enforcement).
	if cgroupsPath != "" {
		opts = append(opts, WithLimits(p.Limits))
	} else if p.Limits.BestEffort() {
		opts = append(opts, WithRlimits(BestEffortRlimits(p.Limits)...))
	}
	return append(opts, WithCgroupsPath(cgroupsPath))
}

// Spec builds the OCI spec of an agent.
func Spec(p *policy.Plan, id *Identity, cgroupsPath string) (*specs.Spec, error) {
	s := &specs.Spec{Version: specs.Version}
	if err := Compose(AgentOpts(p, id, cgroupsPath)...)(s); err != nil {
		return nil, fmt.Errorf("agent %s: %w", p.Name, err)
	}
	return s, nil
}
