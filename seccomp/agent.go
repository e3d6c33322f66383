package seccomp

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The agent profile is the default allowlist with two kinds of refusal, told
// apart by their errno:
//
//   - A call the profile does not know (not in the allowlist, e.g. syslog, or
//     newer than the profile) fails with ENOSYS, the default action: the
//     answer of a kernel without that call, on which libc and runtimes fall
//     back to an older call instead of failing.
//   - A call the profile refuses on purpose fails with EPERM (or
//     EAFNOSUPPORT/EPROTONOSUPPORT for socket families), the answer of a
//     kernel to a process without the capability. These are explicit rules.
//
// Because the explicit refusals differ from the default action, runc keeps
// every one of them: runc drops a rule whose action equals the default
// action, and a rule dropped that way could not override anything.
//
// Conditional allows are written so that no call matches both an allow and a
// deny rule of the same syscall (libseccomp gives no documented order between
// overlapping conditional rules, and an unconditional rule beats every
// conditional one), so each deny rule is only there for its errno.

// agentDenied are the calls the agent profile refuses with EPERM regardless
// of their arguments. None is in the allowlist; listing them makes the refusal
// explicit, visible in `seccomp show`, and gives the EPERM a process expects
// from a kernel that says no instead of the ENOSYS of an unknown call.
func agentDenied() []string {
	return []string{
		// io_uring executes operations (connect, openat, ...) inside the
		// kernel, past every seccomp rule on the equivalent syscalls.
		"io_uring_setup", "io_uring_enter", "io_uring_register",
		// Kernel surfaces with a long record of privilege escalations.
		"userfaultfd", "bpf", "perf_event_open",
		// The kernel keyring is not namespaced per container.
		"keyctl", "add_key", "request_key",
		// The whole mount API, old and new, and root switching.
		"mount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
		"open_tree", "mount_setattr", "pivot_root", "chroot",
		// New namespaces are where most unprivileged escalations start.
		"unshare", "setns",
		// Other processes' memory and file descriptors.
		"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
		// Host administration.
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"reboot", "swapon", "swapoff", "acct",
		// File handles bypass path lookup (the "shocker" escape).
		"open_by_handle_at", "name_to_handle_at",
		"fanotify_init",
		// Memory hidden from the kernel's own inspection.
		"memfd_secret",
		// Clock and time setters.
		"clock_settime", "settimeofday", "adjtimex", "clock_adjtime",
	}
}

// Socket families, types and protocols the agent profile names.
const (
	afUNIX      = 1
	afINET      = 2
	afINET6     = 10
	afKEY       = 15
	afNETLINK   = 16
	afPACKET    = 17
	afALG       = 38
	afXDP       = 44
	sockStream  = 1
	sockDgram   = 2
	sockRaw     = 3
	sockPacket  = 10
	sockTypeMsk = 0xf // SOCK_TYPE_MASK: the rest of the type are SOCK_NONBLOCK, SOCK_CLOEXEC
	netlinkRt   = 0   // NETLINK_ROUTE
)

// ioctl requests a process must not make on a terminal: TIOCSTI pushes
// characters into the terminal's input (commands run by whoever reads it next,
// outside the container), TIOCLINUX reads and pastes the console selection.
const (
	tiocSTI   = 0x5412
	tiocLINUX = 0x541C
)

// File types for mknod's mode (S_IFMT bits).
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
)

// cloneNamespaceFlags are the flags in nsCloneFlags, one by one.
var cloneNamespaceFlags = []uint64{
	0x00020000, // CLONE_NEWNS
	0x02000000, // CLONE_NEWCGROUP
	0x04000000, // CLONE_NEWUTS
	0x08000000, // CLONE_NEWIPC
	0x10000000, // CLONE_NEWUSER
	0x20000000, // CLONE_NEWPID
	0x40000000, // CLONE_NEWNET
}

// agentProfile builds the agent profile; see the comment at the top of the
// file and docs/seccomp.md.
func agentProfile(goarch string, opts Options) (*specs.LinuxSeccomp, error) {
	arch, err := archFor(goarch)
	if err != nil {
		return nil, err
	}
	denied := agentDenied()
	conditional := map[string]bool{"ioctl": true, "mknod": true, "mknodat": true}
	allowed := slices.DeleteFunc(append(commonAllowed(), arch.extra...), func(name string) bool {
		return conditional[name] || slices.Contains(denied, name)
	})
	slices.Sort(allowed)
	slices.Sort(denied)

	syscalls := []specs.LinuxSyscall{
		{Names: allowed, Action: specs.ActAllow},
		errnoRule(denied, errnoEPERM),
		{
			Names:  []string{"clone"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: 0, Value: nsCloneFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}},
		},
	}
	// A clone with any namespace flag is refused with EPERM, as the kernel
	// would without CAP_SYS_ADMIN. clone3 gets the default ENOSYS, so libc
	// falls back to clone.
	for _, flag := range cloneNamespaceFlags {
		syscalls = append(syscalls, errnoRule([]string{"clone"}, errnoEPERM,
			specs.LinuxSeccompArg{Index: 0, Value: flag, ValueTwo: flag, Op: specs.OpMaskedEqual}))
	}
	syscalls = append(syscalls, personalityRules()...)
	syscalls = append(syscalls, socketRules(opts)...)
	syscalls = append(syscalls, ioctlRules()...)
	for _, name := range []string{"mknod", "mknodat"} {
		if name == "mknod" && !slices.Contains(arch.extra, "mknod") {
			continue // asm-generic architectures have only mknodat
		}
		syscalls = append(syscalls, mknodRules(name)...)
	}

	return &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uintPtr(errnoENOSYS),
		Architectures:   []specs.Arch{arch.scmp},
		Syscalls:        syscalls,
	}, nil
}

// agentLogProfile lets through every call the agent profile would refuse and
// has the kernel log it (SCMP_ACT_LOG). Only clone3 keeps its ENOSYS: libc
// always falls back to clone, so logging it would only bury the calls that
// matter, and clone3's flags cannot be filtered.
func agentLogProfile(goarch string, opts Options) (*specs.LinuxSeccomp, error) {
	p, err := agentProfile(goarch, opts)
	if err != nil {
		return nil, err
	}
	p.DefaultAction = specs.ActLog
	p.DefaultErrnoRet = nil
	// The allow rules never overlap a deny rule, so dropping the denies
	// sends exactly the refused calls to the default action. Keeping them as
	// SCMP_ACT_LOG rules would be pointless: runc drops rules equal to the
	// default action.
	p.Syscalls = slices.DeleteFunc(p.Syscalls, func(sc specs.LinuxSyscall) bool {
		return sc.Action != specs.ActAllow
	})
	p.Syscalls = append(p.Syscalls, errnoRule([]string{"clone3"}, errnoENOSYS))
	return p, nil
}

// socketRules limit socket(2) by family: AF_UNIX always, NETLINK_ROUTE (to
// read the container's own interfaces and addresses: getifaddrs,
// if_nameindex, getaddrinfo with AI_ADDRCONFIG), and AF_INET/AF_INET6 stream
// and datagram sockets with a network grant. The families an agent must not
// reach get EAFNOSUPPORT, the answer of a kernel built without them, which
// programs handle (an IPv6 probe, for one); other families fall to ENOSYS.
//
// Comparisons are on all 64 bits: the kernel reads family, type and protocol
// as 32-bit ints, so a value with high bits set is one no allow rule matches.
func socketRules(opts Options) []specs.LinuxSyscall {
	eq := func(index uint, v uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: index, Value: v, Op: specs.OpEqualTo}
	}
	rules := []specs.LinuxSyscall{
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(0, afUNIX)}},
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{eq(0, afNETLINK), eq(2, netlinkRt)}},
		// Other netlink protocols reach the audit log, netfilter, xfrm, the
		// generic families and uevents.
		errnoRule([]string{"socket"}, errnoEPROTONOSUPPORT, eq(0, afNETLINK),
			specs.LinuxSeccompArg{Index: 2, Value: netlinkRt, Op: specs.OpNotEqual}),
	}
	refused := []uint64{afKEY, afPACKET, afALG, afVSOCK, afXDP}
	if opts.Network {
		for _, family := range []uint64{afINET, afINET6} {
			for _, typ := range []uint64{sockStream, sockDgram} {
				rules = append(rules, specs.LinuxSyscall{
					Names: []string{"socket"}, Action: specs.ActAllow,
					Args: []specs.LinuxSeccompArg{eq(0, family), {Index: 1, Value: sockTypeMsk, ValueTwo: typ, Op: specs.OpMaskedEqual}},
				})
			}
			// Raw and packet sockets see and forge any traffic; the kernel
			// answers EPERM without CAP_NET_RAW.
			for _, typ := range []uint64{sockRaw, sockPacket} {
				rules = append(rules, errnoRule([]string{"socket"}, errnoEPERM, eq(0, family),
					specs.LinuxSeccompArg{Index: 1, Value: sockTypeMsk, ValueTwo: typ, Op: specs.OpMaskedEqual}))
			}
		}
	} else {
		refused = append([]uint64{afINET, afINET6}, refused...)
	}
	for _, family := range refused {
		rules = append(rules, errnoRule([]string{"socket"}, errnoEAFNOSUPPORT, eq(0, family)))
	}
	return rules
}

// ioctlRules allow every ioctl request but TIOCSTI and TIOCLINUX, which get
// EPERM. The kernel reads the request as a 32-bit int, so only the low 32 bits
// are compared (a request with high bits set is still TIOCSTI to the kernel).
// Seccomp has no "not equal under a mask", so the allowed requests are written
// as the masked patterns that make up everything else (34 of them).
func ioctlRules() []specs.LinuxSyscall {
	excluded := []uint64{tiocSTI, tiocLINUX}
	var rules []specs.LinuxSyscall
	for _, c := range complementCubes(32, excluded) {
		rules = append(rules, specs.LinuxSyscall{
			Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: c.mask, ValueTwo: c.value, Op: specs.OpMaskedEqual}},
		})
	}
	for _, req := range excluded {
		rules = append(rules, errnoRule([]string{"ioctl"}, errnoEPERM,
			specs.LinuxSeccompArg{Index: 1, Value: 0xffffffff, ValueTwo: req, Op: specs.OpMaskedEqual}))
	}
	return rules
}

// mknodRules allow mknod/mknodat of regular files (type 0 means regular),
// FIFOs and sockets; character and block devices get EPERM, as from a kernel
// to a process without CAP_MKNOD. Other types (directories, symlinks, invalid
// ones) fall to the default.
func mknodRules(name string) []specs.LinuxSyscall {
	mode := uint(1) // mknod(path, mode, dev)
	if name == "mknodat" {
		mode = 2 // mknodat(dirfd, path, mode, dev)
	}
	var rules []specs.LinuxSyscall
	for _, typ := range []uint64{0, sIFREG, sIFIFO, sIFSOCK} {
		rules = append(rules, specs.LinuxSyscall{
			Names: []string{name}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: mode, Value: sIFMT, ValueTwo: typ, Op: specs.OpMaskedEqual}},
		})
	}
	for _, typ := range []uint64{sIFCHR, sIFBLK} {
		rules = append(rules, errnoRule([]string{name}, errnoEPERM,
			specs.LinuxSeccompArg{Index: mode, Value: sIFMT, ValueTwo: typ, Op: specs.OpMaskedEqual}))
	}
	return rules
}

func errnoRule(names []string, errno uint, args ...specs.LinuxSeccompArg) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: names, Action: specs.ActErrno, ErrnoRet: uintPtr(errno), Args: args}
}

// cube is the set of values v with v&mask == value.
type cube struct{ mask, value uint64 }

// complementCubes returns disjoint cubes that together hold every value of the
// low width bits except those in excluded: walking from the top bit down,
// each bit value no excluded value continues with becomes one cube.
func complementCubes(width uint, excluded []uint64) []cube {
	var out []cube
	var walk func(bit int, mask, value uint64, left []uint64)
	walk = func(bit int, mask, value uint64, left []uint64) {
		if bit < 0 {
			return // every bit fixed: an excluded value
		}
		b := uint64(1) << bit
		for _, set := range []uint64{0, b} {
			var next []uint64
			for _, v := range left {
				if v&b == set {
					next = append(next, v)
				}
			}
			if len(next) == 0 {
				out = append(out, cube{mask | b, value | set})
			} else {
				walk(bit-1, mask|b, value|set, next)
			}
		}
	}
	walk(int(width)-1, 0, 0, excluded)
	return out
}
