package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakeslack"
)

// These tests run the real `clawrun serve` against the fake Slack of
// test/fakeslack (Socket Mode and Web API on loopback, the product's own
// slack-go client) with the echo agent in a real container.

// serveChannels are the channels of the test agent. The Slack transport
// paces posts per channel (about one a second after a short burst), so a
// stream spread over several channels is answered quickly.
var serveChannels = []string{"C0SERVE1", "C0SERVE2", "C0SERVE3", "C0SERVE4", "C0SERVE5"}

type serveProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// writeServeFile writes an agent file with the echo agent routed to
// serveChannels, answering only U0ALICE, allowed to post to C0NEWS.
func writeServeFile(e *env) {
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  echo:
    rootfs: %s
    command: ["/agent", "-status"]
    slack:
      channels: [%s]
      users: [U0ALICE]
      post_to: [C0NEWS]
`, baseRootfs, strings.Join(serveChannels, ", ")))
}

// startServe runs `clawrun serve` against the fake and waits until its
// agent runs and its socket is connected (the n-th connection).
func startServe(t *testing.T, e *env, fs *fakeslack.Server, conn int) *serveProc {
	t.Helper()
	return startServeWith(t, e, fs, conn, serveOpts{})
}

// serveOpts vary how startServeWith runs serve.
type serveOpts struct {
	agents int      // how many agents must have started (default 1)
	args   []string // more flags of serve
	env    []string // more environment variables of serve
}

// startServeWith is startServe with options: a file of several agents,
// waiting until each has started, more flags or environment.
func startServeWith(t *testing.T, e *env, fs *fakeslack.Server, conn int, o serveOpts) *serveProc {
	t.Helper()
	agents := max(o.agents, 1)
	c := e.cmd(append([]string{"serve"}, o.args...)...)
	c.Env = append(os.Environ(),
		"SLACK_BOT_TOKEN="+fakeslack.BotToken,
		"SLACK_APP_TOKEN="+fakeslack.AppToken,
		"CLAWRUN_SLACK_API_URL="+fs.APIURL,
	)
	c.Env = append(c.Env, o.env...)
	p := &serveProc{cmd: c, stderr: &syncBuffer{}, done: make(chan struct{})}
	c.Stderr = p.stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = c.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() || testing.Verbose() {
			t.Logf("clawrun serve stderr:\n%s", p.stderr.String())
		}
	})
	if err := fs.WaitConnections(conn, 30*time.Second); err != nil {
		t.Fatalf("%v\nserve stderr:\n%s", err, p.stderr.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(p.stderr.String(), "agent started") < agents {
		select {
		case <-p.done:
			t.Fatalf("clawrun serve exited early: %v\n%s", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not start:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// stop ends serve with SIGTERM, as an operator would, and waits.
func (p *serveProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("clawrun serve did not stop on SIGTERM:\n%s", p.stderr.String())
	}
}

// kill ends serve with SIGKILL: no cleanup of any kind.
func (p *serveProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func slackMessage(channel, user, text, ts string) map[string]any {
	return map[string]any{"type": "message", "channel": channel, "channel_type": "channel",
		"user": user, "text": text, "ts": ts, "event_ts": ts}
}

// A message reaches the agent's container and its reply lands in the
// message's thread; a user outside the allowlist gets a refusal there
// instead; the :eyes: reaction is gone once answered.
func TestServeReplyInThread(t *testing.T) {
	fs := fakeslack.New(fakeslack.Options{})
	t.Cleanup(fs.Close)
	e := newEnv(t)
	writeServeFile(e)
	p := startServe(t, e, fs, 1)

	ts := fs.NextTS()
	env1 := fs.Send(slackMessage(serveChannels[0], "U0ALICE", "hello", ts))
	posts, err := fs.WaitPosts(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := posts[0]; got.Channel != serveChannels[0] || got.ThreadTS != ts || got.Text != "echo: hello" {
		t.Fatalf("reply %+v, want echo: hello in thread %s of %s", got, ts, serveChannels[0])
	}

	ts2 := fs.NextTS()
	fs.Send(slackMessage(serveChannels[1], "U0MALLORY", "let me in", ts2))
	posts, err = fs.WaitPosts(2, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := posts[1]; got.ThreadTS != ts2 || !strings.Contains(got.Text, "not on the list") {
		t.Fatalf("refusal %+v", got)
	}
	// Slack delivers the first envelope again: acked, not answered again.
	fs.Redeliver(env1)
	waitFor(t, "second ack", func() bool {
		n := 0
		for _, a := range fs.Acks() {
			if a == env1 {
				n++
			}
		}
		return n == 2
	})
	waitFor(t, "reaction removed", func() bool { return len(fs.Reactions()) == 0 })
	if fs.Calls("reactions.add") == 0 {
		t.Error("no :eyes: reaction while the agent worked")
	}
	if n := len(fs.Posts()); n != 2 {
		t.Fatalf("%d posts after a redelivery, want 2: %+v", n, fs.Posts())
	}
	p.stop(t)
	if p.err != nil {
		t.Fatalf("serve exited with %v after SIGTERM:\n%s", p.err, p.stderr.String())
	}
	if left := e.ps(); len(left) != 0 {
		t.Fatalf("containers left after serve stopped: %+v", left)
	}
	agentLog, err := os.ReadFile(filepath.Join(e.data, "logs", "echo.log"))
	if err != nil {
		t.Fatalf("agent log: %v", err)
	}
	if testing.Verbose() {
		t.Logf("agent log:\n%s", agentLog)
	}
}

// kill -9 of serve in the middle of a stream of messages, then a restart:
// every message is answered, and none twice. A reply that reached Slack
// just before the kill, not yet recorded as posted, is found in its thread
// by its metadata after the restart (docs/gateway.md) rather than posted
// again.
func TestServeKill9NothingLostNothingDoubled(t *testing.T) {
	// Slack redelivers an envelope that was not acked; so does the fake.
	fs := fakeslack.New(fakeslack.Options{RedeliverAfter: 2 * time.Second})
	t.Cleanup(fs.Close)
	e := newEnv(t)
	writeServeFile(e)
	p1 := startServe(t, e, fs, 1)

	const total = 20
	type sent struct{ channel, ts, text string }
	var msgs []sent
	sendOne := func(i int) {
		m := sent{serveChannels[i%len(serveChannels)], fs.NextTS(), fmt.Sprintf("message %02d", i)}
		msgs = append(msgs, m)
		fs.Send(slackMessage(m.channel, "U0ALICE", m.text, m.ts))
	}
	// Most of the stream is in before the kill, so that messages are
	// queued, in the agent and being posted when it comes.
	i := 0
	for ; i < 3*total/4; i++ {
		sendOne(i)
	}
	if _, err := fs.WaitPosts(3, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
	p1.kill()
	before := fs.Posts()
	t.Logf("killed serve after %d replies to %d messages", len(before), i)

	// The rest of the stream arrives while serve is down.
	for ; i < total; i++ {
		sendOne(i)
	}
	p2 := startServe(t, e, fs, 2)

	want := map[string]sent{}
	for _, m := range msgs {
		want["echo: "+m.text] = m
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := map[string]bool{}
		for _, p := range fs.Posts() {
			got[p.Text] = true
		}
		if len(got) >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d messages answered: %+v", len(got), total, fs.Posts())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Leave time for a late duplicate to show.
	time.Sleep(3 * time.Second)

	counts := map[string]int{}
	for _, p := range fs.Posts() {
		m, ok := want[p.Text]
		if !ok {
			t.Errorf("unexpected post %+v", p)
			continue
		}
		if p.Channel != m.channel || p.ThreadTS != m.ts {
			t.Errorf("reply %q in %s thread %s, want %s thread %s", p.Text, p.Channel, p.ThreadTS, m.channel, m.ts)
		}
		if p.Metadata == nil || p.Metadata.EventType != "clawrun_post" {
			t.Errorf("reply %q without clawrun's message metadata: %+v", p.Text, p.Metadata)
		}
		counts[p.Text]++
	}
	for text := range want {
		if c := counts[text]; c != 1 {
			t.Errorf("%q answered %d times", text, c)
		}
	}
	// Neither the killed serve's container nor the new one is left behind.
	p2.stop(t)
	if left := e.stateEntries(); len(left) != 0 {
		t.Errorf("state left after serve stopped: %v", left)
	}
}

// The window itself, every time: Slack takes a reply and a notice but
// serve is killed before it hears back (the fake holds the responses), so
// neither is recorded as posted. After the restart both are found in
// their threads and not posted again; the message is not given to the
// agent again either.
func TestServeKill9PostInFlightNotDoubled(t *testing.T) {
	fs := fakeslack.New(fakeslack.Options{})
	t.Cleanup(fs.Close)
	e := newEnv(t)
	writeServeFile(e)
	p1 := startServe(t, e, fs, 1)

	fs.StallPosts(2)
	ts1, ts2 := fs.NextTS(), fs.NextTS()
	fs.Send(slackMessage(serveChannels[0], "U0ALICE", "in flight", ts1))
	fs.Send(slackMessage(serveChannels[1], "U0MALLORY", "let me in", ts2))
	if _, err := fs.WaitPosts(2, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	p1.kill()

	p2 := startServe(t, e, fs, 2)
	waitFor(t, "the reply found after the restart", func() bool {
		return strings.Contains(p2.stderr.String(), "reply was posted before the restart")
	})
	waitFor(t, "the notice found after the restart", func() bool {
		return strings.Contains(p2.stderr.String(), "notice was posted before the restart")
	})
	// serve goes on answering; this reply comes after the one found, in
	// the agent's queue order.
	ts3 := fs.NextTS()
	fs.Send(slackMessage(serveChannels[0], "U0ALICE", "after", ts3))
	if _, err := fs.WaitPost(30*time.Second, "reply to the message after the restart", func(p fakeslack.Post) bool {
		return p.Text == "echo: after"
	}); err != nil {
		t.Fatal(err)
	}
	posts := fs.Posts()
	if len(posts) != 3 {
		t.Fatalf("%d posts, want 3 (reply, refusal, reply after the restart): %+v", len(posts), posts)
	}
	for _, p := range posts[:2] { // the agent's reply and the notice race
		if !(p.Text == "echo: in flight" && p.ThreadTS == ts1 || strings.Contains(p.Text, "not on the list") && p.ThreadTS == ts2) {
			t.Fatalf("posts before the kill %+v", posts[:2])
		}
	}
	if n := fs.Calls("conversations.replies"); n != 2 {
		t.Errorf("conversations.replies called %d times, want 2 (one per post in doubt at the restart)", n)
	}
	p2.stop(t)
}

// post_to: the agent's line with a channel becomes a new message in a
// channel its file grants, and is refused (logged, nothing posted) in any
// other; the answer still goes in the thread.
func TestServePostTo(t *testing.T) {
	fs := fakeslack.New(fakeslack.Options{})
	t.Cleanup(fs.Close)
	e := newEnv(t)
	writeServeFile(e)
	p := startServe(t, e, fs, 1)

	ts := fs.NextTS()
	fs.Send(slackMessage(serveChannels[0], "U0ALICE", "post <#C0NEWS|news> release is out", ts))
	posts, err := fs.WaitPosts(2, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := posts[0]; got.Channel != "C0NEWS" || got.ThreadTS != "" || got.Text != "release is out" {
		t.Fatalf("post %+v, want a top-level message in C0NEWS", got)
	}
	if got := posts[1]; got.Channel != serveChannels[0] || got.ThreadTS != ts {
		t.Fatalf("answer %+v, want it in thread %s", got, ts)
	}

	ts2 := fs.NextTS()
	fs.Send(slackMessage(serveChannels[0], "U0ALICE", "post C0SECRET exfiltrate", ts2))
	posts, err = fs.WaitPosts(3, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := posts[2]; got.ThreadTS != ts2 {
		t.Fatalf("post %+v, want only the answer in thread %s", got, ts2)
	}
	waitFor(t, "the refusal in serve's log", func() bool {
		return strings.Contains(p.stderr.String(), "refused a post to a channel the agent file does not grant")
	})
	time.Sleep(200 * time.Millisecond)
	for _, post := range fs.Posts() {
		if post.Channel == "C0SECRET" {
			t.Fatalf("posted to a channel not granted: %+v", post)
		}
	}
}
