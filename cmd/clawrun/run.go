package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
	"github.com/clawrun/clawrun/runtime"
)

type runFlags struct {
	detach  bool
	name    string
	rootfs  string
	image   string
	entry   string
	plat    string
	mounts  []string
	memory  string
	enforce string
	pids    int64
	cpus    float64
	env     []string
	workdir string
	user    string
	secrets string
}

func newRunCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [-d] [--name N] AGENT [-- CMD...]\n  clawrun run --rootfs DIR [--mount SRC:DST[:ro|rw]]... [--memory 256M] [--pids 64] [--cpus 0.5] [--enforce best-effort] [--name N] [-d] -- CMD...\n  clawrun run --image REF [--entrypoint PROG] [--platform os/arch] [ad-hoc flags] [-- CMD...]",
		Short: "Run an agent (or an ad-hoc sandbox) in a new container",
		Long: `Run the agent AGENT from the agent file in a new rootless container.

In the foreground the agent's stdin, stdout and stderr are attached and
clawrun exits with the agent's exit code (128+N if a signal N killed it,
127 if the command is not in the root filesystem, 125 if the container could
not be started). With -d the container keeps running after clawrun exits;
its output goes to 'clawrun logs NAME'.

Without an agent file, --rootfs runs an ad-hoc sandbox (for CI jobs) with the
same secure defaults; a foreground ad-hoc run without --name leaves nothing
behind when it exits.

--image REF runs an ad-hoc sandbox from an image instead (a reference as in
'clawrun image': registry, oci-layout:DIR, docker-archive:FILE[:TAG]). Its
config applies as for image: in an agent file, the flags overriding it, and
as in docker: CMD after -- replaces the image's Cmd and keeps its
Entrypoint; --entrypoint PROG replaces the Entrypoint and drops the image's
Cmd (--entrypoint '' runs CMD alone). --rootfs and --image are exclusive.`,
		Example: `  clawrun run demo
  clawrun run -d --name demo1 demo
  clawrun run demo -- /bin/sh -c 'id; ls /'
  clawrun run --rootfs ./rootfs --mount ./src:/src:ro -- /bin/sh -c 'make -C /src'
  clawrun run --image alpine:3.20 -- /bin/sh -c 'cat /etc/os-release'
  clawrun run --image docker-archive:./ci.tar:builder:v3 --mount ./src:/src:ro --memory 1G -- make -C /src`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd, g, f, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background; see 'clawrun logs'")
	fl.StringVar(&f.name, "name", "", "container name (default: the agent's name with -d, a generated one otherwise)")
	fl.StringVar(&f.rootfs, "rootfs", "", "ad-hoc: root filesystem directory (no agent file)")
	fl.StringVar(&f.image, "image", "", "ad-hoc: run from this image instead of a directory (see clawrun image)")
	fl.StringVar(&f.entry, "entrypoint", "", "ad-hoc --image: replace the image's Entrypoint (and drop its Cmd)")
	fl.StringVar(&f.plat, "platform", "", "ad-hoc --image: os/arch[/variant] to take from an image index (default linux/<host arch>)")
	fl.StringArrayVar(&f.mounts, "mount", nil, "ad-hoc: grant SRC:DST[:ro|rw] (read-only unless rw)")
	fl.StringVar(&f.memory, "memory", "", "ad-hoc: memory limit, e.g. 256M")
	fl.StringVar(&f.enforce, "enforce", "", "ad-hoc: strict (default) or best-effort: what a limit the host cannot enforce with a cgroup becomes (best-effort: an rlimit, as limits.enforce)")
	fl.Int64Var(&f.pids, "pids", 0, "ad-hoc: maximum number of processes")
	fl.Float64Var(&f.cpus, "cpus", 0, "ad-hoc: CPU quota in cores, e.g. 0.5")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "ad-hoc: environment variable KEY=VALUE")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "ad-hoc: working directory inside (default /)")
	fl.StringVarP(&f.user, "user", "u", "", "ad-hoc: uid[:gid] inside (needs subordinate ids unless 0)")
	fl.StringVar(&f.secrets, "secrets", "", "file with the agent's secrets as KEY=VALUE lines (mode 0600); the environment overrides it")
	return cmd
}

// planForRun resolves the plan from either the agent file or the ad-hoc
// flags; the two are exclusive so a run is never half one and half the other.
func planForRun(g *globals, f *runFlags, args []string, dash int, entrySet bool) (*policy.Plan, error) {
	if f.rootfs != "" || f.image != "" {
		flag := "--rootfs"
		if f.rootfs == "" {
			flag = "--image"
		}
		cmdArgs := args
		if dash >= 0 {
			if dash > 0 {
				return nil, fmt.Errorf("with %s give no AGENT, only -- CMD... (got %q)", flag, args[:dash])
			}
			cmdArgs = args[dash:]
		}
		if len(cmdArgs) == 0 && f.image == "" {
			return nil, errors.New("--rootfs needs a command: clawrun run --rootfs DIR -- CMD...")
		}
		var plat *v1.Platform
		if f.plat != "" {
			if f.image == "" {
				return nil, errors.New("--platform is for --image runs: a --rootfs directory has one platform")
			}
			var err error
			if plat, err = rootfs.ParsePlatform(f.plat); err != nil {
				return nil, fmt.Errorf("--platform: %w", err)
			}
		}
		var entry []string
		if f.entry != "" {
			entry = []string{f.entry}
		}
		name := f.name
		if name == "" {
			name = "sandbox"
		}
		p, err := policy.AdHoc(policy.AdHocOptions{
			Name: name, Rootfs: f.rootfs, Image: f.image, Entrypoint: entry, EntrypointSet: entrySet,
			Command: cmdArgs, Mounts: f.mounts,
			Memory: f.memory, CPUs: f.cpus, Pids: f.pids, Enforce: f.enforce, Env: f.env, Workdir: f.workdir, User: f.user,
		}, policyOptions(g)...)
		if err != nil {
			return nil, err
		}
		return resolveImageFor(g, p, plat)
	}
	if len(f.mounts) > 0 || f.memory != "" || f.pids != 0 || f.cpus != 0 || f.enforce != "" || len(f.env) > 0 || f.workdir != "" || f.user != "" || entrySet || f.plat != "" {
		return nil, errors.New("--mount, --memory, --pids, --cpus, --enforce, --env, --workdir, --user, --entrypoint and --platform are for ad-hoc runs with --rootfs or --image; for an agent, set them in the agent file")
	}
	if len(args) == 0 {
		return nil, errors.New("name the agent to run (clawrun run AGENT), or use --rootfs DIR or --image REF -- CMD... for an ad-hoc sandbox")
	}
	agent := args[0]
	p, err := loadAgent(g, agent)
	if err != nil {
		return nil, err
	}
	if len(args) > 1 {
		if dash != 1 {
			return nil, fmt.Errorf("put the command after --: clawrun run %s -- %s", agent, args[1])
		}
		p = p.WithCommand(args[1:])
	}
	return p, nil
}

func loadAgent(g *globals, agent string) (*policy.Plan, error) {
	path, err := policy.FindFile(g.config)
	if err != nil {
		return nil, err
	}
	file, err := policy.Load(path, policyOptions(g)...)
	if err != nil {
		return nil, err
	}
	p, err := file.Agent(agent)
	if err != nil {
		return nil, err
	}
	return resolveImage(g, p)
}

func runRun(cmd *cobra.Command, g *globals, f *runFlags, args []string) error {
	args, dash := splitDash(args, cmd.Flags().ArgsLenAtDash())
	p, err := planForRun(g, f, args, dash, cmd.Flags().Changed("entrypoint"))
	if err != nil {
		return &exitError{exitRunFailure, err}
	}
	name, remove := f.name, false
	if name == "" {
		if f.detach && f.rootfs == "" && f.image == "" {
			name = p.Name
		} else {
			name = p.Name + "-" + randomSuffix()
			remove = !f.detach
		}
	}
	secrets, err := secretValues(f.secrets, p)
	if err != nil {
		return &exitError{exitRunFailure, err}
	}
	hosts, err := egressHosts()
	if err != nil {
		return &exitError{exitRunFailure, err}
	}
	rt, err := g.runtime()
	if err != nil {
		return &exitError{exitRunFailure, err}
	}
	code, err := rt.Run(p, runtime.RunOptions{
		Name: name, Detach: f.detach, Remove: remove,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Secrets: secrets, EgressHosts: hosts,
	})
	if err != nil {
		if errors.Is(err, rootfs.ErrCommandNotFound) {
			return &exitError{runtime.ExitCommandNotFound, err}
		}
		if code < 0 {
			code = exitRunFailure
		}
		return &exitError{code, err}
	}
	if f.detach {
		fmt.Fprintln(cmd.OutOrStdout(), name)
		return nil
	}
	if code != 0 {
		return &exitError{code, nil}
	}
	return nil
}

// splitDash finds the "--" that separates AGENT from CMD. Flag parsing
// stops at AGENT (so the command's own flags pass through untouched), which
// leaves a later "--" among the arguments instead of recording it.
func splitDash(args []string, dash int) ([]string, int) {
	if dash >= 0 {
		return args, dash
	}
	for i, a := range args {
		if a == "--" {
			return append(append([]string(nil), args[:i]...), args[i+1:]...), i
		}
	}
	return args, -1
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newExecCmd(g *globals) *cobra.Command {
	var interactive, tty bool
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] NAME CMD...",
		Short: "Run a process inside a running agent (for debugging)",
		Long: `Run CMD inside the running container NAME: in its namespaces, cgroup,
seccomp filter and (empty) capability set, as the agent's user. -i attaches
stdin, -t allocates a terminal. clawrun exits with the process's exit code.

NAME may also be an agent's name when one container of that agent runs: the
one 'clawrun serve' started for it (named AGENT-gw-XXXXXX), for instance.`,
		Example: `  clawrun exec demo ps
  clawrun exec -it demo /bin/sh
  clawrun exec helper cat /proc/1/status   # the agent 'clawrun serve' runs`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return &exitError{exitRunFailure, err}
			}
			o := runtime.ExecOptions{Args: args[1:], Tty: tty, Stdout: os.Stdout, Stderr: os.Stderr}
			if interactive {
				o.Stdin = os.Stdin
			}
			name, err := rt.Resolve(args[0])
			if err != nil {
				return &exitError{exitRunFailure, err}
			}
			code, err := rt.Exec(name, o)
			if err != nil {
				if code < 0 {
					code = exitRunFailure
				}
				return &exitError{code, err}
			}
			if code != 0 {
				return &exitError{code, nil}
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach stdin")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	return cmd
}
