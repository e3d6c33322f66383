// Package hostcheck tells a user what this host lets clawrun do: user
// namespaces, subordinate ids, cgroups, seccomp, overlayfs, the kernel and
// clawrun's own directories. Each check is a small function over a Host, a
// view of the machine whose files are read below Host.Root, so tests run
// every branch against a fake /proc and /sys in a temporary directory.
package hostcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	cgroupsv3 "github.com/containerd/cgroups/v3"
)

// Status is a check's verdict.
type Status int

const (
	OK   Status = iota // works as clawrun needs it
	Warn               // works with less: a feature, a limit or a safety margin is missing
	Fail               // something clawrun needs is broken; Fix says what to do
)

func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	}
	return "FAIL"
}

// MarshalText makes the JSON form read like the table.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is one line of `clawrun doctor`.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
	// Essential marks a check whose failure means no agent can run here.
	Essential bool `json:"essential,omitempty"`
}

// Limits says which agent limits this host enforces for this user.
type Limits struct {
	Memory bool   `json:"memory"`
	CPU    bool   `json:"cpu"`
	Pids   bool   `json:"pids"`
	Why    string `json:"why"`
	// IO says whether limits.io_weight acts (IOWeight); IOWhy says by
	// what, or why not.
	IO    bool   `json:"io"`
	IOWhy string `json:"io_why"`
}

// Report is the whole diagnosis.
type Report struct {
	Checks []Result `json:"checks"`
	Limits Limits   `json:"limits"`
	// CanRun is false when an essential check failed.
	CanRun bool `json:"can_run"`
}

// Host is the view of the machine the checks read. Production code fills
// it with Current; tests point Root at a fake tree.
type Host struct {
	Root       string // prefix for /proc, /sys and /etc: "/" on a real host
	UID, GID   int
	User       string
	Kernel     string           // uname release, e.g. "6.1.0-18-amd64"
	CgroupMode cgroupsv3.CGMode // cgroupsv3.Mode() on a real host
	// Libseccomp is the loaded library's major, minor, micro; zero when
	// unknown.
	Libseccomp [3]uint
	// PathDirs are searched (below Root) for newuidmap and newgidmap.
	PathDirs []string
	// StateDir and DataDir are clawrun's --root and --data, as given: they
	// are not below Root.
	StateDir, DataDir string
	// ProbeUserNS and ProbeOverlay, when set, try the real thing: create a
	// user namespace; mount overlayfs inside one. Nil skips the attempt.
	ProbeUserNS  func() error
	ProbeOverlay func() error
}

func (h *Host) path(p string) string { return filepath.Join(h.Root, p) }

func (h *Host) rootless() bool { return h.UID != 0 }

// readTrim reads a file below Root; ok is false when it does not exist or
// cannot be read.
func (h *Host) readTrim(p string) (string, bool) {
	b, err := os.ReadFile(h.path(p))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func (h *Host) readInt(p string) (int64, bool) {
	s, ok := h.readTrim(p)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// Run performs every check and sums up what can run and which limits hold.
func Run(h *Host) Report {
	var r Report
	r.Checks = append(r.Checks, Kernel(h))
	r.Checks = append(r.Checks, UserNamespaces(h)...)
	r.Checks = append(r.Checks, SubIDs(h), IDMapTools(h), Nsenter(h))
	cg, lim := Cgroups(h)
	r.Checks = append(r.Checks, cg)
	r.Limits = lim
	io, enforced, how := IOWeightCheck(h)
	r.Checks = append(r.Checks, io)
	r.Limits.IO, r.Limits.IOWhy = enforced, how
	r.Checks = append(r.Checks, Seccomp(h)...)
	r.Checks = append(r.Checks, Overlay(h))
	r.Checks = append(r.Checks, Dir(h, "state directory", h.StateDir, "--root"), Dir(h, "data directory", h.DataDir, "--data"))
	r.CanRun = true
	for _, c := range r.Checks {
		if c.Essential && c.Status == Fail {
			r.CanRun = false
		}
	}
	return r
}

// kernelVersion parses the leading "major.minor" of a kernel release.
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	end := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		parts[1] = parts[1][:end]
	}
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

func atLeast(release string, major, minor int) bool {
	ma, mi, ok := kernelVersion(release)
	return ok && (ma > major || ma == major && mi >= minor)
}

// Kernel checks the kernel release: runc needs 3.10, and rootless
// containers as clawrun builds them are only dependable from about 4.18.
func Kernel(h *Host) Result {
	r := Result{Check: "kernel", Detail: h.Kernel, Essential: true}
	if _, _, ok := kernelVersion(h.Kernel); !ok {
		r.Status, r.Detail = Warn, fmt.Sprintf("cannot parse kernel release %q", h.Kernel)
		r.Essential = false
		return r
	}
	switch {
	case !atLeast(h.Kernel, 3, 10):
		r.Status, r.Fix = Fail, "runc's libcontainer needs Linux 3.10 or later: upgrade the kernel"
	case !atLeast(h.Kernel, 4, 18):
		r.Status, r.Fix = Warn, "rootless containers are tested on Linux 5.x and later: upgrade the kernel if runs fail"
	}
	return r
}
