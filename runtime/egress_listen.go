package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// An OCI hook did not create the container, so it may lack the right to
// join its network namespace: under rootless runc the hook runs as the
// invoking user in the host's user namespace, and setns(CLONE_NEWNET)
// needs CAP_SYS_ADMIN both over the namespace's owner (the container's
// user namespace) and in the caller's own. Joining the container's user
// namespace first gives both (its owner, the invoking user, has every
// capability in it), but a multi-threaded process cannot join a user
// namespace, and a Go process always is one. So a fresh, single-threaded
// process does the joining: util-linux's nsenter enters the container's
// user namespace (only when it differs from the hook's: root's runc may run
// a container without one) and network namespace, keeping its credentials,
// and execs `clawrun __egress-listen ADDR...`, which opens the listening
// sockets there and passes them back over a unix socket (SCM_RIGHTS), then
// exits. The proxy serves them from the host's namespaces, exactly as
// listenInNetns's listeners: only the sockets are inside.

// EgressListenCommand is argv[1] of the process listenThroughNsenter
// starts inside the container's namespaces (hidden).
const EgressListenCommand = "__egress-listen"

// egressListenFD is the unix socket the __egress-listen process sends its
// listeners over (fd 3, the first of exec.Cmd.ExtraFiles).
const egressListenFD = 3

// nsenterDirs are searched after PATH: a runtime runs hooks with only the
// env config.json gives them, which has no PATH.
var nsenterDirs = []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"}

// NsenterPath finds util-linux's nsenter, which the egress hook needs.
func NsenterPath() (string, error) {
	if p, err := exec.LookPath("nsenter"); err == nil {
		return p, nil
	}
	for _, d := range nsenterDirs {
		p := filepath.Join(d, "nsenter")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("nsenter not found in PATH nor in %s: install util-linux (Debian: apt-get install util-linux); the egress hook runs it to open the proxy's listeners inside the container", strings.Join(nsenterDirs, ", "))
}

// listenThroughNsenter is the netnsListen of the egress hook: it opens the
// listeners inside pid's network namespace from a process started through
// nsenter, running this binary's EgressListenCommand.
func listenThroughNsenter(pid int, addrs []string) ([]net.Listener, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return listenThroughNsenterRun(pid, addrs, []string{self, EgressListenCommand})
}

// listenThroughNsenterRun starts argv (whose process, inside the
// namespaces, must call SendListeners on fd 3 for addrs) through nsenter,
// and receives its listeners. Tests pass their own binary as argv.
func listenThroughNsenterRun(pid int, addrs []string, argv []string) ([]net.Listener, error) {
	nsenter, err := NsenterPath()
	if err != nil {
		return nil, err
	}
	// The namespace files are opened here and handed down as fds, so the
	// pid is resolved once.
	netns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("open the container's network namespace: %w", err)
	}
	defer netns.Close()
	userns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return nil, fmt.Errorf("open the container's user namespace: %w", err)
	}
	defer userns.Close()
	own, err := sameFile(userns, "/proc/self/ns/user")
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair for the listeners: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "listeners"), os.NewFile(uintptr(fds[1]), "listeners")
	defer mine.Close()
	// fd 3: the socket, 4: the network namespace, 5: the user namespace.
	args := []string{"--net=/proc/self/fd/4"}
	if !own {
		// Credentials are kept: nsenter would otherwise setgroups() and
		// setuid(0), which a user namespace with setgroups denied (a
		// rootless runc's) refuses, and the sockets need no id.
		args = append(args, "--user=/proc/self/fd/5", "--preserve-credentials")
	}
	args = append(append(append(args, "--"), argv...), addrs...)
	cmd := exec.Command(nsenter, args...)
	cmd.ExtraFiles = []*os.File{theirs, netns, userns}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		theirs.Close()
		return nil, fmt.Errorf("start %s: %w", nsenter, err)
	}
	theirs.Close()
	ls, recvErr := ReceiveListeners(mine, len(addrs))
	waitErr := cmd.Wait()
	if recvErr == nil {
		return ls, nil
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		return nil, fmt.Errorf("%w (%s: %s)", recvErr, filepath.Base(nsenter), msg)
	}
	if waitErr != nil {
		return nil, fmt.Errorf("%w (%s: %v)", recvErr, filepath.Base(nsenter), waitErr)
	}
	return nil, recvErr
}

// sameFile reports whether f is the file at path (same device and inode).
func sameFile(f *os.File, path string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if err := unix.Stat(path, &b); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// listenersOK is the payload of the message that carries the listeners;
// any other payload is the reason there are none.
const listenersOK = "ok"

// ServeEgressListen is the EgressListenCommand process: in the namespaces
// nsenter put it in, it opens addrs and sends the listeners on fd 3.
func ServeEgressListen(addrs []string) error {
	sock := os.NewFile(egressListenFD, "listeners")
	if sock == nil {
		return errors.New("egress listen: no socket on fd 3 (run only by the egress hook)")
	}
	defer sock.Close()
	return SendListeners(sock, addrs)
}

// SendListeners opens a TCP listener on each of addrs and sends them all
// in one message on the unix (SOCK_SEQPACKET) socket sock, or the reason
// it could not as the message's text.
func SendListeners(sock *os.File, addrs []string) error {
	ls, err := listenAll(addrs)
	if err != nil {
		_ = unix.Sendmsg(int(sock.Fd()), []byte(err.Error()), nil, nil, 0)
		return err
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
		for _, l := range ls {
			l.Close()
		}
	}()
	var fds []int
	for _, l := range ls {
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			return fmt.Errorf("listener %s: %w", l.Addr(), err)
		}
		files = append(files, f)
		fds = append(fds, int(f.Fd()))
	}
	if err := unix.Sendmsg(int(sock.Fd()), []byte(listenersOK), unix.UnixRights(fds...), nil, 0); err != nil {
		return fmt.Errorf("send the listeners: %w", err)
	}
	return nil
}

// ReceiveListeners reads the message SendListeners sends on sock: n
// listeners, or the error it names.
func ReceiveListeners(sock *os.File, n int) ([]net.Listener, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*n))
	m, oobn, flags, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive the listeners: %w", err)
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("receive the listeners: %w", err)
		}
		for _, c := range cmsgs {
			fds, err := unix.ParseUnixRights(&c)
			if err != nil {
				return nil, fmt.Errorf("receive the listeners: %w", err)
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "listener"))
			}
		}
	}
	switch msg := string(buf[:m]); {
	case m == 0 && oobn == 0:
		return nil, errors.New("the process opening the listeners inside the container ended without sending them")
	case msg != listenersOK:
		return nil, errors.New(msg)
	case flags&unix.MSG_CTRUNC != 0 || len(files) != n:
		return nil, fmt.Errorf("received %d listeners, want %d", len(files), n)
	}
	var ls []net.Listener
	for _, f := range files {
		l, err := net.FileListener(f)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("received listener: %w", err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}
