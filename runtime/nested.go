package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/rootfs"
)

// Rootless with subordinate ids, the agent runs as a non-root uid that maps
// to the invoking user while the container's root maps to a subordinate id.
// libcontainer cannot set that up from outside: as an unprivileged process it
// must chown its exec fifo and stdio to the container's root, which is not
// the caller. So clawrun does what rootless Podman does: it re-executes
// itself in an outer user namespace (0 = the user, 1..N = the subordinate
// range, written by newuidmap/newgidmap), where it is root over exactly
// those ids, and drives libcontainer from there. The container's user
// namespace is a child of the outer one, so the user still owns it: ps,
// signals, exec and rm work from the host without re-entering.

// NestedCommand is argv[1] of a clawrun process re-executed to run a
// container inside the outer user namespace. main must call ServeNested
// for it before anything else.
const NestedCommand = "__nested-run"

const nestedStageEnv = "_CLAWRUN_NESTED_STAGE"

// needsOuterUserns: every rootless run goes through the outer namespace, so
// libcontainer always runs as root there and opens grant sources itself
// (which pinGrants relies on). With a single-id map the outer namespace maps
// just the user, which needs no setuid helper.
func needsOuterUserns(id *Identity, h Host) bool {
	return h.Rootless()
}

// nestedRequest is what the parent hands the re-executed child on fd 3.
type nestedRequest struct {
	StateDir string     `json:"state_dir"`
	DataDir  string     `json:"data_dir"`
	Prepared *Prepared  `json:"prepared"`
	Options  RunOptions `json:"options"`
}

// nestedResult is what the child reports back on fd 4 when it fails.
type nestedResult struct {
	Code     int    `json:"code"`
	Error    string `json:"error"`
	Kind     string `json:"kind,omitempty"`
	Finished bool   `json:"finished"`
	// Exit is how a foreground run's agent ended (RunOptions.Exited).
	Exit *ExitStatus `json:"exit,omitempty"`
}

// outerMap is the outer namespace's map: 0 is the user, 1..n the range.
func outerMap(hostID int, sub SubRange) []specs.LinuxIDMapping {
	n := sub.Count
	if n > maxContainerIDs-1 {
		n = maxContainerIDs - 1
	}
	return []specs.LinuxIDMapping{
		{ContainerID: 0, HostID: uint32(hostID), Size: 1},
		{ContainerID: 1, HostID: uint32(sub.Start), Size: uint32(n)},
	}
}

// toOuter rewrites host ids of container mappings into outer-namespace ids.
func toOuter(ms []specs.LinuxIDMapping, hostID int, sub SubRange) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, len(ms))
	for i, m := range ms {
		out[i] = m
		if m.HostID == uint32(hostID) {
			out[i].HostID = 0
		} else {
			out[i].HostID = m.HostID - uint32(sub.Start) + 1
		}
	}
	return out
}

// runNested runs the container from a re-executed child: rootless, inside
// the outer user namespace; as root, only for a detached run, whose child
// stays as the container's monitor (exit.go).
func (r *Runtime) runNested(prep *Prepared, o RunOptions) (int, error) {
	outer := r.Host.Rootless()
	subU, _ := firstRange(r.Host.SubUIDs)
	subG, _ := firstRange(r.Host.SubGIDs)
	inner := *prep
	if outer {
		spec := *prep.Spec
		lin := *spec.Linux
		lin.UIDMappings = toOuter(prep.Identity.UIDMappings, r.Host.UID, subU)
		lin.GIDMappings = toOuter(prep.Identity.GIDMappings, r.Host.GID, subG)
		spec.Linux = &lin
		inner.Spec = &spec
		inner.HostIdentity = prep.Identity
	}
	req := nestedRequest{StateDir: r.StateDir, DataDir: r.DataDir, Prepared: &inner, Options: o}
	req.Options.Stdin, req.Options.Stdout, req.Options.Stderr = nil, nil, nil

	reqR, reqW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	defer resR.Close()
	self, err := os.Executable()
	if err != nil {
		return -1, err
	}
	// Without the outer namespace there are no maps to wait for.
	single := prep.Identity.Kind != "subordinate" || !outer
	// The name in argv makes a monitor recognisable in the host's ps.
	cmd := exec.Command(self, NestedCommand, o.Name)
	cmd.Env = withEnv(os.Environ(), nestedStageEnv, "1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.ExtraFiles = []*os.File{reqR, resW}
	// A mount namespace of its own (owned by the outer user namespace)
	// lets libcontainer seal its re-executed binary with a read-only
	// overlayfs instead of copying it into memory on every start
	// (CVE-2019-5736 protection), and keeps any such mount off the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS, Pdeathsig: unix.SIGKILL}
	if !outer {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		if prep.Plan.WritableRoot != "" {
			// The writable root's overlay stays in the child's mounts.
			cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWNS
		}
		cmd.Env = withEnv(os.Environ(), nestedStageEnv, "2")
	} else if single {
		// An unprivileged process may map itself: the kernel takes the map
		// before exec, so the child starts as root of its namespace and
		// needs neither newuidmap nor the second exec.
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: r.Host.UID, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: r.Host.GID, Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
		cmd.Env = withEnv(os.Environ(), nestedStageEnv, "2")
	}
	// A supervisor's child must not receive the terminal's signals: its
	// own process group keeps Ctrl-C for the caller.
	cmd.SysProcAttr.Setpgid = o.KeepSignals && !o.Detach
	if o.Detach {
		// A detached run's child stays as the container's monitor: it must
		// outlive us, and its own session keeps the terminal's hangup and
		// Ctrl-C away from it.
		cmd.SysProcAttr.Setsid = true
		cmd.SysProcAttr.Pdeathsig = 0
	}
	sigs := make(chan os.Signal, 16)
	if !o.Detach && !o.KeepSignals {
		signal.Notify(sigs, forwardedSignals...)
		defer signal.Stop(sigs)
	}
	if err := cmd.Start(); err != nil {
		reqR.Close()
		reqW.Close()
		resW.Close()
		return -1, fmt.Errorf("start outer user namespace: %w", err)
	}
	reqR.Close()
	resW.Close()
	if !single {
		if err := mapOuter(cmd.Process.Pid, r.Host, reqW); err != nil {
			return killNested(cmd, reqW, err)
		}
	}
	if err := json.NewEncoder(reqW).Encode(&req); err != nil {
		return killNested(cmd, reqW, err)
	}
	reqW.Close()
	if o.Detach {
		return awaitMonitor(cmd, resR)
	}

	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if s != unix.SIGWINCH {
					_ = cmd.Process.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	werr := cmd.Wait()
	close(done)
	b, _ := io.ReadAll(resR)
	nestedExit(b, o)
	return nestedOutcome(b, werr)
}

// awaitMonitor returns as soon as a detached run's child reports that the
// agent runs (or why it does not); the child then stays as the monitor. It
// is reaped in the background, should the caller live on.
func awaitMonitor(cmd *exec.Cmd, resR *os.File) (int, error) {
	// The child closes its end once it reported; the container's processes
	// never hold it (close-on-exec in ServeNested).
	b, _ := io.ReadAll(resR)
	if len(b) == 0 {
		return nestedOutcome(nil, cmd.Wait())
	}
	var res nestedResult
	if json.Unmarshal(b, &res) == nil && res.Error == "" {
		go func() { _ = cmd.Wait() }()
	} else {
		_ = cmd.Wait()
	}
	return nestedOutcome(b, nil)
}

func nestedOutcome(b []byte, werr error) (int, error) {
	var res nestedResult
	if len(b) == 0 {
		if werr != nil {
			return -1, fmt.Errorf("outer user namespace: %w", werr)
		}
		return -1, errors.New("outer user namespace: exited without a result")
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return -1, fmt.Errorf("outer user namespace: bad result: %w", err)
	}
	if res.Error != "" {
		return res.Code, &nestedError{msg: res.Error, kind: res.Kind}
	}
	return res.Code, nil
}

func killNested(cmd *exec.Cmd, w *os.File, err error) (int, error) {
	w.Close()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return -1, err
}

// mapOuter writes the outer namespace's maps (0 = the user, 1..N = the
// first subordinate range) for the child pid, then sends the byte its
// stage 1 waits for (see awaitOuterMaps) on w.
func mapOuter(pid int, h Host, w io.Writer) error {
	subU, _ := firstRange(h.SubUIDs)
	subG, _ := firstRange(h.SubGIDs)
	if err := writeMap("newuidmap", pid, outerMap(h.UID, subU)); err != nil {
		return err
	}
	if err := writeMap("newgidmap", pid, outerMap(h.GID, subG)); err != nil {
		return err
	}
	_, err := w.Write([]byte{'.'})
	return err
}

// awaitOuterMaps is stage 1 of a child started in a new user namespace
// whose maps mapOuter writes: when the environment says so, it waits for
// the byte on fd 3, then re-executes itself as stage 2, leaving the rest
// of fd 3 (the request) to it. Capabilities in a user namespace are
// computed at execve, and at the first execve the maps did not exist yet.
func awaitOuterMaps() {
	if os.Getenv(nestedStageEnv) != "1" {
		return
	}
	var b [1]byte
	if n, err := unix.Read(3, b[:]); err != nil || n != 1 {
		os.Exit(125)
	}
	env := withEnv(os.Environ(), nestedStageEnv, "2")
	err := unix.Exec("/proc/self/exe", os.Args, env)
	fmt.Fprintln(os.Stderr, "clawrun: re-exec in user namespace:", err)
	os.Exit(125)
}

// writeMap runs newuidmap/newgidmap, the setuid helpers that let an
// unprivileged user map its subordinate ranges.
func writeMap(tool string, pid int, ms []specs.LinuxIDMapping) error {
	args := []string{strconv.Itoa(pid)}
	for _, m := range ms {
		args = append(args, strconv.Itoa(int(m.ContainerID)), strconv.Itoa(int(m.HostID)), strconv.Itoa(int(m.Size)))
	}
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s (check /etc/subuid and /etc/subgid, or set idmap: single)", tool, args, err, out)
	}
	return nil
}

// nestedError carries an error across the outer namespace boundary while
// keeping the sentinel errors callers match on.
type nestedError struct {
	msg  string
	kind string
}

func (e *nestedError) Error() string { return e.msg }

func (e *nestedError) Is(target error) bool {
	switch e.kind {
	case "name_in_use":
		return target == ErrNameInUse
	case "command_not_found":
		return target == rootfs.ErrCommandNotFound
	case "image_not_found":
		return target == rootfs.ErrImageNotFound
	case "digest_mismatch":
		return target == rootfs.ErrDigestMismatch
	case "unsafe_layer":
		return target == rootfs.ErrUnsafeLayer
	}
	return false
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, ErrNameInUse):
		return "name_in_use"
	case errors.Is(err, rootfs.ErrCommandNotFound):
		return "command_not_found"
	case errors.Is(err, rootfs.ErrImageNotFound):
		return "image_not_found"
	case errors.Is(err, rootfs.ErrDigestMismatch):
		return "digest_mismatch"
	case errors.Is(err, rootfs.ErrUnsafeLayer):
		return "unsafe_layer"
	}
	return ""
}

// ServeNested is the child side of runNested. In stage 1 the process waits
// for its id maps and re-executes itself (awaitOuterMaps); stage 2 runs the
// container as root of the outer namespace. It never returns.
func ServeNested() {
	awaitOuterMaps()
	// The container's init must not inherit the request or result pipe:
	// the parent reads the result until every writer has closed it.
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	res := nestedResult{Code: -1}
	resF := os.NewFile(4, "result")
	reported := false
	report := func() {
		if !reported {
			reported = true
			_ = json.NewEncoder(resF).Encode(&res)
			resF.Close()
		}
	}
	defer func() {
		report()
		code := res.Code
		if code < 0 {
			code = 125
		}
		os.Exit(code)
	}()
	var req nestedRequest
	if err := json.NewDecoder(os.NewFile(3, "request")).Decode(&req); err != nil {
		res.Error = "outer user namespace: read request: " + err.Error()
		return
	}
	r := &Runtime{StateDir: req.StateDir, DataDir: req.DataDir, Host: Host{UID: 0, GID: 0}}
	// Rootless, the child has a mount namespace of its own, owned by the
	// outer user namespace (the kernel turns the host's shared mounts into
	// slaves there); as root it has one only for a writable root, and must
	// stop sharing mounts with the host before it mounts anything.
	r.userns = req.Prepared.HostIdentity != nil
	r.ownMounts = r.userns
	if !r.userns && req.Prepared.Plan.WritableRoot != "" {
		if err := privateMounts(); err != nil {
			res.Error = "agent " + req.Prepared.Plan.Name + ": " + err.Error()
			return
		}
		r.ownMounts = true
	}
	o := req.Options
	o.Stdin, o.Stdout, o.Stderr = os.Stdin, os.Stdout, os.Stderr
	if !o.Detach {
		o.Exited = func(e *ExitStatus) { res.Exit = e }
		code, err := r.start(req.Prepared, o, false)
		res.Code, res.Finished = code, true
		if err != nil {
			res.Error, res.Kind = err.Error(), errorKind(err)
		}
		return
	}
	// Detached: report as soon as the agent runs, then stay as its monitor.
	l, code, err := r.launch(req.Prepared, o, false)
	res.Code, res.Finished = code, true
	if err != nil {
		res.Error, res.Kind = err.Error(), errorKind(err)
		return
	}
	report()
	// Let go of the caller's terminal or pipes: whoever ran `run -d` may
	// be reading them until every holder closed them.
	if devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Dup2(int(devNull.Fd()), fd)
		}
		devNull.Close()
	}
	st, _ := l.proc.Wait()
	l.egress.Close()
	r.recordExit(l.meta, st)
	l.lock.Close()
	res.Code = 0
}

// withEnv sets key in env, replacing earlier values: Go's getenv takes the
// first of duplicates.
func withEnv(env []string, key, val string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return append(out, key+"="+val)
}
