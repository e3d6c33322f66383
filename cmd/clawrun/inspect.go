package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/runtime"
)

// egressBundleHelp is the part of spec's and bundle's help about agents
// with an egress grant.
const egressBundleHelp = `
For an agent with network: {egress: [...]} the config.json carries OCI hooks
that run this clawrun binary: a createRuntime hook starts the agent's egress
proxy (listening inside the container on 127.0.0.1:3128 and the base-URL
ports, as 'clawrun run' does) and a poststop hook stops it; the connection
log is DATA/logs/CONTAINER-ID.net.log ('clawrun logs --net CONTAINER-ID').
The agent's grants are in the "clawrun.egress" annotation. A bundle never
holds a secret's value: a proxied secret needs --secrets FILE, whose path is
recorded and read by the hook when the container starts; expose: env and
interception-mode secrets are refused (use base_url_env, or 'clawrun run').
The hooks work under runc as root and under rootless runc (which needs
idmap: single); they run util-linux's nsenter to open the proxy's listeners
inside the container.`

func newSpecCmd(g *globals) *cobra.Command {
	var secrets string
	cmd := &cobra.Command{
		Use:   "spec AGENT",
		Short: "Print the OCI runtime config.json clawrun would use for an agent",
		Long:  "Print the OCI runtime config.json clawrun would use for an agent.\n" + egressBundleHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prep, err := prepareAgent(g, args[0])
			if err != nil {
				return err
			}
			if err := egressHooks(g, cmd, prep, secrets); err != nil {
				return err
			}
			b, err := runtime.SpecJSON(prep)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&secrets, "secrets", "", "secrets file (KEY=VALUE, mode 0600) the egress hook reads when the container starts; only its path goes into config.json")
	return cmd
}

func newBundleCmd(g *globals) *cobra.Command {
	var secrets string
	cmd := &cobra.Command{
		Use:   "bundle AGENT DIR",
		Short: "Write an OCI bundle (config.json + rootfs) that runc can also run",
		Long: `Write DIR/config.json and a copy of the agent's root filesystem in DIR/rootfs.
'runc run -b DIR ID' then runs the same sandbox clawrun would.

Rootless, give runc a state directory it may write ('runc --root DIR'; its
default is $XDG_RUNTIME_DIR/runc) and bundle an agent with idmap: single:
runc 1.1 (Debian 12) cannot run a spec whose container root is a subordinate
id, it fails with "fchown fd N: operation not permitted".
` + egressBundleHelp,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			prep, err := prepareAgent(g, args[0])
			if err != nil {
				return err
			}
			if err := egressHooks(g, cmd, prep, secrets); err != nil {
				return err
			}
			if err := runtime.WriteBundle(prep, args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bundle written to %s (run it with: runc run -b %s %s)\n", args[1], args[1], args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&secrets, "secrets", "", "secrets file (KEY=VALUE, mode 0600) the egress hook reads when the container starts; only its path goes into config.json")
	return cmd
}

func prepareAgent(g *globals, agent string) (*runtime.Prepared, error) {
	p, err := loadAgent(g, agent)
	if err != nil {
		return nil, err
	}
	rt, err := g.runtime()
	if err != nil {
		return nil, err
	}
	return rt.Prepare(p, agent)
}

func newInspectCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect NAME|AGENT",
		Short: "Show every grant, limit, namespace, capability, mask and seccomp rule of a container or agent",
		Long: `Print the sandbox of a container (by name) or of an agent from the agent file,
as a flat list to audit top to bottom. An agent name with one running
container (e.g. the one 'clawrun serve' runs) inspects that container; with
several, name one of them. For a running container clawrun also
reads /proc of its init process and checks that seccomp, no_new_privileges,
empty capabilities and separate namespaces are really in force, that its
network namespace has no interface but lo and no route out, and, for an
egress agent, that the proxy listens inside it on 127.0.0.1:3128 and each
base-URL port (and no process of the container holds those sockets), and,
when the host allowlist sets a total, that the parent cgroup's limit files
still hold it; a mismatch makes inspect fail.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			// An agent with one running container (the one serve runs)
			// is inspected live; otherwise an agent name shows its plan.
			name := args[0]
			n, rerr := rt.Resolve(name)
			switch {
			case rerr == nil:
				name = n
			case !errors.Is(rerr, runtime.ErrNotFound):
				// Several running containers of the agent: the plan
				// alone would pass for an audit of what runs.
				return rerr
			}
			rep, err := rt.Inspect(name)
			if errors.Is(err, runtime.ErrNotFound) {
				p, lerr := loadAgent(g, args[0])
				if lerr != nil {
					return fmt.Errorf("no container %q, and no agent of that name could be loaded: %w", args[0], lerr)
				}
				// The agent exists but cannot run here (a limit this host
				// cannot enforce, a missing command): say that, not "no agent".
				prep, perr := rt.Prepare(p, args[0])
				if perr != nil {
					return fmt.Errorf("no container %q, and agent %s cannot run on this host: %w", args[0], args[0], perr)
				}
				rep, err = runtime.Describe(args[0], prep), nil
				imageLine(g, rep, prep.Plan, prep.Identity)
			} else if err == nil {
				if in, gerr := rt.Get(name); gerr == nil && in.Meta != nil {
					imageLine(g, rep, in.Meta.Plan, in.Meta.Identity)
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printReport(cmd.OutOrStdout(), rep)
			}
			for _, c := range rep.Live {
				if !c.OK {
					return fmt.Errorf("container %s is not sandboxed as planned: %s is %q, expected %q", rep.Name, c.Property, c.Actual, c.Expected)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printReport(w io.Writer, rep *runtime.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s\n", rep.Name)
	for _, l := range rep.Lines {
		fmt.Fprintf(tw, "%s\t%s\n", l.Kind, l.Value)
	}
	if len(rep.Live) > 0 {
		fmt.Fprintln(tw, "\nenforced (read from /proc and the cgroup files)\t")
		for _, c := range rep.Live {
			mark := "ok"
			if !c.OK {
				mark = "MISMATCH"
			}
			fmt.Fprintf(tw, "%s\t%s (%s)\n", c.Property, c.Actual, mark)
		}
	}
	_ = tw.Flush()
}
