package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/test/fakeslack"
)

func TestSlackCheck(t *testing.T) {
	fs := fakeslack.New(fakeslack.Options{Scopes: []string{"chat:write", "channels:history"}})
	defer fs.Close()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "clawrun.yaml")
	agents := `version: 1
agents:
  helper:
    rootfs: ./rootfs
    command: ["/agent"]
    slack:
      channels: [C0123ABC]
      dm: true
      users: [U0123ABC]
  quiet:
    rootfs: ./rootfs
    command: ["/agent"]
`
	if err := os.WriteFile(file, []byte(agents), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLACK_BOT_TOKEN", fakeslack.BotToken)
	t.Setenv("SLACK_APP_TOKEN", fakeslack.AppToken)
	t.Setenv("SLACK_SIGNING_SECRET", "")
	t.Setenv("CLAWRUN_SLACK_API_URL", fs.APIURL)

	check := func() (string, error) {
		var out bytes.Buffer
		cmd := newRootCmd()
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"--config", file, "--root", filepath.Join(dir, "state"), "--data", filepath.Join(dir, "data"), "slack", "check"})
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := check()
	t.Log("\n" + out)
	if err == nil {
		t.Fatalf("check passed with missing scopes:\n%s", out)
	}
	for _, want := range []string{"bot token   ok", "missing app_mentions:read, groups:history", "app token   ok",
		"  helper    channels C0123ABC; direct messages; users U0123ABC", "  quiet     not reachable"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, fakeslack.BotToken) || strings.Contains(out, fakeslack.AppToken) {
		t.Fatalf("check printed a token:\n%s", out)
	}
}
