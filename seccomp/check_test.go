//go:build cgo

package seccomp

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// checkCase is a call and what Check must say about it. The same cases are
// made, with the profile loaded, by a child process: Check must agree with
// the kernel.
type checkCase struct {
	profile string
	opts    Options
	syscall string
	args    []uint64
	action  specs.LinuxSeccompAction
	errno   uint
	// kernel: also make the call in the child; false where an allowed call
	// would do something (fork) or the profile cannot be loaded.
	kernel bool
}

const minus1 = ^uint64(0)

func checkCases() []checkCase {
	deny := func(profile string, errno uint, syscall string, args ...uint64) checkCase {
		return checkCase{profile, Options{}, syscall, args, specs.ActErrno, errno, true}
	}
	allow := func(profile string, syscall string, args ...uint64) checkCase {
		return checkCase{profile, Options{}, syscall, args, specs.ActAllow, 0, true}
	}
	const at = 0xffffffffffffff9c // AT_FDCWD
	cases := []checkCase{
		allow(NameAgent, "getppid"),
		allow(NameAgent, "socket", afUNIX, sockStream, 0),
		allow(NameAgent, "socket", afNETLINK, sockRaw, 0),
		deny(NameAgent, errnoEPROTONOSUPPORT, "socket", afNETLINK, sockRaw, 9),
		deny(NameAgent, errnoEAFNOSUPPORT, "socket", afINET, sockStream, 0),
		deny(NameAgent, errnoEAFNOSUPPORT, "socket", afINET6, sockDgram, 0),
		deny(NameAgent, errnoEAFNOSUPPORT, "socket", afVSOCK, sockStream, 0),
		deny(NameAgent, errnoENOSYS, "socket", 1<<32|afINET, sockStream, 0),
		deny(NameAgent, errnoEPERM, "ioctl", minus1, tiocSTI),
		deny(NameAgent, errnoEPERM, "ioctl", minus1, 1<<32|tiocSTI),
		deny(NameAgent, errnoEPERM, "ioctl", minus1, tiocLINUX),
		allow(NameAgent, "ioctl", minus1, 0x5413),
		allow(NameAgent, "ioctl", minus1, 1<<32|0x5413),
		deny(NameAgent, errnoEPERM, "mknodat", at, 0, sIFCHR|0o600),
		deny(NameAgent, errnoEPERM, "mknodat", at, 0, sIFBLK),
		allow(NameAgent, "mknodat", at, 0, sIFIFO|0o600),
		allow(NameAgent, "mknodat", at, 0, 0o600),
		deny(NameAgent, errnoENOSYS, "mknodat", at, 0, 0o040000),
		deny(NameAgent, errnoEPERM, "clone", 0x10000000|17),
		deny(NameAgent, errnoENOSYS, "clone3", 0, 0),
		deny(NameAgent, errnoEPERM, "mount", 0, 0, 0, 0, 0),
		deny(NameAgent, errnoEPERM, "io_uring_setup", 0, 0),
		deny(NameAgent, errnoEPERM, "unshare", 0x10000000),
		deny(NameAgent, errnoENOSYS, "syslog", minus1, 0, 0),
		deny(NameAgent, errnoENOSYS, "personality", 0x400000),
		allow(NameAgent, "personality", 0xffffffff),
		{NameAgent, Options{Network: true}, "socket", []uint64{afINET, sockStream | 0o2000000, 0}, specs.ActAllow, 0, true},
		{NameAgent, Options{Network: true}, "socket", []uint64{afINET, sockRaw, 1}, specs.ActErrno, errnoEPERM, true},
		{NameAgent, Options{Network: true}, "socket", []uint64{afPACKET, sockRaw, 0}, specs.ActErrno, errnoEAFNOSUPPORT, true},

		allow(NameDefault, "socket", afINET, sockStream, 0),
		deny(NameDefault, errnoEPERM, "socket", afVSOCK, sockStream, 0),
		deny(NameDefault, errnoEPERM, "mount", 0, 0, 0, 0, 0),
		deny(NameDefault, errnoENOSYS, "clone3", 0, 0),
		allow(NameDefault, "ioctl", minus1, tiocSTI),

		{NameAgentLog, Options{}, "mount", []uint64{0, 0, 0, 0, 0}, specs.ActLog, 0, true},
		{NameAgentLog, Options{}, "ioctl", []uint64{minus1, tiocSTI}, specs.ActLog, 0, true},
		{NameAgentLog, Options{}, "socket", []uint64{afINET, sockStream, 0}, specs.ActLog, 0, true},
		allow(NameAgentLog, "getppid"),
		deny(NameAgentLog, errnoENOSYS, "clone3", 0, 0),
	}
	if runtime.GOARCH == "amd64" {
		cases = append(cases,
			deny(NameAgent, errnoEPERM, "mknod", 0, sIFCHR),
			allow(NameAgent, "mknod", 0, sIFSOCK),
		)
	}
	return cases
}

func TestCheck(t *testing.T) {
	if _, ok := auditArches[runtime.GOARCH]; !ok {
		t.Skipf("no check on %s", runtime.GOARCH)
	}
	for _, c := range checkCases() {
		p, err := ProfileFor(c.profile, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Check(p, c.syscall, c.args)
		if err != nil {
			t.Errorf("%s %s %#x: %v", c.profile, c.syscall, c.args, err)
			continue
		}
		if v.Action != c.action || v.Errno != c.errno {
			t.Errorf("%s (network %v) %s %#x: %s (%s %d), want %s %d", c.profile, c.opts.Network, c.syscall, c.args, v, v.Action, v.Errno, c.action, c.errno)
		}
		if v.Allowed() != (c.action == specs.ActAllow || c.action == specs.ActLog) {
			t.Errorf("%s %s: Allowed() = %v for %s", c.profile, c.syscall, v.Allowed(), v.Action)
		}
	}
}

func TestCheckErrors(t *testing.T) {
	p, _ := Profile(NameAgent)
	if _, err := Check(p, "no_such_call", nil); err == nil || !strings.Contains(err.Error(), `"no_such_call"`) {
		t.Errorf("unknown syscall: error %v", err)
	}
	if _, err := Check(p, "read", make([]uint64, 7)); err == nil {
		t.Error("7 arguments accepted")
	}
	if _, err := Check(nil, "read", nil); err == nil {
		t.Error("nil profile accepted")
	}
}

// TestCheckENOSYSStub: runc answers ENOSYS, before the filter, for calls
// newer than every syscall a profile names.
func TestCheckENOSYSStub(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"read", "write"}, Action: specs.ActAllow}},
	}
	v, err := Check(p, "getppid", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Action != specs.ActErrno || v.Errno != errnoENOSYS || v.Note == "" {
		t.Errorf("getppid: %+v, want ENOSYS from runc's stub", v)
	}
	p.DefaultAction = specs.ActLog
	if v, _ := Check(p, "getppid", nil); v.Action != specs.ActLog {
		t.Errorf("with a LOG default: %+v, want no stub", v)
	}
}

// checkChildEnv names the profile a TestCheckMatchesKernel child loads,
// checkLoaderEnv the loader (a key of childLoaders).
const (
	checkChildEnv  = "CLAWRUN_SECCOMP_CHECK_CHILD"
	checkLoaderEnv = "CLAWRUN_SECCOMP_CHECK_LOADER"
)

// TestCheckMatchesKernel makes the calls of checkCases in child processes
// with each profile loaded by runc's code (libseccomp's without -tags
// seccomp) and compares what the kernel says with what Check said.
func TestCheckMatchesKernel(t *testing.T) {
	if key := os.Getenv(checkChildEnv); key != "" {
		checkChild(t, key)
		return
	}
	loader := "libseccomp"
	if _, ok := childLoaders["runc"]; ok {
		loader = "runc"
	}
	for _, key := range []string{NameDefault, NameAgent, NameAgent + "+net", NameAgentLog} {
		t.Run(key, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestCheckMatchesKernel$", "-test.v")
			cmd.Env = append(os.Environ(), checkChildEnv+"="+key, checkLoaderEnv+"="+loader)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
		})
	}
}

func checkChild(t *testing.T, key string) {
	name, network := strings.CutSuffix(key, "+net")
	opts := Options{Network: network}
	p, err := ProfileFor(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		c  checkCase
		nr libseccomp.ScmpSyscall
	}
	var calls []call
	for _, c := range checkCases() {
		if c.profile != name || c.opts != opts || !c.kernel {
			continue
		}
		v, err := Check(p, c.syscall, c.args)
		if err != nil || v.Action != c.action || v.Errno != c.errno {
			t.Fatalf("Check disagrees with the table (TestCheck fails too): %+v %v", v, err)
		}
		nr, err := libseccomp.GetSyscallFromName(c.syscall)
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, call{c, nr})
	}
	runtime.LockOSThread() // see enforcedChild
	if err := childLoaders[os.Getenv(checkLoaderEnv)](p); err != nil {
		t.Fatalf("load: %v", err)
	}
	for _, cl := range calls {
		var a [6]uintptr
		for i, v := range cl.c.args {
			a[i] = uintptr(v)
		}
		r, _, errno := unix.Syscall6(uintptr(cl.nr), a[0], a[1], a[2], a[3], a[4], a[5])
		if cl.c.syscall == "socket" && errno == 0 {
			unix.Close(int(r))
		}
		if cl.c.action == specs.ActErrno {
			if !errors.Is(errno, unix.Errno(cl.c.errno)) {
				t.Errorf("%s %#x: kernel says %v, Check says errno %d", cl.c.syscall, cl.c.args, errno, cl.c.errno)
			}
			continue
		}
		// Allowed: the call reached the kernel, which fails the invalid
		// arguments on its own terms, never with the profile's default.
		if def := p.DefaultErrnoRet; def != nil && errno == unix.Errno(*def) {
			t.Errorf("%s %#x: kernel says %v (the default action), Check says %s", cl.c.syscall, cl.c.args, errno, cl.c.action)
		}
	}
}
