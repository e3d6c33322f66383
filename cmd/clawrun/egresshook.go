package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/runtime"
)

// newEgressHookCmd is the hidden command the OCI hooks of an egress
// agent's bundle run (see runtime/egress_hook.go): "start" as the
// createRuntime hook, "stop" as the poststop hook, "serve" as the detached
// proxy "start" leaves behind. The runtime passes the container's state on
// stdin.
func newEgressHookCmd() *cobra.Command {
	return &cobra.Command{
		Use:    runtime.EgressHookCommand + " start|stop|serve",
		Short:  "OCI hooks of an egress agent's bundle (run by runc, not by hand)",
		Hidden: true,
		Args:   cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "serve" {
				runtime.ServeEgressHook() // never returns
			}
			st, cfg, err := runtime.ReadHookState(cmd.InOrStdin())
			if err != nil {
				return err
			}
			switch args[0] {
			case "start":
				// Values as `run` reads them: the hook's environment (which
				// the runtime gives only the hook's env of config.json) and
				// the secrets file the bundle names.
				vals, err := secretValues(cfg.SecretsFile, cfg.Plan())
				if err != nil {
					return err
				}
				o := runtime.RunOptions{Secrets: vals}
				if cfg.HostsFile != "" {
					if o.EgressHosts, err = runtime.ReadHostsFile(cfg.HostsFile); err != nil {
						return fmt.Errorf("%s: %w", envEgressHosts, err)
					}
				}
				return runtime.StartEgressHook(st, cfg, o)
			case "stop":
				return runtime.StopEgressHook(st, cfg)
			}
			return fmt.Errorf("egress hook: unknown step %q (want start, stop or serve)", args[0])
		},
	}
}

// newEgressListenCmd is the hidden command the egress hook's proxy starts
// through nsenter inside the container's user and network namespaces (see
// runtime/egress_listen.go): it opens the listeners there and passes them
// back on fd 3.
func newEgressListenCmd() *cobra.Command {
	return &cobra.Command{
		Use:    runtime.EgressListenCommand + " ADDR...",
		Short:  "open the egress proxy's listeners inside a container (run by the egress hook, not by hand)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runtime.ServeEgressListen(args)
		},
	}
}

// egressHooks adds the egress proxy's OCI hooks to the spec of an egress
// agent for `spec` and `bundle`: under plain runc they start and stop the
// proxy `clawrun run` would. It names what the bundle needs on stderr.
func egressHooks(g *globals, cmd *cobra.Command, prep *runtime.Prepared, secretsFile string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	data, err := filepath.Abs(g.data)
	if err != nil {
		return err
	}
	cfg := runtime.EgressHookConfig{Data: data, HostsFile: os.Getenv(envEgressHosts)}
	if secretsFile != "" {
		if secretsFile, err = filepath.Abs(secretsFile); err != nil {
			return err
		}
		cfg.SecretsFile = secretsFile
	}
	if err := runtime.WithEgressHooks(prep.Plan, self, cfg)(prep.Spec); err != nil {
		return err
	}
	if prep.Spec.Hooks == nil {
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "note: agent %s has an egress grant: the bundle's hooks run %s to start its proxy (connection log: clawrun --data %s logs --net CONTAINER-ID)\n", prep.Plan.Name, self, data)
	// The hook fails the container's start without nsenter; say so now,
	// where it can still be installed before the bundle runs.
	if _, err := runtime.NsenterPath(); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v\n", err)
	}
	return nil
}
