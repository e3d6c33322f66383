package slack

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// BotScopes are exactly the bot token scopes clawrun uses, each for one
// reason:
var BotScopes = []string{
	"app_mentions:read", // app_mention events
	// The four history scopes also let serve read a thread back after a
	// crash (conversations.replies / conversations.history, keyed.go) to
	// find a reply it posted but had not recorded, instead of posting it
	// twice.
	"channels:history", // message.channels: messages in public channels the bot is in
	"groups:history",   // message.groups: private channels the bot was invited to
	"im:history",       // message.im: direct messages to the bot
	"mpim:history",     // message.mpim: group direct messages including the bot
	"chat:write",       // chat.postMessage: replies
	"reactions:write",  // reactions.add/remove: :eyes: while an agent works
}

// BotEvents are the event subscriptions clawrun handles.
var BotEvents = []string{
	"app_mention",
	"message.channels",
	"message.groups",
	"message.im",
	"message.mpim",
}

// ManifestOptions shape the app manifest.
type ManifestOptions struct {
	Name string // app and bot display name; default "clawrun"
	// RequestURL, when set, subscribes events over HTTP at this URL (the
	// Events API, `serve --listen`) instead of Socket Mode.
	RequestURL string
}

// Manifest returns a Slack app manifest (YAML) for clawrun: a bot user that
// can be messaged directly, the scopes in BotScopes, the events in BotEvents,
// and Socket Mode unless a request URL is given.
func Manifest(o ManifestOptions) string {
	name := o.Name
	if name == "" {
		name = "clawrun"
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Slack app manifest for clawrun: api.slack.com/apps → Create New App → From a manifest.")
	w("display_information:")
	w("  name: %s", yamlString(name))
	w("  description: AI agents in rootless containers, run by clawrun")
	w("features:")
	w("  app_home:")
	w("    # Lets people send the bot direct messages.")
	w("    messages_tab_enabled: true")
	w("    messages_tab_read_only_enabled: false")
	w("  bot_user:")
	w("    display_name: %s", yamlString(name))
	w("    always_online: true")
	w("oauth_config:")
	w("  scopes:")
	w("    bot:")
	for _, s := range BotScopes {
		w("      - %s", s)
	}
	w("settings:")
	w("  event_subscriptions:")
	if o.RequestURL != "" {
		w("    request_url: %s", yamlString(o.RequestURL))
	}
	w("    bot_events:")
	for _, e := range BotEvents {
		w("      - %s", e)
	}
	w("  interactivity:")
	w("    is_enabled: false")
	w("  org_deploy_enabled: false")
	w("  socket_mode_enabled: %t", o.RequestURL == "")
	w("  token_rotation_enabled: false")
	return b.String()
}

// yamlString quotes s as a YAML double-quoted scalar (JSON string syntax is
// valid YAML) when it is not a plain word.
func yamlString(s string) string {
	plain := s != ""
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r == '/' || r == ' ' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			plain = false
		}
	}
	if plain && strings.TrimSpace(s) == s {
		return s
	}
	return fmt.Sprintf("%q", s)
}

// CheckReport is what `clawrun slack check` found out about the tokens.
type CheckReport struct {
	Team, TeamID, URL string
	BotUser, BotID    string // the bot's user id and bot id
	BotName           string
	// Scopes granted to the bot token, from auth.test's X-OAuth-Scopes
	// header; ScopesKnown is false when the response had none (e.g. a proxy
	// in between dropped it).
	Scopes      []string
	ScopesKnown bool
	Missing     []string // BotScopes not granted
	// AppToken is nil when apps.connections.open accepted the app-level
	// token (Socket Mode only; no connection is made).
	AppToken error
	Mode     string // "socket mode" or "events API over HTTP"
}

// Check verifies the bot token with auth.test and reports its scopes
// against BotScopes; in Socket Mode it also asks apps.connections.open
// whether the app-level token works. An error means the bot token failed.
func (t *Transport) Check(ctx context.Context) (*CheckReport, error) {
	if err := t.Connect(ctx); err != nil {
		return nil, err
	}
	t.mu.Lock()
	a := t.auth
	t.mu.Unlock()
	r := &CheckReport{Team: a.Team, TeamID: a.TeamID, URL: a.URL, BotUser: a.UserID, BotID: a.BotID, BotName: a.User}
	if h := a.Header.Get("X-OAuth-Scopes"); h != "" {
		r.ScopesKnown = true
		for s := range strings.SplitSeq(h, ",") {
			if s = strings.TrimSpace(s); s != "" {
				r.Scopes = append(r.Scopes, s)
			}
		}
		for _, s := range BotScopes {
			if !slices.Contains(r.Scopes, s) {
				r.Missing = append(r.Missing, s)
			}
		}
	}
	if t.cfg.ListenAddr != "" {
		r.Mode = "events API over HTTP"
		return r, nil
	}
	r.Mode = "socket mode"
	app := t.appClient()
	r.AppToken = t.retry(ctx, "apps.connections.open", func() error {
		_, _, err := app.StartSocketModeContext(ctx)
		return err
	})
	return r, nil
}
