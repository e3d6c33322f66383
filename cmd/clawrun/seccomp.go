package main

import (
	"fmt"
	"io"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/seccomp"
)

const seccompProfileHelp = `PROFILE is a built-in profile (` + "`clawrun seccomp show`" + ` lists them), or a
custom profile: custom:FILE.json, or just a path (one with a "/" or ending in
.json) to a file of OCI LinuxSeccomp JSON.`

func newSeccompCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seccomp",
		Short: "Show seccomp profiles and check what they do with a syscall",
		Long: `Show the seccomp profiles clawrun can give an agent, and check what a
profile does with one syscall on this host's architecture.

Built-in profiles:
  default     Docker-class allowlist: anything not listed fails with EPERM
  agent       default, minus the kernel surface an agent never needs; explicit
              refusals fail with EPERM (or EAFNOSUPPORT for socket families),
              calls the profile does not know fail with ENOSYS
  agent-log   lets through what agent refuses, and has the kernel log it
              (audit log, or dmesg without auditd), to shape a profile

See docs/seccomp.md.`,
	}
	cmd.AddCommand(newSeccompShowCmd(), newSeccompCheckCmd())
	return cmd
}

func newSeccompShowCmd() *cobra.Command {
	var asJSON, network bool
	cmd := &cobra.Command{
		Use:   "show [PROFILE]",
		Short: "Print a seccomp profile: summary and every rule, or its OCI JSON",
		Long: `Print a profile's summary (default action, architectures, filtered calls)
and then every rule in order, as the OCI runtime gets them. With --json print
the OCI LinuxSeccomp JSON instead (a starting point for a custom profile).
Without PROFILE, list the built-in profiles.

` + seccompProfileHelp,
		Example: `  clawrun seccomp show agent
  clawrun seccomp show --network agent
  clawrun seccomp show --json agent > my-profile.json
  clawrun seccomp show custom:./my-profile.json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				for _, name := range seccomp.Names() {
					fmt.Fprintln(out, name)
				}
				return nil
			}
			p, err := resolveSeccomp(args[0], network)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, p)
			}
			printSeccomp(out, args[0], network, p)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the OCI LinuxSeccomp JSON")
	cmd.Flags().BoolVar(&network, "network", false, "the variant for an agent with a network grant (AF_INET/AF_INET6 sockets)")
	return cmd
}

func newSeccompCheckCmd() *cobra.Command {
	var network bool
	cmd := &cobra.Command{
		Use:   "check PROFILE SYSCALL [ARG...]",
		Short: "Say whether a profile allows a syscall, with the given arguments",
		Long: `Say what PROFILE does with one call of SYSCALL on this host's architecture:
allowed, allowed and logged, or denied and with which errno. The profile is
compiled with libseccomp the way runc compiles it and the resulting BPF program
is run on the call, so argument conditions are evaluated exactly; missing
arguments are 0.

Each ARG is a number (decimal, 0x hex, 0o octal, negative for two's
complement), a constant such as AF_INET, SOCK_STREAM, TIOCSTI, S_IFCHR or
CLONE_NEWUSER, or several joined with "|".

Exit status: 0 if the call is allowed (or allowed and logged), 1 if it is
denied or the check failed.

` + seccompProfileHelp,
		Example: `  clawrun seccomp check agent mount
  clawrun seccomp check agent socket AF_INET SOCK_STREAM 0
  clawrun seccomp check --network agent socket AF_INET SOCK_STREAM 0
  clawrun seccomp check agent ioctl 0 TIOCSTI
  clawrun seccomp check agent mknodat AT_FDCWD 0 'S_IFCHR|0600'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := resolveSeccomp(args[0], network)
			if err != nil {
				return err
			}
			var vals []uint64
			for _, a := range args[2:] {
				v, err := seccomp.ParseArg(a)
				if err != nil {
					return err
				}
				vals = append(vals, v)
			}
			v, err := seccomp.Check(p, args[1], vals)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			hex := make([]string, len(vals))
			for i, x := range vals {
				hex[i] = fmt.Sprintf("%#x", x)
			}
			fmt.Fprintf(out, "%s(%s): %s\n", v.Syscall, strings.Join(hex, ", "), v)
			fmt.Fprintf(out, "  profile %s, %s syscall %d\n", profileLabel(args[0], network), v.Arch, v.Number)
			if v.Note != "" {
				fmt.Fprintf(out, "  %s\n", v.Note)
			}
			rules := rulesNaming(p, v.Syscall)
			if len(rules) == 0 {
				fmt.Fprintf(out, "  no rule names %s: the default action decides (%s)\n", v.Syscall, seccomp.Summary(p)[0])
			} else {
				fmt.Fprintf(out, "  rules naming %s:\n", v.Syscall)
				for _, r := range rules {
					fmt.Fprintf(out, "    %s\n", r)
				}
			}
			if !v.Allowed() {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&network, "network", false, "the variant for an agent with a network grant (AF_INET/AF_INET6 sockets)")
	return cmd
}

// resolveSeccomp accepts a bare path as well as custom:PATH.
func resolveSeccomp(ref string, network bool) (*specs.LinuxSeccomp, error) {
	if !strings.HasPrefix(ref, seccomp.CustomPrefix) && (strings.Contains(ref, "/") || strings.HasSuffix(ref, ".json")) {
		ref = seccomp.CustomPrefix + ref
	}
	return seccomp.Resolve(ref, seccomp.Options{Network: network})
}

func profileLabel(ref string, network bool) string {
	if network {
		return ref + " (with network)"
	}
	return ref
}

func printSeccomp(w io.Writer, ref string, network bool, p *specs.LinuxSeccomp) {
	fmt.Fprintf(w, "profile: %s\n", profileLabel(ref, network))
	for _, l := range seccomp.Summary(p) {
		fmt.Fprintf(w, "  %s\n", l)
	}
	fmt.Fprintf(w, "\nrules (%d, in order):\n", len(p.Syscalls))
	for i, r := range seccomp.RuleLines(p) {
		fmt.Fprintf(w, "%s\n", wrap(fmt.Sprintf("  %3d  %s", i, r), 100, "         "))
	}
}

// rulesNaming returns the description of each rule that names syscall.
func rulesNaming(p *specs.LinuxSeccomp, syscall string) []string {
	var out []string
	lines := seccomp.RuleLines(p)
	for i, sc := range p.Syscalls {
		for _, n := range sc.Names {
			if n != syscall {
				continue
			}
			line := lines[i]
			if len(sc.Names) > 1 {
				line = strings.SplitN(line, ":", 2)[0] + ": " + syscall + fmt.Sprintf(" (and %d more)", len(sc.Names)-1)
			}
			out = append(out, line)
		}
	}
	return out
}

// wrap breaks a long line at ", " boundaries.
func wrap(s string, width int, indent string) string {
	if len(s) <= width {
		return s
	}
	var b strings.Builder
	line := ""
	for i, part := range strings.SplitAfter(s, ", ") {
		if i > 0 && len(line)+len(part) > width {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = indent
		}
		line += part
	}
	b.WriteString(line)
	return b.String()
}
