package runtime

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// socketPair is the SOCK_SEQPACKET pair listenThroughNsenterRun uses.
func socketPair(t *testing.T) (mine, theirs *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs = os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	t.Cleanup(func() { mine.Close(); theirs.Close() })
	return mine, theirs
}

// roundTrip proves l takes connections: a line sent to it arrives.
func roundTrip(t *testing.T, l net.Listener, dial func() error) {
	t.Helper()
	errs := make(chan error, 1)
	go func() { errs <- dial() }()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func TestSendReceiveListeners(t *testing.T) {
	mine, theirs := socketPair(t)
	sent := make(chan error, 1)
	go func() { sent <- SendListeners(theirs, []string{"127.0.0.1:0", "127.0.0.1:0"}) }()
	ls, err := ReceiveListeners(mine, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// The sender closed its copies: the received ones alone keep the
	// sockets open, and they still take connections.
	for _, l := range ls {
		defer l.Close()
		roundTrip(t, l, func() error {
			c, err := net.Dial("tcp4", l.Addr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = io.WriteString(c, "hello\n")
			return err
		})
	}
}

func TestReceiveListenersRefusals(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	t.Run("address in use", func(t *testing.T) {
		mine, theirs := socketPair(t)
		go func() { _ = SendListeners(theirs, []string{"127.0.0.1:0", taken.Addr().String()}) }()
		_, err := ReceiveListeners(mine, 2)
		if want := "listen on " + taken.Addr().String() + " inside the container"; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("err %v, want %q", err, want)
		}
	})
	t.Run("sender gone", func(t *testing.T) {
		mine, theirs := socketPair(t)
		theirs.Close()
		if _, err := ReceiveListeners(mine, 1); err == nil || !strings.Contains(err.Error(), "ended without sending them") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("fewer than asked", func(t *testing.T) {
		mine, theirs := socketPair(t)
		go func() { _ = SendListeners(theirs, []string{"127.0.0.1:0"}) }()
		if _, err := ReceiveListeners(mine, 2); err == nil || !strings.Contains(err.Error(), "received 1 listeners, want 2") {
			t.Fatalf("err %v", err)
		}
	})
}

// TestEgressListenHelper is the __egress-listen process of
// TestListenThroughNsenter: the test binary, run through nsenter, with the
// addresses after "--".
func TestEgressListenHelper(t *testing.T) {
	if os.Getenv("CLAWRUN_TEST_EGRESS_LISTEN") != "1" {
		t.Skip("run by TestListenThroughNsenter only")
	}
	if err := ServeEgressListen(flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// nsHolder starts a process in new namespaces (unshare's flags) with its
// loopback up, as a container's init, and returns its pid.
func nsHolder(t *testing.T, unshareFlags ...string) int {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("iproute2's ip brings the namespace's loopback up: %v", err)
	}
	args := append(unshareFlags, "/bin/sh", "-c", ip+" link set lo up && echo ready && exec sleep 600")
	cmd := exec.Command("unshare", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("unshare %s: %q, %v", strings.Join(unshareFlags, " "), line, err)
	}
	return cmd.Process.Pid
}

// The hook's path for real: listeners opened through nsenter in another
// process's namespaces are served from here and take connections made
// inside those namespaces (a connection to 127.0.0.1 there reaches only
// sockets of that namespace). Rootless, the namespaces belong to a user
// namespace of the test's user, as under rootless runc; as root also
// without one (nsenter must then not join the user namespace it is in).
func TestListenThroughNsenter(t *testing.T) {
	cases := map[string][]string{"user and net": {"--user", "--map-root-user", "--net"}}
	if os.Geteuid() == 0 {
		cases["net only"] = []string{"--net"}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CLAWRUN_TEST_EGRESS_LISTEN", "1")
	for name, flags := range cases {
		t.Run(name, func(t *testing.T) {
			pid := nsHolder(t, flags...)
			ls, err := listenThroughNsenterRun(pid, []string{"127.0.0.1:0", "127.0.0.1:0"}, []string{self, "-test.run=^TestEgressListenHelper$", "--"})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				defer l.Close()
				port := l.Addr().(*net.TCPAddr).Port
				roundTrip(t, l, func() error {
					nsArgs := []string{"--net=/proc/" + fmt.Sprint(pid) + "/ns/net"}
					if len(flags) > 1 {
						nsArgs = append(nsArgs, "--user=/proc/"+fmt.Sprint(pid)+"/ns/user", "--preserve-credentials")
					}
					cmd := exec.Command("nsenter", append(nsArgs, "bash", "-c", fmt.Sprintf("echo hello >/dev/tcp/127.0.0.1/%d", port))...)
					if out, err := cmd.CombinedOutput(); err != nil {
						return fmt.Errorf("connect inside the namespace: %v\n%s", err, out)
					}
					return nil
				})
			}
		})
	}
}

// A process that sends nothing fails the listen with nsenter's word or
// its exit status.
func TestListenThroughNsenterNoListeners(t *testing.T) {
	pid := nsHolder(t, "--user", "--map-root-user", "--net")
	for argv, want := range map[string]string{
		"/nonexistent/clawrun": "nsenter: failed to execute /nonexistent/clawrun: No such file or directory",
		"/bin/false":           "ended without sending them (nsenter: exit status 1)",
	} {
		if _, err := listenThroughNsenterRun(pid, []string{"127.0.0.1:0"}, []string{argv}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", argv, err, want)
		}
	}
}

// A runtime runs hooks without PATH: nsenter is still found.
func TestNsenterPathWithoutPATH(t *testing.T) {
	t.Setenv("PATH", "")
	p, err := NsenterPath()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || !strings.HasSuffix(p, "/nsenter") || fi.Mode()&0o111 == 0 {
		t.Fatalf("nsenter %q: %v", p, err)
	}
}

// Without nsenter the error names the package to install.
func TestNsenterPathMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := nsenterDirs
	nsenterDirs = []string{t.TempDir()}
	t.Cleanup(func() { nsenterDirs = saved })
	if _, err := NsenterPath(); err == nil || !strings.Contains(err.Error(), "install util-linux") {
		t.Fatalf("err %v", err)
	}
}
