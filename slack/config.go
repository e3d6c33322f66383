package slack

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	goslack "github.com/slack-go/slack"

	"github.com/clawrun/clawrun/internal/secretfile"
)

// Environment variables read by ConfigFromEnv.
const (
	EnvBotToken      = "SLACK_BOT_TOKEN"
	EnvAppToken      = "SLACK_APP_TOKEN"
	EnvSigningSecret = "SLACK_SIGNING_SECRET"
	EnvAPIURL        = "CLAWRUN_SLACK_API_URL"
	// EnvPostInterval overrides the pace of posts into one channel: a Go
	// duration ("500ms"), or "0" / "off" for no pacing (a fake Slack in
	// benchmarks; real Slack answers a burst with 429s).
	EnvPostInterval = "CLAWRUN_SLACK_POST_INTERVAL"
)

// DefaultPostInterval is the pace of posts into one channel. Slack allows
// about one chat.postMessage per second per channel, with short bursts.
const DefaultPostInterval = time.Second

// Config is what the transport needs to reach Slack. Its tokens go to
// Slack's API and nowhere else: Config formats and logs with them redacted.
type Config struct {
	BotToken      string // xoxb-…: Web API calls (auth.test, chat.postMessage, reactions.*)
	AppToken      string // xapp-…: Socket Mode (apps.connections.open)
	SigningSecret string // Events API over HTTP: request signature check
	// APIURL is the Web API base URL (slack-go's OptionAPIURL, ending in
	// "/"); empty means Slack's. Socket Mode follows whatever URL
	// apps.connections.open returns from there.
	APIURL string
	// ListenAddr, when set, receives the Events API over HTTP on this
	// address instead of connecting with Socket Mode.
	ListenAddr string
	// PostInterval paces posts into one channel (a burst of a few, then one
	// per interval); 0 means DefaultPostInterval, negative turns pacing off
	// (benchmarks against a fake Slack).
	PostInterval time.Duration
	Logger       *slog.Logger
}

// String keeps tokens out of anything that prints a Config with %v.
func (c Config) String() string {
	return fmt.Sprintf("slack.Config{BotToken:%s AppToken:%s SigningSecret:%s APIURL:%q ListenAddr:%q}",
		redact(c.BotToken), redact(c.AppToken), redact(c.SigningSecret), c.APIURL, c.ListenAddr)
}

// GoString covers %#v, which would otherwise bypass String.
func (c Config) GoString() string { return c.String() }

// LogValue keeps tokens out of structured logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("bot_token", redact(c.BotToken)),
		slog.String("app_token", redact(c.AppToken)),
		slog.String("signing_secret", redact(c.SigningSecret)),
		slog.String("api_url", c.APIURL),
		slog.String("listen", c.ListenAddr),
	)
}

// redact shows only whether a secret is set and, for tokens, its kind
// (xoxb, xapp), which is what a user needs to spot a swapped token.
func redact(s string) string {
	if s == "" {
		return "(unset)"
	}
	if kind, _, ok := strings.Cut(s, "-"); ok && strings.HasPrefix(kind, "x") && len(kind) <= 5 {
		return kind + "-…"
	}
	return "(set)"
}

// ConfigFromEnv reads the tokens from the environment. If secretsFile is
// not empty, it first reads KEY=VALUE lines from it (blank lines, # comments
// and an "export " prefix are allowed); a variable set in the environment
// overrides the file. The file is refused unless it is a regular file owned
// by the user and readable by nobody else (mode 0600 or stricter).
func ConfigFromEnv(secretsFile string) (Config, error) {
	vals := map[string]string{}
	if secretsFile != "" {
		var err error
		if vals, err = readSecretsFile(secretsFile); err != nil {
			return Config{}, err
		}
	}
	for _, k := range []string{EnvBotToken, EnvAppToken, EnvSigningSecret, EnvAPIURL} {
		if v, ok := os.LookupEnv(k); ok && v != "" {
			vals[k] = v
		}
	}
	interval, err := parsePostInterval(os.Getenv(EnvPostInterval))
	if err != nil {
		return Config{}, err
	}
	return Config{
		BotToken:      vals[EnvBotToken],
		AppToken:      vals[EnvAppToken],
		SigningSecret: vals[EnvSigningSecret],
		APIURL:        vals[EnvAPIURL],
		PostInterval:  interval,
	}, nil
}

// parsePostInterval reads EnvPostInterval into Config.PostInterval: empty
// is the default (0), "0" or "off" turns pacing off (negative).
func parsePostInterval(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	switch v {
	case "":
		return 0, nil
	case "0", "off":
		return -1, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 1s or 500ms, or off for no pacing", EnvPostInterval, v)
	}
	if d == 0 {
		return -1, nil
	}
	return d, nil
}

func readSecretsFile(path string) (map[string]string, error) {
	return secretfile.Read(path, EnvBotToken+"=xoxb-…")
}

// validate reports what is missing for the chosen mode, naming the variable
// to set, never a value.
func (c *Config) validate() error {
	var errs []error
	switch {
	case c.BotToken == "":
		errs = append(errs, fmt.Errorf("%s is not set: use the app's Bot User OAuth Token (xoxb-…, OAuth & Permissions page)", EnvBotToken))
	case !strings.HasPrefix(c.BotToken, "xoxb-"):
		errs = append(errs, fmt.Errorf("%s is a %s token, not a bot token: use the Bot User OAuth Token (xoxb-…)", EnvBotToken, redact(c.BotToken)))
	}
	if c.ListenAddr == "" {
		switch {
		case c.AppToken == "":
			errs = append(errs, fmt.Errorf("%s is not set: Socket Mode needs an app-level token with connections:write (xapp-…, Basic Information page), or listen for the Events API over HTTP instead", EnvAppToken))
		case !strings.HasPrefix(c.AppToken, "xapp-"):
			errs = append(errs, fmt.Errorf("%s is a %s token, not an app-level token (xapp-…)", EnvAppToken, redact(c.AppToken)))
		}
	} else if c.SigningSecret == "" {
		errs = append(errs, fmt.Errorf("%s is not set: the Events API over HTTP needs the app's Signing Secret (Basic Information page) to verify requests", EnvSigningSecret))
	}
	if c.APIURL == "" {
		c.APIURL = goslack.APIURL
	} else {
		u, err := url.Parse(c.APIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q is not an http(s) URL: use e.g. https://slack.com/api/", EnvAPIURL, c.APIURL))
		} else if !strings.HasSuffix(c.APIURL, "/") {
			c.APIURL += "/"
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("slack configuration: %w", errors.Join(errs...))
	}
	return nil
}
