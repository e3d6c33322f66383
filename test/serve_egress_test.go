package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakeslack"
)

// `clawrun serve` end to end with an egress grant: Slack messages (the fake
// Slack of test/fakeslack) make the echo agent, in its container, fetch
// through the egress proxy that serve's runner starts for it. The base-URL
// secret's port reaches the TLS test server with the secret injected while
// the agent itself holds only the placeholder; an allowed host is reached
// by name; a host outside the allowlist gets the proxy's refusal, which the
// agent posts back. The secret's value is in no post.
func TestServeEgress(t *testing.T) {
	f := newEgressFixture(t)
	fs := fakeslack.New(fakeslack.Options{})
	t.Cleanup(fs.Close)
	const channel = "C0EGRESS"
	p1, p2 := f.port(f.plain), f.port(f.tlsSrv)
	f.e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  hc-fetcher:
    rootfs: %s
    command: ["/agent"]
    network:
      egress: ["allowed.example:%d", "example.com:%d"]
    secrets:
      - {name: API_KEY, host: "example.com:%d", header: x-api-key, base_url_env: API_BASE_URL}
    slack:
      channels: [%s]
      users: [U0ALICE]
`, baseRootfs, p1, p2, p2, channel))
	startServeWith(t, f.e, fs, 1, serveOpts{env: f.extraEnv})

	ask := func(n int, text string) string {
		t.Helper()
		ts := fs.NextTS()
		fs.Send(slackMessage(channel, "U0ALICE", text, ts))
		posts, err := fs.WaitPosts(n, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got := posts[n-1]
		if got.Channel != channel || got.ThreadTS != ts {
			t.Fatalf("reply %+v, want it in thread %s of %s", got, ts, channel)
		}
		t.Logf("%s -> %s", text, got.Text)
		return got.Text
	}
	// Base-URL mode: the agent expands its own $API_KEY, which is the
	// placeholder; the upstream gets the real key from the proxy.
	got := ask(1, "fetch $API_BASE_URL/v1/messages?agent_key=$API_KEY")
	for _, want := range []string{
		"fetch http://127.0.0.1:3129/v1/messages", "200 OK",
		"upstream saw GET /v1/messages with the secret injected",
		"query agent_key=clawrun-placeholder-API_KEY",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("reply %q lacks %q", got, want)
		}
	}
	// Slack sends a typed URL as <url>; plain HTTP through HTTP_PROXY.
	got = ask(2, fmt.Sprintf("fetch <http://allowed.example:%d/>", p1))
	if want := fmt.Sprintf("fetch http://allowed.example:%d/: 200 OK: %s", p1, f.plainMsg); got != want {
		t.Errorf("allowed host: reply %q, want %q", got, want)
	}
	got = ask(3, fmt.Sprintf("fetch http://refused.example:%d/", p1))
	if want := fmt.Sprintf("403 Forbidden: clawrun egress: refused.example:%d is not in this agent's egress allowlist", p1); !strings.Contains(got, want) {
		t.Errorf("refused host: reply %q lacks %q", got, want)
	}
	for _, p := range fs.Posts() {
		if strings.Contains(p.Text, f.secret) {
			t.Errorf("a post holds the secret's value: %+v", p)
		}
	}
	f.mu.Lock()
	keys := append([]string(nil), f.gotKeys...)
	f.mu.Unlock()
	if len(keys) != 1 || keys[0] != f.secret {
		t.Errorf("x-api-key headers at the upstream = %d (want the secret once)", len(keys))
	}
	// serve keeps the agent's connection log under the agent's name.
	netlog := f.run("logs", "--net", "hc-fetcher")
	for _, want := range []string{"base_url GET example.com", "secrets=API_KEY", fmt.Sprintf("ALLOW http GET allowed.example:%d", p1), fmt.Sprintf("DENY  http GET refused.example:%d", p1)} {
		if !strings.Contains(netlog.stdout, want) {
			t.Errorf("logs --net lacks %q:\n%s", want, netlog)
		}
	}
}
