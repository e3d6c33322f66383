package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/hostcheck"
)

// Hidden probe modes: doctor re-executes clawrun inside a new user
// namespace to try what a check is about instead of guessing.
const (
	probeUserNS  = "userns"
	probeOverlay = "overlay"
)

func newDoctorCmd(g *globals) *cobra.Command {
	var asJSON bool
	var probe string
	cmd := &cobra.Command{
		Use:   "doctor [--json]",
		Short: "Check what this host lets clawrun do, and how to fix what is missing",
		Long: `doctor checks user namespaces, subordinate ids and newuidmap/newgidmap,
cgroups and the controllers delegated to you, seccomp and libseccomp,
unprivileged overlayfs, the kernel, and clawrun's state and data directories.
Each line is OK, WARN (works with less) or FAIL, with the fix. The last line
says which limits (memory, cpu, pids) this host enforces for you.

Exit status: 0 when agents can run, 1 when an essential check failed.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch probe {
			case "":
			case probeUserNS:
				return nil
			case probeOverlay:
				if len(args) != 1 {
					return fmt.Errorf("probe %s needs a directory", probe)
				}
				return hostcheck.MountOverlay(args[0])
			default:
				return fmt.Errorf("unknown probe %q", probe)
			}
			if len(args) > 0 {
				return fmt.Errorf("doctor takes no arguments, got %q", args)
			}
			h := hostcheck.Current(g.root, g.data)
			h.ProbeUserNS = func() error {
				return hostcheck.ProbeInUserNS("/proc/self/exe", []string{"doctor", "--probe", probeUserNS}, false)
			}
			h.ProbeOverlay = func() error {
				dir, err := os.MkdirTemp("", "clawrun-doctor-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				return hostcheck.ProbeInUserNS("/proc/self/exe", []string{"doctor", "--probe", probeOverlay, dir}, true)
			}
			rep := hostcheck.Run(h)
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, rep); err != nil {
					return err
				}
			} else if err := writeDoctor(out, rep); err != nil {
				return err
			}
			if !rep.CanRun {
				return &exitError{code: exitFailure, err: fmt.Errorf("no agent can run on this host until the FAIL lines marked essential are fixed")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&probe, "probe", "", "internal: run one probe inside a new user namespace")
	_ = cmd.Flags().MarkHidden("probe")
	return cmd
}

func writeDoctor(w io.Writer, rep hostcheck.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tDETAIL")
	for _, c := range rep.Checks {
		status := c.Status.String()
		if c.Essential && c.Status == hostcheck.Fail {
			status += "!"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", status, c.Check, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nlimits enforced for you: %s (%s)\n", limitsLine(rep.Limits), rep.Limits.Why)
	if rep.CanRun {
		fmt.Fprintln(w, "agents can run on this host")
	} else {
		fmt.Fprintln(w, "agents cannot run on this host: fix the FAIL! lines first")
	}
	return nil
}

func limitsLine(l hostcheck.Limits) string {
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	return strings.Join([]string{"memory " + yn(l.Memory), "cpu " + yn(l.CPU), "pids " + yn(l.Pids)}, ", ")
}
