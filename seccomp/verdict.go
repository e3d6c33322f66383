package seccomp

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Verdict is what a profile does with one call on the host architecture, as
// the filter runc loads would decide it.
type Verdict struct {
	Syscall string
	Number  int // syscall number on the host architecture
	Arch    specs.Arch
	Action  specs.LinuxSeccompAction
	Errno   uint // for SCMP_ACT_ERRNO and SCMP_ACT_TRACE
	// Note explains a verdict the profile's rules did not make themselves.
	Note string
}

// Allowed reports whether the call reaches the kernel: allowed, or allowed
// and logged.
func (v Verdict) Allowed() bool {
	return v.Action == specs.ActAllow || v.Action == specs.ActLog
}

func (v Verdict) String() string {
	switch v.Action {
	case specs.ActAllow:
		return "allowed"
	case specs.ActLog:
		return "allowed and logged (SCMP_ACT_LOG: kernel audit log, or dmesg without auditd)"
	case specs.ActErrno:
		return fmt.Sprintf("denied with errno %d%s", v.Errno, errnoName(v.Errno))
	case specs.ActTrace:
		return fmt.Sprintf("denied unless a tracer handles it (SCMP_ACT_TRACE; errno %d%s without one)", v.Errno, errnoName(v.Errno))
	case specs.ActTrap:
		return "denied with SIGSYS (SCMP_ACT_TRAP)"
	case specs.ActKillThread:
		return "denied: the thread is killed (SCMP_ACT_KILL_THREAD)"
	case specs.ActKillProcess:
		return "denied: the process is killed (SCMP_ACT_KILL_PROCESS)"
	}
	return "denied (" + string(v.Action) + ")"
}

// verdictOf decodes a seccomp return value.
func verdictOf(ret uint32) (specs.LinuxSeccompAction, uint) {
	data := uint(ret & retData)
	switch ret & retActionFull {
	case retAllow:
		return specs.ActAllow, 0
	case retLog:
		return specs.ActLog, 0
	case retErrno:
		return specs.ActErrno, data
	case retTrace:
		return specs.ActTrace, data
	case retTrap:
		return specs.ActTrap, 0
	case retUserNotif:
		return specs.ActNotify, 0
	case retKillProcess:
		return specs.ActKillProcess, 0
	}
	return specs.ActKillThread, 0
}
