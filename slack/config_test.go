package slack_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clawrun/clawrun/slack"
)

func clearEnv(t *testing.T) {
	for _, k := range []string{slack.EnvBotToken, slack.EnvAppToken, slack.EnvSigningSecret, slack.EnvAPIURL, slack.EnvPostInterval} {
		t.Setenv(k, "")
	}
}

func TestConfigFromEnv(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "slack.env")
	content := "# clawrun\nexport SLACK_BOT_TOKEN=xoxb-from-file\nSLACK_APP_TOKEN = \"xapp-from-file\"\n\nOTHER=x\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(slack.EnvAppToken, "xapp-from-env")
	t.Setenv(slack.EnvAPIURL, "http://127.0.0.1:1/api")
	cfg, err := slack.ConfigFromEnv(file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BotToken != "xoxb-from-file" || cfg.AppToken != "xapp-from-env" || cfg.APIURL != "http://127.0.0.1:1/api" {
		t.Fatalf("config = %#v / %s %s", cfg, cfg.BotToken, cfg.AppToken)
	}
	if _, err := slack.New(cfg); err != nil {
		t.Fatal(err)
	}

	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := slack.ConfigFromEnv(file); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable secrets file: %v, want refusal", err)
	}

	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("xoxb-pasted-alone\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = slack.ConfigFromEnv(bad)
	if err == nil || !strings.Contains(err.Error(), "line 1") || strings.Contains(err.Error(), "pasted") {
		t.Fatalf("malformed line: %v, want an error naming the line, not its content", err)
	}

	if os.Getuid() == 0 {
		if err := os.Chown(bad, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := slack.ConfigFromEnv(bad); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Fatalf("file of another user: %v, want refusal", err)
		}
	}
	if _, err := slack.ConfigFromEnv(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing secrets file accepted")
	}
}

func TestConfigPostInterval(t *testing.T) {
	clearEnv(t)
	for _, c := range []struct {
		env  string
		want time.Duration
		bad  bool
	}{
		{"", 0, false},
		{"off", -1, false},
		{"0", -1, false},
		{"0s", -1, false},
		{"250ms", 250 * time.Millisecond, false},
		{"fast", 0, true},
		{"-1s", 0, true},
	} {
		t.Setenv(slack.EnvPostInterval, c.env)
		cfg, err := slack.ConfigFromEnv("")
		if c.bad {
			if err == nil || !strings.Contains(err.Error(), slack.EnvPostInterval) {
				t.Errorf("%s=%q: err %v, want an error naming the variable", slack.EnvPostInterval, c.env, err)
			}
			continue
		}
		if err != nil || cfg.PostInterval != c.want {
			t.Errorf("%s=%q: interval %v, err %v; want %v", slack.EnvPostInterval, c.env, cfg.PostInterval, err, c.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	cases := []struct {
		name string
		cfg  slack.Config
		want string // "" = valid
	}{
		{"socket mode", slack.Config{BotToken: "xoxb-1", AppToken: "xapp-1"}, ""},
		{"no bot token", slack.Config{AppToken: "xapp-1"}, slack.EnvBotToken + " is not set"},
		{"user token", slack.Config{BotToken: "xoxp-1", AppToken: "xapp-1"}, "xoxp-… token, not a bot token"},
		{"no app token", slack.Config{BotToken: "xoxb-1"}, slack.EnvAppToken + " is not set"},
		{"swapped", slack.Config{BotToken: "xoxb-1", AppToken: "xoxb-2"}, "not an app-level token"},
		{"http", slack.Config{BotToken: "xoxb-1", SigningSecret: "s", ListenAddr: ":3000"}, ""},
		{"http no secret", slack.Config{BotToken: "xoxb-1", ListenAddr: ":3000"}, slack.EnvSigningSecret + " is not set"},
		{"bad url", slack.Config{BotToken: "xoxb-1", AppToken: "xapp-1", APIURL: "slack.example"}, "not an http(s) URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := slack.New(tc.cfg)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("New = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "xoxb-2") {
				t.Fatalf("error shows a token: %v", err)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	cases := []struct {
		name  string
		text  string
		limit int
		want  []string
	}{
		{"short", "hello", 20, []string{"hello"}},
		{"blank", " \n", 20, nil},
		{"lines", "aaaa bbbb\ncccc dddd\neeee", 16, []string{"aaaa bbbb", "cccc dddd\neeee"}},
		{"words", "aaaa bbbb cccc dddd eeee", 16, []string{"aaaa bbbb", "cccc dddd eeee"}},
		{"one long word", "abcdefghijklmnopqrstuvwxyz", 16, []string{"abcdefghijkl", "mnopqrstuvwxyz"}},
		{"code block", "```\nline1\nline2\nline3\n```", 20, []string{"```\nline1\nline2\n```", "```\nline3\n```"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := slack.Split(tc.text, tc.limit)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Fatalf("Split(%q, %d) = %q, want %q", tc.text, tc.limit, got, tc.want)
			}
			for _, p := range got {
				if len([]rune(p)) > tc.limit {
					t.Fatalf("part %q over %d", p, tc.limit)
				}
			}
		})
	}
}

func TestManifest(t *testing.T) {
	var m struct {
		Features struct {
			AppHome struct {
				Messages bool `yaml:"messages_tab_enabled"`
			} `yaml:"app_home"`
		}
		OAuth struct {
			Scopes struct{ Bot []string } `yaml:"scopes"`
		} `yaml:"oauth_config"`
		Settings struct {
			Events struct {
				RequestURL string   `yaml:"request_url"`
				Bot        []string `yaml:"bot_events"`
			} `yaml:"event_subscriptions"`
			SocketMode bool `yaml:"socket_mode_enabled"`
		}
		Display struct{ Name string } `yaml:"display_information"`
	}
	if err := yaml.Unmarshal([]byte(slack.Manifest(slack.ManifestOptions{Name: "team: bot"})), &m); err != nil {
		t.Fatal(err)
	}
	if !m.Settings.SocketMode || m.Settings.Events.RequestURL != "" || !m.Features.AppHome.Messages || m.Display.Name != "team: bot" {
		t.Fatalf("manifest = %+v", m)
	}
	if strings.Join(m.OAuth.Scopes.Bot, " ") != strings.Join(slack.BotScopes, " ") ||
		strings.Join(m.Settings.Events.Bot, " ") != strings.Join(slack.BotEvents, " ") {
		t.Fatalf("scopes %v events %v", m.OAuth.Scopes.Bot, m.Settings.Events.Bot)
	}
	m.Settings.SocketMode = true
	if err := yaml.Unmarshal([]byte(slack.Manifest(slack.ManifestOptions{RequestURL: "https://bots.example.com/slack/events"})), &m); err != nil {
		t.Fatal(err)
	}
	if m.Settings.SocketMode || m.Settings.Events.RequestURL != "https://bots.example.com/slack/events" {
		t.Fatalf("HTTP manifest = %+v", m.Settings)
	}
}
