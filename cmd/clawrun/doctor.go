package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/hostcheck"
	"github.com/clawrun/clawrun/policy"
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
Each line is OK, WARN (works with less) or FAIL, with the fix. The "total"
line says whether the host allowlist caps all agents together (total:) and
whether this host can enforce that cap: if it cannot, every run fails. The
"io_weight" line says whether limits.io_weight acts here (CFQ, a disk on
BFQ, or cgroup v2 io.weight with blk-iocost), WARN with the fix if not. The
last lines say which limits (memory, cpu, pids, then io_weight) this host
enforces for you.

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
			rep = withTotalCheck(rep)
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

// withTotalCheck adds the host allowlist's total: a total this host
// cannot enforce refuses every run, so it is an essential failure.
func withTotalCheck(rep hostcheck.Report) hostcheck.Report {
	c := hostcheck.Result{Check: "total"}
	a, err := policy.FindAllowlist()
	switch {
	case err != nil:
		c.Status, c.Detail, c.Fix = hostcheck.Fail, err.Error(), "fix the allowlist ('clawrun policy check' shows each problem)"
		c.Essential = true
	case a.Total.IsZero():
		c.Detail = "no total in " + allowlistName(a) + ": agents under cgroup_parent " + a.ParentName() + " are capped only one by one"
	default:
		var set, miss []string
		for _, l := range []struct {
			name string
			set  bool
			ok   bool
		}{{"memory", a.Total.MemoryBytes > 0, rep.Limits.Memory}, {"cpus", a.Total.CPUs > 0, rep.Limits.CPU}, {"pids", a.Total.Pids > 0, rep.Limits.Pids}} {
			if !l.set {
				continue
			}
			set = append(set, "total."+l.name)
			if !l.ok {
				miss = append(miss, "total."+l.name)
			}
		}
		c.Detail = fmt.Sprintf("%s in %s (cgroup_parent %s)", strings.Join(set, ", "), allowlistName(a), a.ParentName())
		if len(miss) > 0 {
			c.Status, c.Essential = hostcheck.Fail, true
			c.Detail += ": " + strings.Join(miss, ", ") + " cannot be enforced here (" + rep.Limits.Why + "), so every run is refused"
			c.Fix = "enable the controllers for you (see the cgroups line), run as root, or remove total from the allowlist"
			rep.CanRun = false
		} else {
			c.Detail += ": enforced on the parent cgroup at every run"
		}
	}
	rep.Checks = append(rep.Checks, c)
	return rep
}

func allowlistName(a *policy.Allowlist) string {
	if a.Default {
		return "the default allowlist"
	}
	return a.Path
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
	fmt.Fprintf(w, "io_weight enforced for you: %s (%s)\n", yesNo(rep.Limits.IO), rep.Limits.IOWhy)
	if rep.CanRun {
		fmt.Fprintln(w, "agents can run on this host")
	} else {
		fmt.Fprintln(w, "agents cannot run on this host: fix the FAIL! lines first")
	}
	return nil
}

func limitsLine(l hostcheck.Limits) string {
	return strings.Join([]string{"memory " + yesNo(l.Memory), "cpu " + yesNo(l.CPU), "pids " + yesNo(l.Pids)}, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
