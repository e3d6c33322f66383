package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/policy"
)

// ExecOptions describe a process started inside a running container.
type ExecOptions struct {
	Args []string
	Tty  bool
	// Stdin is nil unless the caller asked for it (-i); the process then
	// reads /dev/null.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Exec runs a process in a running container: its namespaces, cgroup,
// seccomp filter, capability set (empty), user and environment. It returns
// the process's exit code.
func (r *Runtime) Exec(name string, o ExecOptions) (int, error) {
	if len(o.Args) == 0 {
		return -1, errors.New("exec: no command given")
	}
	c, m, err := r.load(name)
	if err != nil {
		return -1, err
	}
	if !running(c) {
		return -1, fmt.Errorf("container %s: %w: start it with 'clawrun run -d'", name, ErrNotRunning)
	}
	cfg := c.Config()
	proc := &libcontainer.Process{Args: o.Args, Cwd: "/", Init: false}
	if m.Plan != nil && m.Identity != nil {
		proc.Env = m.Plan.Env
		if m.Plan.Network == policy.NetworkEgress {
			// The same proxy settings as the agent (not the values of
			// expose: env secrets, which are kept nowhere).
			proc.Env = append(append([]string(nil), proc.Env...), EgressEnv(m.Plan)...)
		}
		proc.Cwd = m.Plan.Workdir
		proc.UID, proc.GID = int(m.Identity.User.UID), int(m.Identity.User.GID)
	}
	nnp := true
	proc.NoNewPrivileges = &nnp
	proc.Capabilities = cfg.Capabilities
	if o.Tty {
		return execTTY(c, proc, o)
	}
	if o.Stdin != nil {
		proc.Stdin = o.Stdin
	}
	proc.Stdout, proc.Stderr = o.Stdout, o.Stderr
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := c.Run(proc); err != nil {
		return execStartError(c, name, o.Args[0], err)
	}
	return waitForwarding(proc, sigs)
}

func execStartError(c *libcontainer.Container, name, cmd string, err error) (int, error) {
	// The agent may have exited between the running check and the exec:
	// say so rather than show libcontainer's setns failure.
	if !running(c) {
		return -1, fmt.Errorf("container %s: %w (its agent exited; see 'clawrun ps' and 'clawrun logs %s')", name, ErrNotRunning, name)
	}
	if errors.Is(err, os.ErrNotExist) || containsAny(err.Error(), "executable file not found", "no such file or directory") {
		return ExitCommandNotFound, fmt.Errorf("exec: command %q not found in the container: %w", cmd, err)
	}
	return -1, fmt.Errorf("exec: %w", err)
}

// execTTY gives the process a pseudo-terminal created inside the container
// (libcontainer sends its master back over a socket) and puts the caller's
// terminal in raw mode while it runs.
func execTTY(c *libcontainer.Container, proc *libcontainer.Process, o ExecOptions) (int, error) {
	parent, child, err := utils.NewSockPair("console")
	if err != nil {
		return -1, err
	}
	defer parent.Close()
	proc.ConsoleSocket = child
	host, hostErr := console.ConsoleFromFile(os.Stdin)
	if hostErr == nil {
		if ws, err := host.Size(); err == nil {
			proc.ConsoleWidth, proc.ConsoleHeight = ws.Width, ws.Height
		}
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := c.Run(proc); err != nil {
		child.Close()
		return execStartError(c, c.ID(), proc.Args[0], err)
	}
	child.Close()
	master, err := utils.RecvFile(parent)
	if err != nil {
		_ = proc.Signal(unix.SIGKILL)
		_, _ = proc.Wait()
		return -1, fmt.Errorf("exec: receive terminal: %w", err)
	}
	defer master.Close()
	if hostErr == nil {
		if err := host.SetRaw(); err == nil {
			defer func() { _ = host.Reset() }()
		}
		if cons, err := console.ConsoleFromFile(master); err == nil {
			_ = cons.ResizeFrom(host)
			go func() {
				// SIGWINCH is handled here rather than forwarded: the
				// terminal's size is what the process needs.
				resize := make(chan os.Signal, 1)
				signal.Notify(resize, unix.SIGWINCH)
				for range resize {
					_ = cons.ResizeFrom(host)
				}
			}()
		}
	}
	in := o.Stdin
	if in == nil {
		in = os.Stdin
	}
	go func() { _, _ = io.Copy(master, in) }()
	outDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(o.Stdout, master)
		close(outDone)
	}()
	code, err := waitForwarding(proc, sigs)
	<-outDone
	return code, err
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
