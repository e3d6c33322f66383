package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/slack"
)

func newSlackCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slack",
		Short: "Set up the Slack app clawrun serves: print its manifest, check its tokens",
		Long: `Setting up Slack for clawrun serve (docs/slack.md):

  1. clawrun slack manifest > manifest.yaml
     api.slack.com/apps → Create New App → From a manifest → paste it.
  2. Install the app to the workspace; copy the Bot User OAuth Token (xoxb-…)
     and create an app-level token with connections:write (xapp-…).
  3. export SLACK_BOT_TOKEN=xoxb-… SLACK_APP_TOKEN=xapp-…
     (or put them in a file with mode 0600 and pass --secrets FILE)
  4. clawrun slack check`,
	}
	cmd.AddCommand(newSlackManifestCmd(), newSlackCheckCmd(g))
	return cmd
}

func newSlackManifestCmd() *cobra.Command {
	var o slack.ManifestOptions
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Print a Slack app manifest with exactly the scopes and events clawrun uses",
		Long: `Print a Slack app manifest (YAML) to paste into api.slack.com/apps → Create New
App → From a manifest. It asks for the bot scopes clawrun uses and nothing
more (` + strings.Join(slack.BotScopes, ", ") + `;
the *:history scopes both receive messages and let serve read a thread back
after a crash, so that a reply is not posted twice),
subscribes to ` + strings.Join(slack.BotEvents, ", ") + `,
and turns Socket Mode on, so no public URL is needed. With --request-url the
events go over HTTP to that URL instead (clawrun serve --listen).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), slack.Manifest(o))
			return err
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "clawrun", "app and bot name shown in Slack")
	cmd.Flags().StringVar(&o.RequestURL, "request-url", "", "use the Events API over HTTP at this public URL (e.g. https://bots.example.com/slack/events) instead of Socket Mode")
	return cmd
}

func newSlackCheckCmd(g *globals) *cobra.Command {
	var secrets, listen string
	cmd := &cobra.Command{
		Use:   "check [--secrets FILE] [--listen ADDR]",
		Short: "Verify the Slack tokens and scopes, and list the channels each agent answers in",
		Long: `Verify the bot token with auth.test, report scopes the app lacks, check the
app-level token Socket Mode uses (apps.connections.open; no connection is
made), and list what each agent in the agent file answers. Tokens are read as
by clawrun serve: SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_SIGNING_SECRET and
CLAWRUN_SLACK_API_URL from the environment, or from --secrets FILE (mode 0600).
Exits 1 if anything needs fixing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSlackCheck(cmd.Context(), cmd.OutOrStdout(), g, secrets, listen)
		},
	}
	cmd.Flags().StringVar(&secrets, "secrets", "", "file with SLACK_* tokens as KEY=VALUE lines (mode 0600)")
	cmd.Flags().StringVar(&listen, "listen", "", "check for the Events API over HTTP (as serve --listen) instead of Socket Mode")
	return cmd
}

func runSlackCheck(ctx context.Context, w io.Writer, g *globals, secrets, listen string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	problems := 0
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-11s %s\n", label, fmt.Sprintf(format, args...))
	}
	problem := func(label, format string, args ...any) {
		problems++
		line(label, "PROBLEM: "+format, args...)
	}

	// The agent file is read first: slack.api_url may point elsewhere.
	var file *policy.File
	path, err := policy.FindFile(g.config)
	if err == nil {
		file, err = policy.Load(path, policyOptions(g)...)
	}

	cfg, cerr := slack.ConfigFromEnv(secrets)
	if cerr != nil {
		return cerr
	}
	if cfg.APIURL == "" && file != nil {
		cfg.APIURL = file.SlackAPIURL
	}
	cfg.ListenAddr = listen
	// Nothing is logged: check prints its own report.
	cfg.Logger = slog.New(slog.DiscardHandler)
	tr, terr := slack.New(cfg)
	if terr != nil {
		return terr
	}
	rep, cerr := tr.Check(ctx)
	switch {
	case cerr != nil:
		problem("bot token", "%v", cerr)
	default:
		line("bot token", "ok: @%s (user %s, bot %s) in %s (%s) %s", rep.BotName, rep.BotUser, rep.BotID, rep.Team, rep.TeamID, rep.URL)
		switch {
		case !rep.ScopesKnown:
			line("scopes", "unknown: auth.test returned no X-OAuth-Scopes header (a proxy may strip it); the app needs %s", strings.Join(slack.BotScopes, ", "))
		case len(rep.Missing) > 0:
			problem("scopes", "missing %s: add them under OAuth & Permissions → Bot Token Scopes (or paste `clawrun slack manifest` into the app's manifest), then reinstall the app", strings.Join(rep.Missing, ", "))
			if slices.ContainsFunc(rep.Missing, func(s string) bool { return slices.Contains(slack.HistoryScopes, s) }) {
				// Besides the events: the lookup after a crash.
				line("", "without the *:history scopes serve also cannot read a thread back after a crash to see whether its reply went out, and may post it twice")
			}
		default:
			line("scopes", "ok: all %d scopes clawrun uses are granted", len(slack.BotScopes))
		}
		switch {
		case listen != "":
			line("mode", "events API over HTTP on %s (signing secret set; Slack's request URL must reach it)", listen)
		case rep.AppToken != nil:
			problem("app token", "%v: create an app-level token with the connections:write scope (Basic Information → App-Level Tokens) and check Socket Mode is on", rep.AppToken)
		default:
			line("app token", "ok: socket mode can connect")
		}
	}

	switch {
	case err != nil:
		problem("agent file", "%v", err)
	default:
		line("agent file", "%s", path)
		botName := "clawrun"
		if rep != nil && rep.BotName != "" {
			botName = rep.BotName
		}
		problems += listRoutes(w, file, botName)
	}
	if problems > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("slack check: %d problem(s) to fix, see above", problems)}
	}
	return nil
}

// listRoutes prints what each agent answers; it returns 1 when no agent is
// reachable from Slack at all.
func listRoutes(w io.Writer, f *policy.File, botName string) int {
	routed := 0
	for _, name := range f.Order {
		r := f.Agents[name].Slack
		if r == nil {
			fmt.Fprintf(w, "%-11s not reachable from Slack (no slack section)\n", "  "+name)
			continue
		}
		routed++
		fmt.Fprintf(w, "%-11s %s\n", "  "+name, strings.Join(r.Describe(), "; "))
	}
	if routed == 0 {
		fmt.Fprintln(w, "PROBLEM: no agent has a slack section, so serve has nothing to route: add agents.NAME.slack.channels (see docs/slack.md)")
		return 1
	}
	fmt.Fprintf(w, "%-11s (invite the bot to each channel: /invite @%s in Slack)\n", "", botName)
	return 0
}
