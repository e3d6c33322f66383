package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/runtime"
)

func newPsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ps [--json]",
		Short: "List this user's containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			list, err := rt.List()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if list == nil {
					list = []runtime.Info{}
				}
				return writeJSON(out, list)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tAGENT\tSTATUS\tPID\tCREATED\tCOMMAND")
			for _, c := range list {
				pid := "-"
				if c.Pid > 0 {
					pid = fmt.Sprint(c.Pid)
				}
				status := c.Status
				if c.Exit != nil {
					status = c.Exit.Text
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Agent, status, pid,
					c.Created.Local().Format(time.DateTime), strings.Join(c.Command, " "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow, net, asJSON bool
	cmd := &cobra.Command{
		Use:   "logs [-f] NAME\n  clawrun logs --net [--json] NAME",
		Short: "Print a detached agent's stdout and stderr, or an agent's connection log",
		Long: `Print a detached agent's stdout and stderr. NAME may also be the name of
an agent with one running container (e.g. the one 'clawrun serve' runs).

With --net, print the egress connection log of the container NAME (or, for
'clawrun serve', of the agent NAME): one line per allowed or refused
connection or request, with the names of injected secrets, never values.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			if net {
				return printNetLog(cmd.OutOrStdout(), rt, args[0], asJSON)
			}
			name, err := rt.Resolve(args[0])
			if err != nil {
				return err
			}
			in, err := rt.Get(name)
			if err != nil {
				return err
			}
			if in.Log == "" {
				return fmt.Errorf("container %s ran in the foreground: its output went to the terminal, no log was kept", name)
			}
			f, err := os.Open(in.Log)
			if err != nil {
				return fmt.Errorf("log of %s: %w", name, err)
			}
			defer f.Close()
			return copyLog(cmd.OutOrStdout(), f, follow, func() bool {
				in, err := rt.Get(name)
				if err == nil && in.Status == "stopped" {
					// The monitor's last line about how it ended.
					rt.WaitExitRecorded(name, 5*time.Second)
				}
				return err == nil && in.Status != "stopped"
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the container stops")
	cmd.Flags().BoolVar(&net, "net", false, "print the egress connection log instead")
	cmd.Flags().BoolVar(&asJSON, "json", false, "with --net: print the log's JSON lines as they are")
	return cmd
}

// copyLog copies the log and, when following, polls for more until the
// container stops and everything written has been printed.
func copyLog(w io.Writer, f *os.File, follow bool, alive func() bool) error {
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		if !alive() {
			_, err := io.Copy(w, f)
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func newStopCmd(g *globals) *cobra.Command {
	var secs int
	cmd := &cobra.Command{
		Use:   "stop [-t SECS] NAME...",
		Short: "Stop agents: SIGTERM, then SIGKILL after a grace period",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			return forEach(args, func(name string) error {
				return rt.Stop(name, time.Duration(secs)*time.Second)
			})
		},
	}
	cmd.Flags().IntVarP(&secs, "time", "t", 10, "seconds to wait after SIGTERM before SIGKILL")
	return cmd
}

func newKillCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "kill NAME [SIGNAL]",
		Short: "Send a signal to an agent (default SIGTERM)",
		Example: `  clawrun kill demo
  clawrun kill demo KILL
  clawrun kill demo 9`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig := unix.SIGTERM
			if len(args) == 2 {
				s, err := parseSignal(args[1])
				if err != nil {
					return fmt.Errorf("signal %q: %w (use a name like TERM, KILL, HUP or a number)", args[1], err)
				}
				sig = s
			}
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			return rt.Signal(args[0], sig)
		},
	}
}

func newRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] NAME...",
		Short: "Remove stopped containers (-f kills running ones first)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			return forEach(args, func(name string) error { return rt.Remove(name, force) })
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill the container first if it runs")
	return cmd
}

// forEach applies fn to every name and reports every failure, not just the
// first, so `rm a b c` removes what it can.
func forEach(names []string, fn func(string) error) error {
	var errs []error
	for _, n := range names {
		if err := fn(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseSignal accepts "TERM", "SIGTERM", "term" or "15".
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, errors.New("out of range")
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, errors.New("unknown signal")
}
