// Package policy reads agent files (clawrun.yaml), validates them and resolves
// each agent into an immutable Plan: the single description of what the
// agent's container may see and do. It never touches the kernel or network.
package policy

import (
	"fmt"
	"strings"
)

// Mode is the access a grant gives to the container.
type Mode string

const (
	ReadOnly  Mode = "ro"
	ReadWrite Mode = "rw"
)

// Grant is one host path made visible inside the container.
type Grant struct {
	Host string // absolute, cleaned, symlinks resolved host path
	Path string // absolute path inside the container
	Mode Mode
	// NoExec mounts the grant noexec: nothing under it can be executed.
	NoExec bool
}

// User is a uid:gid pair inside the container.
type User struct {
	UID uint32
	GID uint32
}

// Limits are the resource limits of one agent. Zero means "not set".
type Limits struct {
	MemoryBytes int64   // memory limit in bytes (swap is not granted beyond it)
	CPUs        float64 // CPU quota in cores, e.g. 0.5
	Pids        int64   // maximum number of tasks
	// IOWeight is the relative block I/O weight, 10..1000 (the OCI blkio
	// range; 100 is the kernel's default share). 0 is not set.
	IOWeight uint16 `json:",omitempty"`
	// Enforce says what happens to a limit the host cannot enforce with a
	// cgroup; empty means EnforceStrict.
	Enforce Enforce `json:",omitempty"`
}

// IsZero reports whether no limit is set (Enforce alone sets none).
func (l Limits) IsZero() bool {
	return l.MemoryBytes == 0 && l.CPUs == 0 && l.Pids == 0 && l.IOWeight == 0
}

// BestEffort reports whether limits the host cannot enforce with a cgroup
// are approximated instead of refusing the run.
func (l Limits) BestEffort() bool { return l.Enforce == EnforceBestEffort }

// Enforce is limits.enforce of an agent file.
type Enforce string

const (
	// EnforceStrict refuses to run an agent whose limits the host cannot
	// enforce (the default).
	EnforceStrict Enforce = "strict"
	// EnforceBestEffort runs it anyway and approximates those limits with
	// per-process rlimits; inspect shows which mechanism enforces what.
	EnforceBestEffort Enforce = "best-effort"
)

// IDMap says how container ids map to host ids.
type IDMap string

const (
	// IDMapAuto uses subordinate ids from /etc/subuid and /etc/subgid
	// (through newuidmap/newgidmap when rootless) where the host user has
	// them, and a single-id map otherwise.
	IDMapAuto IDMap = "auto"
	// IDMapSingle maps only the container's root to the invoking host user.
	IDMapSingle IDMap = "single"
)

// Network is the network mode of an agent (NetworkNone, NetworkEgress,
// NetworkHost; see network.go).
type Network string

// Plan is the resolved, validated description of one agent's container.
// A Plan is built only by this package (Load/Resolve/AdHoc) and must be
// treated as immutable by callers.
type Plan struct {
	Name    string   // agent name from the file, or the ad-hoc run's name
	Source  string   // absolute path of the agent file; empty for ad-hoc runs
	Rootfs  string   // absolute host path of the root filesystem directory
	Command []string // argv of the agent process
	Env     []string // KEY=value, sorted by key; PATH and HOME defaulted
	Workdir string   // absolute path inside the container
	// User is the uid:gid the agent runs as inside. UserSet is false when
	// the file did not say: the runtime then picks a non-root uid when
	// subordinate ids exist, and root-in-userns (the invoking host user,
	// no capabilities) with a single-id map.
	User    User
	UserSet bool
	Grants  []Grant
	Network Network
	// Egress is the allowlist of NetworkEgress in canonical form
	// (egress.ParsePattern), in file order.
	Egress []string `json:",omitempty"`
	// Secrets are names, hosts and modes only: values never enter a Plan.
	Secrets []Secret `json:",omitempty"`
	Limits  Limits
	// CgroupParent and Total come from the host allowlist (cgroup_parent,
	// total), never from the agent file: the cgroup that holds every agent
	// run under that allowlist, and the cap on all of them together, which
	// the runtime writes to it before each run. See CgroupParentName.
	CgroupParent string `json:",omitempty"`
	Total        Limits
	// Seccomp is a built-in profile name (seccomp.Names, "default" unless
	// set) or "custom:/abs/path.json" (CustomSeccompPrefix) for a custom
	// profile file, read with seccomp.Resolve.
	Seccomp  string
	TmpSize  int64 // size of the tmpfs on /tmp, in bytes
	IDMap    IDMap
	Hostname string
	// Capabilities granted explicitly by the file (none by default):
	// validated, upper-case CAP_ names in file order; privileged ones only
	// when the host allowlist permits them.
	Capabilities []string
	// Slack routing; nil when the agent has no slack section.
	Slack *SlackRoute
	// Image is what agents.NAME.image names instead of a rootfs: a registry
	// reference as written, or "oci-layout:/abs/dir[@sha256:…]" or
	// "docker-archive:/abs/file". Rootfs stays empty until the caller
	// resolves the image (rootfs.Store) and applies its config (WithImage);
	// ImageID is then the unpacked image's ID.
	Image   string `json:",omitempty"`
	ImageID string `json:",omitempty"`
	// Workspace is agents.NAME.workspace: a persistent read-write
	// /workspace (WorkspacePath) kept in WorkspaceDir, under clawrun's data
	// directory, across runs and container removals.
	Workspace    bool   `json:",omitempty"`
	WorkspaceDir string `json:",omitempty"`
	// WritableRootfs is agents.NAME.writable_rootfs: the agent may write
	// to its root filesystem. Rootfs stays the read-only base; the runtime
	// assembles the agent's own writable root at WritableRoot (overlayfs,
	// or a copy), discarded with the container (see WithWritableRoot).
	WritableRootfs bool   `json:",omitempty"`
	WritableRoot   string `json:",omitempty"`
	// set records what the agent file set itself (see WithImage).
	set fileSet
}

// SlackRoute says which Slack messages reach an agent (agents.NAME.slack).
// A nil route means the agent is not reachable from Slack.
type SlackRoute struct {
	Channels     []string // channel IDs the agent answers in
	DM           bool     // direct messages to the bot
	MentionsOnly bool     // only messages that mention the bot
	Users        []string // optional allowlist of user IDs; empty = everyone
	PostTo       []string // extra channel IDs the agent may post to
	// Concurrency is how many messages the agent handles at once (default 1:
	// one at a time, in order).
	Concurrency int
	// QueueLimit bounds the agent's pending messages (default 100).
	QueueLimit int
}

// Describe lists a route's parts for people ("channels C1, C2", "direct
// messages", …), as `policy check` and `slack check` print them.
func (r *SlackRoute) Describe() []string {
	var parts []string
	if len(r.Channels) > 0 {
		parts = append(parts, "channels "+strings.Join(r.Channels, ", "))
	}
	if r.DM {
		parts = append(parts, "direct messages")
	}
	if r.MentionsOnly {
		parts = append(parts, "only when mentioned")
	}
	if len(r.Users) > 0 {
		parts = append(parts, "users "+strings.Join(r.Users, ", "))
	} else {
		parts = append(parts, "any user")
	}
	if len(r.PostTo) > 0 {
		parts = append(parts, "may also post to "+strings.Join(r.PostTo, ", "))
	}
	return append(parts, fmt.Sprintf("concurrency %d, queue %d", r.Concurrency, r.QueueLimit))
}
