package seccomp

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// symbols are the constants a user may name in `seccomp check` arguments,
// with the values of the architectures clawrun supports (x86_64, aarch64 and
// riscv64 agree on all of them).
var symbols = map[string]uint64{
	"AF_UNIX": afUNIX, "AF_LOCAL": afUNIX, "AF_INET": afINET, "AF_INET6": afINET6,
	"AF_KEY": afKEY, "AF_NETLINK": afNETLINK, "AF_PACKET": afPACKET, "AF_ALG": afALG,
	"AF_VSOCK": afVSOCK, "AF_XDP": afXDP,
	"SOCK_STREAM": sockStream, "SOCK_DGRAM": sockDgram, "SOCK_RAW": sockRaw,
	"SOCK_SEQPACKET": 5, "SOCK_PACKET": sockPacket,
	"SOCK_NONBLOCK": 0o4000, "SOCK_CLOEXEC": 0o2000000,
	"NETLINK_ROUTE": netlinkRt, "NETLINK_AUDIT": 9, "NETLINK_NETFILTER": 12,
	"NETLINK_KOBJECT_UEVENT": 15, "NETLINK_GENERIC": 16,
	"TIOCSTI": tiocSTI, "TIOCLINUX": tiocLINUX, "TIOCGWINSZ": 0x5413, "FIONREAD": 0x541B,
	"CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
	"CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
	"CLONE_NEWNET": 0x40000000, "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400,
	"CLONE_SIGHAND": 0x800, "CLONE_THREAD": 0x10000, "SIGCHLD": 17,
	"S_IFREG": sIFREG, "S_IFCHR": sIFCHR, "S_IFBLK": sIFBLK, "S_IFIFO": sIFIFO,
	"S_IFSOCK": sIFSOCK, "S_IFDIR": 0o040000, "S_IFLNK": 0o120000,
	"AT_FDCWD": uint64(0xffffffffffffff9c), // -100
}

// ParseArg reads one syscall argument as `seccomp check` takes it: a number
// (decimal, 0x hex, 0o or leading-0 octal, 0b binary; negative numbers are
// two's complement, as the kernel sees -1), a constant name such as AF_INET,
// TIOCSTI, S_IFCHR or CLONE_NEWUSER, or several of those joined by "|".
func ParseArg(s string) (uint64, error) {
	if strings.TrimSpace(s) == "" {
		return 0, fmt.Errorf("empty argument: want a number or a constant such as AF_INET")
	}
	var v uint64
	for _, part := range strings.Split(s, "|") {
		part = strings.TrimSpace(part)
		if x, ok := symbols[strings.ToUpper(part)]; ok {
			v |= x
			continue
		}
		if x, err := strconv.ParseUint(part, 0, 64); err == nil {
			v |= x
			continue
		}
		if x, err := strconv.ParseInt(part, 0, 64); err == nil {
			v |= uint64(x)
			continue
		}
		return 0, fmt.Errorf("argument %q: %q is neither a number nor a known constant (known: %s)", s, part, strings.Join(symbolNames(), ", "))
	}
	return v, nil
}

func symbolNames() []string {
	var names []string
	for name := range symbols {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// symbolFor names a value in the context of a syscall argument, for notes in
// Summary: the prefixes are the constants that argument takes.
func symbolFor(syscall string, index uint, v uint64) string {
	var prefix string
	switch {
	case syscall == "socket" && index == 0:
		prefix = "AF_"
	case syscall == "socket" && index == 1:
		prefix = "SOCK_"
	case syscall == "socket" && index == 2:
		prefix = "NETLINK_"
	case syscall == "ioctl" && index == 1:
		prefix = "TIOC"
	case syscall == "clone" && index == 0:
		prefix = "CLONE_NEW"
	case (syscall == "mknod" && index == 1) || (syscall == "mknodat" && index == 2):
		prefix = "S_IF"
	default:
		return ""
	}
	var found []string
	for name, x := range symbols {
		if x == v && strings.HasPrefix(name, prefix) && name != "AF_LOCAL" {
			found = append(found, name)
		}
	}
	slices.Sort(found)
	return strings.Join(found, "/")
}
