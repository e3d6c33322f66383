// Command clawrun runs AI agents in rootless containers, one container per
// agent, each seeing only what its agent file grants.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's constructor runs before the Go runtime when clawrun is
	// re-executed as the container init; cgroups/devices lets the cgroup
	// manager apply device rules (without it start fails as root).
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/rootfs"
	"github.com/clawrun/clawrun/runtime"
	"github.com/clawrun/clawrun/seccomp"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// libcontainer re-executes /proc/self/exe init inside the new
		// namespaces; this never returns.
		libcontainer.Init()
	}
	if len(os.Args) > 1 && os.Args[1] == runtime.NestedCommand {
		// A rootless run re-executed inside its outer user namespace.
		runtime.ServeNested()
	}
	if len(os.Args) > 1 && os.Args[1] == runtime.ImageStoreCommand {
		// Unpacking into (or removing from) a store of mapped image bases,
		// re-executed in a user namespace holding the subordinate range.
		runtime.ServeImageStore()
	}
}

// exitError carries an exit code up to main without printing twice.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// Exit codes of clawrun itself; `run` and `exec` otherwise return the agent's.
const (
	exitFailure    = 1   // a clawrun command failed
	exitRunFailure = 125 // `run`/`exec` could not start the container
)

type globals struct {
	root   string
	data   string
	config string
	// leases keep the image bases this process resolved from prune and
	// rm until it exits (see resolveImageFor).
	leases []*rootfs.Lease
}

func (g *globals) runtime() (*runtime.Runtime, error) {
	return runtime.New(g.root, g.data)
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "clawrun:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "clawrun:", err)
	return exitFailure
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "clawrun",
		Short: "Run AI agents in rootless containers, each seeing only what it was granted",
		Long: `clawrun runs each AI agent in its own rootless Linux container (runc's
libcontainer, user namespaces, seccomp, no capabilities), declared in an agent
file (clawrun.yaml). No daemon and no sudo are needed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.root, "root", defaultStateDir(), "directory for live container state")
	root.PersistentFlags().StringVar(&g.data, "data", defaultDataDir(), "directory for durable data (logs)")
	root.PersistentFlags().StringVarP(&g.config, "config", "c", "", "agent file (default ./clawrun.yaml)")
	root.AddCommand(
		newRunCmd(g), newExecCmd(g), newPsCmd(g), newLogsCmd(g), newStopCmd(g),
		newKillCmd(g), newRmCmd(g), newSpecCmd(g), newBundleCmd(g), newInspectCmd(g),
		newDemoCmd(g), newVersionCmd(), newPolicyCmd(g), newDoctorCmd(g), newStatsCmd(g),
		newServeCmd(g), newSlackCmd(g), newSeccompCmd(), newImageCmd(g), newWorkspaceCmd(g),
		newEgressHookCmd(), newEgressListenCmd(),
	)
	return root
}

// defaultStateDir follows the XDG runtime dir for rootless users, /run for
// root. Without XDG_RUNTIME_DIR (e.g. under su) a per-uid dir in /tmp is
// used; New() refuses it if another user owns it.
func defaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/run/clawrun"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "clawrun")
	}
	return filepath.Join(os.TempDir(), "clawrun-"+strconv.Itoa(os.Geteuid()))
}

func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/clawrun"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "clawrun")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "clawrun")
	}
	return filepath.Join(os.TempDir(), "clawrun-data-"+strconv.Itoa(os.Geteuid()))
}

// version is set at link time for releases (-ldflags "-X main.version=V");
// a build from a git checkout also names its commit (versionText).
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print clawrun's version, its commit and what it is built on",
		Long: `Print clawrun's version and, for a build from a git checkout, its commit
(marked modified when the tree had uncommitted changes), then the Go
version and the versions of runc's libcontainer, the OCI runtime-spec and
the libseccomp library it runs with: what a bug report needs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, _ := debug.ReadBuildInfo()
			fmt.Fprint(cmd.OutOrStdout(), versionText(version, bi, seccomp.LibraryVersion()))
			return nil
		},
	}
}

// versionText formats clawrun version from the build information (nil
// when the binary has none).
func versionText(v string, bi *debug.BuildInfo, libseccomp string) string {
	line := "clawrun " + v
	deps := map[string]string{}
	goVersion := "unknown"
	if bi != nil {
		goVersion = bi.GoVersion
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			line += " (commit " + rev[:min(12, len(rev))]
			if modified == "true" {
				line += ", modified"
			}
			line += ")"
		}
		for _, d := range bi.Deps {
			deps[d.Path] = d.Version
		}
	}
	dep := func(path string) string {
		if v := deps[path]; v != "" {
			return v
		}
		return "unknown"
	}
	return fmt.Sprintf("%s\n%s %s/%s\nlibcontainer %s (github.com/opencontainers/runc), runtime-spec %s, libseccomp %s\n",
		line, goVersion, goruntime.GOOS, goruntime.GOARCH,
		dep("github.com/opencontainers/runc"), dep("github.com/opencontainers/runtime-spec"), libseccomp)
}

// writeJSON is every command's --json output: indented, one document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
