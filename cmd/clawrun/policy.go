package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/policy"
)

// policyOptions are the host facts policy checks need from the CLI: the
// running binary and the state and data directories chosen with --root and
// --data, none of which a read-write grant may reach.
func policyOptions(g *globals) []policy.Option {
	var opts []policy.Option
	if exe, err := os.Executable(); err == nil {
		opts = append(opts, policy.WithExecutable(exe))
	}
	if g.data != "" {
		opts = append(opts, policy.WithDataDir(g.data))
	}
	for _, d := range []string{g.root, g.data} {
		if d == "" {
			continue
		}
		if abs, err := filepath.Abs(d); err == nil {
			opts = append(opts, policy.WithClawrunDirs(abs))
		}
	}
	return opts
}

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check agent files against the host's policy",
	}
	var allowlist string
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Print every policy violation in an agent file",
		Long: `Check the agent file FILE (default: --config, or ./clawrun.yaml) the way
'clawrun run' does before it creates anything: the schema, the host allowlist,
blocked paths, self-edit protection, capabilities, seccomp and Slack routes.
Every problem is printed on its own line with the rule that refused it, and
clawrun exits 1; a file without problems gets a summary and exit 0. The
summary also says, agent by agent, whether this host can run it as declared
(a WARN names what 'clawrun run' would refuse here, e.g. limits that cannot
be enforced rootless); that does not change the exit code, since the file
may be meant for another host.

The allowlist is $CLAWRUN_ALLOWLIST, or ` + allowlistLocation() + `
(see docs/allowlist.md); --allowlist checks against another one.`,
		Example: `  clawrun policy check
  clawrun policy check agents/support.yaml
  clawrun policy check --allowlist /etc/clawrun/allowlist.yaml clawrun.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			explicit := g.config
			if len(args) == 1 {
				explicit = args[0]
			}
			path, err := policy.FindFile(explicit)
			if err != nil {
				return err
			}
			opts := policyOptions(g)
			if allowlist != "" {
				opts = append(opts, policy.WithAllowlistFile(allowlist))
			}
			f, err := policy.Load(path, opts...)
			if err != nil {
				fes := policy.FieldErrors(err)
				if len(fes) == 0 {
					return err
				}
				printViolations(cmd.OutOrStdout(), fes)
				noun := "problems"
				if len(fes) == 1 {
					noun = "problem"
				}
				return &exitError{exitFailure, fmt.Errorf("%s: %d %s; nothing was run", path, len(fes), noun)}
			}
			printSummary(cmd.OutOrStdout(), path, f, hostCheck(g))
			return nil
		},
	}
	check.Flags().StringVar(&allowlist, "allowlist", "", "check against this allowlist file instead of the host's")
	cmd.AddCommand(check)
	return cmd
}

func allowlistLocation() string {
	if p := policy.AllowlistPath(); p != "" {
		return p
	}
	return "$XDG_CONFIG_HOME/clawrun/allowlist.yaml"
}

func printViolations(w io.Writer, fes []*policy.FieldError) {
	for _, fe := range fes {
		line := fe.Error()
		if fe.Rule == "" {
			line += " (policy: schema)"
		}
		fmt.Fprintln(w, line)
	}
}

// hostCheck says, for a valid agent, whether this host can run it as
// declared (limits it cannot enforce, a missing command, a user that needs
// subordinate ids): what 'clawrun run' would refuse after the policy. ""
// when it can; nil when the runtime itself is unavailable. Image agents
// are not resolved (that could pull), so they are not checked here.
func hostCheck(g *globals) func(p *policy.Plan) string {
	rt, err := g.runtime()
	if err != nil {
		return nil
	}
	return func(p *policy.Plan) string {
		if p.Image != "" {
			return "not checked (an image agent is checked when its image is resolved: clawrun inspect " + p.Name + ")"
		}
		if _, err := rt.Prepare(p, p.Name+"-check"); err != nil {
			return "WARN: " + err.Error()
		}
		return ""
	}
}

func printSummary(w io.Writer, path string, f *policy.File, host func(*policy.Plan) string) {
	noun := "agents"
	if len(f.Order) == 1 {
		noun = "agent"
	}
	fmt.Fprintf(w, "%s: OK, %d %s\n", path, len(f.Order), noun)
	a := f.Allowlist
	switch {
	case a == nil:
	case a.Default && a.Path != "":
		fmt.Fprintf(w, "allowlist: none at %s, defaults apply (the agent file's directory and your home, rw)\n", a.Path)
	case a.Default:
		fmt.Fprintln(w, "allowlist: none, defaults apply (the agent file's directory and your home, rw)")
	default:
		fmt.Fprintf(w, "allowlist: %s\n", a.Path)
	}
	if f.SlackAPIURL != "" {
		fmt.Fprintf(w, "slack api_url: %s\n", f.SlackAPIURL)
	}
	for _, name := range f.Order {
		p := f.Agents[name]
		fmt.Fprintf(w, "  %s:\n", name)
		if p.Image != "" {
			fmt.Fprintf(w, "    image         %s (ro)\n", p.Image)
		} else {
			fmt.Fprintf(w, "    rootfs        %s (ro)\n", p.Rootfs)
		}
		for _, gr := range p.Grants {
			fmt.Fprintf(w, "    grant         %s <- %s (%s)\n", gr.Path, gr.Host, gr.Mode)
		}
		caps := "none"
		if len(p.Capabilities) > 0 {
			caps = strings.Join(p.Capabilities, ",")
		}
		fmt.Fprintf(w, "    capabilities  %s\n", caps)
		fmt.Fprintf(w, "    seccomp       %s\n", p.Seccomp)
		fmt.Fprintf(w, "    network       %s\n", p.NetworkDescription())
		for _, sec := range p.Secrets {
			fmt.Fprintf(w, "    secret        %s\n", sec.Describe())
		}
		if r := p.Slack; r != nil {
			fmt.Fprintf(w, "    slack         %s\n", strings.Join(r.Describe(), "; "))
		}
		if host != nil {
			msg := host(p)
			if msg == "" {
				msg = "OK: this host can run it as declared"
			}
			fmt.Fprintf(w, "    this host     %s\n", msg)
		}
	}
}
