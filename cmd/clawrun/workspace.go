package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func newWorkspaceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workspace",
		Short: "List or remove agents' persistent /workspace directories",
		Long: `An agent with workspace: true keeps /workspace in DATA/workspaces/AGENT
across runs; 'clawrun rm' leaves it. These commands list and remove them.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List workspaces and where they are on the host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			dir := filepath.Dir(rt.WorkspaceDir("x"))
			entries, err := os.ReadDir(dir)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			for _, e := range entries {
				if e.IsDir() {
					fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", e.Name(), filepath.Join(dir, e.Name()))
				}
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "rm AGENT...",
		Short: "Delete agents' workspaces and everything in them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			return forEach(args, rt.RemoveWorkspace)
		},
	})
	return cmd
}
