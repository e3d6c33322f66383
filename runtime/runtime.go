// Package runtime turns a policy.Plan into an OCI spec and runs it through
// runc's libcontainer: create, start, exec, signal, delete and state. It
// knows nothing about chat transports.
package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
)

// Exit codes that follow the shell's conventions.
const (
	ExitCommandNotFound = 127
	ExitSignalBase      = 128
)

// metaFile is clawrun's record of a container, kept next to libcontainer's
// state.json so that deleting the container deletes both.
const metaFile = "clawrun.json"

// Errors callers match on to choose exit codes and messages.
var (
	ErrNotFound   = errors.New("no such container")
	ErrNameInUse  = errors.New("name already in use")
	ErrNotRunning = errors.New("container is not running")
	ErrRunning    = errors.New("container is running")
)

// Runtime manages the containers of one host user.
type Runtime struct {
	StateDir string // live state: libcontainer's root plus clawrun.json per container
	DataDir  string // durable data: logs
	Host     Host
	// ownMounts is set in a re-executed child with a mount namespace of its
	// own, where a writable root may be mounted; userns when that child is
	// in the outer user namespace (rootless).
	ownMounts, userns bool
	// cgroups is where cgroup v2 delegation is looked for (cgroupv2.go).
	cgroups cgroupHost
}

// New prepares the state and data directories (mode 0700, owned by the
// caller: two host users never share them).
func New(stateDir, dataDir string) (*Runtime, error) {
	r := &Runtime{StateDir: stateDir, DataDir: dataDir, Host: CurrentHost()}
	for _, d := range []string{stateDir, filepath.Join(dataDir, "logs")} {
		if err := ensurePrivateDir(d); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func ensurePrivateDir(d string) error {
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", d, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(d, &st); err != nil {
		return fmt.Errorf("stat %s: %w", d, err)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d): pass --root/--data with a directory of your own", d, st.Uid, os.Geteuid())
	}
	return nil
}

// Meta is what clawrun remembers about a container beyond libcontainer's
// state.
type Meta struct {
	Name        string       `json:"name"`
	Agent       string       `json:"agent"`
	Source      string       `json:"source,omitempty"`
	Created     time.Time    `json:"created"`
	Detached    bool         `json:"detached"`
	Log         string       `json:"log,omitempty"`
	NetLog      string       `json:"net_log,omitempty"` // egress connection log
	CgroupsPath string       `json:"cgroups_path,omitempty"`
	Plan        *policy.Plan `json:"plan"`
	Identity    *Identity    `json:"identity"`
	// Exit is how the agent ended, once whoever waited for it recorded it.
	Exit *ExitStatus `json:"exit,omitempty"`
	// Writable says how the writable root (writable_rootfs) was made:
	// WritableOverlay, or WritableCopy and why overlayfs was refused.
	Writable string `json:"writable,omitempty"`
}

// Prepared is a plan made concrete for this host: identity, cgroup, spec.
type Prepared struct {
	Plan        *policy.Plan
	Identity    *Identity
	CgroupsPath string
	Spec        *specs.Spec
	// HostIdentity is set when Identity was translated into the ids of an
	// outer user namespace; it keeps the host-side view for inspect.
	HostIdentity *Identity `json:",omitempty"`
	// IOWeightNote says why limits.io_weight is not enforced (then left
	// out of Spec); "" when it is, or is not set.
	IOWeightNote string `json:",omitempty"`
}

// Prepare resolves everything a plan needs on this host without creating
// anything, so that every error surfaces before a container exists.
func (r *Runtime) Prepare(p *policy.Plan, name string) (*Prepared, error) {
	p, err := r.prepareStorage(p, name)
	if err != nil {
		return nil, err
	}
	id, err := ResolveIdentity(p, r.Host)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", p.Name, err)
	}
	cg := r.cgroupsPath(p, name)
	if err := r.checkLimits(p, cg); err != nil {
		return nil, err
	}
	if _, err := rootfs.LookPath(p.Rootfs, p.Command[0], p.Env); err != nil {
		return nil, fmt.Errorf("agent %s: %w", p.Name, err)
	}
	if err := checkWorkdir(p); err != nil {
		return nil, err
	}
	s, ioNote, err := r.spec(p, id, cg)
	if err != nil {
		return nil, err
	}
	return &Prepared{Plan: p, Identity: id, CgroupsPath: cg, Spec: s, IOWeightNote: ioNote}, nil
}

// checkLimits refuses limits the host cannot enforce rather than dropping
// them: a rootless user owns no cgroup on cgroup v1, and on cgroup v2 only
// the controllers delegated to them. cgroupsPath is where the container
// goes ("" for nowhere of its own).
// With limits.enforce: best-effort they are approximated instead (see
// Enforcement), which inspect shows limit by limit.
func (r *Runtime) checkLimits(p *policy.Plan, cgroupsPath string) error {
	if err := r.checkTotal(p, cgroupsPath); err != nil {
		return err
	}
	if why := r.ioWeightUnenforced(p, cgroupsPath); why != "" && !p.Limits.BestEffort() {
		return fmt.Errorf("agent %s: limits.io_weight %d cannot be enforced: %s; or set limits.enforce: best-effort to run without it (inspect then says so), or remove io_weight from the agent file ('clawrun doctor' shows which limits this host enforces)",
			p.Name, p.Limits.IOWeight, why)
	}
	if names, _ := limitNeeds(p.Limits); len(names) == 0 || !r.Host.Rootless() || p.Limits.BestEffort() || cgroupsPath != "" {
		return nil
	}
	names, why := r.notDelegated(p)
	if p.Source == "" {
		// An ad-hoc run (run --rootfs/--image) has no agent file: point
		// at the flags the user can actually change.
		return fmt.Errorf("ad-hoc run %s: %s cannot be enforced rootless: %s; run as root, or add --enforce best-effort to approximate them with rlimits, or drop --memory, --cpus and --pids ('clawrun doctor' shows which limits this host enforces)",
			p.Name, strings.Join(names, ", "), why)
	}
	return fmt.Errorf("agent %s: %s cannot be enforced rootless: %s; run as root, or set limits.enforce: best-effort to approximate them with rlimits, or remove them from the agent file ('clawrun doctor' shows which limits this host enforces)",
		p.Name, strings.Join(names, ", "), why)
}

// ensureRootlessCgroup prepares the delegated parent of a rootless
// container's cgroup. Should that fail, a run without strict limits goes
// on without a cgroup of its own (best-effort limits become rlimits, as
// inspect then says); one with strict limits is refused.
func (r *Runtime) ensureRootlessCgroup(prep *Prepared) (*Prepared, error) {
	if !r.Host.Rootless() || prep.CgroupsPath == "" {
		return prep, nil
	}
	err := r.ensureCgroupParent(prep.CgroupsPath, prep.Plan.Limits.IOWeight > 0)
	if err == nil {
		return prep, nil
	}
	if names, _ := limitNeeds(prep.Plan.Limits); len(names) > 0 && !prep.Plan.Limits.BestEffort() {
		return nil, fmt.Errorf("agent %s: %s cannot be enforced rootless: %w", prep.Plan.Name, strings.Join(names, ", "), err)
	}
	if names, _ := totalNeeds(prep.Plan.Total); len(names) > 0 {
		return nil, fmt.Errorf("agent %s: the host allowlist's %s cannot be enforced rootless: %w; limits.enforce: best-effort does not relax a host total ('clawrun doctor')", prep.Plan.Name, strings.Join(names, ", "), err)
	}
	s, ioNote, serr := r.spec(prep.Plan, prep.Identity, "")
	if serr != nil {
		return nil, serr
	}
	out := *prep
	out.CgroupsPath, out.Spec, out.IOWeightNote = "", s, ioNote
	return &out, nil
}

func checkWorkdir(p *policy.Plan) error {
	if p.Workdir == "/" {
		return nil
	}
	for _, g := range p.Grants {
		if p.Workdir == g.Path || strings.HasPrefix(p.Workdir, g.Path+"/") {
			return nil
		}
	}
	for _, d := range []string{"/tmp", policy.WorkspacePath} {
		if (d == "/tmp" || p.Workspace) && (p.Workdir == d || strings.HasPrefix(p.Workdir, d+"/")) {
			return nil
		}
	}
	if p.WritableRootfs {
		return nil // created in the agent's own root when missing
	}
	if _, err := rootfs.Stat(p.Rootfs, p.Workdir); err != nil {
		return fmt.Errorf("agent %s: workdir %s does not exist in rootfs %s (the root filesystem is read-only, so it cannot be created): create it in the rootfs or change workdir", p.Name, p.Workdir, p.Rootfs)
	}
	return nil
}

// RunOptions say how to attach a new container.
type RunOptions struct {
	Name   string
	Detach bool
	// Remove destroys the container when a foreground run ends, so an
	// anonymous run leaves nothing behind.
	Remove bool
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// KeepSignals leaves the caller's signals alone instead of forwarding
	// them to the agent: a supervisor such as `clawrun serve` stops its
	// agents itself (end of input, then SIGTERM) rather than racing them.
	KeepSignals bool
	// Secrets holds the values of the plan's secrets by name (from the
	// environment of run/serve or a secrets file): for the egress proxy,
	// and for expose: env secrets the agent's process. They never go into
	// the spec, the bundle or clawrun.json.
	Secrets map[string]string `json:"secrets,omitempty"`
	// EgressHosts maps names for the egress proxy's resolver instead of
	// DNS; for tests (CLAWRUN_EGRESS_HOSTS_FILE).
	EgressHosts map[string][]netip.Addr `json:"egress_hosts,omitempty"`
	// NetLog is the egress connection log; empty means NetLogPath(Name).
	NetLog string `json:"net_log,omitempty"`
	// Exited, if set, receives how a foreground run's agent ended (exit
	// code, signal, OOM kill), e.g. for serve to tell the chat.
	Exited func(*ExitStatus) `json:"-"`
}

// Run creates and starts a container for the plan. Detached, it returns 0 as
// soon as the agent runs; otherwise it forwards signals, waits and returns
// the agent's exit code (128+N for a signal).
func (r *Runtime) Run(p *policy.Plan, o RunOptions) (int, error) {
	if err := policy.ValidName(o.Name); err != nil {
		return -1, err
	}
	var err error
	if o.Secrets, err = planSecrets(p, o.Secrets); err != nil {
		return -1, err
	}
	if _, err := os.Stat(filepath.Join(r.StateDir, o.Name)); err == nil {
		return -1, fmt.Errorf("container %q: %w: choose another --name or remove it with 'clawrun rm %s'", o.Name, ErrNameInUse, o.Name)
	}
	prep, err := r.Prepare(p, o.Name)
	if err != nil {
		return -1, err
	}
	if err := r.ensureWorkspace(prep.Plan); err != nil {
		return -1, err
	}
	if prep, err = r.ensureRootlessCgroup(prep); err != nil {
		return -1, err
	}
	// The host's total goes on the parent before the container exists
	// below it, on every run, so the allowlist is always what holds.
	if err := r.applyTotal(prep.Plan, prep.CgroupsPath); err != nil {
		return -1, err
	}
	// A detached container is started by a child that stays behind as its
	// monitor (see exit.go); rootless, that is the outer namespace's child.
	// A writable root is mounted in a child's own mount namespace.
	if needsOuterUserns(prep.Identity, r.Host) || o.Detach || prep.Plan.WritableRoot != "" {
		return r.runNested(prep, o)
	}
	return r.start(prep, o, r.Host.Rootless())
}

// start creates and starts the container through libcontainer. rootless
// says whether this process lacks root in its user namespace. In the
// foreground it waits for the agent and records how it ended.
func (r *Runtime) start(prep *Prepared, o RunOptions, rootless bool) (int, error) {
	// Register for signals before start, so none sent in between is lost.
	sigs := make(chan os.Signal, 16)
	if !o.Detach && !o.KeepSignals {
		signal.Notify(sigs, forwardedSignals...)
		defer signal.Stop(sigs)
	}
	l, code, err := r.launch(prep, o, rootless)
	if err != nil {
		return code, err
	}
	defer l.lock.Close()
	if o.Detach {
		return 0, nil
	}
	st, code, err := waitState(l.proc, sigs)
	l.egress.Close()
	r.foregroundExit(l.meta, st, o)
	if o.Remove {
		if derr := l.c.Destroy(); derr != nil && err == nil {
			err = derr
		}
		if derr := r.dropWritableRoot(prep.Plan); derr != nil && err == nil {
			err = derr
		}
	}
	return code, err
}

// launched is a container whose agent runs; whoever holds it waits for the
// agent and then closes lock.
type launched struct {
	c    *libcontainer.Container
	proc *libcontainer.Process
	meta *Meta
	lock *os.File
	// egress is the agent's proxy, closed once the agent is gone.
	egress *egressRun
}

// launch creates and starts the container; on error it leaves nothing
// behind and returns the exit code to report (127 for a missing command).
func (r *Runtime) launch(prep *Prepared, o RunOptions, rootless bool) (*launched, int, error) {
	p := prep.Plan
	fail := func(code int, err error) (*launched, int, error) { return nil, code, err }
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:      o.Name,
		Spec:            prep.Spec,
		RootlessEUID:    rootless,
		RootlessCgroups: rootless || prep.CgroupsPath == "",
	})
	if err != nil {
		return fail(-1, fmt.Errorf("agent %s: %w", p.Name, err))
	}
	pins, err := pinGrants(config.Mounts)
	if err != nil {
		return fail(-1, fmt.Errorf("agent %s: %w", p.Name, err))
	}
	if p.WritableRoot != "" {
		// Create checks that the root exists; it is assembled below, once
		// the name is ours.
		if err := os.MkdirAll(p.WritableRoot, 0o700); err != nil {
			return fail(-1, fmt.Errorf("agent %s: writable root: %w", p.Name, err))
		}
	}
	c, err := libcontainer.Create(r.StateDir, o.Name, config)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return fail(-1, fmt.Errorf("container %q: %w: choose another --name or remove it with 'clawrun rm %s'", o.Name, ErrNameInUse, o.Name))
		}
		return fail(-1, fmt.Errorf("create container %s: %w", o.Name, err))
	}
	// From here on a failure must leave nothing behind: no state, no
	// cgroup, no log.
	ok := false
	meta := &Meta{
		Name: o.Name, Agent: p.Name, Source: p.Source, Created: time.Now().UTC(),
		Detached: o.Detach, CgroupsPath: prep.CgroupsPath, Plan: p, Identity: prep.Identity,
	}
	if prep.HostIdentity != nil {
		meta.Identity = prep.HostIdentity
	}
	var lock *os.File
	defer func() {
		if !ok {
			_ = c.Destroy()
			_ = r.dropWritableRoot(p)
			if meta.Log != "" {
				_ = os.Remove(meta.Log)
			}
			if lock != nil {
				lock.Close()
			}
		}
	}()
	if lock, err = lockState(r.StateDir, o.Name); err != nil {
		return fail(-1, err)
	}
	if p.WritableRoot != "" {
		// Only now that the name is ours: a leftover root is discarded.
		if !r.ownMounts {
			return fail(-1, fmt.Errorf("agent %s: a writable root is mounted only in a mount namespace of its own (run it through runNested)", p.Name))
		}
		if meta.Writable, err = setupWritableRoot(p, r.userns); err != nil {
			return fail(-1, err)
		}
	}
	proc := newProcess(prep.Spec.Process, true)
	proc.Env = append(proc.Env, exposedEnv(p, o.Secrets)...)
	if p.Network == policy.NetworkEgress {
		if meta.NetLog = o.NetLog; meta.NetLog == "" {
			meta.NetLog = r.NetLogPath(o.Name)
		}
	}
	var logFile *os.File
	if o.Detach {
		meta.Log = r.LogPath(o.Name)
		logFile, err = os.OpenFile(meta.Log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
		if err != nil {
			return fail(-1, fmt.Errorf("open log: %w", err))
		}
		defer logFile.Close()
		devNull, err := os.Open(os.DevNull)
		if err != nil {
			return fail(-1, err)
		}
		defer devNull.Close()
		proc.Stdin, proc.Stdout, proc.Stderr = devNull, logFile, logFile
	} else {
		proc.Stdin, proc.Stdout, proc.Stderr = o.Stdin, o.Stdout, o.Stderr
	}
	if err := writeMeta(r.StateDir, meta); err != nil {
		return fail(-1, err)
	}
	// Start sets the container up and parks its init before exec; the
	// grants are verified in between, so a swapped mount never runs code.
	if err := c.Start(proc); err != nil {
		return fail(startError(p, err))
	}
	pid, err := proc.Pid()
	if err != nil {
		return fail(-1, err)
	}
	if err := verifyGrants(pid, pins); err != nil {
		_ = proc.Signal(unix.SIGKILL)
		_, _ = proc.Wait()
		return fail(-1, fmt.Errorf("agent %s: %w", p.Name, err))
	}
	// The proxy listens before the agent runs, so its first connection
	// finds it.
	eg, err := r.startEgress(p, o, pid, prep.Spec, meta.NetLog)
	if err != nil {
		_ = proc.Signal(unix.SIGKILL)
		_, _ = proc.Wait()
		return fail(-1, err)
	}
	defer func() {
		if !ok {
			eg.Close()
		}
	}()
	_, atExec := splitRlimits(prep.Spec.Process.Rlimits)
	tr, err := traceExec(pid, atExec, 10*time.Second)
	if err != nil {
		_ = proc.Signal(unix.SIGKILL)
		_, _ = proc.Wait()
		return fail(-1, fmt.Errorf("agent %s: %w", p.Name, err))
	}
	err = c.Exec()
	if terr := tr.finish(); err == nil && terr != nil {
		err = fmt.Errorf("agent %s: %w", p.Name, terr)
	}
	if err != nil {
		_ = proc.Signal(unix.SIGKILL)
		_, _ = proc.Wait()
		return fail(startError(p, err))
	}
	ok = true
	return &launched{c: c, proc: proc, meta: meta, lock: lock, egress: eg}, 0, nil
}

var forwardedSignals = []os.Signal{
	unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH,
}

// startError maps libcontainer's start failures to clear messages; a command
// missing in the rootfs is exit code 127, as in a shell.
func startError(p *policy.Plan, err error) (int, error) {
	msg := err.Error()
	if strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory") && strings.Contains(msg, "exec") {
		return ExitCommandNotFound, fmt.Errorf("agent %s: command %q not found in rootfs %s: %w", p.Name, p.Command[0], p.Rootfs, rootfs.ErrCommandNotFound)
	}
	return -1, fmt.Errorf("start agent %s: %w", p.Name, err)
}

func waitForwarding(proc *libcontainer.Process, sigs chan os.Signal) (int, error) {
	_, code, err := waitState(proc, sigs)
	return code, err
}

// waitState waits for proc, forwarding sigs to it, and returns how it ended.
func waitState(proc *libcontainer.Process, sigs chan os.Signal) (*os.ProcessState, int, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == unix.SIGWINCH {
					continue // no tty of our own to resize
				}
				_ = proc.Signal(s)
			case <-done:
				return
			}
		}
	}()
	st, err := proc.Wait()
	if st == nil {
		return nil, -1, fmt.Errorf("wait: %w", err)
	}
	return st, exitCode(st), nil
}

func exitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			return ExitSignalBase + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
	return st.ExitCode()
}

func newProcess(sp *specs.Process, init bool) *libcontainer.Process {
	p := &libcontainer.Process{
		Args:            sp.Args,
		Env:             sp.Env,
		UID:             int(sp.User.UID),
		GID:             int(sp.User.GID),
		Cwd:             sp.Cwd,
		NoNewPrivileges: &sp.NoNewPrivileges,
		Init:            init,
		// RLIMIT_DATA is set when the agent executes (execlimit.go); a
		// process exec'd for debugging runs without it.
		Rlimits: libcontainerRlimits(earlyRlimits(sp.Rlimits)),
	}
	if c := sp.Capabilities; c != nil {
		p.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	return p
}

// LogPath is where a detached container's stdout and stderr go.
func (r *Runtime) LogPath(name string) string {
	return filepath.Join(r.DataDir, "logs", name+".log")
}

func writeMeta(stateDir string, m *Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(stateDir, m.Name, metaFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	return os.Rename(tmp, path)
}

func readMeta(stateDir, name string) (*Meta, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, name, metaFile))
	if err != nil {
		return nil, err
	}
	m := &Meta{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("container %s: corrupt %s: %w", name, metaFile, err)
	}
	return m, nil
}

// Info is a container as `ps` shows it.
type Info struct {
	Name    string    `json:"name"`
	Agent   string    `json:"agent"`
	Status  string    `json:"status"`
	Pid     int       `json:"pid"`
	Created time.Time `json:"created"`
	Command []string  `json:"command"`
	Log     string    `json:"log,omitempty"`
	// Exit is how a stopped container's agent ended, when that was
	// recorded: ps shows its Text ("exited (3)", "killed (SIGKILL)",
	// "oom-killed") in place of "stopped".
	Exit *ExitStatus `json:"exit,omitempty"`
	Meta *Meta       `json:"-"`
}

func (r *Runtime) load(name string) (*libcontainer.Container, *Meta, error) {
	if policy.ValidName(name) != nil {
		return nil, nil, fmt.Errorf("container %q: %w", name, ErrNotFound)
	}
	c, err := libcontainer.Load(r.StateDir, name)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("container %q: %w (see 'clawrun ps')", name, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("load container %s: %w", name, err)
	}
	m, err := readMeta(r.StateDir, name)
	if err != nil {
		m = &Meta{Name: name}
	}
	return c, m, nil
}

// Resolve names the container meant by name: the container called name,
// or else the one running container of the agent called name. `clawrun
// serve` names its containers AGENT-gw-XXXXXX, a new one at each restart,
// and `clawrun exec AGENT` should reach the agent serve runs without a
// look at 'clawrun ps' first. Several running containers of the agent are
// an error that lists them.
func (r *Runtime) Resolve(name string) (string, error) {
	_, _, err := r.load(name)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return name, err
	}
	all, lerr := r.List()
	if lerr != nil {
		return name, err
	}
	var running []string
	for _, in := range all {
		if in.Agent == name && in.Status == "running" {
			running = append(running, in.Name)
		}
	}
	switch len(running) {
	case 0:
		return name, fmt.Errorf("%w; no running container of an agent %q either", err, name)
	case 1:
		return running[0], nil
	}
	return name, fmt.Errorf("agent %s has %d running containers (%s): name one of them", name, len(running), strings.Join(running, ", "))
}

// Get returns one container's current status.
func (r *Runtime) Get(name string) (Info, error) {
	c, m, err := r.load(name)
	if err != nil {
		return Info{}, err
	}
	return info(c, m), nil
}

func info(c *libcontainer.Container, m *Meta) Info {
	in := Info{Name: c.ID(), Agent: m.Agent, Created: m.Created, Log: m.Log, Meta: m, Status: "unknown"}
	if m.Plan != nil {
		in.Command = m.Plan.Command
	}
	if st, err := c.Status(); err == nil {
		in.Status = st.String()
		if st == libcontainer.Running || st == libcontainer.Created || st == libcontainer.Paused {
			if s, err := c.State(); err == nil {
				in.Pid = s.InitProcessPid
			}
		} else if st == libcontainer.Stopped {
			in.Exit = m.Exit
		}
	}
	return in
}

// List returns all containers of this user, sorted by name.
func (r *Runtime) List() ([]Info, error) {
	entries, err := os.ReadDir(r.StateDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c, m, err := r.load(e.Name())
		if err != nil {
			continue // half-created by a run still in progress
		}
		out = append(out, info(c, m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Signal sends sig to the container's init process.
func (r *Runtime) Signal(name string, sig unix.Signal) error {
	c, _, err := r.load(name)
	if err != nil {
		return err
	}
	if err := c.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("container %s: %w", name, ErrNotRunning)
		}
		return fmt.Errorf("signal %s: %w", name, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to timeout for the agent to exit, then
// SIGKILL. Stopping a stopped container is not an error.
func (r *Runtime) Stop(name string, timeout time.Duration) error {
	c, _, err := r.load(name)
	if err != nil {
		return err
	}
	if !running(c) {
		return nil
	}
	if err := c.Signal(unix.SIGTERM); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	if !waitStopped(c, timeout) {
		if err := c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("kill %s: %w", name, err)
		}
		if !waitStopped(c, 10*time.Second) {
			return fmt.Errorf("stop %s: still running 10s after SIGKILL", name)
		}
	}
	// So that ps right after stop shows how the agent ended.
	r.WaitExitRecorded(name, recordTimeout)
	return nil
}

// recordTimeout bounds how long stop and rm wait for the process that
// waits for a container's init to record its exit.
const recordTimeout = 5 * time.Second

func running(c *libcontainer.Container) bool {
	st, err := c.Status()
	return err == nil && st != libcontainer.Stopped
}

func waitStopped(c *libcontainer.Container, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !running(c) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Remove deletes a stopped container: state, cgroup and log. With force a
// running one is killed first.
func (r *Runtime) Remove(name string, force bool) error {
	c, m, err := r.load(name)
	if err != nil {
		return err
	}
	if running(c) {
		if !force {
			return fmt.Errorf("container %s: %w: stop it first ('clawrun stop %s') or use 'clawrun rm -f'", name, ErrRunning, name)
		}
		_ = c.Signal(unix.SIGKILL)
		if !waitStopped(c, 10*time.Second) {
			return fmt.Errorf("rm %s: still running 10s after SIGKILL", name)
		}
	}
	// Let the monitor finish writing into the state directory and the log
	// before both go.
	r.WaitExitRecorded(name, recordTimeout)
	if err := c.Destroy(); err != nil {
		return fmt.Errorf("rm %s: %w", name, err)
	}
	// The writable root goes with the container; a workspace stays.
	if err := r.dropWritableRoot(m.Plan); err != nil {
		return fmt.Errorf("rm %s: %w", name, err)
	}
	if m.Log != "" {
		_ = os.Remove(m.Log)
	}
	// A connection log of its own goes too; serve's agents share theirs
	// across restarts.
	if m.NetLog != "" && m.NetLog == r.NetLogPath(name) {
		_ = os.Remove(m.NetLog)
	}
	return nil
}
