//go:build cgo

package seccomp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// checkNames checks every architecture and syscall name of p against
// libseccomp: a name must be a real syscall on the host architecture.
func checkNames(p *specs.LinuxSeccomp) error {
	for _, a := range p.Architectures {
		if _, err := scmpArch(a); err != nil {
			return fmt.Errorf("architecture %s: unknown to libseccomp %s", a, libseccompVersion())
		}
	}
	native, err := libseccomp.GetNativeArch()
	if err != nil {
		return err
	}
	for i, sc := range p.Syscalls {
		for _, name := range sc.Names {
			num, err := libseccomp.GetSyscallFromNameByArch(name, native)
			switch {
			case err != nil:
				return fmt.Errorf("syscalls[%d]: unknown syscall %q: libseccomp %s does not know it on %s (a typo, or a syscall newer than libseccomp)", i, name, libseccompVersion(), native)
			case num < 0:
				// A pseudo-syscall: libseccomp knows it from another
				// architecture (e.g. socketcall, or x86_64's open on arm64).
				return fmt.Errorf("syscalls[%d]: syscall %q does not exist on %s; remove it", i, name, native)
			}
		}
	}
	if _, err := compile(p); err != nil {
		return err
	}
	return nil
}

// LibraryVersion is the version of the libseccomp clawrun runs with
// (clawrun version shows it: the kernel filter is compiled by it).
func LibraryVersion() string { return libseccompVersion() }

func libseccompVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}

func scmpArch(a specs.Arch) (libseccomp.ScmpArch, error) {
	return libseccomp.GetArchFromString(strings.ToLower(strings.TrimPrefix(string(a), "SCMP_ARCH_")))
}

func scmpAction(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.ScmpAction, error) {
	errno := int16(errnoEPERM) // runc's default when none is given
	if errnoRet != nil {
		errno = int16(*errnoRet)
	}
	switch a {
	case specs.ActAllow:
		return libseccomp.ActAllow, nil
	case specs.ActErrno:
		return libseccomp.ActErrno.SetReturnCode(errno), nil
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread, nil
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess, nil
	case specs.ActTrap:
		return libseccomp.ActTrap, nil
	case specs.ActLog:
		return libseccomp.ActLog, nil
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(errno), nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("action %s not supported", a)
}

func scmpOp(op specs.LinuxSeccompOperator) (libseccomp.ScmpCompareOp, error) {
	switch op {
	case specs.OpEqualTo:
		return libseccomp.CompareEqual, nil
	case specs.OpNotEqual:
		return libseccomp.CompareNotEqual, nil
	case specs.OpLessThan:
		return libseccomp.CompareLess, nil
	case specs.OpLessEqual:
		return libseccomp.CompareLessOrEqual, nil
	case specs.OpGreaterThan:
		return libseccomp.CompareGreater, nil
	case specs.OpGreaterEqual:
		return libseccomp.CompareGreaterEqual, nil
	case specs.OpMaskedEqual:
		return libseccomp.CompareMaskedEqual, nil
	}
	return libseccomp.CompareInvalid, fmt.Errorf("operator %s unknown", op)
}

// compile turns a profile into a libseccomp filter the way runc's
// libcontainer/seccomp.InitSeccomp does: the default action, the listed
// architectures beside the native one, binary-tree optimization for long
// lists, rules equal to the default action skipped, names libseccomp cannot
// resolve skipped, and a rule with several conditions on one argument split
// into one rule per condition. The caller releases the filter.
func compile(p *specs.LinuxSeccomp) (*libseccomp.ScmpFilter, error) {
	def, err := scmpAction(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("new seccomp filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	for _, a := range p.Architectures {
		arch, err := scmpArch(a)
		if err != nil {
			return nil, fmt.Errorf("architecture %s: %w", a, err)
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("add architecture %s: %w", a, err)
		}
	}
	if len(p.Syscalls) > 32 {
		_ = f.SetOptimize(2) // as runc; older libseccomp lacks it
	}
	for i, sc := range p.Syscalls {
		act, err := scmpAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		if act == def {
			continue
		}
		var conds []libseccomp.ScmpCondition
		perArg := map[uint]int{}
		for _, a := range sc.Args {
			op, err := scmpOp(a.Op)
			if err != nil {
				return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
			}
			c, err := libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
			if err != nil {
				return nil, fmt.Errorf("syscalls[%d]: condition %+v: %w", i, a, err)
			}
			conds = append(conds, c)
			perArg[a.Index]++
		}
		split := false
		for _, n := range perArg {
			split = split || n > 1
		}
		for _, name := range sc.Names {
			num, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				continue // runc skips names it cannot resolve; LoadCustom refuses them
			}
			switch {
			case len(conds) == 0:
				err = f.AddRule(num, act)
			case split:
				for _, c := range conds {
					if err = f.AddRuleConditional(num, act, []libseccomp.ScmpCondition{c}); err != nil {
						break
					}
				}
			default:
				err = f.AddRuleConditional(num, act, conds)
			}
			if err != nil {
				return nil, fmt.Errorf("syscalls[%d]: rule for %s: %w", i, name, err)
			}
		}
	}
	ok = true
	return f, nil
}

// auditArches are the AUDIT_ARCH_* values seccomp_data.arch carries.
var auditArches = map[string]uint32{
	"amd64":   0xc000003e,
	"arm64":   0xc00000b7,
	"riscv64": 0xc00000f3,
}

// Check evaluates p for one call on the host architecture: it compiles the
// profile with libseccomp as runc does, runs the resulting BPF program on the
// call, and applies runc's ENOSYS stub (calls newer than every syscall the
// profile names get ENOSYS unless the default action lets calls through).
// Missing args are 0.
func Check(p *specs.LinuxSeccomp, syscall string, args []uint64) (Verdict, error) {
	if len(args) > 6 {
		return Verdict{}, fmt.Errorf("%d arguments: a syscall has at most 6", len(args))
	}
	if p == nil {
		return Verdict{}, errors.New("no seccomp profile: every call is allowed")
	}
	native, err := libseccomp.GetNativeArch()
	if err != nil {
		return Verdict{}, err
	}
	audit, ok := auditArches[runtime.GOARCH]
	if !ok {
		return Verdict{}, fmt.Errorf("check is not supported on %s", runtime.GOARCH)
	}
	num, err := libseccomp.GetSyscallFromNameByArch(syscall, native)
	if err != nil || num < 0 {
		return Verdict{}, fmt.Errorf("unknown syscall %q on %s (libseccomp %s)", syscall, native, libseccompVersion())
	}
	v := Verdict{Syscall: syscall, Number: int(num), Arch: supportedArches()[runtime.GOARCH].scmp}

	if stubbed(p, native, num) {
		v.Action, v.Errno = specs.ActErrno, errnoENOSYS
		v.Note = "runc's ENOSYS stub: the call is newer than every syscall the profile names"
		return v, nil
	}

	f, err := compile(p)
	if err != nil {
		return Verdict{}, err
	}
	defer f.Release()
	raw, err := exportBPF(f)
	if err != nil {
		return Verdict{}, err
	}
	prog, err := parseBPF(raw)
	if err != nil {
		return Verdict{}, err
	}
	d := seccompData{nr: int32(num), arch: audit}
	copy(d.args[:], args)
	ret, err := runBPF(prog, d.bytes())
	if err != nil {
		return Verdict{}, fmt.Errorf("run BPF: %w", err)
	}
	v.Action, v.Errno = verdictOf(ret)
	return v, nil
}

// exportBPF returns the filter's program. ExportBPFMem needs libseccomp
// 2.6, so the program goes through a memfd.
func exportBPF(f *libseccomp.ScmpFilter) ([]byte, error) {
	fd, err := unix.MemfdCreate("clawrun-seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("export BPF: memfd: %w", err)
	}
	file := os.NewFile(uintptr(fd), "clawrun-seccomp-bpf")
	defer file.Close()
	if err := f.ExportBPF(file); err != nil {
		return nil, fmt.Errorf("export BPF: %w", err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("export BPF: %w", err)
	}
	return io.ReadAll(file)
}

// stubbed mirrors runc's patchbpf: unless the default action lets calls
// through or already is ENOSYS, a call numbered above every syscall the
// profile names gets ENOSYS before the filter runs.
func stubbed(p *specs.LinuxSeccomp, native libseccomp.ScmpArch, num libseccomp.ScmpSyscall) bool {
	switch p.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
		return false
	}
	if p.DefaultErrnoRet != nil && *p.DefaultErrnoRet == errnoENOSYS {
		return false
	}
	var last libseccomp.ScmpSyscall
	for _, sc := range p.Syscalls {
		for _, name := range sc.Names {
			if n, err := libseccomp.GetSyscallFromNameByArch(name, native); err == nil && n > last {
				last = n
			}
		}
	}
	return last != 0 && num > last
}
