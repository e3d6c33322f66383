package runtime

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/policy"
)

// Defaults a best-effort agent gets on top of its declared limits: with no
// cgroup, nothing else bounds its file descriptors or the size of a file it
// writes into a read-write grant.
const (
	BestEffortNofile = 1024
	BestEffortFsize  = 1 << 30
)

// Mechanisms that enforce a limit, as inspect shows them.
const (
	ByCgroup      = "cgroup"
	ByRlimit      = "rlimit"
	ByNotEnforced = "not enforced"
)

// LimitEnforcement is how one limit of an agent is enforced on this host:
// by its cgroup, approximated by an rlimit (limits.enforce: best-effort), or
// not at all. inspect prints one per limit, so a downgrade is never silent.
type LimitEnforcement struct {
	Limit  string             `json:"limit"` // memory, cpus, pids, open files, file size
	Value  string             `json:"value"`
	By     string             `json:"enforced_by"` // ByCgroup, ByRlimit or ByNotEnforced
	Rlimit *specs.POSIXRlimit `json:"rlimit,omitempty"`
	Note   string             `json:"note,omitempty"`
}

// Enforcement says how each limit in l is enforced for a container whose
// cgroup is cgroupsPath ("" when it has none of its own). Without a cgroup,
// strict limits are refused before a container exists (checkLimits); a
// best-effort agent gets rlimits where one approximates the limit.
func Enforcement(l policy.Limits, cgroupsPath string) []LimitEnforcement {
	if l.IsZero() {
		return nil
	}
	var out []LimitEnforcement
	if cgroupsPath != "" {
		if l.MemoryBytes > 0 {
			out = append(out, LimitEnforcement{Limit: "memory", Value: strconv.FormatInt(l.MemoryBytes, 10) + " bytes", By: ByCgroup, Note: "swap off"})
		}
		if l.CPUs > 0 {
			out = append(out, LimitEnforcement{Limit: "cpus", Value: strconv.FormatFloat(l.CPUs, 'f', -1, 64), By: ByCgroup, Note: "CFS quota"})
		}
		if l.Pids > 0 {
			out = append(out, LimitEnforcement{Limit: "pids", Value: strconv.FormatInt(l.Pids, 10), By: ByCgroup})
		}
		if l.IOWeight > 0 {
			out = append(out, LimitEnforcement{Limit: "io_weight", Value: strconv.Itoa(int(l.IOWeight)), By: ByCgroup, Note: "relative block I/O share"})
		}
		return out
	}
	if !l.BestEffort() {
		for _, n := range append(declared(l), ioDeclared(l)...) {
			out = append(out, LimitEnforcement{Limit: n, By: ByNotEnforced, Note: "no cgroup on this host; a strict run is refused"})
		}
		return out
	}
	rl := func(typ string, v uint64) *specs.POSIXRlimit {
		return &specs.POSIXRlimit{Type: typ, Hard: v, Soft: v}
	}
	if l.MemoryBytes > 0 {
		// RLIMIT_DATA rather than RLIMIT_AS: Go and JVM agents reserve far
		// more address space than they use and would not even start under
		// an address-space limit; DATA counts what is written to.
		out = append(out, LimitEnforcement{Limit: "memory", Value: strconv.FormatInt(l.MemoryBytes, 10) + " bytes", By: ByRlimit,
			Rlimit: rl("RLIMIT_DATA", uint64(l.MemoryBytes)),
			Note:   "per process, heap and private writable mappings only: page cache, tmpfs, shared memory and stacks are not counted, and N processes may use N times the limit"})
	}
	if l.CPUs > 0 {
		out = append(out, LimitEnforcement{Limit: "cpus", Value: strconv.FormatFloat(l.CPUs, 'f', -1, 64), By: ByNotEnforced,
			Note: "no rlimit caps a share of the CPU (RLIMIT_CPU would kill the agent after that many CPU seconds)"})
	}
	if l.Pids > 0 {
		e := LimitEnforcement{Limit: "pids", Value: strconv.FormatInt(l.Pids, 10)}
		if nprocPerUserns() {
			e.By, e.Rlimit = ByRlimit, rl("RLIMIT_NPROC", uint64(l.Pids))
			e.Note = "counts the tasks (processes and threads) of the agent's uid in its own user namespace (Linux 5.14 and later); tasks of other ids inside are not counted"
		} else {
			e.By = ByNotEnforced
			e.Note = "before Linux 5.14 RLIMIT_NPROC counts every process of your host uid, so it would break your own session rather than limit the agent"
		}
		out = append(out, e)
	}
	if l.IOWeight > 0 {
		out = append(out, ioWeightNotEnforced(l, "no cgroup of its own on this host, and no rlimit weighs block I/O"))
	}
	return append(out,
		LimitEnforcement{Limit: "open files", Value: strconv.Itoa(BestEffortNofile), By: ByRlimit,
			Rlimit: rl("RLIMIT_NOFILE", BestEffortNofile), Note: "best-effort default"},
		LimitEnforcement{Limit: "file size", Value: strconv.Itoa(BestEffortFsize) + " bytes", By: ByRlimit,
			Rlimit: rl("RLIMIT_FSIZE", BestEffortFsize), Note: "best-effort default: largest file the agent may write"},
	)
}

// ioWeightNotEnforced is the row of an io weight this host cannot apply.
func ioWeightNotEnforced(l policy.Limits, why string) LimitEnforcement {
	return LimitEnforcement{Limit: "io_weight", Value: strconv.Itoa(int(l.IOWeight)), By: ByNotEnforced, Note: why}
}

// withIOWeightNote replaces the io_weight row by a not-enforced one when
// the host has no weight that acts (Prepared.IOWeightNote).
func withIOWeightNote(rows []LimitEnforcement, l policy.Limits, note string) []LimitEnforcement {
	if note == "" {
		return rows
	}
	for i := range rows {
		if rows[i].Limit == "io_weight" {
			rows[i] = ioWeightNotEnforced(l, note)
		}
	}
	return rows
}

func ioDeclared(l policy.Limits) []string {
	if l.IOWeight > 0 {
		return []string{"io_weight"}
	}
	return nil
}

// BestEffortRlimits are the rlimits that approximate l when the container
// has no cgroup of its own.
func BestEffortRlimits(l policy.Limits) []specs.POSIXRlimit {
	var out []specs.POSIXRlimit
	for _, e := range Enforcement(l, "") {
		if e.Rlimit != nil {
			out = append(out, *e.Rlimit)
		}
	}
	return out
}

func declared(l policy.Limits) []string {
	var names []string
	if l.MemoryBytes > 0 {
		names = append(names, "memory")
	}
	if l.CPUs > 0 {
		names = append(names, "cpus")
	}
	if l.Pids > 0 {
		names = append(names, "pids")
	}
	return names
}

// nprocPerUserns reports whether RLIMIT_NPROC counts per user namespace
// (the ucounts rework of Linux 5.14), so that in the agent's own user
// namespace it counts the agent's processes only.
func nprocPerUserns() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 14)
}

// kernelAtLeast compares a release such as "6.1.0-18-amd64".
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	minorDigits := parts[1]
	if i := strings.IndexFunc(minorDigits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorDigits = minorDigits[:i] // "14-rc1"
	}
	mi, err2 := strconv.Atoi(minorDigits)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// rlimitTypes are the rlimits a spec may set, by their OCI names.
var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// libcontainerRlimits converts a spec's rlimits for libcontainer, which
// (unlike runc's CLI) takes them from the process, not from the spec.
func libcontainerRlimits(rl []specs.POSIXRlimit) []configs.Rlimit {
	var out []configs.Rlimit
	for _, r := range rl {
		if t, ok := rlimitTypes[r.Type]; ok { // WithRlimits refuses unknown names
			out = append(out, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
		}
	}
	return out
}

// procLimitNames are the rows of /proc/PID/limits for the rlimits clawrun
// sets.
var procLimitNames = map[string]string{
	"RLIMIT_DATA":   "Max data size",
	"RLIMIT_NPROC":  "Max processes",
	"RLIMIT_NOFILE": "Max open files",
	"RLIMIT_FSIZE":  "Max file size",
	"RLIMIT_AS":     "Max address space",
}

// rlimitChecks reads /proc/PID/limits and compares every planned rlimit
// with what the kernel applies to the container's init.
func rlimitChecks(pid int, want []specs.POSIXRlimit) []Check {
	if len(want) == 0 {
		return nil
	}
	path := fmt.Sprintf("/proc/%d/limits", pid)
	f, err := os.Open(path)
	if err != nil {
		return []Check{{Property: "rlimits", Expected: "readable " + path, Actual: err.Error()}}
	}
	defer f.Close()
	rows := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for _, name := range procLimitNames {
			if rest, ok := strings.CutPrefix(sc.Text(), name); ok {
				rows[name] = strings.Fields(rest)
			}
		}
	}
	var out []Check
	for _, r := range want {
		exp := fmt.Sprintf("%d/%d", r.Soft, r.Hard)
		act := "absent"
		if f := rows[procLimitNames[r.Type]]; len(f) >= 2 {
			act = f[0] + "/" + f[1]
		}
		out = append(out, Check{Property: r.Type + " (soft/hard)", Expected: exp, Actual: act, OK: exp == act})
	}
	return out
}
