package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakeslack"
)

// When an agent's container dies while it handles a message, `clawrun
// serve` tells the message's thread why (crash, OOM kill) and whether it
// retries, through the real binary, real containers and the fake Slack.
// The echo agent's -faults commands make it crash or hog memory on demand.

// noticeServe is serve with one echo agent, started with -faults, routed
// to channel, against a fake Slack.
type noticeServe struct {
	fs      *fakeslack.Server
	e       *env
	p       *serveProc
	channel string
}

// startNoticeServe starts it; extra holds more lines of the agent (e.g.
// limits).
func startNoticeServe(t *testing.T, agent, channel, extra string) *noticeServe {
	t.Helper()
	fs := fakeslack.New(fakeslack.Options{})
	t.Cleanup(fs.Close)
	e := newEnv(t)
	e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  %s:
    rootfs: %s
    command: ["/agent", "-faults"]
    slack:
      channels: [%s]
%s`, agent, baseRootfs, channel, extra))
	// Short restart delays: the notices, not the backoff, are under test.
	p := startServeWith(t, e, fs, 1, serveOpts{args: []string{"--restart-delay", "50ms", "--restart-delay-max", "200ms"}})
	return &noticeServe{fs: fs, e: e, p: p, channel: channel}
}

// send posts text as U0ALICE in the channel and returns its ts.
func (s *noticeServe) send(text string) string {
	ts := s.fs.NextTS()
	s.fs.Send(slackMessage(s.channel, "U0ALICE", text, ts))
	return ts
}

// inThread matches posts in the thread ts whose text contains text.
func inThread(ts, text string) func(fakeslack.Post) bool {
	return func(p fakeslack.Post) bool { return p.ThreadTS == ts && strings.Contains(p.Text, text) }
}

// A crash on a message: the thread is told, with the exit code, at every
// attempt, and then that serve gives up on the message (5 attempts, the
// default of --max-attempts); the agent is restarted and
// answers the next message. Root and rootless.
func TestServeNoticeCrash(t *testing.T) {
	const agent, channel = "noticecrash", "C0NOTICE1"
	s := startNoticeServe(t, agent, channel, "")
	fs, e, p := s.fs, s.e, s.p
	ts := s.send("crash 5")
	first := "Agent `" + agent + "` crashed (exit code 5) while handling this message; restarting it and retrying (attempt 2 of 5)."
	if _, err := fs.WaitPost(30*time.Second, "the first crash notice", inThread(ts, first)); err != nil {
		t.Fatalf("%v\nposts: %+v", err, fs.Posts())
	}
	giveUp := "Agent `" + agent + "` crashed (exit code 5) while handling this message (attempt 5 of 5); giving up on this message."
	if _, err := fs.WaitPost(90*time.Second, "the give-up notice", inThread(ts, giveUp)); err != nil {
		t.Fatalf("%v\nposts: %+v", err, fs.Posts())
	}
	// One notice per attempt, all in the thread, and no reply: the
	// notices are not the message's answer.
	var thread []string
	for _, post := range fs.Posts() {
		if post.ThreadTS == ts {
			if post.Channel != channel {
				t.Errorf("notice %+v in another channel", post)
			}
			thread = append(thread, post.Text)
		}
	}
	if len(thread) != 5 {
		t.Fatalf("thread of the crashing message has %d posts, want 4 retry notices and the give-up:\n%s",
			len(thread), strings.Join(thread, "\n"))
	}
	for i, text := range thread[:4] {
		if want := fmt.Sprintf("(attempt %d of 5)", i+2); !strings.Contains(text, want) || !strings.Contains(text, "crashed (exit code 5)") {
			t.Errorf("notice %d %q, want a crash notice with %s", i+1, text, want)
		}
	}

	// The agent was restarted and answers again.
	ts2 := s.send("ping")
	if _, err := fs.WaitPost(30*time.Second, "pong", inThread(ts2, "pong")); err != nil {
		t.Fatalf("%v\nposts: %+v", err, fs.Posts())
	}
	// serve's log and the container log say what happened.
	if log := p.stderr.String(); !strings.Contains(log, `reason="crashed (exit code 5)"`) ||
		!strings.Contains(log, "gave up on a message after repeated agent failures") {
		t.Errorf("serve's log lacks the crash reason or the give-up:\n%s", log)
	}
	agentLog, err := os.ReadFile(filepath.Join(e.data, "logs", agent+".log"))
	if err != nil || !strings.Contains(string(agentLog), "exited (5) (code 5)") {
		t.Errorf("container log lacks the exit (%v):\n%s", err, agentLog)
	}
}

// As root (a memory cgroup on this v1 host), an agent that allocates past
// its 32M limit is OOM-killed inside its cgroup; the thread is told that it
// ran out of memory, with the limit, and serve goes on.
func TestServeNoticeOOM(t *testing.T) {
	if !isRoot() {
		t.Skip("rootless on this cgroup v1 host there is no cgroup, so no memory limit of its own and no OOM counter to read (cgroup v2 with delegation has both)")
	}
	const agent = "noticeoom"
	s := startNoticeServe(t, agent, "C0NOTICE2", "    limits: {memory: 32M}\n")
	fs, e, p := s.fs, s.e, s.p
	ts := s.send("oom")
	want := "Agent `" + agent + "` ran out of memory (limit 32MiB) while handling this message; restarting it and retrying (attempt 2 of 5)."
	if _, err := fs.WaitPost(60*time.Second, "the out-of-memory notice", inThread(ts, want)); err != nil {
		t.Fatalf("%v\nposts: %+v\nserve log:\n%s", err, fs.Posts(), p.stderr.String())
	}
	if log := p.stderr.String(); !strings.Contains(log, `reason="ran out of memory (limit 32MiB)"`) {
		t.Errorf("serve's log lacks the OOM reason:\n%s", log)
	}
	agentLog, err := os.ReadFile(filepath.Join(e.data, "logs", agent+".log"))
	if err != nil || !strings.Contains(string(agentLog), " oom-killed (code ") {
		t.Errorf("container log lacks the OOM kill (%v):\n%s", err, agentLog)
	}
	// serve survived the kill of its agent and stops cleanly.
	p.stop(t)
	if p.err != nil {
		t.Fatalf("serve exited with %v:\n%s", p.err, p.stderr.String())
	}
}
