package seccomp

import (
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// testArches are the architectures every profile is checked on, whatever
// machine the tests run on.
var testArches = []string{"amd64", "arm64", "riscv64"}

// eachProfile calls f for every known profile, with and without a network
// grant, on every test architecture.
func eachProfile(t *testing.T, f func(t *testing.T, goarch string, p *specs.LinuxSeccomp)) {
	t.Helper()
	for _, name := range Names() {
		for _, opts := range []Options{{}, {Network: true}} {
			variant := name
			if opts.Network {
				variant += "+net"
			}
			for _, goarch := range testArches {
				t.Run(variant+"/"+goarch, func(t *testing.T) {
					p, err := profileFor(name, goarch, opts)
					if err != nil {
						t.Fatal(err)
					}
					f(t, goarch, p)
				})
			}
		}
	}
}

// allowRules returns, per syscall name, the allow rules naming it.
func allowRules(p *specs.LinuxSeccomp) map[string][]specs.LinuxSyscall {
	rules := map[string][]specs.LinuxSyscall{}
	for _, sc := range p.Syscalls {
		if sc.Action != specs.ActAllow {
			continue
		}
		for _, name := range sc.Names {
			rules[name] = append(rules[name], sc)
		}
	}
	return rules
}

func TestNames(t *testing.T) {
	names := Names()
	if !slices.IsSorted(names) {
		t.Errorf("Names() = %v, not sorted", names)
	}
	if !slices.Contains(names, "default") {
		t.Errorf("Names() = %v, want it to contain default", names)
	}
}

func TestProfileUnknown(t *testing.T) {
	tests := []struct {
		name string
	}{{"nope"}, {""}, {"Default"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Profile(tt.name)
			if err == nil {
				t.Fatalf("Profile(%q) = %v, want error", tt.name, p)
			}
			for _, known := range Names() {
				if !strings.Contains(err.Error(), known) {
					t.Errorf("error %q does not name known profile %q", err, known)
				}
			}
			if !strings.Contains(err.Error(), `"`+tt.name+`"`) {
				t.Errorf("error %q does not quote the requested name", err)
			}
		})
	}
}

func TestProfileUnsupportedArch(t *testing.T) {
	_, err := profileFor("default", "s390x", Options{})
	if err == nil || !strings.Contains(err.Error(), "s390x") || !strings.Contains(err.Error(), "amd64") {
		t.Fatalf("profileFor(default, s390x) error = %v, want one naming s390x and the supported arches", err)
	}
}

func TestProfileNative(t *testing.T) {
	p, err := Profile("default")
	if err != nil {
		t.Fatalf("Profile(default) on %s: %v", runtime.GOARCH, err)
	}
	q, _ := Profile("default")
	q.Syscalls[0].Names[0] = "mutated"
	if p.Syscalls[0].Names[0] == "mutated" {
		t.Error("two Profile calls share state")
	}
}

func TestDefaultProfileShape(t *testing.T) {
	wantArch := map[string]specs.Arch{
		"amd64":   specs.ArchX86_64,
		"arm64":   specs.ArchAARCH64,
		"riscv64": specs.ArchRISCV64,
	}
	for _, goarch := range testArches {
		t.Run(goarch, func(t *testing.T) {
			p, err := profileFor("default", goarch, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
				t.Errorf("default action = %s errno %v, want SCMP_ACT_ERRNO errno 1", p.DefaultAction, p.DefaultErrnoRet)
			}
			// Only the native ABI: listing i386 or x32 as well would let
			// their syscall numbers through a filter written for x86_64.
			if want := []specs.Arch{wantArch[goarch]}; !slices.Equal(p.Architectures, want) {
				t.Errorf("architectures = %v, want %v", p.Architectures, want)
			}
		})
	}
}

func TestNoDuplicateNames(t *testing.T) {
	eachProfile(t, func(t *testing.T, _ string, p *specs.LinuxSeccomp) {
		for _, sc := range p.Syscalls {
			if len(sc.Args) > 0 {
				continue // several rules per name are how alternatives are written
			}
			seen := map[string]bool{}
			for _, name := range sc.Names {
				if seen[name] {
					t.Errorf("%s listed twice in one rule", name)
				}
				seen[name] = true
			}
		}
	})
}

// TestDenied checks that calls needing a capability, or otherwise refused,
// have no allow rule at all.
func TestDenied(t *testing.T) {
	denied := []string{
		// mounts and filesystem views
		"mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig",
		"fspick", "move_mount", "open_tree", "mount_setattr",
		// namespaces
		"unshare", "setns", "clone3",
		// kernel surface and tracing
		"bpf", "perf_event_open", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
		"pidfd_getfd", "process_madvise", "userfaultfd", "io_uring_setup", "io_uring_enter",
		"io_uring_register", "lookup_dcookie", "fanotify_init", "fanotify_mark",
		// keys
		"keyctl", "add_key", "request_key",
		// host administration
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
		"swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "vhangup", "syslog",
		"nfsservctl", "sethostname", "setdomainname", "uselib", "ustat", "sysfs", "_sysctl",
		// time
		"clock_settime", "settimeofday", "stime", "adjtimex", "clock_adjtime",
		// file handles
		"open_by_handle_at", "name_to_handle_at",
		// hardware and memory policy
		"iopl", "ioperm", "modify_ldt", "mbind", "set_mempolicy", "get_mempolicy",
		"set_mempolicy_home_node", "move_pages", "migrate_pages",
	}
	eachProfile(t, func(t *testing.T, _ string, p *specs.LinuxSeccomp) {
		rules := allowRules(p)
		for _, name := range denied {
			if r, ok := rules[name]; ok {
				t.Errorf("%s is allowed by %d rule(s), want it refused", name, len(r))
			}
		}
	})
}

// TestConditional checks the calls the default profile allows only with
// certain arguments: there must be no unconditional allow beside the filtered
// ones. The agent profile's are in agent_test.go.
func TestConditional(t *testing.T) {
	tests := []struct {
		name string
		want []specs.LinuxSeccompArg // one rule per element
	}{{
		name: "clone",
		want: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7E020000, ValueTwo: 0, Op: specs.OpMaskedEqual}},
	}, {
		name: "socket",
		want: []specs.LinuxSeccompArg{{Index: 0, Value: 40, Op: specs.OpNotEqual}},
	}, {
		name: "personality",
		want: []specs.LinuxSeccompArg{
			{Index: 0, Value: 0x0, Op: specs.OpEqualTo},
			{Index: 0, Value: 0x8, Op: specs.OpEqualTo},
			{Index: 0, Value: 0x20000, Op: specs.OpEqualTo},
			{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo},
		},
	}}
	for _, goarch := range testArches {
		p, err := profileFor(NameDefault, goarch, Options{})
		if err != nil {
			t.Fatal(err)
		}
		rules := allowRules(p)
		for _, tt := range tests {
			var got []specs.LinuxSeccompArg
			for _, r := range rules[tt.name] {
				if len(r.Args) != 1 {
					t.Errorf("%s: rule %+v, want exactly one argument condition", tt.name, r)
					continue
				}
				got = append(got, r.Args[0])
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s/%s conditions = %+v, want %+v", goarch, tt.name, got, tt.want)
			}
		}
	}
}

// TestClone3ENOSYS checks clone3 gets ENOSYS, from its own rule or from an
// ENOSYS default action (a rule equal to the default would be dropped).
func TestClone3ENOSYS(t *testing.T) {
	eachProfile(t, func(t *testing.T, _ string, p *specs.LinuxSeccomp) {
		var found bool
		for _, sc := range p.Syscalls {
			if !slices.Contains(sc.Names, "clone3") {
				continue
			}
			found = true
			if sc.Action != specs.ActErrno || sc.ErrnoRet == nil || *sc.ErrnoRet != 38 || len(sc.Args) != 0 {
				t.Errorf("clone3 rule = %+v, want SCMP_ACT_ERRNO with errno 38 (ENOSYS)", sc)
			}
		}
		defaultENOSYS := p.DefaultAction == specs.ActErrno && p.DefaultErrnoRet != nil && *p.DefaultErrnoRet == 38
		if !found && !defaultENOSYS {
			t.Error("no clone3 rule and the default is not ENOSYS; libc would not fall back to clone")
		}
	})
}

// TestRuncInitNeeds checks the calls runc's init (and the Go runtime under
// it) makes after loading the filter and before execve, and the ones every
// libc program makes at start.
func TestRuncInitNeeds(t *testing.T) {
	needed := []string{
		"read", "write", "close", "openat", "fcntl", "close_range", "getdents64", "newfstatat",
		"fstat", "futex", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
		"mmap", "munmap", "mprotect", "madvise", "nanosleep", "sched_yield", "tgkill",
		"getpid", "gettid", "getppid", "epoll_pwait", "execve", "exit", "exit_group",
		"brk", "set_tid_address", "set_robust_list", "rseq", "prlimit64", "getrandom",
	}
	eachProfile(t, func(t *testing.T, goarch string, p *specs.LinuxSeccomp) {
		rules := allowRules(p)
		want := needed
		if goarch == "amd64" {
			want = append(slices.Clone(needed), "arch_prctl")
		}
		for _, name := range want {
			r, ok := rules[name]
			if !ok || len(r[0].Args) != 0 {
				t.Errorf("%s is not allowed unconditionally", name)
			}
		}
	})
}

func TestSummary(t *testing.T) {
	def, err := profileFor("default", "amd64", Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := len(allowRules(def))
	tests := []struct {
		name string
		p    *specs.LinuxSeccomp
		want []string // substrings, each on some line
	}{{
		name: "default",
		p:    def,
		want: []string{
			"default action: SCMP_ACT_ERRNO (errno 1, EPERM)",
			"architectures: SCMP_ARCH_X86_64",
			"allowed syscalls: " + strconv.Itoa(n) + " (" + strconv.Itoa(n-3) + " unconditionally, 3 only with argument filters)",
			"clone: allowed only if arg0 & 0x7e020000 == 0x0 (no new namespaces)",
			"clone3: SCMP_ACT_ERRNO (errno 38, ENOSYS)",
			"socket: allowed only if arg0 != 0x28 (not AF_VSOCK)",
			"personality: allowed only if arg0 == 0x0 or arg0 == 0x8 or arg0 == 0x20000 or arg0 == 0xffffffff",
		},
	}, {
		name: "nil",
		p:    nil,
		want: []string{"every syscall allowed"},
	}, {
		name: "custom",
		p: &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{
				{Names: []string{"ptrace", "bpf"}, Action: specs.ActKillProcess},
				{Names: []string{"kill"}, Action: specs.ActErrno},
			},
		},
		want: []string{
			"default action: allowed",
			"architectures: native only",
			"allowed syscalls: all except those below",
			"ptrace: SCMP_ACT_KILL_PROCESS",
			"bpf: SCMP_ACT_KILL_PROCESS",
			"kill: SCMP_ACT_ERRNO (errno 1, EPERM)",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := Summary(tt.p)
			if len(lines) == 0 {
				t.Fatal("Summary is empty")
			}
			text := strings.Join(lines, "\n")
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("Summary lacks %q:\n%s", w, text)
				}
			}
		})
	}
}
