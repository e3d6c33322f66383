// Package seccomp provides the seccomp profiles clawrun puts into OCI runtime
// specs, a short description of a profile for people reading `inspect`,
// custom profiles read from OCI LinuxSeccomp JSON, and an evaluator that says
// what a profile does with one call.
//
// The built-in profiles are plain data (runtime-spec types) and need neither
// cgo nor libseccomp; Profile, ProfileFor, Names and Summary work in a binary
// built with CGO_ENABLED=0. LoadCustom and Check resolve syscall names and
// compile filters with libseccomp, so they need cgo (the clawrun binary always
// has it). The OCI runtime turns a profile into the BPF filter it loads.
package seccomp

import (
	"fmt"
	"runtime"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Errno values used in profiles. Named here rather than taken from
// golang.org/x/sys/unix so the package stays free of OS-specific imports.
const (
	errnoEPERM           = 1
	errnoENOSYS          = 38
	errnoEPROTONOSUPPORT = 93
	errnoEAFNOSUPPORT    = 97
)

// nsCloneFlags are the clone flags that create new namespaces:
// CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET.
// A process without capabilities must not be able to build itself a fresh
// user namespace: that is where most kernel privilege escalations start.
const nsCloneFlags = 0x7E020000

// afVSOCK is the socket family Docker's profile refuses (host/VM sockets
// bypass network namespaces).
const afVSOCK = 40

// Profile names.
const (
	// NameDefault is a Docker-class allowlist for processes without
	// capabilities.
	NameDefault = "default"
	// NameAgent is the default allowlist with explicit denies for the kernel
	// surface an agent never needs, and sockets limited by family.
	NameAgent = "agent"
	// NameAgentLog lets through what NameAgent would refuse, but has the
	// kernel log it, to shape a profile from a real run.
	NameAgentLog = "agent-log"
)

// Options change a built-in profile for an agent's grants.
type Options struct {
	// Network lets the agent open AF_INET and AF_INET6 stream and datagram
	// sockets (never raw ones). Without it only AF_UNIX and NETLINK_ROUTE
	// sockets can be created. Only the agent profiles look at it: default
	// allows every socket family but AF_VSOCK either way.
	Network bool
}

// profiles maps a profile name to its builder for a Go architecture.
func profiles() map[string]func(goarch string, opts Options) (*specs.LinuxSeccomp, error) {
	return map[string]func(string, Options) (*specs.LinuxSeccomp, error){
		NameDefault:  func(goarch string, _ Options) (*specs.LinuxSeccomp, error) { return defaultProfile(goarch) },
		NameAgent:    agentProfile,
		NameAgentLog: agentLogProfile,
	}
}

// Names lists the known profile names, sorted.
func Names() []string {
	var names []string
	for name := range profiles() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Profile returns the named profile without any grants for the architecture
// this binary runs on, ready to put into spec.Linux.Seccomp. Each call returns
// a new value.
func Profile(name string) (*specs.LinuxSeccomp, error) {
	return ProfileFor(name, Options{})
}

// ProfileFor is Profile for an agent with the grants in opts.
func ProfileFor(name string, opts Options) (*specs.LinuxSeccomp, error) {
	return profileFor(name, runtime.GOARCH, opts)
}

func profileFor(name, goarch string, opts Options) (*specs.LinuxSeccomp, error) {
	build, ok := profiles()[name]
	if !ok {
		return nil, fmt.Errorf("unknown seccomp profile %q: known profiles are %s (or %sFILE.json)", name, strings.Join(Names(), ", "), CustomPrefix)
	}
	p, err := build(goarch, opts)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %q: %w", name, err)
	}
	return p, nil
}

// archInfo is what the default profile needs to know about one architecture.
type archInfo struct {
	scmp specs.Arch
	// extra lists allowed syscalls that exist on this architecture but not in
	// the asm-generic table shared by arm64 and riscv64 (mostly x86_64's
	// legacy calls such as open and stat, which libc still uses).
	extra []string
}

// supportedArches lists the 64-bit architectures the default profile covers.
// Only the native ABI is allowed: on amd64 that leaves out i386 and x32, whose
// syscall tables are a well-known way around filters written for x86_64.
func supportedArches() map[string]archInfo {
	return map[string]archInfo{
		"amd64": {scmp: specs.ArchX86_64, extra: []string{
			"access", "alarm", "arch_prctl", "chmod", "chown", "creat", "dup2",
			"epoll_create", "epoll_wait", "eventfd", "fork", "futimesat", "getdents",
			"getpgrp", "inotify_init", "lchown", "link", "lstat", "mkdir", "mknod", "open",
			"pause", "pipe", "poll", "readlink", "rename", "renameat", "rmdir", "select",
			"signalfd", "stat", "symlink", "time", "unlink", "utime", "utimes", "vfork",
		}},
		"arm64":   {scmp: specs.ArchAARCH64, extra: []string{"renameat"}},
		"riscv64": {scmp: specs.ArchRISCV64, extra: []string{"riscv_flush_icache"}},
	}
}

// commonAllowed are the syscalls the default profile allows without
// conditions on every supported architecture.
//
// It is Docker's default allowlist (moby profiles/seccomp/default.json, the
// calls allowed without any capability) for 64-bit ABIs, minus:
//   - io_uring_setup, io_uring_enter, io_uring_register: a large, fast-moving
//     kernel surface with a history of escalations; libraries fall back to epoll.
//   - name_to_handle_at: its partner open_by_handle_at is refused anyway, and
//     file handles leak information about the host filesystem.
//   - adjtimex, clock_adjtime: these can set the clock with CAP_SYS_TIME; reading
//     the clock needs neither.
//   - fanotify_mark: useless without fanotify_init, which needs CAP_SYS_ADMIN.
//   - ptrace, process_vm_readv, process_vm_writev (Docker allows these on
//     kernels >= 4.8): an agent has no business inspecting other processes.
//   - x86_64's epoll_ctl_old, epoll_wait_old (never implemented),
//     get_thread_area, set_thread_area, modify_ldt (32-bit segment handling).
//
// Allowed beyond that list: fchmodat2, map_shadow_stack and cachestat, newer
// calls that are as harmless as fchmodat, mmap and mincore respectively
// (glibc with shadow stacks enabled needs map_shadow_stack to start threads).
//
// runc loads the filter immediately before execve, and then runs (Go runtime
// included) write, close, openat, fcntl, close_range/getdents64, futex,
// rt_sig*, sigaltstack, mmap, clone (threads), nanosleep, tgkill, getpid,
// getppid, execve and exit_group; all are here.
func commonAllowed() []string {
	return []string{
		"accept", "accept4", "bind", "brk", "cachestat", "capget", "capset", "chdir",
		"clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range", "connect",
		"copy_file_range", "dup", "dup3", "epoll_create1", "epoll_ctl", "epoll_pwait",
		"epoll_pwait2", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
		"faccessat2", "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
		"fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock",
		"fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex",
		"futex_waitv", "get_robust_list", "getcpu", "getcwd", "getdents64", "getegid",
		"geteuid", "getgid", "getgroups", "getitimer", "getpeername", "getpgid", "getpid",
		"getppid", "getpriority", "getrandom", "getresgid", "getresuid", "getrlimit",
		"getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid",
		"getxattr", "inotify_add_watch", "inotify_init1", "inotify_rm_watch", "io_cancel",
		"io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit", "ioctl",
		"ioprio_get", "ioprio_set", "kill", "landlock_add_rule", "landlock_create_ruleset",
		"landlock_restrict_self", "lgetxattr", "linkat", "listen", "listxattr", "llistxattr",
		"lremovexattr", "lseek", "lsetxattr", "madvise", "map_shadow_stack", "membarrier",
		"memfd_create", "memfd_secret", "mincore", "mkdirat", "mknodat", "mlock", "mlock2",
		"mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
		"mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv",
		"msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep", "newfstatat",
		"openat", "openat2", "pidfd_open", "pidfd_send_signal", "pipe2", "pkey_alloc",
		"pkey_free", "pkey_mprotect", "ppoll", "prctl", "pread64", "preadv", "preadv2",
		"prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2", "read",
		"readahead", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg",
		"remap_file_pages", "removexattr", "renameat2", "restart_syscall", "rseq",
		"rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
		"rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_get_priority_max",
		"sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
		"sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity", "sched_setattr",
		"sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "semctl", "semget",
		"semop", "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
		"set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups", "setitimer",
		"setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid", "setrlimit",
		"setsid", "setsockopt", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
		"shutdown", "sigaltstack", "signalfd4", "socketpair", "splice", "statfs", "statx",
		"symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill",
		"timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime",
		"timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill", "truncate",
		"umask", "uname", "unlinkat", "utimensat", "vmsplice", "wait4", "waitid", "write",
		"writev",
	}
}

// defaultProfile is the profile for processes with no capabilities: anything
// not listed fails with EPERM.
func defaultProfile(goarch string) (*specs.LinuxSeccomp, error) {
	arch, err := archFor(goarch)
	if err != nil {
		return nil, err
	}
	allowed := append(commonAllowed(), arch.extra...)
	slices.Sort(allowed)

	syscalls := []specs.LinuxSyscall{{
		Names:  allowed,
		Action: specs.ActAllow,
	}, {
		// Threads and fork are fine; new namespaces are not. The flags are
		// the first argument on every supported architecture (only s390
		// swaps them).
		Names:  []string{"clone"},
		Action: specs.ActAllow,
		Args: []specs.LinuxSeccompArg{{
			Index: 0, Value: nsCloneFlags, ValueTwo: 0, Op: specs.OpMaskedEqual,
		}},
	}, {
		// clone3 passes its flags in a struct that seccomp cannot read, so
		// it cannot be filtered like clone. ENOSYS (not EPERM) makes glibc
		// and musl fall back to clone.
		Names:    []string{"clone3"},
		Action:   specs.ActErrno,
		ErrnoRet: uintPtr(errnoENOSYS),
	}, {
		Names:  []string{"socket"},
		Action: specs.ActAllow,
		Args: []specs.LinuxSeccompArg{{
			Index: 0, Value: afVSOCK, Op: specs.OpNotEqual,
		}},
	}}
	syscalls = append(syscalls, personalityRules()...)

	return &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uintPtr(errnoEPERM),
		Architectures:   []specs.Arch{arch.scmp},
		Syscalls:        syscalls,
	}, nil
}

// personalityRules allow only the Linux persona, the 32-bit one, UNAME26
// (setarch --uname-2.6), and the query value. Everything else changes how the
// kernel treats the process (e.g. READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE).
// Conditions within one rule are ANDed, so each value is its own rule.
func personalityRules() []specs.LinuxSyscall {
	var rules []specs.LinuxSyscall
	for _, v := range []uint64{0x0, 0x8, 0x20000, 0xffffffff} {
		rules = append(rules, specs.LinuxSyscall{
			Names:  []string{"personality"},
			Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{
				Index: 0, Value: v, Op: specs.OpEqualTo,
			}},
		})
	}
	return rules
}

func archFor(goarch string) (archInfo, error) {
	arch, ok := supportedArches()[goarch]
	if !ok {
		var known []string
		for a := range supportedArches() {
			known = append(known, a)
		}
		slices.Sort(known)
		return archInfo{}, fmt.Errorf("architecture %s is not supported (supported: %s)", goarch, strings.Join(known, ", "))
	}
	return arch, nil
}

func uintPtr(v uint) *uint { return &v }
