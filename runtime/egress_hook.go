package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/policy"
)

// A bundle of an egress agent (`clawrun spec`/`bundle`) runs under plain
// runc too: its config.json carries OCI hooks that call this clawrun
// binary. The createRuntime hook (run by the runtime in the host's
// namespaces once the container's namespaces exist, before the agent's
// command; it gets the container's state, with the init's pid, on stdin)
// starts a detached proxy process — the same egress.Proxy as `clawrun
// run`, with its listeners opened inside the container's network namespace
// through nsenter (listenThroughNsenter, which works under rootless runc
// as under runc as root) — and returns once they exist;
// the poststop hook stops it. The proxy also ends by itself when the
// container's init exits, so a runtime that skips poststop (a crash, a
// SIGKILL of runc) leaves nothing behind. The bundle holds the agent's
// grants (the "clawrun.egress" annotation) and the path of a secrets file,
// never a value: the hook reads the values when the container starts.

// EgressHookCommand is argv[1] of the hooks' clawrun (hidden).
const EgressHookCommand = "__egress-hook"

// EgressAnnotation is the config.json annotation that holds an egress
// agent's grants for the hooks; its presence also tells a reader that the
// bundle needs clawrun's proxy.
const EgressAnnotation = "clawrun.egress"

// hookEnvPassed are the variables of the bundle writer's environment the
// hooks get (a runtime runs hooks with the hook's env only): paths that
// say how the proxy resolves and verifies upstreams, never values.
var hookEnvPassed = []string{"SSL_CERT_FILE", "SSL_CERT_DIR"}

// EgressHookConfig is the content of EgressAnnotation.
type EgressHookConfig struct {
	Agent   string          `json:"agent"`
	Egress  []string        `json:"egress"`
	Secrets []policy.Secret `json:"secrets,omitempty"`
	// Data is the clawrun data directory of the bundle's writer: the
	// connection log goes to DATA/logs/ID.net.log (clawrun logs --net ID)
	// and the proxy's pid to DATA/egress-hooks/ID.pid.
	Data string `json:"data"`
	// SecretsFile is where the hook reads the secrets' values (KEY=VALUE,
	// mode 0600).
	SecretsFile string `json:"secrets_file,omitempty"`
	// HostsFile maps names for the proxy's resolver (tests only).
	HostsFile string `json:"hosts_file,omitempty"`
}

// Plan is the part of the agent's plan the proxy needs.
func (c *EgressHookConfig) Plan() *policy.Plan {
	return &policy.Plan{Name: c.Agent, Network: policy.NetworkEgress, Egress: c.Egress, Secrets: c.Secrets}
}

// WithEgressHooks adds the proxy's hooks to the spec of an egress agent
// and refuses what a bundle cannot carry: an expose: env secret (its value
// would have to be in config.json), an interception secret (its trust
// bundle is written into the container's /tmp once its root is in place,
// after the last hook a runtime runs in the host's namespaces), and a
// proxied secret without a secrets file. self is the absolute path of the
// clawrun binary the hooks run.
func WithEgressHooks(p *policy.Plan, self string, cfg EgressHookConfig) SpecOpt {
	return func(s *specs.Spec) error {
		if p.Network != policy.NetworkEgress {
			return nil
		}
		for _, sec := range p.Secrets {
			switch {
			case !sec.Proxied():
				return fmt.Errorf("agent %s: secret %s is expose: env, and a bundle never holds a secret's value: run the agent with 'clawrun run', or make it a proxied secret (host:)", p.Name, sec.Name)
			case sec.BaseURLEnv == "":
				return fmt.Errorf("agent %s: secret %s uses interception mode, which a bundle cannot set up (its CA bundle is written into the container after its root is in place): give it base_url_env, or run the agent with 'clawrun run'", p.Name, sec.Name)
			case cfg.SecretsFile == "":
				return fmt.Errorf("agent %s: secret %s: pass --secrets FILE (KEY=VALUE lines, mode 0600); the bundle records only its path and the hook reads the value when the container starts", p.Name, sec.Name)
			}
		}
		if !filepath.IsAbs(self) || !filepath.IsAbs(cfg.Data) || (cfg.SecretsFile != "" && !filepath.IsAbs(cfg.SecretsFile)) {
			return fmt.Errorf("agent %s: egress hooks need absolute paths (clawrun %q, data %q, secrets %q)", p.Name, self, cfg.Data, cfg.SecretsFile)
		}
		cfg.Agent, cfg.Egress, cfg.Secrets = p.Name, p.Egress, p.Secrets
		b, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[EgressAnnotation] = string(b)
		var env []string
		for _, k := range hookEnvPassed {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
		if s.Hooks == nil {
			s.Hooks = &specs.Hooks{}
		}
		s.Hooks.CreateRuntime = append(s.Hooks.CreateRuntime, specs.Hook{Path: self, Args: []string{"clawrun", EgressHookCommand, "start"}, Env: env})
		s.Hooks.Poststop = append(s.Hooks.Poststop, specs.Hook{Path: self, Args: []string{"clawrun", EgressHookCommand, "stop"}, Env: env})
		return nil
	}
}

// ReadHookState reads the container state a runtime passes a hook on
// stdin, and the egress grants from its annotations.
func ReadHookState(r io.Reader) (*specs.State, *EgressHookConfig, error) {
	var st specs.State
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return nil, nil, fmt.Errorf("egress hook: read the container state on stdin (run only as an OCI hook): %w", err)
	}
	raw, ok := st.Annotations[EgressAnnotation]
	if !ok {
		return nil, nil, fmt.Errorf("egress hook: container %s has no %q annotation: write the bundle again with 'clawrun bundle'", st.ID, EgressAnnotation)
	}
	var cfg EgressHookConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return nil, nil, fmt.Errorf("egress hook: annotation %s: %w", EgressAnnotation, err)
	}
	if err := policy.ValidName(st.ID); err != nil {
		return nil, nil, fmt.Errorf("egress hook: container id: %w", err)
	}
	return &st, &cfg, nil
}

// hookServeRequest is what the hook hands its detached proxy process on
// fd 3: the values travel through the pipe, never in argv or environment.
type hookServeRequest struct {
	Pid     int              `json:"pid"`
	Config  EgressHookConfig `json:"config"`
	Options RunOptions       `json:"options"`
	NetLog  string           `json:"net_log"`
	PidFile string           `json:"pid_file"`
}

func hookPidFile(data, id string) string {
	return filepath.Join(data, "egress-hooks", id+".pid")
}

// StartEgressHook (the createRuntime hook) starts the detached proxy of the
// container st and returns once it listens inside the container, or with
// the reason it cannot. o holds the secrets' values and EgressHosts.
func StartEgressHook(st *specs.State, cfg *EgressHookConfig, o RunOptions) error {
	plan := cfg.Plan()
	var err error
	if o.Secrets, err = planSecrets(plan, o.Secrets); err != nil {
		return err
	}
	r := &Runtime{DataDir: cfg.Data}
	// The data directory comes from config.json: it, logs/ and
	// egress-hooks/ must belong to the hook's user (checked after
	// following symlinks; the directories above DATA are not checked),
	// and the pid file and net log are opened O_NOFOLLOW, so that a
	// runtime running as root does not write them into a directory
	// another user owns.
	for _, d := range []string{cfg.Data, filepath.Join(cfg.Data, "logs"), filepath.Join(cfg.Data, "egress-hooks")} {
		if err := ensurePrivateDir(d); err != nil {
			return err
		}
	}
	req := hookServeRequest{Pid: st.Pid, Config: *cfg, Options: o, NetLog: r.NetLogPath(st.ID), PidFile: hookPidFile(cfg.Data, st.ID)}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer reqR.Close()
	defer reqW.Close()
	resR, resW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer resR.Close()
	cmd := exec.Command(self, EgressHookCommand, "serve", st.ID)
	cmd.ExtraFiles = []*os.File{reqR, resW}
	// Its own session: the runtime's signals to the hook's group, and the
	// hook's exit, do not end the proxy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		resW.Close()
		return fmt.Errorf("egress hook: start the proxy: %w", err)
	}
	resW.Close()
	if err := json.NewEncoder(reqW).Encode(&req); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("egress hook: hand the proxy its request: %w", err)
	}
	reqW.Close()
	b, _ := io.ReadAll(resR)
	if msg := strings.TrimSpace(string(b)); msg != "ok" {
		_ = cmd.Wait()
		if msg == "" {
			msg = "the proxy process ended without a word"
		}
		return errors.New(msg)
	}
	// The proxy outlives the hook; nothing waits for it but init.
	return cmd.Process.Release()
}

// ServeEgressHook is the detached proxy process (argv[1..2] =
// EgressHookCommand serve): it reads its request on fd 3, starts the proxy
// with its listeners inside the container, says "ok" (or why not) on fd 4
// and serves until the container's init exits or it gets SIGTERM (the
// poststop hook). It never returns.
func ServeEgressHook() {
	req, res := os.NewFile(3, "request"), os.NewFile(4, "result")
	fail := func(err error) {
		fmt.Fprintln(res, err)
		os.Exit(1)
	}
	var q hookServeRequest
	if err := json.NewDecoder(req).Decode(&q); err != nil {
		fail(fmt.Errorf("egress hook: read the request: %w", err))
	}
	req.Close()
	// A pidfd taken before the listeners: if init is gone already, its pid
	// may be reused and must not be waited on.
	pfd, err := unix.PidfdOpen(q.Pid, 0)
	if err != nil {
		fail(fmt.Errorf("egress hook: container init %d: %w", q.Pid, err))
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	r := &Runtime{DataDir: q.Config.Data}
	// The hook did not create the container: under rootless runc it could
	// not join its network namespace in-process (see egress_listen.go).
	eg, err := r.startEgressWith(q.Config.Plan(), q.Options, q.Pid, nil, q.NetLog, listenThroughNsenter)
	if err != nil {
		fail(fmt.Errorf("egress hook: %w", err))
	}
	if err := writePidFile(q.PidFile); err != nil {
		eg.Close()
		fail(fmt.Errorf("egress hook: %w", err))
	}
	fmt.Fprintln(res, "ok")
	res.Close()
	exited := make(chan struct{})
	go func() {
		fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				close(exited)
				return
			}
		}
	}()
	select {
	case <-exited:
	case <-sigs:
	}
	eg.Close()
	_ = os.Remove(q.PidFile)
	os.Exit(0)
}

// writePidFile records this process's pid at p without following a
// symlink planted there.
func writePidFile(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// StopEgressHook (the poststop hook) ends the proxy of container st.
func StopEgressHook(st *specs.State, cfg *EgressHookConfig) error {
	path := hookPidFile(cfg.Data, st.ID)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // it ended with the container's init
	}
	if err != nil {
		return fmt.Errorf("egress hook: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("egress hook: %s: %w", path, err)
	}
	// Only a process running this hook's command is signalled: the file
	// may be stale and the pid reused.
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if strings.Contains(string(cmdline), "\x00"+EgressHookCommand+"\x00serve\x00"+st.ID+"\x00") {
		_ = unix.Kill(pid, unix.SIGTERM)
	}
	_ = os.Remove(path)
	return nil
}
