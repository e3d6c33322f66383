package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"

	"github.com/clawrun/clawrun/policy"
)

// Usage is what a container's cgroup says it has used. A nil field is a
// figure this cgroup does not provide (controller absent, file missing on
// this kernel): it is shown as "-", never as a zero that looks measured.
type Usage struct {
	CPUNanos          *uint64 `json:"cpu_usage_ns"`
	MemoryBytes       *uint64 `json:"memory_current_bytes"`
	MemoryPeakBytes   *uint64 `json:"memory_peak_bytes"`
	Pids              *uint64 `json:"pids_current"`
	OOMKills          *uint64 `json:"oom_kills"`
	CPUPeriods        *uint64 `json:"cpu_periods"`
	CPUThrottled      *uint64 `json:"cpu_throttled_periods"`
	CPUThrottledNanos *uint64 `json:"cpu_throttled_ns"`
}

// Stats is one container's line in `clawrun stats`.
type Stats struct {
	Name          string `json:"name"`
	Status        string `json:"status"`
	Cgroup        string `json:"cgroup,omitempty"`
	CgroupVersion int    `json:"cgroup_version,omitempty"`
	// Usage is nil when there is nothing to read; Note says why.
	Usage *Usage `json:"usage"`
	Note  string `json:"note,omitempty"`
	// Parent marks the row of the cgroup holding all agents (Name
	// ParentStatsName); Total is the host allowlist's cap on it, when set.
	Parent bool           `json:"parent,omitempty"`
	Total  *policy.Limits `json:"total,omitempty"`
}

// ParentStatsName names the parent's row in `clawrun stats`.
const ParentStatsName = "(all agents)"

// ParentStats reads the cgroup holding all agents of cgroup_parent
// parent, with the host's total; ok is false when that cgroup does not
// exist (no agent ran yet, or rootless without one).
func (r *Runtime) ParentStats(cg CgroupReader, parent string, total policy.Limits) (s Stats, ok bool) {
	path := r.ParentCgroup(parent)
	if path == "" {
		return s, false
	}
	u, err := cg.Read(path)
	if errors.Is(err, ErrNoCgroup) {
		return s, false
	}
	s = Stats{Name: ParentStatsName, Status: "uncapped", Cgroup: path, CgroupVersion: cg.Version(), Parent: true, Usage: u}
	if err != nil {
		s.Usage, s.Note = nil, err.Error()
	}
	if !total.IsZero() {
		s.Status, s.Total = "capped", &total
	}
	return s, true
}

// ErrNoCgroup is returned by a CgroupReader when the cgroup does not exist
// (never created, or removed with its container).
var ErrNoCgroup = errors.New("cgroup does not exist")

// CgroupReader is the one seam through which clawrun reads cgroup counters:
// a v1 and a v2 implementation over containerd/cgroups, and fakes in tests.
type CgroupReader interface {
	// Version is the cgroup version the reader speaks: 1 or 2.
	Version() int
	// Read returns the counters of the cgroup at path, relative to the
	// hierarchy root (Meta.CgroupsPath, e.g. "/clawrun/NAME").
	Read(path string) (*Usage, error)
	// Limits reads the limit files of the cgroup at path (parent_live.go).
	Limits(path string) (*CgroupLimits, error)
}

// NewCgroupReader returns the reader for this host's cgroup hierarchy. A
// hybrid host keeps its controllers on v1, so it is read as v1.
func NewCgroupReader() CgroupReader {
	if cgroupsv3.Mode() == cgroupsv3.Unified {
		return NewCgroupV2Reader("/sys/fs/cgroup")
	}
	return NewCgroupV1Reader("/sys/fs/cgroup")
}

// NewCgroupV1Reader reads cgroup v1 hierarchies mounted as root/CONTROLLER.
func NewCgroupV1Reader(root string) CgroupReader { return cgroupV1Reader{root: root} }

// NewCgroupV2Reader reads the cgroup v2 hierarchy mounted at mountpoint.
func NewCgroupV2Reader(mountpoint string) CgroupReader { return cgroupV2Reader{mountpoint: mountpoint} }

type cgroupV1Reader struct{ root string }

func (cgroupV1Reader) Version() int { return 1 }

func (c cgroupV1Reader) Read(path string) (*Usage, error) {
	// Only the controllers stats needs: the default hierarchy would also
	// stat blkio, hugetlb and others, and fail where a file is missing.
	// Swap and kmem accounting are optional on many kernels.
	hier := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{
			cgroup1.NewCpu(c.root),
			cgroup1.NewCpuacct(c.root),
			cgroup1.NewMemory(c.root, cgroup1.OptionalSwap(), cgroup1.IgnoreModules("kmem", "kmem.tcp")),
			cgroup1.NewPids(c.root),
		}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(hier))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("cgroup v1 %s: %w", path, ErrNoCgroup)
		}
		return nil, fmt.Errorf("load cgroup v1 %s: %w", path, err)
	}
	m, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, fmt.Errorf("read cgroup v1 %s: %w", path, err)
	}
	has := func(ctl, file string) bool {
		_, err := os.Stat(filepath.Join(c.root, ctl, path, file))
		return err == nil
	}
	u := &Usage{}
	if has("cpuacct", "cpuacct.usage") && m.CPU != nil && m.CPU.Usage != nil {
		u.CPUNanos = ptr(m.CPU.Usage.Total)
	}
	if has("cpu", "cpu.stat") && m.CPU != nil && m.CPU.Throttling != nil {
		t := m.CPU.Throttling
		u.CPUPeriods, u.CPUThrottled, u.CPUThrottledNanos = ptr(t.Periods), ptr(t.ThrottledPeriods), ptr(t.ThrottledTime)
	}
	if m.Memory != nil && m.Memory.Usage != nil {
		u.MemoryBytes, u.MemoryPeakBytes = ptr(m.Memory.Usage.Usage), ptr(m.Memory.Usage.Max)
	}
	// oom_kill appeared in memory.oom_control with Linux 4.13; before that
	// the count is unknown, not zero.
	if n, ok := readOOMKill(filepath.Join(c.root, "memory", path, "memory.oom_control")); ok {
		u.OOMKills = ptr(n)
	}
	if m.Pids != nil {
		u.Pids = ptr(m.Pids.Current)
	}
	return u, nil
}

type cgroupV2Reader struct{ mountpoint string }

func (cgroupV2Reader) Version() int { return 2 }

func (c cgroupV2Reader) Read(path string) (*Usage, error) {
	dir := filepath.Join(c.mountpoint, path)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("cgroup v2 %s: %w", path, ErrNoCgroup)
		}
		return nil, fmt.Errorf("cgroup v2 %s: %w", path, err)
	}
	mgr, err := cgroup2.Load(path, cgroup2.WithMountpoint(c.mountpoint))
	if err != nil {
		return nil, fmt.Errorf("load cgroup v2 %s: %w", path, err)
	}
	m, err := mgr.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatMemoryEvents | cgroup2.StatPids)
	if err != nil {
		return nil, fmt.Errorf("read cgroup v2 %s: %w", path, err)
	}
	// containerd reads a missing file as 0; whether a figure exists
	// depends on which controllers are enabled, so look first.
	has := func(file string) bool {
		_, err := os.Stat(filepath.Join(dir, file))
		return err == nil
	}
	u := &Usage{}
	if m.CPU != nil && has("cpu.stat") {
		u.CPUNanos = ptr(m.CPU.UsageUsec * 1000)
		if has("cpu.max") {
			u.CPUPeriods, u.CPUThrottled = ptr(m.CPU.NrPeriods), ptr(m.CPU.NrThrottled)
			u.CPUThrottledNanos = ptr(m.CPU.ThrottledUsec * 1000)
		}
	}
	if m.Memory != nil && has("memory.current") {
		u.MemoryBytes = ptr(m.Memory.Usage)
		if has("memory.peak") { // Linux 5.19 and later
			u.MemoryPeakBytes = ptr(m.Memory.MaxUsage)
		}
	}
	if m.MemoryEvents != nil {
		u.OOMKills = ptr(m.MemoryEvents.OomKill)
	}
	if m.Pids != nil && has("pids.current") {
		u.Pids = ptr(m.Pids.Current)
	}
	return u, nil
}

func ptr(v uint64) *uint64 { return &v }

// Stats reads the cgroup counters of the named containers, or of all of
// this user's containers when no name is given.
func (r *Runtime) Stats(cg CgroupReader, names ...string) ([]Stats, error) {
	var infos []Info
	if len(names) == 0 {
		list, err := r.List()
		if err != nil {
			return nil, err
		}
		infos = list
	}
	for _, n := range names {
		in, err := r.Get(n)
		if err != nil {
			return nil, err
		}
		infos = append(infos, in)
	}
	out := make([]Stats, 0, len(infos))
	for _, in := range infos {
		out = append(out, ContainerStats(in, cg))
	}
	return out, nil
}

// ContainerStats reads one container's counters through cg. A container
// without a cgroup of its own gets no figures and a note, never zeros.
func ContainerStats(in Info, cg CgroupReader) Stats {
	s := Stats{Name: in.Name, Status: in.Status}
	path := ""
	if in.Meta != nil {
		path = in.Meta.CgroupsPath
	}
	if path == "" {
		if cg.Version() == 1 {
			s.Note = "no cgroup (rootless on cgroup v1)"
		} else {
			s.Note = "no cgroup of its own (rootless, no delegated cgroup)"
		}
		return s
	}
	s.Cgroup, s.CgroupVersion = path, cg.Version()
	u, err := cg.Read(path)
	switch {
	case errors.Is(err, ErrNoCgroup):
		s.Note = "cgroup gone (container " + in.Status + ")"
	case err != nil:
		s.Note = err.Error()
	default:
		s.Usage = u
	}
	return s
}
