package seccomp

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// rulesFor returns the rules naming a syscall.
func rulesFor(p *specs.LinuxSeccomp, name string) []specs.LinuxSyscall {
	var out []specs.LinuxSyscall
	for _, sc := range p.Syscalls {
		if slices.Contains(sc.Names, name) {
			out = append(out, sc)
		}
	}
	return out
}

func errnoOf(sc specs.LinuxSyscall) uint {
	if sc.ErrnoRet == nil {
		return errnoEPERM
	}
	return *sc.ErrnoRet
}

// TestAgentNarrowsDefault: the agent profile allows nothing default refuses.
func TestAgentNarrowsDefault(t *testing.T) {
	for _, goarch := range testArches {
		def, _ := profileFor(NameDefault, goarch, Options{})
		for _, opts := range []Options{{}, {Network: true}} {
			agent, err := profileFor(NameAgent, goarch, opts)
			if err != nil {
				t.Fatal(err)
			}
			defAllowed := allowRules(def)
			for name, rules := range allowRules(agent) {
				d, ok := defAllowed[name]
				if !ok {
					t.Errorf("%s: agent allows %s, default does not", goarch, name)
					continue
				}
				if len(d[0].Args) > 0 && len(rules[0].Args) == 0 {
					t.Errorf("%s: agent allows %s unconditionally, default only with filters", goarch, name)
				}
			}
		}
	}
}

// TestAgentExplicitDenies checks the calls issue 3 names have an explicit
// EPERM rule and no allow rule.
func TestAgentExplicitDenies(t *testing.T) {
	want := []string{
		"io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf",
		"perf_event_open", "keyctl", "add_key", "request_key", "mount", "umount2", "fsopen",
		"fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "pivot_root",
		"chroot", "unshare", "setns", "ptrace", "process_vm_readv", "process_vm_writev",
		"pidfd_getfd", "kcmp", "kexec_load", "kexec_file_load", "init_module", "finit_module",
		"delete_module", "reboot", "swapon", "swapoff", "acct", "open_by_handle_at",
		"name_to_handle_at", "fanotify_init", "memfd_secret", "clock_settime", "settimeofday",
		"adjtimex", "clock_adjtime",
	}
	eachAgent(t, func(t *testing.T, goarch string, p *specs.LinuxSeccomp) {
		allowed := allowRules(p)
		for _, name := range want {
			if _, ok := allowed[name]; ok {
				t.Errorf("%s is allowed", name)
			}
			rules := rulesFor(p, name)
			if len(rules) != 1 || rules[0].Action != specs.ActErrno || errnoOf(rules[0]) != errnoEPERM || len(rules[0].Args) != 0 {
				t.Errorf("%s rules = %+v, want one unconditional EPERM", name, rules)
			}
		}
	})
}

// eachAgent runs f on the agent profile with and without network.
func eachAgent(t *testing.T, f func(t *testing.T, goarch string, p *specs.LinuxSeccomp)) {
	for _, goarch := range testArches {
		for _, opts := range []Options{{}, {Network: true}} {
			t.Run(goarch, func(t *testing.T) {
				p, err := profileFor(NameAgent, goarch, opts)
				if err != nil {
					t.Fatal(err)
				}
				f(t, goarch, p)
			})
		}
	}
}

func TestAgentShape(t *testing.T) {
	eachAgent(t, func(t *testing.T, goarch string, p *specs.LinuxSeccomp) {
		if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != errnoENOSYS {
			t.Errorf("default = %s %v, want SCMP_ACT_ERRNO ENOSYS", p.DefaultAction, p.DefaultErrnoRet)
		}
		if len(p.Architectures) != 1 || p.Architectures[0] != supportedArches()[goarch].scmp {
			t.Errorf("architectures = %v, want only the native one", p.Architectures)
		}
		if rulesFor(p, "clone3") != nil {
			t.Error("clone3 has a rule; it would equal the ENOSYS default and be dropped by runc")
		}
	})
}

// TestBuiltinRulesSurviveRunc: the known trap. runc drops a rule whose action
// equals the default action; no built-in profile may have one, and each passes
// the checks custom profiles get.
func TestBuiltinRulesSurviveRunc(t *testing.T) {
	eachProfile(t, func(t *testing.T, _ string, p *specs.LinuxSeccomp) {
		def := actionKey(p.DefaultAction, p.DefaultErrnoRet)
		for i, sc := range p.Syscalls {
			if actionKey(sc.Action, sc.ErrnoRet) == def {
				t.Errorf("syscalls[%d] %v: action equals the default %s", i, sc.Names, def)
			}
		}
		if err := validate(p); err != nil {
			t.Errorf("validate: %v", err)
		}
	})
}

// TestAgentArgRules checks each argument-filtered syscall: the allow rules,
// and the deny rules with their errnos.
func TestAgentArgRules(t *testing.T) {
	arg := func(index uint, op specs.LinuxSeccompOperator, v, v2 uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: index, Value: v, ValueTwo: v2, Op: op}
	}
	eq := func(index uint, v uint64) specs.LinuxSeccompArg { return arg(index, specs.OpEqualTo, v, 0) }
	type rule struct {
		action specs.LinuxSeccompAction
		errno  uint
		args   []specs.LinuxSeccompArg
	}
	tests := []struct {
		name    string
		network bool
		want    []rule // in profile order; for ioctl only the denies (allows are checked below)
	}{{
		name: "clone",
		want: []rule{
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{arg(0, specs.OpMaskedEqual, nsCloneFlags, 0)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(0, specs.OpMaskedEqual, 0x20000, 0x20000)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(0, specs.OpMaskedEqual, 0x2000000, 0x2000000)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(0, specs.OpMaskedEqual, 0x4000000, 0x4000000)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(0, specs.OpMaskedEqual, 0x8000000, 0x8000000)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(0, specs.OpMaskedEqual, 0x10000000, 0x10000000)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(0, specs.OpMaskedEqual, 0x20000000, 0x20000000)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(0, specs.OpMaskedEqual, 0x40000000, 0x40000000)}},
		},
	}, {
		name: "mknodat",
		want: []rule{
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{arg(2, specs.OpMaskedEqual, 0o170000, 0)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{arg(2, specs.OpMaskedEqual, 0o170000, 0o100000)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{arg(2, specs.OpMaskedEqual, 0o170000, 0o010000)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{arg(2, specs.OpMaskedEqual, 0o170000, 0o140000)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(2, specs.OpMaskedEqual, 0o170000, 0o020000)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(2, specs.OpMaskedEqual, 0o170000, 0o060000)}},
		},
	}, {
		name: "socket",
		want: []rule{
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{eq(0, 1)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{eq(0, 16), eq(2, 0)}},
			{specs.ActErrno, 93, []specs.LinuxSeccompArg{eq(0, 16), arg(2, specs.OpNotEqual, 0, 0)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 2)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 10)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 15)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 17)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 38)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 40)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 44)}},
		},
	}, {
		name:    "socket",
		network: true,
		want: []rule{
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{eq(0, 1)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{eq(0, 16), eq(2, 0)}},
			{specs.ActErrno, 93, []specs.LinuxSeccompArg{eq(0, 16), arg(2, specs.OpNotEqual, 0, 0)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{eq(0, 2), arg(1, specs.OpMaskedEqual, 0xf, 1)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{eq(0, 2), arg(1, specs.OpMaskedEqual, 0xf, 2)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{eq(0, 2), arg(1, specs.OpMaskedEqual, 0xf, 3)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{eq(0, 2), arg(1, specs.OpMaskedEqual, 0xf, 10)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{eq(0, 10), arg(1, specs.OpMaskedEqual, 0xf, 1)}},
			{specs.ActAllow, 0, []specs.LinuxSeccompArg{eq(0, 10), arg(1, specs.OpMaskedEqual, 0xf, 2)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{eq(0, 10), arg(1, specs.OpMaskedEqual, 0xf, 3)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{eq(0, 10), arg(1, specs.OpMaskedEqual, 0xf, 10)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 15)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 17)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 38)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 40)}},
			{specs.ActErrno, 97, []specs.LinuxSeccompArg{eq(0, 44)}},
		},
	}, {
		name: "ioctl",
		want: []rule{
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(1, specs.OpMaskedEqual, 0xffffffff, 0x5412)}},
			{specs.ActErrno, 1, []specs.LinuxSeccompArg{arg(1, specs.OpMaskedEqual, 0xffffffff, 0x541c)}},
		},
	}}
	for _, goarch := range testArches {
		for _, tt := range tests {
			p, err := profileFor(NameAgent, goarch, Options{Network: tt.network})
			if err != nil {
				t.Fatal(err)
			}
			var got []rule
			for _, sc := range rulesFor(p, tt.name) {
				if len(sc.Names) != 1 {
					t.Errorf("%s/%s: rule %+v names several syscalls", goarch, tt.name, sc)
				}
				if len(sc.Args) == 0 {
					t.Errorf("%s/%s: unconditional rule %+v; it would override every conditional one", goarch, tt.name, sc)
				}
				if tt.name == "ioctl" && sc.Action == specs.ActAllow {
					continue
				}
				var errno uint
				if sc.Action == specs.ActErrno {
					errno = errnoOf(sc)
				}
				got = append(got, rule{sc.Action, errno, sc.Args})
			}
			if !slices.EqualFunc(got, tt.want, func(a, b rule) bool {
				return a.action == b.action && a.errno == b.errno && slices.Equal(a.args, b.args)
			}) {
				t.Errorf("%s/%s (network %v) rules:\n got %+v\nwant %+v", goarch, tt.name, tt.network, got, tt.want)
			}
		}
		// x86_64's legacy mknod filters its mode (arg1) like mknodat.
		p, _ := profileFor(NameAgent, goarch, Options{})
		mknod := rulesFor(p, "mknod")
		if goarch == "amd64" && (len(mknod) != 6 || mknod[0].Args[0].Index != 1) {
			t.Errorf("amd64 mknod rules = %+v, want 6 filtering arg1", mknod)
		}
		if goarch != "amd64" && mknod != nil {
			t.Errorf("%s has mknod rules, but no mknod syscall", goarch)
		}
	}
}

// TestIoctlAllowRules checks the masked patterns of ioctl's allow rules
// against the requests: every request but TIOCSTI and TIOCLINUX matches
// exactly one, whatever the high 32 bits.
func TestIoctlAllowRules(t *testing.T) {
	p, err := profileFor(NameAgent, "amd64", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var cubes []cube
	for _, sc := range rulesFor(p, "ioctl") {
		if sc.Action != specs.ActAllow {
			continue
		}
		a := sc.Args[0]
		if a.Index != 1 || a.Op != specs.OpMaskedEqual || a.Value>>32 != 0 {
			t.Fatalf("ioctl allow rule %+v: want a masked compare of arg1's low 32 bits", a)
		}
		cubes = append(cubes, cube{a.Value, a.ValueTwo})
	}
	if len(cubes) != 34 {
		t.Errorf("%d allow patterns, want 34", len(cubes))
	}
	requests := []uint64{0, 1, 0x5411, 0x5413, 0x541B, 0x541D, 0x5402, 0x541E, 0x5412 ^ 0x80000000,
		0xffffffff, 0x80045430, 0xc0045877, tiocSTI, tiocLINUX}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		requests = append(requests, uint64(rng.Uint32()), tiocSTI^(1<<rng.IntN(32)), tiocLINUX^(1<<rng.IntN(32)))
	}
	for _, r := range requests {
		for _, high := range []uint64{0, 1 << 32, 0xffffffff00000000} {
			v := r | high
			matches := 0
			for _, c := range cubes {
				if v&c.mask == c.value {
					matches++
				}
			}
			want := 1
			if r == tiocSTI || r == tiocLINUX {
				want = 0
			}
			if matches != want {
				t.Fatalf("request %#x matches %d allow patterns, want %d", v, matches, want)
			}
		}
	}
}

func TestAgentLogProfile(t *testing.T) {
	for _, goarch := range testArches {
		for _, opts := range []Options{{}, {Network: true}} {
			agent, _ := profileFor(NameAgent, goarch, opts)
			log, err := profileFor(NameAgentLog, goarch, opts)
			if err != nil {
				t.Fatal(err)
			}
			if log.DefaultAction != specs.ActLog || log.DefaultErrnoRet != nil {
				t.Errorf("default = %s %v, want SCMP_ACT_LOG", log.DefaultAction, log.DefaultErrnoRet)
			}
			var allows []specs.LinuxSyscall
			for _, sc := range agent.Syscalls {
				if sc.Action == specs.ActAllow {
					allows = append(allows, sc)
				}
			}
			want := append(allows, errnoRule([]string{"clone3"}, errnoENOSYS))
			if len(log.Syscalls) != len(want) {
				t.Fatalf("%d rules, want the agent's %d allow rules and clone3", len(log.Syscalls), len(allows))
			}
			for i := range want {
				if !slices.Equal(log.Syscalls[i].Names, want[i].Names) || log.Syscalls[i].Action != want[i].Action || !slices.Equal(log.Syscalls[i].Args, want[i].Args) {
					t.Errorf("rule %d = %+v, want %+v", i, log.Syscalls[i], want[i])
				}
			}
		}
	}
}

func TestComplementCubes(t *testing.T) {
	tests := []struct {
		width    uint
		excluded []uint64
		want     int
	}{
		{4, []uint64{5}, 4},
		{4, []uint64{0, 15}, 6},
		{8, nil, 2},
		{32, []uint64{tiocSTI, tiocLINUX}, 34},
	}
	for _, tt := range tests {
		cubes := complementCubes(tt.width, tt.excluded)
		if len(cubes) != tt.want {
			t.Errorf("complementCubes(%d, %#x): %d cubes, want %d", tt.width, tt.excluded, len(cubes), tt.want)
		}
		if tt.width > 8 {
			continue
		}
		for v := uint64(0); v < 1<<tt.width; v++ {
			n := 0
			for _, c := range cubes {
				if v&c.mask == c.value {
					n++
				}
			}
			want := 1
			if slices.Contains(tt.excluded, v) {
				want = 0
			}
			if n != want {
				t.Errorf("complementCubes(%d, %#x): %#x in %d cubes, want %d", tt.width, tt.excluded, v, n, want)
			}
		}
	}
}

func TestParseArg(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr string
	}{
		{"0", 0, ""},
		{"42", 42, ""},
		{"0x5412", 0x5412, ""},
		{"0o600", 0o600, ""},
		{"-1", 0xffffffffffffffff, ""},
		{"-100", 0xffffffffffffff9c, ""},
		{"AF_INET", 2, ""},
		{"af_inet6", 10, ""},
		{"TIOCSTI", 0x5412, ""},
		{"S_IFCHR|0600", 0o020600, ""},
		{"CLONE_NEWUSER|SIGCHLD", 0x10000011, ""},
		{"SOCK_STREAM | SOCK_CLOEXEC", 0o2000001, ""},
		{"", 0, "empty"},
		{"AF_NOPE", 0, `"AF_NOPE" is neither`},
		{"1|", 0, "neither"},
	}
	for _, tt := range tests {
		got, err := ParseArg(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseArg(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseArg(%q) = %#x, %v; want %#x", tt.in, got, err, tt.want)
		}
	}
}

func TestSummaryAgent(t *testing.T) {
	p, err := profileFor(NameAgent, "amd64", Options{})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(Summary(p), "\n")
	for _, w := range []string{
		"default action: SCMP_ACT_ERRNO (errno 38, ENOSYS)",
		"architectures: SCMP_ARCH_X86_64",
		"mount: SCMP_ACT_ERRNO (errno 1, EPERM)",
		"io_uring_setup: SCMP_ACT_ERRNO (errno 1, EPERM)",
		"ioctl: allowed only if the arguments match one of 34 patterns",
		"ioctl: SCMP_ACT_ERRNO (errno 1, EPERM) only if arg1 & 0xffffffff == 0x5412 (TIOCSTI) or arg1 & 0xffffffff == 0x541c (TIOCLINUX)",
		"socket: allowed only if arg0 == 0x1 (AF_UNIX) or arg0 == 0x10 (AF_NETLINK) and arg2 == 0x0 (NETLINK_ROUTE)",
		"socket: SCMP_ACT_ERRNO (errno 97, EAFNOSUPPORT) only if arg0 == 0x2 (AF_INET) or arg0 == 0xa (AF_INET6)",
		"socket: SCMP_ACT_ERRNO (errno 93, EPROTONOSUPPORT) only if arg0 == 0x10 (AF_NETLINK) and arg2 != 0x0 (not NETLINK_ROUTE)",
		"mknodat: SCMP_ACT_ERRNO (errno 1, EPERM) only if arg2 & 0xf000 == 0x2000 (S_IFCHR) or arg2 & 0xf000 == 0x6000 (S_IFBLK)",
		"mknodat: allowed only if arg2 & 0xf000 == 0x0 (regular file) or arg2 & 0xf000 == 0x8000 (S_IFREG)",
		"clone: SCMP_ACT_ERRNO (errno 1, EPERM) only if arg0 & 0x20000 == 0x20000 (CLONE_NEWNS)",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("Summary lacks %q:\n%s", w, text)
		}
	}
	log, _ := profileFor(NameAgentLog, "amd64", Options{})
	if text := strings.Join(Summary(log), "\n"); !strings.Contains(text, "every other call is allowed too and logged") {
		t.Errorf("agent-log Summary does not say other calls are logged:\n%s", text)
	}
}
