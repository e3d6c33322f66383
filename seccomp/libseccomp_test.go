//go:build cgo

package seccomp

// These tests use the real libseccomp (cgo) to check that profiles mean what
// they say: every name is a syscall libseccomp knows, the profile compiles to
// BPF, and, loaded into a process, it refuses and allows what it should.

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"unsafe"

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
		f, err := compile(p)
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
	f, err := compile(p)
	if err != nil {
		return err
	}
	defer f.Release()
	return f.Load()
}

// profileEnv names, in the re-executed child, the profile to load (a key of
// enforcement).
const profileEnv = "CLAWRUN_SECCOMP_TEST_PROFILE"

// enforcedCall is one call a child makes with a profile loaded. Arguments are
// invalid on purpose where the call would otherwise do something (the tests
// run as root): allowed, these fail with EFAULT, EINVAL, EBADF or ENOENT.
type enforcedCall struct {
	name    string // what is called, for messages
	syscall string // the syscall it exercises, for coverage
	call    func() error
	want    error // nil: allowed and succeeds
}

// enforcement lists, per profile variant, what a process with it loaded gets.
var enforcement = map[string]struct {
	name  string
	opts  Options
	calls func() []enforcedCall
}{
	"default":   {NameDefault, Options{}, defaultCalls},
	"agent":     {NameAgent, Options{}, agentCalls},
	"agent+net": {NameAgent, Options{Network: true}, agentNetworkCalls},
	"agent-log": {NameAgentLog, Options{}, agentLogCalls},
}

// TestProfilesEnforced loads each profile into a child process (a filter
// cannot be removed, so not into the test binary itself), once per loader,
// and makes the calls the profile is about.
func TestProfilesEnforced(t *testing.T) {
	if loader := os.Getenv(childEnv); loader != "" {
		enforcedChild(t, os.Getenv(profileEnv), childLoaders[loader])
		return
	}
	for _, key := range slices.Sorted(maps.Keys(enforcement)) {
		if _, err := Profile(enforcement[key].name); err != nil {
			t.Skipf("no %s profile for %s: %v", key, runtime.GOARCH, err)
		}
		for loader := range childLoaders {
			t.Run(key+"/"+loader, func(t *testing.T) {
				cmd := exec.Command(os.Args[0], "-test.run=^TestProfilesEnforced$", "-test.v")
				cmd.Env = append(os.Environ(), childEnv+"="+loader, profileEnv+"="+key)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("child with profile %s loaded by %s failed: %v\n%s", key, loader, err, out)
				}
				t.Logf("child:\n%s", out)
			})
		}
	}
}

func enforcedChild(t *testing.T, key string, load func(*specs.LinuxSeccomp) error) {
	e, ok := enforcement[key]
	if !ok || load == nil {
		t.Fatalf("child: unknown profile %q or loader", key)
	}
	p, err := ProfileFor(e.name, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	calls := e.calls() // before the filter: building them may allocate fds
	// runc loads the filter without TSYNC, into its own (locked) thread
	// only: stay on that thread, or later calls may run unfiltered.
	runtime.LockOSThread()
	if err := load(p); err != nil {
		t.Fatalf("load filter: %v", err)
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

var never = ^uintptr(0) // an invalid fd, flag set or command

func defaultCalls() []enforcedCall {
	return []enforcedCall{
		{"getppid", "getppid", func() error { return raw(unix.SYS_GETPPID) }, nil},
		{"socket AF_UNIX", "socket", socketCall(unix.AF_UNIX, unix.SOCK_STREAM, 0), nil},
		{"socket AF_VSOCK", "socket", socketCall(unix.AF_VSOCK, unix.SOCK_STREAM, 0), unix.EPERM},
		{"personality query", "personality", func() error { return raw(unix.SYS_PERSONALITY, 0xffffffff) }, nil},
		{"personality READ_IMPLIES_EXEC", "personality", func() error { return raw(unix.SYS_PERSONALITY, 0x0400000) }, unix.EPERM},
		{"clone3", "clone3", func() error { return raw(unix.SYS_CLONE3, 0, 0) }, unix.ENOSYS},
		{"clone CLONE_NEWUSER", "clone", cloneFlags(unix.CLONE_NEWUSER), unix.EPERM},
		{"unshare CLONE_NEWUSER", "unshare", func() error { return unix.Unshare(unix.CLONE_NEWUSER) }, unix.EPERM},
		{"setns", "setns", func() error { return raw(unix.SYS_SETNS, never, 0) }, unix.EPERM},
		{"mount", "mount", func() error { return raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0) }, unix.EPERM},
		{"umount2", "umount2", func() error { return raw(unix.SYS_UMOUNT2, 0, 0) }, unix.EPERM},
		{"pivot_root", "pivot_root", func() error { return raw(unix.SYS_PIVOT_ROOT, 0, 0) }, unix.EPERM},
		{"chroot", "chroot", func() error { return raw(unix.SYS_CHROOT, 0) }, unix.EPERM},
		{"bpf", "bpf", func() error { return raw(unix.SYS_BPF, never, 0, 0) }, unix.EPERM},
		{"perf_event_open", "perf_event_open", func() error { return raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, 0, 0, 0) }, unix.EPERM},
		{"ptrace", "ptrace", func() error { return raw(unix.SYS_PTRACE, never, 0, 0, 0) }, unix.EPERM},
		{"keyctl", "keyctl", func() error { return raw(unix.SYS_KEYCTL, never, 0) }, unix.EPERM},
		{"userfaultfd", "userfaultfd", func() error { return raw(unix.SYS_USERFAULTFD, never) }, unix.EPERM},
		{"io_uring_setup", "io_uring_setup", func() error { return raw(unix.SYS_IO_URING_SETUP, 0, 0) }, unix.EPERM},
		{"open_by_handle_at", "open_by_handle_at", func() error { return raw(unix.SYS_OPEN_BY_HANDLE_AT, never, 0, 0) }, unix.EPERM},
		{"name_to_handle_at", "name_to_handle_at", func() error { return raw(unix.SYS_NAME_TO_HANDLE_AT, never, 0, 0, 0, 0) }, unix.EPERM},
		{"init_module", "init_module", func() error { return raw(unix.SYS_INIT_MODULE, 0, 0, 0) }, unix.EPERM},
		{"reboot", "reboot", func() error { return raw(unix.SYS_REBOOT, 0, 0, 0, 0) }, unix.EPERM},
		{"clock_settime", "clock_settime", func() error { return raw(unix.SYS_CLOCK_SETTIME, never, 0) }, unix.EPERM},
		{"syslog", "syslog", func() error { return raw(unix.SYS_SYSLOG, never, 0, 0) }, unix.EPERM},
		forkExec(),
	}
}

// agentCalls exercise every explicit deny of the agent profile (a test
// checks none is missing), the argument filters from both sides, and calls
// the profile does not know (ENOSYS).
func agentCalls() []enforcedCall {
	eperm := func(syscall string, nr uintptr, args ...uintptr) enforcedCall {
		return enforcedCall{syscall, syscall, func() error { return raw(nr, args...) }, unix.EPERM}
	}
	calls := []enforcedCall{
		{"getppid", "getppid", func() error { return raw(unix.SYS_GETPPID) }, nil},
		{"memfd_create", "memfd_create", closeCall(func() (int, error) { return unix.MemfdCreate("x", unix.MFD_CLOEXEC) }), nil},

		eperm("io_uring_setup", unix.SYS_IO_URING_SETUP, 0, 0),
		eperm("io_uring_enter", unix.SYS_IO_URING_ENTER, never, 0, 0, 0, 0, 0),
		eperm("io_uring_register", unix.SYS_IO_URING_REGISTER, never, 0, 0, 0),
		eperm("userfaultfd", unix.SYS_USERFAULTFD, never),
		eperm("bpf", unix.SYS_BPF, never, 0, 0),
		eperm("perf_event_open", unix.SYS_PERF_EVENT_OPEN, 0, 0, 0, 0, 0),
		eperm("keyctl", unix.SYS_KEYCTL, never, 0),
		eperm("add_key", unix.SYS_ADD_KEY, 0, 0, 0, 0, 0),
		eperm("request_key", unix.SYS_REQUEST_KEY, 0, 0, 0, 0),
		eperm("mount", unix.SYS_MOUNT, 0, 0, 0, 0, 0),
		eperm("umount2", unix.SYS_UMOUNT2, 0, 0),
		eperm("fsopen", unix.SYS_FSOPEN, 0, never),
		eperm("fsconfig", unix.SYS_FSCONFIG, never, 0, 0, 0, 0),
		eperm("fsmount", unix.SYS_FSMOUNT, never, never, 0),
		eperm("fspick", unix.SYS_FSPICK, never, 0, never),
		eperm("move_mount", unix.SYS_MOVE_MOUNT, never, 0, never, 0, never),
		eperm("open_tree", unix.SYS_OPEN_TREE, never, 0, never),
		eperm("mount_setattr", unix.SYS_MOUNT_SETATTR, never, 0, never, 0, 0),
		eperm("pivot_root", unix.SYS_PIVOT_ROOT, 0, 0),
		eperm("chroot", unix.SYS_CHROOT, 0),
		eperm("unshare", unix.SYS_UNSHARE, unix.CLONE_NEWUSER),
		eperm("setns", unix.SYS_SETNS, never, 0),
		eperm("ptrace", unix.SYS_PTRACE, never, 0, 0, 0),
		eperm("process_vm_readv", unix.SYS_PROCESS_VM_READV, 0, 0, 0, 0, 0, never),
		eperm("process_vm_writev", unix.SYS_PROCESS_VM_WRITEV, 0, 0, 0, 0, 0, never),
		eperm("pidfd_getfd", unix.SYS_PIDFD_GETFD, never, never, never),
		eperm("kcmp", unix.SYS_KCMP, 0, 0, never, 0, 0),
		eperm("kexec_load", unix.SYS_KEXEC_LOAD, 0, 0, 0, never),
		eperm("kexec_file_load", unix.SYS_KEXEC_FILE_LOAD, never, never, 0, 0, never),
		eperm("init_module", unix.SYS_INIT_MODULE, 0, 0, 0),
		eperm("finit_module", unix.SYS_FINIT_MODULE, never, 0, never),
		eperm("delete_module", unix.SYS_DELETE_MODULE, 0, never),
		eperm("reboot", unix.SYS_REBOOT, 0, 0, 0, 0),
		eperm("swapon", unix.SYS_SWAPON, 0, 0),
		eperm("swapoff", unix.SYS_SWAPOFF, 0),
		eperm("acct", unix.SYS_ACCT, 1),
		eperm("open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, never, 0, 0),
		eperm("name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, never, 0, 0, 0, 0),
		eperm("fanotify_init", unix.SYS_FANOTIFY_INIT, never, never),
		eperm("memfd_secret", unix.SYS_MEMFD_SECRET, never),
		eperm("clock_settime", unix.SYS_CLOCK_SETTIME, never, 0),
		eperm("settimeofday", unix.SYS_SETTIMEOFDAY, 1, 1),
		eperm("adjtimex", unix.SYS_ADJTIMEX, 0),
		eperm("clock_adjtime", unix.SYS_CLOCK_ADJTIME, never, 0),

		// clone: threads and fork, never namespaces; clone3 falls back.
		{"clone3", "clone3", func() error { return raw(unix.SYS_CLONE3, 0, 0) }, unix.ENOSYS},
		{"clone CLONE_NEWUSER", "clone", cloneFlags(unix.CLONE_NEWUSER), unix.EPERM},
		{"clone CLONE_NEWNS|CLONE_NEWNET", "clone", cloneFlags(unix.CLONE_NEWNS | unix.CLONE_NEWNET), unix.EPERM},
		{"clone fork", "clone", cloneFlags(0), nil},
		forkExec(),

		// ioctl: everything but TIOCSTI and TIOCLINUX, whatever the high
		// bits (the kernel only reads the low 32).
		{"ioctl TIOCGWINSZ", "ioctl", ioctlCall(unix.TIOCGWINSZ), unix.EBADF},
		{"ioctl FIONREAD (0x541B)", "ioctl", ioctlCall(0x541B), unix.EBADF},
		{"ioctl 0", "ioctl", ioctlCall(0), unix.EBADF},
		{"ioctl 0xffffffff", "ioctl", ioctlCall(0xffffffff), unix.EBADF},
		{"ioctl TIOCSTI", "ioctl", ioctlCall(unix.TIOCSTI), unix.EPERM},
		{"ioctl TIOCLINUX", "ioctl", ioctlCall(unix.TIOCLINUX), unix.EPERM},
		{"ioctl TIOCSTI with high bits", "ioctl", ioctlCall(1<<32 | unix.TIOCSTI), unix.EPERM},
		{"ioctl TIOCLINUX with high bits", "ioctl", ioctlCall(0xffffffff00000000 | unix.TIOCLINUX), unix.EPERM},

		// mknod: files, FIFOs and sockets, no devices. An empty path makes
		// an allowed call fail with ENOENT.
		{"mknodat S_IFIFO", "mknodat", mknodatCall(unix.S_IFIFO | 0o600), unix.ENOENT},
		{"mknodat S_IFREG", "mknodat", mknodatCall(unix.S_IFREG | 0o600), unix.ENOENT},
		{"mknodat 0 (regular)", "mknodat", mknodatCall(0o600), unix.ENOENT},
		{"mknodat S_IFSOCK", "mknodat", mknodatCall(unix.S_IFSOCK | 0o600), unix.ENOENT},
		{"mknodat S_IFCHR", "mknodat", mknodatCall(unix.S_IFCHR | 0o600), unix.EPERM},
		{"mknodat S_IFBLK", "mknodat", mknodatCall(unix.S_IFBLK | 0o600), unix.EPERM},
		{"mknodat S_IFDIR", "mknodat", mknodatCall(unix.S_IFDIR | 0o600), unix.ENOSYS},

		// sockets: AF_UNIX and NETLINK_ROUTE only.
		{"socket AF_UNIX", "socket", socketCall(unix.AF_UNIX, unix.SOCK_STREAM, 0), nil},
		{"socket AF_UNIX SOCK_DGRAM|SOCK_CLOEXEC", "socket", socketCall(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0), nil},
		{"socketpair AF_UNIX", "socketpair", func() error {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err == nil {
				unix.Close(fds[0])
				unix.Close(fds[1])
			}
			return err
		}, nil},
		{"socket NETLINK_ROUTE", "socket", socketCall(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE), nil},
		{"socket NETLINK_AUDIT", "socket", socketCall(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT), unix.EPROTONOSUPPORT},
		{"socket NETLINK_NETFILTER", "socket", socketCall(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER), unix.EPROTONOSUPPORT},
		{"socket AF_INET", "socket", socketCall(unix.AF_INET, unix.SOCK_STREAM, 0), unix.EAFNOSUPPORT},
		{"socket AF_INET6", "socket", socketCall(unix.AF_INET6, unix.SOCK_DGRAM, 0), unix.EAFNOSUPPORT},
		{"socket AF_INET SOCK_RAW", "socket", socketCall(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP), unix.EAFNOSUPPORT},
		{"socket AF_PACKET", "socket", socketCall(unix.AF_PACKET, unix.SOCK_RAW, 0), unix.EAFNOSUPPORT},
		{"socket AF_ALG", "socket", socketCall(unix.AF_ALG, unix.SOCK_SEQPACKET, 0), unix.EAFNOSUPPORT},
		{"socket AF_VSOCK", "socket", socketCall(unix.AF_VSOCK, unix.SOCK_STREAM, 0), unix.EAFNOSUPPORT},
		{"socket AF_KEY", "socket", socketCall(unix.AF_KEY, unix.SOCK_RAW, 2), unix.EAFNOSUPPORT},
		{"socket AF_XDP", "socket", socketCall(unix.AF_XDP, unix.SOCK_RAW, 0), unix.EAFNOSUPPORT},
		{"socket AF_BLUETOOTH (not named)", "socket", socketCall(unix.AF_BLUETOOTH, unix.SOCK_RAW, 0), unix.ENOSYS},
		// The kernel reads the family as an int: high bits must not
		// sneak AF_INET past the rules.
		{"socket AF_INET with high bits", "socket", func() error { return closeRaw(unix.SYS_SOCKET, 1<<32|unix.AF_INET, unix.SOCK_STREAM, 0) }, unix.ENOSYS},

		// personality as in default.
		{"personality query", "personality", func() error { return raw(unix.SYS_PERSONALITY, 0xffffffff) }, nil},
		{"personality READ_IMPLIES_EXEC", "personality", func() error { return raw(unix.SYS_PERSONALITY, 0x0400000) }, unix.ENOSYS},

		// Not in the allowlist: the default action, as a kernel without them.
		{"syslog", "syslog", func() error { return raw(unix.SYS_SYSLOG, never, 0, 0) }, unix.ENOSYS},
		{"sethostname", "sethostname", func() error { return raw(unix.SYS_SETHOSTNAME, 0, never) }, unix.ENOSYS},
	}
	if runtime.GOARCH == "amd64" {
		calls = append(calls,
			enforcedCall{"mknod S_IFCHR", "mknod", mknodCall(unix.S_IFCHR | 0o600), unix.EPERM},
			enforcedCall{"mknod S_IFIFO", "mknod", mknodCall(unix.S_IFIFO | 0o600), unix.ENOENT},
		)
	}
	return calls
}

func agentNetworkCalls() []enforcedCall {
	return []enforcedCall{
		{"socket AF_UNIX", "socket", socketCall(unix.AF_UNIX, unix.SOCK_STREAM, 0), nil},
		{"socket AF_INET stream", "socket", socketCall(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0), nil},
		{"socket AF_INET6 datagram", "socket", socketCall(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0), nil},
		{"socket AF_INET SOCK_RAW", "socket", socketCall(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP), unix.EPERM},
		{"socket AF_INET6 SOCK_RAW", "socket", socketCall(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6), unix.EPERM},
		{"socket AF_INET SOCK_PACKET", "socket", socketCall(unix.AF_INET, unix.SOCK_PACKET, 0), unix.EPERM},
		{"socket AF_PACKET", "socket", socketCall(unix.AF_PACKET, unix.SOCK_RAW, 0), unix.EAFNOSUPPORT},
		{"socket AF_VSOCK", "socket", socketCall(unix.AF_VSOCK, unix.SOCK_STREAM, 0), unix.EAFNOSUPPORT},
		{"mount", "mount", func() error { return raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0) }, unix.EPERM},
	}
}

// agentLogCalls: what the agent profile refuses now reaches the kernel
// (which then fails the invalid arguments), except clone3.
func agentLogCalls() []enforcedCall {
	return []enforcedCall{
		{"getppid", "getppid", func() error { return raw(unix.SYS_GETPPID) }, nil},
		{"mount", "mount", func() error { return raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0) }, unix.EFAULT},
		{"bpf", "bpf", func() error { return raw(unix.SYS_BPF, never, 0, 0) }, unix.EINVAL},
		{"ioctl TIOCSTI", "ioctl", ioctlCall(unix.TIOCSTI), unix.EBADF},
		{"socket AF_INET", "socket", socketCall(unix.AF_INET, unix.SOCK_STREAM, 0), nil},
		{"clone3", "clone3", func() error { return raw(unix.SYS_CLONE3, 0, 0) }, unix.ENOSYS},
		forkExec(),
	}
}

func socketCall(family, typ, proto int) func() error {
	return closeCall(func() (int, error) { return unix.Socket(family, typ, proto) })
}

func closeCall(open func() (int, error)) func() error {
	return func() error { return closeFD(open()) }
}

// closeRaw makes a raw call that returns a file descriptor, and closes it.
func closeRaw(nr uintptr, args ...uintptr) error {
	var a [6]uintptr
	copy(a[:], args)
	fd, _, errno := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if errno != 0 {
		return errno
	}
	unix.Close(int(fd))
	return nil
}

func ioctlCall(req uint64) func() error {
	return func() error { return raw(unix.SYS_IOCTL, never, uintptr(req), 0) }
}

var emptyPath = []byte{0}

func mknodatCall(mode uint32) func() error {
	return func() error {
		dirfd := unix.AT_FDCWD
		return raw(unix.SYS_MKNODAT, uintptr(dirfd), uintptr(unsafe.Pointer(&emptyPath[0])), uintptr(mode), 0)
	}
}

// mknodCall calls x86_64's legacy mknod, by number: x/sys/unix has no
// SYS_MKNOD on asm-generic architectures.
func mknodCall(mode uint32) func() error {
	nr, err := libseccomp.GetSyscallFromName("mknod")
	return func() error {
		if err != nil || nr < 0 {
			return fmt.Errorf("mknod: no syscall number (%d, %v)", nr, err)
		}
		return raw(uintptr(nr), uintptr(unsafe.Pointer(&emptyPath[0])), uintptr(mode), 0)
	}
}

func forkExec() enforcedCall {
	// fork and exec through libc (clone3 falls back to clone) and Go.
	return enforcedCall{"fork+exec", "execve", func() error {
		return exec.Command("/bin/sh", "-c", "/bin/true && echo ok >/dev/null").Run()
	}, nil}
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

// cloneFlags returns a call of clone(flags|SIGCHLD). Should the filter let
// it through, the child exits at once without running any Go code.
func cloneFlags(flags uintptr) func() error {
	return func() error {
		pid, _, errno := unix.RawSyscall6(unix.SYS_CLONE, flags|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
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

// TestEveryAgentDenyEnforced: each syscall with a deny rule in the agent
// profile is made by the real-process test, so every deny is proven to deny.
func TestEveryAgentDenyEnforced(t *testing.T) {
	made := map[string]bool{}
	for _, c := range agentCalls() {
		made[c.syscall] = true
	}
	for _, opts := range []Options{{}, {Network: true}} {
		p, err := ProfileFor(NameAgent, opts)
		if err != nil {
			t.Skip(err)
		}
		for _, sc := range p.Syscalls {
			if sc.Action == specs.ActAllow {
				continue
			}
			for _, name := range sc.Names {
				if !made[name] {
					t.Errorf("%s is denied by the agent profile but agentCalls never calls it", name)
				}
			}
		}
	}
}
