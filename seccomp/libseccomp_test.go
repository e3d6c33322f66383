package seccomp

// These tests use the real libseccomp (cgo) to check that profiles mean what
// they say: every name is a syscall libseccomp knows, the profile compiles to
// BPF, and, loaded into a process, it refuses and allows what it should.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// unresolvable lists, per Go architecture, names a profile may carry although
// the libseccomp these tests link against cannot resolve them, with the reason.
// runc skips such names, and its BPF patching makes syscalls newer than
// libseccomp fail with ENOSYS, so libc falls back to an older call.
var unresolvable = map[string]map[string]string{}

// scmpArch converts a runtime-spec architecture ("SCMP_ARCH_X86_64").
func scmpArch(a specs.Arch) (libseccomp.ScmpArch, error) {
	return libseccomp.GetArchFromString(strings.TrimPrefix(string(a), "SCMP_ARCH_"))
}

func scmpAction(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.ScmpAction, error) {
	errno := int16(unix.EPERM)
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
	return libseccomp.ActInvalid, fmt.Errorf("action %s not supported by this test", a)
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

// buildFilter turns a profile into a libseccomp filter the way runc does
// (libcontainer/seccomp.InitSeccomp): default action, exactly the listed
// architectures, one rule per name with its conditions ANDed. skip lists
// names known to be unresolvable here. The caller releases the filter.
func buildFilter(p *specs.LinuxSeccomp, skip map[string]string) (*libseccomp.ScmpFilter, error) {
	def, err := scmpAction(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("new filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()

	native, err := libseccomp.GetNativeArch()
	if err != nil {
		return nil, err
	}
	keepNative := len(p.Architectures) == 0
	for _, a := range p.Architectures {
		arch, err := scmpArch(a)
		if err != nil {
			return nil, fmt.Errorf("architecture %s: %w", a, err)
		}
		if arch == native {
			keepNative = true
			continue
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("add architecture %s: %w", a, err)
		}
	}
	if !keepNative {
		if err := f.RemoveArch(native); err != nil {
			return nil, fmt.Errorf("remove native architecture: %w", err)
		}
	}

	for _, sc := range p.Syscalls {
		act, err := scmpAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, err
		}
		if act == def {
			continue // libseccomp refuses rules that repeat the default
		}
		var conds []libseccomp.ScmpCondition
		for _, a := range sc.Args {
			op, err := scmpOp(a.Op)
			if err != nil {
				return nil, err
			}
			c, err := libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
			if err != nil {
				return nil, fmt.Errorf("condition %+v: %w", a, err)
			}
			conds = append(conds, c)
		}
		for _, name := range sc.Names {
			// A rule is added by native number; libseccomp translates it
			// (through pseudo-numbers for names the native ABI lacks) for
			// each architecture in the filter.
			num, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				if _, known := skip[name]; known {
					continue
				}
				return nil, fmt.Errorf("syscall %q: %w", name, err)
			}
			if len(conds) == 0 {
				err = f.AddRule(num, act)
			} else {
				err = f.AddRuleConditional(num, act, conds)
			}
			if err != nil {
				return nil, fmt.Errorf("rule for %s: %w", name, err)
			}
		}
	}
	ok = true
	return f, nil
}

func TestSyscallNamesResolve(t *testing.T) {
	eachProfile(t, func(t *testing.T, goarch string, p *specs.LinuxSeccomp) {
		arch, err := libseccomp.GetArchFromString(goarch)
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range p.Syscalls {
			for _, name := range sc.Names {
				num, err := libseccomp.GetSyscallFromNameByArch(name, arch)
				// Negative numbers are libseccomp's pseudo-syscalls: names
				// it knows from other architectures but absent from this one.
				if err == nil && num >= 0 {
					continue
				}
				if reason, ok := unresolvable[goarch][name]; ok {
					t.Logf("%s: not resolvable here: %s", name, reason)
					continue
				}
				t.Errorf("%s: not a syscall on %s (libseccomp: %d, %v)", name, goarch, num, err)
			}
		}
	})
}

func TestExportBPF(t *testing.T) {
	eachProfile(t, func(t *testing.T, goarch string, p *specs.LinuxSeccomp) {
		f, err := buildFilter(p, unresolvable[goarch])
		if err != nil {
			t.Fatal(err)
		}
		defer f.Release()
		for _, a := range p.Architectures {
			arch, _ := scmpArch(a)
			if present, err := f.IsArchPresent(arch); err != nil || !present {
				t.Errorf("architecture %s missing from filter (%v)", a, err)
			}
		}
		out, err := os.Create(filepath.Join(t.TempDir(), "filter.bpf"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := f.ExportBPF(out); err != nil {
			t.Fatalf("ExportBPF: %v", err)
		}
		st, err := out.Stat()
		if err != nil {
			t.Fatal(err)
		}
		// A BPF instruction is 8 bytes; an allowlist this long is hundreds.
		if st.Size() == 0 || st.Size()%8 != 0 {
			t.Errorf("BPF program is %d bytes, want a non-empty multiple of 8", st.Size())
		}
		t.Logf("%s: %d BPF instructions", goarch, st.Size()/8)
	})
}

// childEnv marks the re-executed test binary that loads a filter; its value
// names the loader in childLoaders.
const childEnv = "CLAWRUN_SECCOMP_TEST_CHILD"

// childLoaders load a profile into the calling process. Build tags may add
// more (runc's own loader with -tags seccomp).
var childLoaders = map[string]func(*specs.LinuxSeccomp) error{
	"libseccomp": loadWithLibseccomp,
}

func loadWithLibseccomp(p *specs.LinuxSeccomp) error {
	f, err := buildFilter(p, unresolvable[runtime.GOARCH])
	if err != nil {
		return err
	}
	defer f.Release()
	return f.Load()
}

// TestDefaultProfileEnforced loads the default profile into a child process
// (a filter cannot be removed, so not into the test binary itself) and makes
// the calls the profile is about.
func TestDefaultProfileEnforced(t *testing.T) {
	if loader := os.Getenv(childEnv); loader != "" {
		enforcedChild(t, childLoaders[loader])
		return
	}
	if _, err := Profile("default"); err != nil {
		t.Skipf("no default profile for %s: %v", runtime.GOARCH, err)
	}
	for loader := range childLoaders {
		t.Run(loader, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDefaultProfileEnforced$", "-test.v")
			cmd.Env = append(os.Environ(), childEnv+"="+loader)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child with the default profile loaded by %s failed: %v\n%s", loader, err, out)
			}
			t.Logf("child:\n%s", out)
		})
	}
}

func enforcedChild(t *testing.T, load func(*specs.LinuxSeccomp) error) {
	p, err := Profile("default")
	if err != nil {
		t.Fatal(err)
	}
	if err := load(p); err != nil {
		t.Fatalf("load filter: %v", err)
	}

	// Arguments are invalid on purpose where the call would otherwise do
	// something: without the filter these fail with EFAULT, EINVAL or EBADF.
	tests := []struct {
		name string
		call func() error
		want error // nil: allowed and succeeds
	}{
		{"getppid", func() error { return raw(unix.SYS_GETPPID) }, nil},
		{"socket AF_UNIX", func() error { return closeFD(unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)) }, nil},
		{"socket AF_VSOCK", func() error { return closeFD(unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)) }, unix.EPERM},
		{"personality query", func() error { return raw(unix.SYS_PERSONALITY, 0xffffffff) }, nil},
		{"personality READ_IMPLIES_EXEC", func() error { return raw(unix.SYS_PERSONALITY, 0x0400000) }, unix.EPERM},
		{"clone3", func() error { return raw(unix.SYS_CLONE3, 0, 0) }, unix.ENOSYS},
		{"clone CLONE_NEWUSER", cloneNewUser, unix.EPERM},
		{"unshare CLONE_NEWUSER", func() error { return unix.Unshare(unix.CLONE_NEWUSER) }, unix.EPERM},
		{"setns", func() error { return raw(unix.SYS_SETNS, ^uintptr(0), 0) }, unix.EPERM},
		{"mount", func() error { return raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0) }, unix.EPERM},
		{"umount2", func() error { return raw(unix.SYS_UMOUNT2, 0, 0) }, unix.EPERM},
		{"pivot_root", func() error { return raw(unix.SYS_PIVOT_ROOT, 0, 0) }, unix.EPERM},
		{"chroot", func() error { return raw(unix.SYS_CHROOT, 0) }, unix.EPERM},
		{"bpf", func() error { return raw(unix.SYS_BPF, ^uintptr(0), 0, 0) }, unix.EPERM},
		{"perf_event_open", func() error { return raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, 0, 0, 0) }, unix.EPERM},
		{"ptrace", func() error { return raw(unix.SYS_PTRACE, ^uintptr(0), 0, 0, 0) }, unix.EPERM},
		{"keyctl", func() error { return raw(unix.SYS_KEYCTL, ^uintptr(0), 0) }, unix.EPERM},
		{"userfaultfd", func() error { return raw(unix.SYS_USERFAULTFD, ^uintptr(0)) }, unix.EPERM},
		{"io_uring_setup", func() error { return raw(unix.SYS_IO_URING_SETUP, 0, 0) }, unix.EPERM},
		{"open_by_handle_at", func() error { return raw(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0) }, unix.EPERM},
		{"name_to_handle_at", func() error { return raw(unix.SYS_NAME_TO_HANDLE_AT, ^uintptr(0), 0, 0, 0, 0) }, unix.EPERM},
		{"init_module", func() error { return raw(unix.SYS_INIT_MODULE, 0, 0, 0) }, unix.EPERM},
		{"reboot", func() error { return raw(unix.SYS_REBOOT, 0, 0, 0, 0) }, unix.EPERM},
		{"clock_settime", func() error { return raw(unix.SYS_CLOCK_SETTIME, ^uintptr(0), 0) }, unix.EPERM},
		{"syslog", func() error { return raw(unix.SYS_SYSLOG, ^uintptr(0), 0, 0) }, unix.EPERM},
		// fork and exec through libc (clone3 falls back to clone) and Go.
		{"fork+exec", func() error { return exec.Command("/bin/sh", "-c", "/bin/true && echo ok >/dev/null").Run() }, nil},
	}
	for _, tt := range tests {
		err := tt.call()
		if !errors.Is(err, tt.want) && !(err == nil && tt.want == nil) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

func raw(nr uintptr, args ...uintptr) error {
	var a [6]uintptr
	copy(a[:], args)
	_, _, errno := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if errno != 0 {
		return errno
	}
	return nil
}

func closeFD(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// cloneNewUser calls clone(CLONE_NEWUSER|SIGCHLD). Should the filter let it
// through, the child exits at once without running any Go code.
func cloneNewUser() error {
	pid, _, errno := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}

// TestRuncAccepts checks that runc's own conversion (the one clawrun's
// runtime goes through) takes every profile without error and keeps every
// rule.
func TestRuncAccepts(t *testing.T) {
	eachProfile(t, func(t *testing.T, _ string, p *specs.LinuxSeccomp) {
		cfg, err := specconv.SetupSeccomp(p)
		if err != nil {
			t.Fatalf("runc rejects the profile: %v", err)
		}
		var want int
		for _, sc := range p.Syscalls {
			want += len(sc.Names)
		}
		if len(cfg.Syscalls) != want {
			t.Errorf("runc kept %d syscall rules, want %d", len(cfg.Syscalls), want)
		}
	})
}
