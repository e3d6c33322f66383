package gateway

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/policy"
)

// These tests cover what the chat is told when an agent's process ends
// while it handles a message. The fake runner stands in for the container:
// an OOM kill or a signal is what the real runner reads from the kernel
// (runtime.ExitStatus), which a unit test cannot provoke; the e2e suite
// does that for real (test/serve_notice_test.go).

// splitNotices separates the gateway's notices ("Agent `…") from the
// agents' replies.
func splitNotices(ps []post) (notices, replies []post) {
	for _, p := range ps {
		if strings.HasPrefix(p.Text, "Agent `") {
			notices = append(notices, p)
		} else {
			replies = append(replies, p)
		}
	}
	return notices, replies
}

// failOnce is an agent that ends as die says on its first run when it is
// given text, and answers "ok TEXT" otherwise.
func failOnce(text string, die Exit) agentFunc {
	return func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			if a.run == 1 && m.Text == text {
				return a.Die(die)
			}
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "ok " + m.Text})
		}
	}
}

// An OOM kill while a message is in flight: its thread is told, with the
// agent's memory limit, that the agent is restarted and the message
// retried; the retry's answer still comes, and the notice did not count
// as the reply.
func TestNoticeOOMKill(t *testing.T) {
	log := &postLog{}
	p := plan("bot")
	p.Limits.MemoryBytes = 256 << 20
	runner := newProcRunner(map[string]agentFunc{"bot": failOnce("hog", Exit{Code: 137, Signal: "SIGKILL", OOMKilled: true})})
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), runner, []*policy.Plan{p},
		func(o *Options) { o.MaxAttempts = 3 })
	in := msg(1, "hog")
	h.send(in)
	waitFor(t, "notice and reply", func() bool { return len(log.Posts()) == 2 })
	notices, replies := splitNotices(log.Posts())
	want := post{"C1", in.Message.Thread,
		"Agent `bot` ran out of memory (limit 256MiB) while handling this message; restarting it and retrying (attempt 2 of 3)."}
	if len(notices) != 1 || notices[0] != want {
		t.Fatalf("notices %+v, want %+v", notices, want)
	}
	if len(replies) != 1 || replies[0].Text != "ok hog" || replies[0].Thread != in.Message.Thread {
		t.Fatalf("replies %+v, want ok hog in the thread", replies)
	}
	waitFor(t, "message done", func() bool { n, _ := h.store.QueueLen("bot"); return n == 0 })
}

// A crash (non-zero exit) and a kill by a signal are told apart; a direct
// message gets its notice in the same conversation.
func TestNoticeCrashAndSignal(t *testing.T) {
	for _, tc := range []struct {
		name string
		die  Exit
		want string
	}{
		{"crash", Exit{Code: 3}, "Agent `a` crashed (exit code 3) while handling this message; restarting it and retrying (attempt 2 of 5)."},
		{"signal", Exit{Code: 139, Signal: "SIGSEGV"}, "Agent `a` was killed by SIGSEGV while handling this message; restarting it and retrying (attempt 2 of 5)."},
		{"exit 0", Exit{}, "Agent `a` exited without answering while handling this message; restarting it and retrying (attempt 2 of 5)."},
		// OOM-killed without a memory limit of its own (e.g. a parent cgroup's).
		{"oom without limit", Exit{Code: 137, Signal: "SIGKILL", OOMKilled: true}, "Agent `a` ran out of memory while handling this message; restarting it and retrying (attempt 2 of 5)."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &postLog{}
			h := start(t, openStore(t, t.TempDir()), newMemTransport(log),
				newProcRunner(map[string]agentFunc{"a": failOnce("boom", tc.die)}), []*policy.Plan{plan("a")})
			// A DM has no thread of its own; the gateway answers it in the
			// conversation, as it answers the reply.
			dm := chat.Inbound{DM: true, Message: chat.Message{ID: "D1:1700000000.000001", Channel: "D1", User: "U1",
				Text: "boom", TS: "1700000000.000001"}}
			h.send(dm)
			waitFor(t, "notice and reply", func() bool { return len(log.Posts()) == 2 })
			notices, replies := splitNotices(log.Posts())
			if len(notices) != 1 || notices[0].Text != tc.want || notices[0].Channel != "D1" {
				t.Fatalf("notices %+v, want %q in D1", notices, tc.want)
			}
			if len(replies) != 1 || replies[0].Text != "ok boom" || replies[0].Channel != "D1" ||
				replies[0].Thread != notices[0].Thread {
				t.Fatalf("reply %+v, want ok boom where the notice went (%+v)", replies, notices[0])
			}
		})
	}
}

// Serve's own stop (a shutdown while a message is in flight) is no
// failure of the agent: no notice, no attempt counted, the message waits.
func TestNoNoticeOnShutdown(t *testing.T) {
	log := &postLog{}
	got := make(chan struct{}, 1)
	// Holds the message without answering until it is stopped; then it
	// dies as a container stopped with SIGTERM would.
	holder := func(a *fakeAgent) int {
		if _, ok := a.Next(); ok {
			got <- struct{}{}
		}
		<-a.killed
		return a.Die(Exit{Code: 143, Signal: "SIGTERM"})
	}
	store := openStore(t, t.TempDir())
	h := start(t, store, newMemTransport(log), newProcRunner(map[string]agentFunc{"a": holder}), []*policy.Plan{plan("a")},
		func(o *Options) { o.StopTimeout = 50 * time.Millisecond })
	h.send(msg(1, "slow"))
	<-got
	h.stop()
	if ps := log.Posts(); len(ps) != 0 {
		t.Fatalf("posts after shutdown %+v, want none", ps)
	}
	pending, err := store.Pending("a")
	if err != nil || len(pending) != 1 || pending[0].Attempts != 0 {
		t.Fatalf("pending %+v (%v), want the message with no attempt counted", pending, err)
	}
	if items, _ := store.Outbox(); len(items) != 0 {
		t.Fatalf("outbox %+v, want empty", items)
	}
}

// A restart of serve repeats no notice: the attempt and its notice are one
// store record, so a notice already posted is not posted again, and one
// still in the outbox at the crash is posted once after it.
func TestNoticeNotRepeatedAfterReload(t *testing.T) {
	for _, postedBeforeCrash := range []bool{true, false} {
		name := "posted before the crash"
		if !postedBeforeCrash {
			name = "in the outbox at the crash"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			log := &postLog{}
			crashes := func(a *fakeAgent) int {
				if _, ok := a.Next(); !ok {
					return 0
				}
				return 3
			}
			store1 := openStore(t, dir)
			tr1 := newMemTransport(log)
			if !postedBeforeCrash {
				tr1.crashed.Store(true) // nothing reaches Slack any more
			}
			// A long backoff: the crash comes before the agent's restart.
			h1 := start(t, store1, tr1, newProcRunner(map[string]agentFunc{"a": crashes}), []*policy.Plan{plan("a")},
				func(o *Options) { o.BackoffMin, o.BackoffMax = time.Hour, time.Hour })
			in := msg(1, "boom")
			h1.send(in)
			waitFor(t, "the attempt recorded", func() bool {
				p, _ := store1.Pending("a")
				return len(p) == 1 && p[0].Attempts == 1
			})
			if postedBeforeCrash {
				waitFor(t, "notice posted", func() bool { items, _ := store1.Outbox(); return len(items) == 0 })
			}
			if err := store1.Close(); err != nil { // the crash: nothing after is recorded
				t.Fatal(err)
			}
			h1.stop()

			store2 := openStore(t, dir)
			defer store2.Close()
			h2 := start(t, store2, newMemTransport(log), newProcRunner(map[string]agentFunc{"a": echo}), []*policy.Plan{plan("a")})
			h2.send(in) // the platform redelivers: a duplicate
			waitFor(t, "reply", func() bool { _, r := splitNotices(log.Posts()); return len(r) == 1 })
			waitFor(t, "outbox empty", func() bool { items, _ := store2.Outbox(); return len(items) == 0 })
			h2.stop()
			notices, replies := splitNotices(log.Posts())
			want := "Agent `a` crashed (exit code 3) while handling this message; restarting it and retrying (attempt 2 of 5)."
			if got := texts(notices); !slices.Equal(got, []string{want}) {
				t.Fatalf("notices %q, want exactly one %q", got, want)
			}
			if replies[0].Text != "echo: boom" {
				t.Fatalf("reply %+v", replies[0])
			}
		})
	}
}
