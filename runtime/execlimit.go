package runtime

import (
	"errors"
	"fmt"
	goruntime "runtime"
	"time"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// RLIMIT_DATA cannot go through libcontainer like the other rlimits: it sets
// them on the container's init before that init — clawrun itself, a cgo
// program whose thread stacks, Go heap and seccomp compilation need more
// than 100M of data segment — has executed the agent, so a small limit makes
// the start fail. Instead the process that starts the container traces its
// init (PTRACE_SEIZE, PTRACE_O_TRACEEXEC) and sets the limit in the
// exec-stop, after the agent's image is loaded but before it runs a single
// instruction: no child of the agent escapes the limit.

// atExecRlimits are the rlimits applied when the agent is executed rather
// than by libcontainer.
var atExecRlimits = map[string]bool{"RLIMIT_DATA": true}

func splitRlimits(rl []specs.POSIXRlimit) (early, atExec []specs.POSIXRlimit) {
	for _, r := range rl {
		if atExecRlimits[r.Type] {
			atExec = append(atExec, r)
		} else {
			early = append(early, r)
		}
	}
	return early, atExec
}

func earlyRlimits(rl []specs.POSIXRlimit) []specs.POSIXRlimit {
	early, _ := splitRlimits(rl)
	return early
}

// execTracer sets rlimits on a container init at its execve.
type execTracer struct {
	done chan error
}

// traceExec attaches to pid, a child of this process parked before its
// execve, and services its ptrace stops until it executes the agent: the
// init must keep running (it may be stopped on its way to a Go runtime
// signal) while libcontainer releases it. ptrace requests must come from the
// tracing thread, so all of it runs on one locked goroutine.
func traceExec(pid int, limits []specs.POSIXRlimit, timeout time.Duration) (*execTracer, error) {
	if len(limits) == 0 {
		return nil, nil
	}
	attached := make(chan error, 1)
	t := &execTracer{done: make(chan error, 1)}
	go func() {
		// The thread ends with the goroutine: it stays locked.
		goruntime.LockOSThread()
		_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, unix.PTRACE_O_TRACEEXEC, 0, 0)
		if e != 0 {
			attached <- fmt.Errorf("best-effort limits: trace the container init to set %s at exec: %w", limits[0].Type, e)
			return
		}
		attached <- nil
		t.done <- serviceUntilExec(pid, limits, time.Now().Add(timeout))
	}()
	if err := <-attached; err != nil {
		return nil, err
	}
	return t, nil
}

// finish waits until the agent runs with its limits (or the init died).
func (t *execTracer) finish() error {
	if t == nil {
		return nil
	}
	return <-t.done
}

// cldTrapped is si_code for a traced child that stopped (CLD_TRAPPED).
const cldTrapped = 4

// sigchldInfo is the SIGCHLD layout of siginfo_t that waitid fills in.
type sigchldInfo struct {
	Signo, Errno, Code int32
	_                  int32
	Pid, UID, Status   int32
	_                  [128 - 28]byte
}

// serviceUntilExec waits for the init's exec-stop, sets the limits and lets
// the agent run. It never reaps the init: an init that dies instead is left
// for libcontainer's Wait.
func serviceUntilExec(pid int, limits []specs.POSIXRlimit, deadline time.Time) error {
	for {
		var si sigchldInfo
		_, _, e := unix.Syscall6(unix.SYS_WAITID, unix.P_PID, uintptr(pid), uintptr(unsafe.Pointer(&si)),
			unix.WSTOPPED|unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("best-effort limits: wait for the agent's exec: %w", e)
		}
		switch {
		case si.Pid == 0: // nothing yet
			if time.Now().After(deadline) {
				_ = unix.PtraceDetach(pid)
				return errors.New("best-effort limits: the agent did not execute in time")
			}
			time.Sleep(time.Millisecond)
		case si.Code != cldTrapped:
			return nil // died before exec: libcontainer reports why
		case si.Status == int32(unix.SIGTRAP)|unix.PTRACE_EVENT_EXEC<<8:
			for _, r := range limits {
				lim := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
				if err := unix.Prlimit(pid, rlimitTypes[r.Type], &lim, nil); err != nil {
					_ = unix.Kill(pid, unix.SIGKILL)
					_ = unix.PtraceDetach(pid)
					return fmt.Errorf("best-effort limits: set %s on the agent: %w", r.Type, err)
				}
			}
			if err := unix.PtraceDetach(pid); err != nil {
				_ = unix.Kill(pid, unix.SIGKILL)
				return fmt.Errorf("best-effort limits: let the agent run: %w", err)
			}
			return nil
		default:
			// A signal on its way to the init (the Go runtime's own
			// preemption signals, SIGCHLD): deliver it and keep waiting.
			sig := 0
			if si.Status>>8 == 0 {
				sig = int(si.Status)
			}
			if err := unix.PtraceCont(pid, sig); err != nil {
				return fmt.Errorf("best-effort limits: resume the container init: %w", err)
			}
		}
	}
}
