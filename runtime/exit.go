package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

// How a container ended is known only to the process that waits for its
// init: libcontainer's init is a child of the process that called Start.
// A foreground run is that process. A detached run starts the container from
// a small child that stays behind as its monitor (the outer-user-namespace
// child when rootless, a plain re-executed clawrun as root): in its own
// session, it waits for the init, records the exit in clawrun.json and
// appends a line to the log, then exits. While it waits it holds a lock on
// the container's state directory, so stop and rm see the record before they
// return or remove the directory.

// ExitStatus is how a container's agent (its init process) ended.
type ExitStatus struct {
	// Code is the exit code, or 128+N when signal N killed the agent: what
	// a foreground `run` returns.
	Code int `json:"code"`
	// Signal names the signal that killed the agent (SIGKILL), if one did.
	Signal string `json:"signal,omitempty"`
	// OOMKilled: the kernel's OOM killer killed a process in the agent's
	// cgroup (known only with a cgroup: as root, or delegated v2).
	OOMKilled bool      `json:"oom_killed,omitempty"`
	At        time.Time `json:"at"`
	// Text is the status as ps shows it: "exited (N)", "killed (SIGNAL)"
	// or "oom-killed".
	Text string `json:"text"`
}

func newExitStatus(ws syscall.WaitStatus, oomKills uint64) *ExitStatus {
	e := &ExitStatus{Code: ws.ExitStatus(), At: time.Now().UTC()}
	if ws.Signaled() {
		e.Code = ExitSignalBase + int(ws.Signal())
		e.Signal = unix.SignalName(ws.Signal())
		if e.Signal == "" {
			e.Signal = fmt.Sprintf("signal %d", int(ws.Signal()))
		}
	}
	e.OOMKilled = oomKills > 0
	switch {
	case e.OOMKilled:
		// The OOM killer usually picks the biggest process, not the
		// agent itself, which then exits or dies in turn: the kill is
		// the cause worth showing.
		e.Text = "oom-killed"
	case e.Signal != "":
		e.Text = "killed (" + e.Signal + ")"
	default:
		e.Text = fmt.Sprintf("exited (%d)", e.Code)
	}
	return e
}

// recordExit stores how the container ended in its clawrun.json and, for a
// detached container, appends a line to its log. The cgroup still exists
// until the container is removed, so its OOM counter is read here.
func (r *Runtime) recordExit(m *Meta, st *os.ProcessState) *ExitStatus {
	e := exitStatus(m, st)
	if e == nil {
		return nil
	}
	m.Exit = e
	if _, err := os.Stat(filepath.Join(r.StateDir, m.Name)); err == nil {
		_ = writeMeta(r.StateDir, m)
	}
	if m.Log != "" {
		if f, err := os.OpenFile(m.Log, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			fmt.Fprintf(f, "--- %s clawrun: container %s %s\n", e.At.Format(time.RFC3339), m.Name, e.Text)
			f.Close()
		}
	}
	return e
}

// exitStatus is how the container's agent ended, with the OOM counter of
// its cgroup, which must still exist.
func exitStatus(m *Meta, st *os.ProcessState) *ExitStatus {
	if st == nil {
		return nil
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	if !ok {
		return nil
	}
	var ooms uint64
	if m.CgroupsPath != "" {
		ooms = oomKills("/sys/fs/cgroup", cgroupsv3.Mode() == cgroupsv3.Unified, m.CgroupsPath)
	}
	return newExitStatus(ws, ooms)
}

// oomKills reads the OOM kill counter of the cgroup at path (relative to
// the hierarchy under mount): memory.oom_control on cgroup v1, memory.events
// on v2. Every run pays for it when its agent exits, so it reads that one
// file, not the cgroup's whole statistics (CgroupReader.Read). 0 when the
// file or its line is missing.
func oomKills(mount string, unified bool, path string) uint64 {
	f := filepath.Join(mount, "memory", path, "memory.oom_control")
	if unified {
		f = filepath.Join(mount, path, "memory.events")
	}
	n, _ := readOOMKill(f)
	return n
}

// readOOMKill reads the "oom_kill N" line of a memory.oom_control (v1,
// Linux 4.13 and later) or memory.events (v2) file; ok is false when the
// file or the line is missing, so an old kernel's count is unknown, not 0.
func readOOMKill(file string) (n uint64, ok bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "oom_kill "); found {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// foregroundExit hands how a foreground run's agent ended to o.Exited (a
// supervisor such as `clawrun serve` tells the chat why its agent is gone)
// and records it in a container that is kept. It runs before the container
// is destroyed: the OOM counter goes with the cgroup.
func (r *Runtime) foregroundExit(m *Meta, st *os.ProcessState, o RunOptions) {
	var e *ExitStatus
	if o.Remove {
		e = exitStatus(m, st) // the state goes with the container: no record
	} else {
		e = r.recordExit(m, st)
	}
	if e != nil && o.Exited != nil {
		o.Exited(e)
	}
}

// nestedExit hands the exit status that the child of a nested foreground
// run reported to o.Exited.
func nestedExit(result []byte, o RunOptions) {
	var res nestedResult
	if o.Exited != nil && json.Unmarshal(result, &res) == nil && res.Exit != nil {
		o.Exited(res.Exit)
	}
}

// lockState takes the lock that says "someone waits for this container's
// init and will record how it ended". The descriptor is close-on-exec, so
// the container's processes never hold it.
func lockState(stateDir, name string) (*os.File, error) {
	f, err := os.Open(filepath.Join(stateDir, name))
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// WaitExitRecorded waits up to timeout until nobody holds the container's
// lock any more: its exit is recorded (or its waiter is gone). It returns
// false on timeout.
func (r *Runtime) WaitExitRecorded(name string, timeout time.Duration) bool {
	f, err := os.Open(filepath.Join(r.StateDir, name))
	if err != nil {
		return true
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	for {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
			_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
