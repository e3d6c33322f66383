package test

// The escape suite (issue 3): attempts made from inside real containers to
// reach the host, other agents or the kernel, each asserting the exact way it
// fails. Raw calls that busybox cannot make go through the prober
// (test/prober/prober.c), a static C program built at test setup and placed
// at /prober in the shared test rootfs. It prints one "ATTEMPT=RESULT" line
// per attempt; each attempt below is one subtest.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/clawrun/clawrun/rootfs"
)

//go:embed prober/prober.c
var proberSource []byte

var (
	proberBin string // the built prober on the host, for control runs
	proberErr error  // why the prober could not be built
)

// buildProber compiles the prober into dir. Static, so it runs in any rootfs.
func buildProber(dir string) (string, error) {
	src := filepath.Join(dir, "prober.c")
	if err := os.WriteFile(src, proberSource, 0o644); err != nil {
		return "", fmt.Errorf("escape prober: %w", err)
	}
	bin := filepath.Join(dir, "prober")
	out, err := exec.Command("gcc", "-static", "-O2", "-o", bin, src).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the escape prober with gcc -static (needs gcc and libc6-dev): %v\n%s", err, out)
	}
	return bin, nil
}

// escapeEnv is e reporting to the subtest t, so a failing clawrun call
// fails the subtest rather than its parent.
func escapeEnv(e *env, t *testing.T) *env {
	se := *e
	se.t = t
	return &se
}

func needProber(t *testing.T) {
	t.Helper()
	if proberErr != nil {
		t.Fatal(proberErr)
	}
}

// attempt is one escape attempt and the results that mean it failed.
type attempt struct {
	what  string                 // the escape attempted (the subtest name)
	probe string                 // prober argument, e.g. "mount:proc"
	sh    string                 // or a busybox shell snippet whose output is the result
	want  []string               // accepted results; a trailing "*" matches a prefix
	check func(res string) error // optional, on top of want
}

func (a attempt) key() string {
	if a.sh != "" {
		return "sh:" + a.what
	}
	return a.probe
}

// isRefusal reports whether a prober result is a refused call: an errno
// name, possibly after a "SOCKET-" prefix, or the attempt killed by a signal.
func isRefusal(res string) bool {
	res = strings.TrimPrefix(res, "SOCKET-")
	return (strings.HasPrefix(res, "E") && res == strings.ToUpper(res) && !strings.Contains(res, ":")) ||
		strings.HasPrefix(res, "SIG")
}

func (a attempt) accepts(res string, anyRefusal bool) bool {
	if anyRefusal {
		// Under a stricter profile a refused call may fail with another
		// errno, but it must still fail.
		all := true
		for _, w := range a.want {
			all = all && isRefusal(strings.TrimSuffix(w, "*"))
		}
		if all {
			return isRefusal(res)
		}
	}
	for _, w := range a.want {
		if p, ok := strings.CutSuffix(w, "*"); ok && strings.HasPrefix(res, p) || w == res {
			return true
		}
	}
	return false
}

// probeArgs is the command line that runs every attempt in one container: a
// busybox shell runs the shell attempts, then execs the prober with the rest.
func probeArgs(attempts []attempt) []string {
	args := []string{"/bin/sh", "-c", "", "sh"}
	var script strings.Builder
	var probes []string
	for _, a := range attempts {
		if a.sh != "" {
			// One line per attempt, whatever the snippet prints.
			fmt.Fprintf(&script, "echo \"%s=$( (%s) 2>&1 | tr '\\n' ' ' | sed 's/ *$//')\"\n", a.key(), a.sh)
		} else {
			probes = append(probes, a.probe)
		}
	}
	if len(probes) > 0 {
		// exec, so the prober is the only process besides its children.
		script.WriteString(`exec /prober "$@"` + "\n")
		args = append(args, probes...)
	}
	args[2] = script.String()
	return args
}

func parseResults(out string) map[string]string {
	res := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			res[k] = v
		}
	}
	return res
}

// starter returns the clawrun arguments that run cmd in a container.
type starter func(cmd []string) []string

// adHoc runs cmd with `clawrun run --rootfs DIR [flags] -- cmd`.
func adHoc(dir string, flags ...string) starter {
	return func(cmd []string) []string {
		return append(append(append([]string{"run", "--rootfs", dir}, flags...), "--"), cmd...)
	}
}

// inAgent writes an agent file with the agent's command and its other
// fields (YAML lines indented for the agent) and runs that agent. The command goes into the file because
// `clawrun run AGENT -- CMD` is refused.
func inAgent(e *env, name string, fields string) starter {
	return func(cmd []string) []string {
		j, err := json.Marshal(cmd) // a JSON list is a YAML flow sequence
		if err != nil {
			e.t.Fatal(err)
		}
		e.writeFile("clawrun.yaml", fmt.Sprintf("agents:\n  %s:\n    command: %s\n%s", name, j, fields))
		return []string{"run", name}
	}
}

// inRunning runs cmd with `clawrun exec NAME cmd`.
func inRunning(name string) starter {
	return func(cmd []string) []string { return append([]string{"exec", name}, cmd...) }
}

// runAttempts runs all attempts in one container and checks each as a
// subtest. With anyRefusal, attempts that expect a refused call accept any
// errno (for a stricter seccomp profile).
func runAttempts(t *testing.T, e *env, start starter, attempts []attempt, anyRefusal bool) {
	t.Helper()
	needProber(t)
	args := start(probeArgs(attempts))
	r := e.run(args...)
	if r.code != 0 {
		t.Fatalf("clawrun %s: %s", strings.Join(args, " "), r)
	}
	results := parseResults(r.stdout)
	for _, a := range attempts {
		t.Run(a.what, func(t *testing.T) {
			got, ok := results[a.key()]
			if !ok {
				t.Fatalf("no result for %s:\n%s", a.key(), r)
			}
			if !a.accepts(got, anyRefusal) {
				t.Errorf("ESCAPE? %s (%s) gave %q, want one of %q", a.what, a.key(), got, a.want)
			} else if a.check != nil {
				if err := a.check(got); err != nil {
					t.Errorf("ESCAPE? %s (%s) gave %q: %v", a.what, a.key(), got, err)
				}
			}
			t.Logf("%s", got)
		})
	}
}

func escapeToken(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// eperm is the default profile's action for a call it does not allow.
var (
	eperm = []string{"EPERM"}
	erofs = []string{"EROFS"}
)

// roKernelFile is what opening a root-owned kernel file under /proc or /sys
// for writing gives. As root the agent is container root mapped to host
// root, the file's owner, so only the read-only mount stops it: EROFS.
// Rootless the agent is not the owner and the kernel may refuse with EACCES
// before it looks at the mount. ENOENT where this kernel does not have the
// file at all (e.g. /proc/sysrq-trigger without MAGIC_SYSRQ).
func roKernelFile(path string) []string {
	if _, err := os.Stat(path); err != nil {
		return []string{"ENOENT"}
	}
	if isRoot() {
		return erofs
	}
	return []string{"EROFS", "EACCES"}
}

// hostTargets are the host objects the main attempts aim at.
type hostTargets struct {
	secretFile  string // a host file that is not granted
	tcpPort     int    // a listener on the host's 127.0.0.1
	extAddr     string // a non-loopback host address with a listener, or ""
	extPort     int
	abstract    string // an abstract unix socket listening on the host
	unixSock    string // a unix socket file on the host
	hostPid     int    // a host process
	otherPid    int    // another agent's init, as a host pid
	secretValue string // in clawrun's environment
}

// mainAttempts are the attempts made from one container that has a
// read-only grant at /ro (with a file "data") and a read-write one at /rw.
func mainAttempts(h hostTargets) []attempt {
	as := []attempt{
		// Files of the host and of the rootfs.
		{what: "read a host file not granted", probe: "read:" + h.secretFile, want: []string{"ENOENT"}},
		{what: "read a host file through /proc/1/root", probe: "read:/proc/1/root" + h.secretFile, want: []string{"ENOENT"}},
		{what: "read the host's /etc/shadow", probe: "read:/etc/shadow", want: []string{"ENOENT"}},
		{what: "create a file in the rootfs", probe: "create:/etc/escape", want: erofs},
		{what: "open a rootfs file for writing", probe: "openw:/etc/passwd", want: erofs},
		{what: "create a file in a read-only grant", probe: "create:/ro/escape", want: erofs},
		{what: "open a read-only grant's file for writing", probe: "openw:/ro/data", want: erofs},
		// Mounts.
		{what: "remount a read-only grant read-write", probe: "remount:/ro", want: eperm},
		{what: "remount the root read-write", probe: "remount-sb:/", want: eperm},
		{what: "clear a grant's read-only flag with mount_setattr", probe: "mount-setattr:/ro", want: eperm},
		{what: "mount proc", probe: "mount:proc", want: eperm},
		{what: "mount tmpfs", probe: "mount:tmpfs", want: eperm},
		{what: "bind-mount /", probe: "mount:bind", want: eperm},
		{what: "mount sysfs", probe: "mount:sysfs", want: eperm},
		{what: "mount a cgroup v1 hierarchy for release_agent (CVE-2022-0492)", probe: "mount:cgroup", want: eperm},
		{what: "mount cgroup2", probe: "mount:cgroup2", want: eperm},
		{what: "unmount the mask over /proc/keys", probe: "umount:/proc/keys", want: eperm},
		{what: "fsopen (new mount API)", probe: "fsopen", want: eperm},
		{what: "open_tree clone of /", probe: "open-tree", want: eperm},
		{what: "move_mount", probe: "move-mount", want: eperm},
		{what: "pivot_root", probe: "pivot-root", want: eperm},
		{what: "chroot", probe: "chroot", want: eperm},
		// Namespaces.
		{what: "unshare a user namespace", probe: "unshare:user", want: eperm},
		{what: "unshare a mount namespace", probe: "unshare:mnt", want: eperm},
		{what: "unshare a network namespace", probe: "unshare:net", want: eperm},
		{what: "clone with CLONE_NEWUSER", probe: "clone:user", want: eperm},
		{what: "clone with CLONE_NEWNS", probe: "clone:mnt", want: eperm},
		{what: "clone3 with CLONE_NEWUSER", probe: "clone3:user", want: []string{"ENOSYS"}},
		{what: "setns into /proc/1/ns/user", probe: "setns:/proc/1/ns/user", want: eperm},
		{what: "setns into /proc/1/ns/mnt", probe: "setns:/proc/1/ns/mnt", want: eperm},
		{what: "setns into /proc/1/ns/net", probe: "setns:/proc/1/ns/net", want: eperm},
		// Processes.
		{what: "ptrace TRACEME", probe: "ptrace:traceme", want: eperm},
		{what: "ptrace attach to the parent", probe: "ptrace:parent", want: eperm},
		{what: "process_vm_readv of the parent", probe: "vm-readv:parent", want: eperm},
		// Only the prober (pid 1) and the attempt's child.
		{what: "see host processes in /proc", probe: "pids", want: []string{"PIDS:2:1,*"}},
		{what: "signal a host process", probe: fmt.Sprintf("kill:%d:15", h.hostPid), want: []string{"ESRCH"}},
		{what: "signal another agent's process", probe: fmt.Sprintf("kill:%d:9", h.otherPid), want: []string{"ESRCH"}},
		// Network: the container has its own network namespace.
		{what: "connect to a listener on the host's loopback", probe: fmt.Sprintf("connect-tcp:127.0.0.1:%d", h.tcpPort), want: []string{"ECONNREFUSED"}},
		{what: "connect to the host's abstract unix socket", probe: "connect-abstract:" + h.abstract, want: []string{"ECONNREFUSED"}},
		{what: "connect to the host's unix socket file", probe: "connect-unix:" + h.unixSock, want: []string{"ENOENT"}},
		{what: "see network interfaces besides lo", probe: "ifaces", want: []string{"IFACES:lo"}},
		{what: "see network interfaces besides lo in /proc/net/dev", sh: "grep : /proc/net/dev | cut -d: -f1 | tr -d ' '", want: []string{"lo"}},
		{what: "open an AF_PACKET socket", probe: "socket:packet", want: eperm},
		{what: "open a raw IP socket", probe: "socket:raw", want: eperm},
		{what: "open an AF_VSOCK socket", probe: "socket:vsock", want: eperm},
		// Kernel interfaces under /proc and /sys: masked, read-only.
		{what: "read /proc/kcore", probe: "read:/proc/kcore", want: []string{"READ:0", "ENOENT"}},
		{what: "read /proc/keys", probe: "read:/proc/keys", want: []string{"READ:0"}},
		{what: "read /proc/timer_list", probe: "read:/proc/timer_list", want: []string{"READ:0"}},
		{what: "read /proc/sched_debug", probe: "read:/proc/sched_debug", want: []string{"READ:0", "ENOENT"}},
		{what: "list /sys/firmware", probe: "readdir:/sys/firmware", want: []string{"ENTRIES:0", "ENOENT"}},
		{what: "write /proc/sysrq-trigger", probe: "openw:/proc/sysrq-trigger", want: roKernelFile("/proc/sysrq-trigger")},
		{what: "write /proc/sys/kernel/core_pattern", probe: "openw:/proc/sys/kernel/core_pattern", want: roKernelFile("/proc/sys/kernel/core_pattern")},
		{what: "write /proc/sys/kernel/modprobe", probe: "openw:/proc/sys/kernel/modprobe", want: roKernelFile("/proc/sys/kernel/modprobe")},
		{what: "write /proc/sys/fs/binfmt_misc/register", probe: "openw:/proc/sys/fs/binfmt_misc/register", want: []string{"EROFS", "ENOENT"}},
		{what: "write /sys/kernel/uevent_helper", probe: "openw:/sys/kernel/uevent_helper", want: roKernelFile("/sys/kernel/uevent_helper")},
		{what: "create a cgroup under /sys/fs/cgroup", probe: "mkdir:/sys/fs/cgroup/escape", want: []string{"EROFS", "ENOENT"}},
		// Kernel attack surface behind syscalls.
		{what: "keyctl join session keyring", probe: "keyctl", want: eperm},
		{what: "add_key", probe: "add-key", want: eperm},
		{what: "request_key", probe: "request-key", want: eperm},
		{what: "bpf map create", probe: "bpf", want: eperm},
		{what: "io_uring_setup", probe: "io-uring", want: eperm},
		{what: "userfaultfd", probe: "userfaultfd", want: eperm},
		{what: "perf_event_open", probe: "perf", want: eperm},
		{what: "open_by_handle_at (shocker)", probe: "open-by-handle", want: eperm},
		{what: "name_to_handle_at", probe: "name-to-handle", want: eperm},
		{what: "mknod a char device", probe: "mknod:c:/tmp/null", want: eperm},
		{what: "mknod a block device", probe: "mknod:b:/tmp/sda", want: eperm},
		{what: "sethostname", probe: "sethostname:escaped", want: eperm},
		{what: "setdomainname", probe: "setdomainname:escaped", want: eperm},
		{what: "init_module", probe: "init-module", want: eperm},
		{what: "finit_module", probe: "finit-module", want: eperm},
		{what: "kexec_load", probe: "kexec", want: eperm},
		{what: "reboot", probe: "reboot", want: eperm},
		{what: "swapon", probe: "swapon", want: eperm},
		{what: "acct", probe: "acct", want: eperm},
		{what: "clock_settime", probe: "clock-settime", want: eperm},
		{what: "iopl", probe: "iopl", want: eperm},
		{what: "ioperm", probe: "ioperm", want: eperm},
		{what: "syslog (dmesg)", probe: "syslog", want: eperm},
		{what: "personality READ_IMPLIES_EXEC", probe: "personality", want: eperm},
		// Other ABIs: only the native one is allowed.
		{what: "getpid through int 0x80", probe: "int80:getpid", want: []string{"SIGSYS", "ENOSYS", "EPERM"}},
		{what: "unshare(CLONE_NEWUSER) through int 0x80", probe: "int80:unshare", want: []string{"SIGSYS", "ENOSYS", "EPERM"}},
		{what: "chroot through int 0x80", probe: "int80:chroot", want: []string{"SIGSYS", "ENOSYS", "EPERM"}},
		{what: "getpid through the x32 ABI", probe: "x32", want: []string{"SIGSYS", "ENOSYS", "EPERM", "UNSUPPORTED"}},
		// The host's binary (CVE-2019-5736): from the init process itself.
		{what: "open /proc/self/exe for writing", probe: "openw:/proc/self/exe", want: []string{"EROFS", "ETXTBSY", "EACCES"}},
		{what: "open /proc/1/exe for writing", probe: "openw:/proc/1/exe", want: []string{"EROFS", "ETXTBSY", "EACCES"}},
		// Leaks.
		{what: "capability sets of the agent", probe: "caps", want: []string{"ZERO:*"}},
		{what: "a host directory through a leaked fd", probe: "fds", want: []string{"CLEAN:*"}},
		{what: "a host working directory (CVE-2024-21626)", probe: "cwd", want: []string{"CWD:/"}},
		{what: "host env secret in /proc/*/environ", probe: "environ:" + h.secretValue, want: []string{"CLEAN:*"}},
		{what: "mount propagation shared with the host", probe: "propagation", want: []string{"PRIVATE:*"}},
		// With busybox.
		{what: "host sockets anywhere in the tree", sh: "find / -path /proc -prune -o -path /sys -prune -o -type s -print", want: []string{""}},
		{what: "container engine and clawrun sockets", sh: "for p in /run/docker.sock /var/run/docker.sock /run/containerd /run/podman /run/user /run/clawrun /var/lib/clawrun /run/systemd; do [ -e $p ] && echo $p; done; true", want: []string{""}},
		{what: "host env secret in the environment", sh: "env | grep -c " + h.secretValue, want: []string{"0"}},
	}
	if h.extAddr != "" {
		as = append(as, attempt{what: "connect to the host's external address", probe: fmt.Sprintf("connect-tcp:%s:%d", h.extAddr, h.extPort), want: []string{"ENETUNREACH"}})
	}
	return as
}

// hostSetup starts what the main attempts aim at and returns checks to run
// afterwards on the host.
func hostSetup(t *testing.T, e *env) (hostTargets, func()) {
	h := hostTargets{secretValue: "clawrun-secret-" + escapeToken(t)}
	secret := "host-secret-" + escapeToken(t)
	h.secretFile = filepath.Join(e.dir, "host-secret.txt")
	if err := os.WriteFile(h.secretFile, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CLAWRUN_ESCAPE_SECRET", h.secretValue)

	var accepted atomic.Int32
	listen := func(network, addr string) net.Listener {
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatalf("host listener %s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
		return l
	}
	h.tcpPort = listen("tcp4", "127.0.0.1:0").Addr().(*net.TCPAddr).Port
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				h.extAddr = ipn.IP.String()
				h.extPort = listen("tcp4", net.JoinHostPort(h.extAddr, "0")).Addr().(*net.TCPAddr).Port
				break
			}
		}
	}
	h.abstract = "clawrun-escape-" + escapeToken(t)
	listen("unix", "@"+h.abstract)
	h.unixSock = filepath.Join(e.dir, "host.sock")
	listen("unix", h.unixSock)

	sleeper := exec.Command("sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	h.hostPid = sleeper.Process.Pid

	e.ok("run", "-d", "--name", "escape-other", "--rootfs", baseRootfs, "--", "/bin/sleep", "1000")
	for _, c := range e.ps() {
		if c.Name == "escape-other" {
			h.otherPid = c.Pid
		}
	}
	if h.otherPid <= 0 {
		t.Fatalf("no host pid for the other agent: %v", e.ps())
	}

	hostname, _ := os.Hostname()
	corePattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	mountsBefore := hostMounts(t)
	check := func() {
		t.Run("host after the attempts", func(t *testing.T) {
			if n := accepted.Load(); n != 0 {
				t.Errorf("host listeners accepted %d connections from the container", n)
			}
			if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
				t.Errorf("host process %d was killed: %v", h.hostPid, err)
			}
			if st := e.status("escape-other"); st != "running" {
				t.Errorf("the other agent is %s after the attempts, want running", st)
			}
			if now, _ := os.Hostname(); now != hostname {
				t.Errorf("host hostname changed from %q to %q", hostname, now)
			}
			if now, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); !bytes.Equal(now, corePattern) {
				t.Errorf("host core_pattern changed from %q to %q", corePattern, now)
			}
			for _, m := range newHostMounts(t, mountsBefore, e) {
				t.Errorf("a mount appeared in the host's mount namespace: %s", m)
			}
		})
	}
	return h, check
}

// hostMounts is the test process's mountinfo, without the mount ids that
// change with every remount.
func hostMounts(t *testing.T) map[string]bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		m[l] = true
	}
	return m
}

// newHostMounts lists mounts added since before that involve the test's
// directories or rootfs (other tests on the machine may mount elsewhere).
func newHostMounts(t *testing.T, before map[string]bool, e *env) []string {
	var added []string
	for l := range hostMounts(t) {
		if !before[l] && (strings.Contains(l, filepath.Dir(e.dir)) || strings.Contains(l, baseRootfs)) {
			added = append(added, l)
		}
	}
	return added
}

// mainAgent is the agent the main attempts run in: a read-only and a
// read-write grant, and an explicit seccomp profile.
func mainAgent(e *env, name, seccomp, ro, rw string) starter {
	return inAgent(e, name, fmt.Sprintf(`    rootfs: %s
    seccomp: %s
    grants:
      - {host: %s, path: /ro}
      - {host: %s, path: /rw, mode: rw}
`, baseRootfs, seccomp, ro, rw))
}

func grantDirs(t *testing.T, e *env) (ro, rw string) {
	ro, rw = e.mkdir("ro"), e.mkdir("rw")
	if err := os.WriteFile(filepath.Join(ro, "data"), []byte("read only"), 0o644); err != nil {
		t.Fatal(err)
	}
	return ro, rw
}

// TestEscapeFromInside makes every attempt from one container's init process
// under the default seccomp profile, named explicitly so these expectations
// do not move when the default profile changes.
func TestEscapeFromInside(t *testing.T) {
	needProber(t)
	e := newEnv(t)
	ro, rw := grantDirs(t, e)
	h, check := hostSetup(t, e)
	runAttempts(t, e, mainAgent(e, "escape", "default", ro, rw), mainAttempts(h), false)
	check()
}

// TestEscapeThroughExec repeats the leak checks for a process that enters a
// running container with `clawrun exec`, and races that entry the way
// CVE-2019-5736 did to overwrite the host's binary.
func TestEscapeThroughExec(t *testing.T) {
	needProber(t)
	e := newEnv(t)
	secret := "clawrun-secret-" + escapeToken(t)
	t.Setenv("CLAWRUN_ESCAPE_SECRET", secret)
	e.ok("run", "-d", "--name", "target", "--rootfs", baseRootfs, "--", "/bin/sleep", "1000")
	runAttempts(t, e, inRunning("target"), []attempt{
		{what: "capability sets of an exec'd process", probe: "caps", want: []string{"ZERO:*"}},
		{what: "a host directory through a fd leaked into exec", probe: "fds", want: []string{"CLEAN:*"}},
		{what: "a host working directory after exec", probe: "cwd", want: []string{"CWD:/"}},
		{what: "host env secret visible to an exec'd process", probe: "environ:" + secret, want: []string{"CLEAN:*"}},
		// The agent (pid 1), the prober and the attempt's child.
		{what: "host processes visible to an exec'd process", probe: "pids", want: []string{"PIDS:3:1,*"}},
		{what: "ptrace the agent from an exec'd process", probe: "ptrace:1", want: eperm},
	}, false)

	t.Run("overwrite the host's clawrun binary during exec (CVE-2019-5736)", func(t *testing.T) {
		e := escapeEnv(e, t)
		before := sha256File(t, clawrunBin)
		e.ok("run", "-d", "--name", "racer", "--rootfs", baseRootfs, "--", "/prober", "exe-race:6")
		execs := 0
		for e.status("racer") == "running" {
			// Processes that live a moment give the racer time to find them.
			if r := e.run("exec", "racer", "/bin/sleep", "0.05"); r.code == 0 {
				execs++
			}
		}
		logs := e.ok("logs", "racer")
		res := parseResults(logs)["exe-race:6"]
		if !strings.HasPrefix(res, "CLEAN:") {
			t.Errorf("ESCAPE: the container opened a process's binary for writing: %q\n%s", res, logs)
		}
		if res == "CLEAN:0" {
			t.Errorf("the racer saw none of the %d exec'd processes: the race was not exercised\n%s", execs, logs)
		}
		if after := sha256File(t, clawrunBin); after != before {
			t.Errorf("the host's clawrun binary %s changed", clawrunBin)
		}
		t.Logf("racer result %s over %d execs", res, execs)
	})
}

func sha256File(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// CVE-2024-21626: runc's init leaked a host directory as an fd, and a
// workdir of /proc/self/fd/N made it the agent's working directory. Every
// such workdir must be refused or end inside the container.
func TestEscapeWorkdirThroughLeakedFd(t *testing.T) {
	needProber(t)
	e := newEnv(t)
	for fd := 3; fd <= 9; fd++ {
		t.Run(fmt.Sprintf("workdir /proc/self/fd/%d", fd), func(t *testing.T) {
			r := escapeEnv(e, t).run("run", "--rootfs", baseRootfs, "--workdir", fmt.Sprintf("/proc/self/fd/%d", fd), "--", "/prober", "cwd", "fds")
			res := parseResults(r.stdout)
			if strings.HasPrefix(res["cwd"], "OUTSIDE") || strings.HasPrefix(res["fds"], "LEAK") {
				t.Fatalf("ESCAPE: working directory or fds outside the container: %s", r)
			}
			if r.code == 0 && !strings.HasPrefix(res["cwd"], "CWD:/") {
				t.Fatalf("run succeeded without a cwd inside the container: %s", r)
			}
		})
	}
}

// probeRootfs builds a busybox rootfs with the prober, for tests that need
// to plant something in it.
func probeRootfs(t *testing.T) string {
	needProber(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := rootfs.BuildBusybox(dir, "/bin/busybox", map[string]string{"/prober": proberBin}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func plantCopy(t *testing.T, src, dst string, mode os.FileMode) {
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil { // after any chown; umask-free
		t.Fatal(err)
	}
}

// A setuid or setgid binary, or one with file capabilities, in the rootfs
// gains nothing: no uid change, no capabilities (no_new_privileges and an
// empty bounding set). As root the agent is container root mapped to host
// root, so a setuid-root file or file capabilities would otherwise raise its
// capability sets; rootless the file belongs to the agent's own id.
func TestEscapeSetuidInRootfs(t *testing.T) {
	dir := probeRootfs(t)
	plantCopy(t, proberBin, filepath.Join(dir, "suid"), os.ModeSetuid|0o755)
	plantCopy(t, proberBin, filepath.Join(dir, "sgid"), os.ModeSetgid|0o755)
	plantCopy(t, proberBin, filepath.Join(dir, "fcap"), 0o755)
	fileCaps := isRoot()
	if fileCaps {
		// VFS_CAP_REVISION_2 with the effective flag: CAP_SYS_ADMIN (21)
		// and CAP_DAC_OVERRIDE (1) permitted and effective.
		v := make([]byte, 20)
		binary.LittleEndian.PutUint32(v[0:], 0x02000001)
		binary.LittleEndian.PutUint32(v[4:], 1<<21|1<<1)
		if err := syscall.Setxattr(filepath.Join(dir, "fcap"), "security.capability", v, 0); err != nil {
			t.Fatalf("setting file capabilities: %v", err)
		}
	}
	e := newEnv(t)
	out := e.ok("run", "--rootfs", dir, "--", "/prober", "caps")
	t.Logf("the agent: %s", out)
	plain := parseResults(out)["caps"]
	if !strings.HasPrefix(plain, "ZERO:") {
		t.Fatalf("the agent itself has capabilities: %s", out)
	}
	cases := []struct{ what, bin string }{
		{"setuid binary", "/suid"},
		{"setgid binary", "/sgid"},
		{"binary with file capabilities", "/fcap"},
	}
	for _, c := range cases {
		t.Run(c.what+" gains privileges", func(t *testing.T) {
			if c.bin == "/fcap" && !fileCaps {
				t.Skip("rootless: an unprivileged user cannot set security.capability on the host, so there is nothing to gain")
			}
			r := escapeEnv(e, t).run("run", "--rootfs", dir, "--", c.bin, "caps")
			if r.code != 0 && c.bin == "/fcap" && strings.Contains(r.stderr, "operation not permitted") {
				// The kernel refuses to run a capability-dumb binary
				// (effective bit set) that cannot get all its file
				// capabilities: nothing gained.
				t.Logf("exec refused: %s", strings.TrimSpace(r.stderr))
				return
			}
			got := parseResults(r.stdout)["caps"]
			if r.code != 0 || got != plain {
				t.Fatalf("ESCAPE? running %s changed the process from %q to %q: %s", c.bin, plain, got, r)
			}
		})
	}
}

// CVE-2025-31133 and CVE-2025-52565: a rootfs whose /dev/null or
// /dev/console is a symlink into /proc must not redirect the masks (bind
// mounts of /dev/null) or the console onto writable kernel files.
func TestEscapeDevSymlinksInRootfs(t *testing.T) {
	dir := probeRootfs(t)
	for name, target := range map[string]string{
		"null":    "/proc/sys/kernel/core_pattern",
		"console": "/proc/sysrq-trigger",
		"zero":    "/proc/sys/kernel/modprobe",
		"ptmx":    "/proc/sys/vm/panic_on_oom",
	} {
		if err := os.Symlink(target, filepath.Join(dir, "dev", name)); err != nil {
			t.Fatal(err)
		}
	}
	corePattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	defer func() {
		if now, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); !bytes.Equal(now, corePattern) {
			t.Errorf("ESCAPE: host core_pattern changed from %q to %q", corePattern, now)
		}
	}()
	e := newEnv(t)
	if r := e.run("run", "--rootfs", dir, "--", "/bin/true"); r.code != 0 {
		// Refusing such a rootfs is as good as ignoring its /dev.
		t.Logf("run with /dev symlinks was refused: %s", r)
		return
	}
	runAttempts(t, e, adHoc(dir), []attempt{
		{what: "/dev/null is the real device", probe: "devnode:/dev/null", want: []string{"CHR:1:3"}},
		{what: "/dev/zero is the real device", probe: "devnode:/dev/zero", want: []string{"CHR:1:5"}},
		{what: "/proc/keys still masked", probe: "read:/proc/keys", want: []string{"READ:0"}},
		{what: "/proc/timer_list still masked", probe: "read:/proc/timer_list", want: []string{"READ:0"}},
		{what: "/proc/kcore still masked", probe: "read:/proc/kcore", want: []string{"READ:0", "ENOENT"}},
		{what: "write core_pattern", probe: "openw:/proc/sys/kernel/core_pattern", want: roKernelFile("/proc/sys/kernel/core_pattern")},
		{what: "write sysrq-trigger", probe: "openw:/proc/sysrq-trigger", want: roKernelFile("/proc/sysrq-trigger")},
		{what: "write modprobe", probe: "openw:/proc/sys/kernel/modprobe", want: roKernelFile("/proc/sys/kernel/modprobe")},
		{what: "write panic_on_oom", probe: "openw:/proc/sys/vm/panic_on_oom", want: roKernelFile("/proc/sys/vm/panic_on_oom")},
	}, false)
}

// CVE-2021-30465 class: an agent with a read-write grant plants a symlink
// where another grant's host path or mount point lies, before or while the
// next container starts. The targets: the host's / and another agent's
// private workspace (allowed by the allowlist, free of blocked paths, but
// never granted to this container).
func TestEscapeSymlinkSwapInGrant(t *testing.T) {
	needProber(t)
	e := newEnv(t)
	shared := e.mkdir("shared")
	private := e.mkdir("other-agent-private")
	marker := "private-marker-" + escapeToken(t)
	markerFile := filepath.Join(private, "marker.txt")
	if err := os.WriteFile(markerFile, []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(shared, "sub")
	targets := []struct {
		name, link, read string // symlink target; the marker as seen through a mount of it at /data
	}{
		{"the host's /", "/", "/data" + markerFile},
		{"another agent's workspace", private, "/data/marker.txt"},
	}
	// startGranted starts a container granted shared/sub at /data that
	// reads the marker; it must never print it.
	startGranted := func(t *testing.T, read, when string) {
		t.Helper()
		r := e.run("run", "--rootfs", baseRootfs, "--mount", sub+":/data", "--", "/bin/cat", read)
		if strings.Contains(r.stdout, marker) {
			t.Fatalf("ESCAPE %s: a symlink an agent planted in its read-write grant redirected the next container's grant of %s (read %s as %s): %s", when, sub, markerFile, read, r)
		}
	}
	for _, tg := range targets {
		t.Run("grant source replaced by a symlink to "+tg.name, func(t *testing.T) {
			if err := os.RemoveAll(sub); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			se := escapeEnv(e, t)
			se.ok("run", "--rootfs", baseRootfs, "--mount", shared+":/work:rw", "--", "/bin/sh", "-c",
				"rm -rf /work/sub && ln -s "+tg.link+" /work/sub")
			if l, err := os.Readlink(sub); err != nil || l != tg.link {
				t.Fatalf("the agent did not plant its symlink: %q %v", l, err)
			}
			startGranted(t, tg.read, "after the swap")
		})
		t.Run("grant source swapped to "+tg.name+" while containers start", func(t *testing.T) {
			for _, p := range []string{sub, sub + ".swap"} {
				if err := os.RemoveAll(p); err != nil {
					t.Fatal(err)
				}
			}
			se := escapeEnv(e, t)
			// sub is a directory and a symlink by turns, each for 3ms.
			se.ok("run", "-d", "--name", "swapper", "--rootfs", baseRootfs, "--mount", shared+":/work:rw", "--",
				"/prober", "swap:/work/sub:"+tg.link+":3000")
			defer se.run("rm", "-f", "swapper")
			for i := 0; i < 60; i++ {
				startGranted(t, tg.read, fmt.Sprintf("on start %d", i))
			}
			if st := se.status("swapper"); st != "running" {
				t.Fatalf("the swapping agent is %s, so nothing raced: %s", st, se.ok("logs", "swapper"))
			}
		})
	}

	t.Run("grant mount point replaced by a symlink to a host path", func(t *testing.T) {
		if err := os.RemoveAll(sub); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		other := e.mkdir("other")
		if err := os.WriteFile(filepath.Join(other, "other-file"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		target := e.mkdir("target")
		se := escapeEnv(e, t)
		before := hostMounts(t)
		se.ok("run", "--rootfs", baseRootfs, "--mount", shared+":/work:rw", "--", "/bin/sh", "-c",
			"rm -rf /work/sub && ln -s "+target+" /work/sub")
		r := se.run("run", "--rootfs", baseRootfs, "--mount", shared+":/work:rw", "--mount", other+":/work/sub", "--", "/bin/ls", "/work/sub/")
		t.Logf("second container: %s", r)
		if entries, _ := os.ReadDir(target); len(entries) != 0 {
			t.Fatalf("ESCAPE: the host directory %s behind the symlink now holds %v", target, entries)
		}
		for _, m := range newHostMounts(t, before, e) {
			t.Fatalf("ESCAPE: a mount appeared on the host: %s", m)
		}
	})
}

// Limits hold from inside: a fork bomb stops at pids, a memory hog is killed
// at memory (cgroups, root only here), and /tmp and /dev/shm fill up at their
// tmpfs sizes (no cgroup needed).
func TestEscapeResourceLimits(t *testing.T) {
	needProber(t)
	e := newEnv(t)
	t.Run("filesystems", func(t *testing.T) {
		runAttempts(t, e, inAgent(e, "small-tmp", "    rootfs: "+baseRootfs+"\n    tmp_size: 4M\n"), []attempt{
			{what: "fill /tmp beyond tmp_size", probe: "fill:/tmp/fill:64", want: []string{"WROTE:3:ENOSPC", "WROTE:4:ENOSPC"}},
			{what: "fill /dev/shm beyond its size", probe: "fill:/dev/shm/fill:100", want: []string{"WROTE:63:ENOSPC", "WROTE:64:ENOSPC"}},
		}, false)
	})
	t.Run("cgroups", func(t *testing.T) {
		if !isRoot() {
			t.Skip("rootless on this cgroup v1 host no cgroup can be delegated, so runs with limits are refused (TestLimits checks the refusal)")
		}
		runAttempts(t, e, inAgent(e, "limited", "    rootfs: "+baseRootfs+"\n    limits: {memory: 64M, pids: 32}\n"), []attempt{
			{what: "fork bomb beyond pids", probe: "forkbomb:1000", want: []string{"FORKS:*"}, check: func(res string) error {
				var n int
				var stop string
				if _, err := fmt.Sscanf(strings.ReplaceAll(res, ":", " "), "FORKS %d %s", &n, &stop); err != nil {
					return err
				}
				if n >= 32 || stop != "EAGAIN" {
					return fmt.Errorf("%d forks, stopped by %s: want fewer than pids=32, stopped by EAGAIN", n, stop)
				}
				return nil
			}},
			{what: "memory hog beyond memory", probe: "memhog:256", want: []string{"SIGKILL", "ENOMEM"}},
		}, false)
	})
}

// The "agent" seccomp profile (the future default) denies more than
// "default": what only it blocks, and everything the main table tries.
func TestEscapeAgentProfile(t *testing.T) {
	needProber(t)
	e := newEnv(t)
	ro, rw := grantDirs(t, e)
	strict := mainAgent(e, "strict", "agent", ro, rw)
	// The profile exists if clawrun shows it, or accepts an agent file
	// that names it (before `clawrun seccomp` existed).
	if r := e.run("seccomp", "show", "agent"); r.code != 0 {
		strict([]string{"/bin/true"})
		if s := e.run("spec", "strict"); s.code != 0 {
			t.Skipf("seccomp profile \"agent\" is not available in this clawrun: `clawrun seccomp show agent`: %s; `clawrun spec` of an agent with seccomp: agent: %s",
				strings.TrimSpace(r.stderr+r.stdout), strings.TrimSpace(s.stderr))
		}
	}
	h, check := hostSetup(t, e)
	agentOnly := []attempt{
		{what: "agent profile: open an AF_INET socket", probe: "socket:inet", want: []string{"E*"}},
		{what: "agent profile: open an AF_INET6 socket", probe: "socket:inet6", want: []string{"E*"}},
		{what: "agent profile: open a UDP socket", probe: "socket:udp", want: []string{"E*"}},
		{what: "agent profile: open an AF_ALG socket", probe: "socket:alg", want: []string{"E*"}},
		{what: "agent profile: open an AF_NETLINK audit socket", probe: "socket:netlink-audit", want: []string{"E*"}},
		{what: "agent profile: AF_UNIX sockets still work", probe: "socket:unix", want: []string{"OK"}},
	}
	runAttempts(t, e, strict, append(agentOnly, mainAttempts(h)...), true)
	check()
}

// The prober itself works: on the host, without a sandbox, the raw calls
// it makes succeed, so a refusal inside a container is the sandbox's doing
// and not a broken attempt.
func TestEscapeProberControl(t *testing.T) {
	needProber(t)
	probes := []string{"int80:getpid", "caps", "ifaces", "pids"}
	out, err := exec.Command(proberBin, probes...).Output()
	if err != nil {
		t.Fatalf("prober on the host: %v", err)
	}
	res := parseResults(string(out))
	if goruntime.GOARCH == "amd64" && res["int80:getpid"] != "OK" {
		t.Logf("int 0x80 is not available on this kernel (%q): the int 0x80 rows prove less", res["int80:getpid"])
	}
	for _, p := range probes[1:] {
		if res[p] == "" || isRefusal(res[p]) {
			t.Errorf("prober %s on the host: %q", p, res[p])
		}
	}
}
