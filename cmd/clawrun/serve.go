package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/gateway"
	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/slack"
)

// The Slack transport is the gateway's Transport.
var _ gateway.Transport = (*slack.Transport)(nil)

type serveFlags struct {
	listen  string
	secrets string
	debug   bool
	// Restart and retry policy of the gateway (gateway.Options).
	restartDelay, restartDelayMax time.Duration
	maxAttempts                   int
}

func newServeCmd(g *globals) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR] [--secrets FILE] [AGENT...]",
		Short: "Connect to Slack and run the agents that answer there, until stopped",
		Long: `Connect to Slack and carry messages between Slack and the agents of the agent
file (--config, default ./clawrun.yaml) that have a slack section, or only the
AGENTs named. Each agent runs in its own container, started once and restarted
with backoff if it exits (--restart-delay, doubling up to --restart-delay-max); messages reach it as JSON lines on stdin and its
replies are posted in the message's thread (docs/protocol.md, docs/gateway.md).

Every message is stored under --data (gateway.db and its log gateway.db-wal) before Slack is told it was
received, and removed only after its reply was posted: a crash or kill -9 of
serve loses nothing, and a restart delivers what was pending again. Agent
stderr goes to DATA/logs/AGENT.log.

Slack credentials come from the environment, or from a --secrets file of
KEY=VALUE lines (mode 0600) that the environment overrides:
  SLACK_BOT_TOKEN       bot token (xoxb-…), always
  SLACK_APP_TOKEN       app-level token (xapp-…), for Socket Mode (the default)
  SLACK_SIGNING_SECRET  for the Events API over HTTP (--listen)
  CLAWRUN_SLACK_API_URL Web API base URL (default https://slack.com/api/,
                        or slack.api_url in the agent file)
  CLAWRUN_SLACK_POST_INTERVAL  pace of posts into one channel after a burst
                        of 3 (default 1s; off for none, e.g. for benchmarks
                        against a fake Slack)
Tokens never reach an agent's container. The same file (or the environment)
also holds the values of the agents' secrets (secrets: in the agent file);
an agent's egress proxy injects them, and its connection log goes to
DATA/logs/AGENT.net.log ('clawrun logs --net AGENT').

If an agent dies while it handles a message (a crash, a signal, an OOM kill
at its memory limit), the message's thread is told why and that the agent is
restarted and the message retried, or, after --max-attempts (5) attempts,
given up; the reason is also in serve's log and the agent's log.

serve runs until SIGINT or SIGTERM, then gives each agent end of input and a
few seconds to finish its message before stopping it. Progress goes to stderr.`,
		Example: `  clawrun serve                        # every agent with a slack section
  clawrun serve --secrets ~/.config/clawrun/slack.env helper
  clawrun serve --listen :3000         # Events API over HTTP instead of Socket Mode`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(g, f, args)
		},
	}
	cmd.Flags().StringVar(&f.listen, "listen", "", "receive the Events API over HTTP on ADDR (e.g. :3000) instead of Socket Mode")
	cmd.Flags().StringVar(&f.secrets, "secrets", "", "file with SLACK_* tokens and the agents' secrets as KEY=VALUE lines (mode 0600)")
	cmd.Flags().BoolVar(&f.debug, "debug", false, "log every message routed and answered")
	cmd.Flags().DurationVar(&f.restartDelay, "restart-delay", gateway.DefaultBackoffMin, "wait before restarting an agent that exited; doubles with every failure in a row (also paces retries of a failed post)")
	cmd.Flags().DurationVar(&f.restartDelayMax, "restart-delay-max", gateway.DefaultBackoffMax, "longest wait before restarting an agent")
	cmd.Flags().IntVar(&f.maxAttempts, "max-attempts", gateway.DefaultMaxAttempts, "how often a message is given to an agent that dies handling it before serve gives up on it")
	return cmd
}

func runServe(g *globals, f serveFlags, names []string) error {
	if err := f.check(); err != nil {
		return err
	}
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	path, err := policy.FindFile(g.config)
	if err != nil {
		return err
	}
	file, err := policy.Load(path, policyOptions(g)...)
	if err != nil {
		return err
	}
	plans, err := servedAgents(file, names)
	if err != nil {
		return err
	}
	for i, p := range plans {
		if plans[i], err = resolveImage(g, p); err != nil {
			return err
		}
	}

	cfg, err := slack.ConfigFromEnv(f.secrets)
	if err != nil {
		return err
	}
	secrets, err := secretValues(f.secrets, plans...)
	if err != nil {
		return err
	}
	hosts, err := egressHosts()
	if err != nil {
		return err
	}
	if cfg.APIURL == "" {
		cfg.APIURL = file.SlackAPIURL
	}
	cfg.ListenAddr = f.listen
	cfg.Logger = log
	if cfg.PostInterval < 0 {
		log.Warn("posts into a channel are not paced (" + slack.EnvPostInterval + "): real Slack answers bursts with 429s")
	}
	tr, err := slack.New(cfg)
	if err != nil {
		return err
	}

	rt, err := g.runtime()
	if err != nil {
		return err
	}
	// Every error a plan can have on this host surfaces now, not as an
	// agent that keeps failing to start.
	for _, p := range plans {
		if _, err := rt.Prepare(p, p.Name+"-check"); err != nil {
			return err
		}
	}
	store, err := gateway.OpenStore(filepath.Join(g.data, "gateway.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	runner := gateway.NewRuntimeRunner(rt)
	runner.Secrets, runner.EgressHosts = secrets, hosts
	agentNames := make([]string, len(plans))
	for i, p := range plans {
		agentNames[i] = p.Name
	}
	if removed, err := runner.RemoveStale(agentNames); err != nil {
		log.Warn("could not remove containers left by an earlier serve", "err", err)
	} else if len(removed) > 0 {
		log.Info("removed containers left by an earlier serve", "containers", strings.Join(removed, ","))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := tr.Connect(ctx); err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Options{
		Transport: tr, Runner: runner, Store: store, Agents: plans, Logger: log,
		BackoffMin: f.restartDelay, BackoffMax: f.restartDelayMax, MaxAttempts: f.maxAttempts,
	})
	if err != nil {
		return err
	}
	log.Info("serving", "agents", strings.Join(agentNames, ","), "store", store.Path(), "logs", runner.LogDir)
	err = gw.Run(ctx)
	if ctx.Err() != nil {
		log.Info("stopped")
	}
	return err
}

// check refuses restart settings the gateway would silently replace by
// its defaults.
func (f serveFlags) check() error {
	switch {
	case f.restartDelay <= 0:
		return fmt.Errorf("--restart-delay %s: give a positive duration such as 1s or 200ms", f.restartDelay)
	case f.restartDelayMax < f.restartDelay:
		return fmt.Errorf("--restart-delay-max %s is below --restart-delay %s: give at least %s", f.restartDelayMax, f.restartDelay, f.restartDelay)
	case f.maxAttempts < 1:
		return fmt.Errorf("--max-attempts %d: give at least 1 (1 gives up on a message at the first crash)", f.maxAttempts)
	}
	return nil
}

// servedAgents picks the named agents, or every agent with a slack route.
func servedAgents(f *policy.File, names []string) ([]*policy.Plan, error) {
	var plans []*policy.Plan
	if len(names) == 0 {
		for _, n := range f.Order {
			if p := f.Agents[n]; p.Slack != nil {
				plans = append(plans, p)
			}
		}
		if len(plans) == 0 {
			return nil, fmt.Errorf("no agent in %s has a slack section, so none can be reached from Slack: add one, e.g.\n  agents:\n    NAME:\n      slack:\n        channels: [C0123ABC]", f.Path)
		}
		return plans, nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		p, err := f.Agent(n)
		if err != nil {
			return nil, err
		}
		if p.Slack == nil {
			return nil, fmt.Errorf("agent %s in %s has no slack section, so no message can reach it: add slack: {channels: [C0123ABC]} or dm: true", n, f.Path)
		}
		plans = append(plans, p)
	}
	return plans, nil
}
