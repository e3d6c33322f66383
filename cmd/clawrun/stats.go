package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/internal/units"
	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/runtime"
)

func newStatsCmd(g *globals) *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "stats [NAME...] [--json] [--watch]",
		Short: "Show agents' cpu, memory, pids, OOM kills and cpu throttling from their cgroups",
		Long: `stats reads each container's cgroup (v1 or v2): cpu time used, memory in use
and its peak, processes, OOM kills, and how often a cpu quota throttled it.
Without names it shows all of this user's containers, and a last row
"(all agents)" for the parent cgroup that holds them (the host allowlist's
cgroup_parent) with its total cap, if the allowlist sets one ("parent": true
in --json). A rootless container on a cgroup v1 host has no cgroup of its
own: its figures are "-", not zeros.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			cg := runtime.NewCgroupReader()
			out := cmd.OutOrStdout()
			once := func() error {
				list, err := rt.Stats(cg, args...)
				if err != nil {
					return err
				}
				if len(args) == 0 {
					list = appendParentStats(rt, cg, list)
				}
				if asJSON {
					return writeStatsJSON(out, list, watch)
				}
				return writeStatsTable(out, list)
			}
			if !watch {
				return once()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
			defer stop()
			return watchStats(ctx, out, time.Second, !asJSON && isTerminal(out), once)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (with --watch: one array per line)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw every second until interrupted")
	return cmd
}

// watchStats redraws until ctx ends; Ctrl-C is the normal way out, so it
// is not an error.
func watchStats(ctx context.Context, w io.Writer, every time.Duration, clear bool, once func() error) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for first := true; ; first = false {
		if clear {
			fmt.Fprint(w, "\033[H\033[2J")
		} else if !first {
			fmt.Fprintln(w)
		}
		if err := once(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func writeStatsJSON(w io.Writer, list []runtime.Stats, compact bool) error {
	enc := json.NewEncoder(w)
	if !compact {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(list)
}

// appendParentStats adds the row of the cgroup holding all agents, as the
// allowlist in force names it. An allowlist that cannot be read is left to
// run and policy check to report: stats still shows the agents.
func appendParentStats(rt *runtime.Runtime, cg runtime.CgroupReader, list []runtime.Stats) []runtime.Stats {
	a, err := policy.FindAllowlist()
	if err != nil {
		return list
	}
	if s, ok := rt.ParentStats(cg, a.CgroupParent, a.Total); ok {
		list = append(list, s)
	}
	return list
}

func writeStatsTable(w io.Writer, list []runtime.Stats) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tCPU\tMEM\tMEM PEAK\tPIDS\tOOM KILLS\tTHROTTLED")
	notes := map[string][]string{}
	for _, s := range list {
		u := s.Usage
		if u == nil {
			u = &runtime.Usage{}
		}
		status := s.Status
		if s.Parent && s.Total != nil {
			status = "cap " + totalCaps(*s.Total)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, status,
			fmtOpt(u.CPUNanos, fmtCPU), fmtOpt(u.MemoryBytes, fmtBytes), fmtOpt(u.MemoryPeakBytes, fmtBytes),
			fmtOpt(u.Pids, fmtCount), fmtOpt(u.OOMKills, fmtCount), fmtThrottle(u))
		if s.Note != "" {
			notes[s.Note] = append(notes[s.Note], s.Name)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// One line per distinct reason, so fifty rootless agents make one note.
	keys := make([]string, 0, len(notes))
	for k := range notes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %s\n", strings.Join(notes[k], ", "), k)
	}
	return nil
}

// totalCaps reads like the table's figures: "mem 1.0GiB, cpus 2, pids 200".
func totalCaps(t policy.Limits) string {
	var parts []string
	if t.MemoryBytes > 0 {
		parts = append(parts, "mem "+fmtBytes(uint64(t.MemoryBytes)))
	}
	if t.CPUs > 0 {
		parts = append(parts, fmt.Sprintf("cpus %g", t.CPUs))
	}
	if t.Pids > 0 {
		parts = append(parts, fmt.Sprintf("pids %d", t.Pids))
	}
	return strings.Join(parts, ", ")
}

func fmtOpt(v *uint64, f func(uint64) string) string {
	if v == nil {
		return "-"
	}
	return f(*v)
}

func fmtCount(v uint64) string { return fmt.Sprint(v) }

func fmtCPU(ns uint64) string {
	return time.Duration(ns).Round(time.Millisecond).String()
}

// fmtBytes is a size in a table cell ("3.0MiB").
func fmtBytes(b uint64) string { return units.Bytes(b, "") }

// fmtThrottle reads "throttled periods/periods, time": how often the cpu
// quota stopped the agent, and for how long in total.
func fmtThrottle(u *runtime.Usage) string {
	if u.CPUThrottled == nil || u.CPUPeriods == nil {
		return "-"
	}
	s := fmt.Sprintf("%d/%d", *u.CPUThrottled, *u.CPUPeriods)
	if u.CPUThrottledNanos != nil {
		s += " " + fmtCPU(*u.CPUThrottledNanos)
	}
	return s
}
