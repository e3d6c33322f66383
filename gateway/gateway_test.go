package gateway

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/policy"
)

func TestRoute(t *testing.T) {
	chanAgent := plan("chan")
	mentions := plan("mentions", func(r *policy.SlackRoute) { r.MentionsOnly = true })
	dmOnly := &policy.Plan{Name: "dm", Slack: &policy.SlackRoute{DM: true}}
	alice := plan("alice", func(r *policy.SlackRoute) { r.Users = []string{"UALICE"} })
	other := &policy.Plan{Name: "other", Slack: &policy.SlackRoute{Channels: []string{"C2"}}}
	plans := []*policy.Plan{chanAgent, mentions, dmOnly, alice, other}

	in := func(channel, user string, dm, mentioned bool) chat.Inbound {
		return chat.Inbound{Message: chat.Message{Channel: channel, User: user}, DM: dm, Mentioned: mentioned}
	}
	for _, tc := range []struct {
		name              string
		in                chat.Inbound
		accepted, refused []string
	}{
		{"channel message", in("C1", "U1", false, false), []string{"chan"}, []string{"alice"}},
		{"channel mention", in("C1", "U1", false, true), []string{"chan", "mentions"}, []string{"alice"}},
		{"allowed user", in("C1", "UALICE", false, false), []string{"chan", "alice"}, nil},
		{"other channel", in("C2", "U1", false, false), []string{"other"}, nil},
		{"unrouted channel", in("C9", "U1", false, true), nil, nil},
		// A DM is addressed to the bot: mentions_only does not apply.
		{"direct message", in("D1", "U1", true, false), []string{"chan", "mentions", "dm"}, []string{"alice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc, ref := Route(plans, tc.in)
			if got := names(acc); !slices.Equal(got, tc.accepted) {
				t.Errorf("accepted %v, want %v", got, tc.accepted)
			}
			if got := names(ref); !slices.Equal(got, tc.refused) {
				t.Errorf("refused %v, want %v", got, tc.refused)
			}
		})
	}
}

func names(ps []*policy.Plan) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// A message is answered in its thread; the working status shows as an
// :eyes: reaction that is removed once the answer is posted.
func TestReplyInThreadWithReaction(t *testing.T) {
	log := &postLog{}
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), newProcRunner(map[string]agentFunc{"a": echo}),
		[]*policy.Plan{plan("a")})
	in := msg(1, "hello")
	in.Message.Thread = "1699999999.000001" // a reply inside an existing thread
	h.send(in)
	waitFor(t, "reply", func() bool { return len(log.Posts()) == 1 })
	if got, want := log.Posts()[0], (post{"C1", "1699999999.000001", "echo: hello"}); got != want {
		t.Fatalf("posted %+v, want %+v", got, want)
	}
	waitFor(t, "reaction removed", func() bool { return len(log.Reactions()) == 2 })
	want := []reaction{{"C1", in.Message.TS, "eyes", true}, {"C1", in.Message.TS, "eyes", false}}
	if got := log.Reactions(); !slices.Equal(got, want) {
		t.Fatalf("reactions %+v, want %+v", got, want)
	}
	if n, _ := h.store.QueueLen("a"); n != 0 {
		t.Fatalf("%d messages still queued after the reply", n)
	}
}

// Messages reach one agent in order, one at a time.
func TestOrderOneAtATime(t *testing.T) {
	log := &postLog{}
	var inFlight, maxInFlight atomic.Int32
	var mu sync.Mutex
	var seen []string
	slowEcho := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			n := inFlight.Add(1)
			if n > maxInFlight.Load() {
				maxInFlight.Store(n)
			}
			mu.Lock()
			seen = append(seen, m.Text)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: m.Text})
		}
	}
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), newProcRunner(map[string]agentFunc{"a": slowEcho}),
		[]*policy.Plan{plan("a")})
	var want []string
	for i := range 30 {
		want = append(want, fmt.Sprint(i))
		h.send(msg(i, fmt.Sprint(i)))
	}
	waitFor(t, "30 replies", func() bool { return len(log.Posts()) == 30 })
	if got := texts(log.Posts()); !slices.Equal(got, want) {
		t.Fatalf("replies out of order: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, want) {
		t.Fatalf("agent saw %v", seen)
	}
	if maxInFlight.Load() != 1 {
		t.Fatalf("agent had %d messages at once, want 1", maxInFlight.Load())
	}
}

// With concurrency 3 an agent gets up to three messages at once.
func TestConcurrency(t *testing.T) {
	log := &postLog{}
	release := make(chan struct{})
	var got atomic.Int32
	parallel := func(a *fakeAgent) int {
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			got.Add(1)
			wg.Go(func() {
				<-release
				a.Reply(chat.Reply{ReplyTo: m.ID, Text: m.Text})
			})
		}
	}
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), newProcRunner(map[string]agentFunc{"a": parallel}),
		[]*policy.Plan{plan("a", func(r *policy.SlackRoute) { r.Concurrency = 3 })})
	for i := range 5 {
		h.send(msg(i, fmt.Sprint(i)))
	}
	waitFor(t, "3 messages in flight", func() bool { return got.Load() == 3 })
	time.Sleep(20 * time.Millisecond)
	if got.Load() != 3 {
		t.Fatalf("%d messages in flight, want 3", got.Load())
	}
	close(release)
	waitFor(t, "5 replies", func() bool { return len(log.Posts()) == 5 })
}

// A slow agent blocks no other.
func TestAgentsRunInParallel(t *testing.T) {
	log := &postLog{}
	release := make(chan struct{})
	stuck := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			select {
			case <-release:
			case <-a.killed:
				return 137
			}
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "slow: " + m.Text})
		}
	}
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log),
		newProcRunner(map[string]agentFunc{"slow": stuck, "fast": echo}),
		[]*policy.Plan{plan("slow"), plan("fast")})
	for i := range 3 {
		h.send(msg(i, fmt.Sprint(i)))
	}
	waitFor(t, "the fast agent's replies", func() bool { return len(log.Posts()) == 3 })
	for _, p := range log.Posts() {
		if !strings.HasPrefix(p.Text, "echo: ") {
			t.Fatalf("unexpected post %+v while the slow agent is stuck", p)
		}
	}
	close(release)
	waitFor(t, "the slow agent's replies", func() bool { return len(log.Posts()) == 6 })
}

// Redeliveries (same delivery id, or same message under a new delivery id)
// are answered once.
func TestDuplicateDeliveries(t *testing.T) {
	log := &postLog{}
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), newProcRunner(map[string]agentFunc{"a": echo}),
		[]*policy.Plan{plan("a")})
	in := msg(1, "once")
	h.send(in)
	h.send(in)
	again := in
	again.DeliveryID = "EvOther"
	h.send(again)
	waitFor(t, "reply", func() bool { return len(log.Posts()) >= 1 })
	// After the reply, too.
	h.send(in)
	h.send(msg(2, "next"))
	waitFor(t, "second reply", func() bool { return len(log.Posts()) >= 2 })
	time.Sleep(20 * time.Millisecond)
	if got := texts(log.Posts()); !slices.Equal(got, []string{"echo: once", "echo: next"}) {
		t.Fatalf("posts %v", got)
	}
}

// A full queue refuses with a clear reply; what was queued is answered.
func TestQueueLimit(t *testing.T) {
	log := &postLog{}
	release := make(chan struct{})
	gated := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			select {
			case <-release:
			case <-a.killed:
				return 137
			}
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "done " + m.Text})
		}
	}
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), newProcRunner(map[string]agentFunc{"a": gated}),
		[]*policy.Plan{plan("a", func(r *policy.SlackRoute) { r.QueueLimit = 2 })})
	for i := range 4 {
		h.send(msg(i, fmt.Sprint(i)))
	}
	waitFor(t, "two busy notices", func() bool { return len(log.Posts()) == 2 })
	for i, p := range log.Posts() {
		if !strings.Contains(p.Text, "is busy: 2 messages are already waiting") {
			t.Fatalf("notice %q", p.Text)
		}
		if want := msg(i+2, "").Message.Thread; p.Thread != want {
			t.Fatalf("notice in thread %s, want %s", p.Thread, want)
		}
	}
	close(release)
	waitFor(t, "replies", func() bool { return len(log.Posts()) == 4 })
	if got := texts(log.Posts()[2:]); !slices.Equal(got, []string{"done 0", "done 1"}) {
		t.Fatalf("replies %v", got)
	}
}

// A user outside the allowlist gets a short reply in the thread; the agent
// never sees the message.
func TestUnauthorizedUser(t *testing.T) {
	log := &postLog{}
	var got atomic.Int32
	counting := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			got.Add(1)
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "hi"})
		}
	}
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), newProcRunner(map[string]agentFunc{"a": counting}),
		[]*policy.Plan{plan("a", func(r *policy.SlackRoute) { r.Users = []string{"UALICE"} })})
	in := msg(1, "let me in")
	h.send(in)
	h.send(in) // a redelivery is refused once
	waitFor(t, "refusal", func() bool { return len(log.Posts()) == 1 })
	p := log.Posts()[0]
	if p.Thread != in.Message.Thread || !strings.Contains(p.Text, "not on the list of people allowed to talk to a") {
		t.Fatalf("refusal %+v", p)
	}
	ok := msg(2, "me")
	ok.Message.User = "UALICE"
	h.send(ok)
	waitFor(t, "reply", func() bool { return len(log.Posts()) == 2 })
	if got.Load() != 1 {
		t.Fatalf("agent saw %d messages, want 1", got.Load())
	}
}

// An agent that exits is restarted and gets its unanswered message again,
// with the same id; the reply is posted once.
func TestRestartRedelivers(t *testing.T) {
	log := &postLog{}
	var mu sync.Mutex
	var deliveries []string
	crashOnce := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			mu.Lock()
			deliveries = append(deliveries, fmt.Sprintf("run%d:%s", a.run, m.ID))
			mu.Unlock()
			if a.run == 1 && m.Text == "boom" {
				a.Reply(chat.Reply{ReplyTo: m.ID, Status: "working"})
				return 2
			}
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "ok " + m.Text})
		}
	}
	runner := newProcRunner(map[string]agentFunc{"a": crashOnce})
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), runner, []*policy.Plan{plan("a")})
	h.send(msg(1, "first"))
	h.send(msg(2, "boom"))
	h.send(msg(3, "after"))
	waitFor(t, "three replies and a notice", func() bool { return len(log.Posts()) == 4 })
	notices, replies := splitNotices(log.Posts())
	if got := texts(replies); !slices.Equal(got, []string{"ok first", "ok boom", "ok after"}) {
		t.Fatalf("replies %v", got)
	}
	if len(notices) != 1 || !strings.Contains(notices[0].Text, "crashed (exit code 2)") {
		t.Fatalf("notices %+v, want one about the crash", notices)
	}
	if runner.Starts("a") != 2 {
		t.Fatalf("%d starts, want 2", runner.Starts("a"))
	}
	mu.Lock()
	defer mu.Unlock()
	id := msg(2, "").Message.ID
	if want := []string{"run1:" + msg(1, "").Message.ID, "run1:" + id, "run2:" + id, "run2:" + msg(3, "").Message.ID}; !slices.Equal(deliveries, want) {
		t.Fatalf("deliveries %v, want %v", deliveries, want)
	}
	// The reaction added by the crashed run was taken back.
	waitFor(t, "reactions", func() bool { return len(log.Reactions()) == 2 })
}

// A message that crashes its agent every time is given up after
// MaxAttempts, with a reply saying so; the queue moves on.
func TestPoisonMessageGivenUp(t *testing.T) {
	log := &postLog{}
	poison := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			if m.Text == "poison" {
				return 1
			}
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "ok " + m.Text})
		}
	}
	runner := newProcRunner(map[string]agentFunc{"a": poison})
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), runner, []*policy.Plan{plan("a")},
		func(o *Options) { o.MaxAttempts = 3 })
	h.send(msg(1, "poison"))
	h.send(msg(2, "fine"))
	// Two "retrying" notices, the give-up, and the answer to the next message.
	waitFor(t, "notices and reply", func() bool { return len(log.Posts()) == 4 })
	want := []string{
		"Agent `a` crashed (exit code 1) while handling this message; restarting it and retrying (attempt 2 of 3).",
		"Agent `a` crashed (exit code 1) while handling this message; restarting it and retrying (attempt 3 of 3).",
		"Agent `a` crashed (exit code 1) while handling this message (attempt 3 of 3); giving up on this message. The agent's log has the details.",
		"ok fine",
	}
	// Notices go through the outbox, in order, while the agent answers
	// the next message: only the notices' order is fixed.
	notices, replies := splitNotices(log.Posts())
	if got := texts(notices); !slices.Equal(got, want[:3]) {
		t.Fatalf("notices\n%q\nwant\n%q", got, want[:3])
	}
	if got := texts(replies); !slices.Equal(got, want[3:]) {
		t.Fatalf("replies %q, want %q", got, want[3:])
	}
	for _, p := range notices {
		if p.Channel != "C1" || p.Thread != msg(1, "").Message.Thread {
			t.Fatalf("notice %+v not in the thread of the poison message", p)
		}
	}
	if runner.Starts("a") != 4 {
		t.Fatalf("%d starts, want 4 (3 crashes, then one that works)", runner.Starts("a"))
	}
}

// While an agent cannot start, a new message is queued and its sender told
// that the agent is down; the message is answered once the agent is back.
func TestAgentDown(t *testing.T) {
	log := &postLog{}
	runner := newProcRunner(map[string]agentFunc{"a": echo})
	runner.setFailing("a", true)
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), runner, []*policy.Plan{plan("a")},
		func(o *Options) { o.BackoffMax = 20 * time.Millisecond })
	waitFor(t, "agent down", func() bool { return h.gw.agents["a"].down() })
	h.send(msg(1, "anyone?"))
	waitFor(t, "down notice", func() bool { return len(log.Posts()) == 1 })
	if p := log.Posts()[0]; !strings.Contains(p.Text, "Agent a is down") || p.Thread != msg(1, "").Message.Thread {
		t.Fatalf("notice %+v", p)
	}
	runner.setFailing("a", false)
	waitFor(t, "reply", func() bool { return len(log.Posts()) == 2 })
	if got := log.Posts()[1].Text; got != "echo: anyone?" {
		t.Fatalf("reply %q", got)
	}
	waitFor(t, "agent up again", func() bool { return !h.gw.agents["a"].down() })
}

// A reply naming a message that is not waiting for this agent is dropped:
// an agent cannot post anywhere but in answer to its own messages.
func TestReplyToUnknownIsDropped(t *testing.T) {
	log := &postLog{}
	rogue := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			a.Reply(chat.Reply{ReplyTo: "C2:1700000000.000001", Text: "spam"})
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "real"})
		}
	}
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), newProcRunner(map[string]agentFunc{"a": rogue}),
		[]*policy.Plan{plan("a")})
	h.send(msg(1, "x"))
	waitFor(t, "reply", func() bool { return len(log.Posts()) == 1 })
	time.Sleep(20 * time.Millisecond)
	if got := texts(log.Posts()); !slices.Equal(got, []string{"real"}) {
		t.Fatalf("posts %v", got)
	}
}

// post_to: a line with a channel posts a separate, top-level message
// there if the agent file grants that channel, and is refused otherwise
// (the message's own channel included); neither completes the message,
// whose final reply still goes in its thread.
func TestPostTo(t *testing.T) {
	log := &postLog{}
	poster := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			a.Reply(chat.Reply{ReplyTo: m.ID, Channel: "C9", Text: "to C9: " + m.Text})       // granted
			a.Reply(chat.Reply{ReplyTo: m.ID, Channel: "C7", Text: "to C7: " + m.Text})       // not granted
			a.Reply(chat.Reply{ReplyTo: m.ID, Channel: m.Channel, Text: "top-level in C1"})   // not granted
			a.Reply(chat.Reply{ReplyTo: m.ID, Channel: "C9", Text: "  "})                     // empty: skipped
			a.Reply(chat.Reply{ReplyTo: "C2:1700000000.000001", Channel: "C9", Text: "spam"}) // not in flight
			a.Reply(chat.Reply{ReplyTo: m.ID, Status: "working", Channel: "C9"})              // a status line
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "done"})
		}
	}
	p := plan("a", func(r *policy.SlackRoute) { r.PostTo = []string{"C9"} })
	h := start(t, openStore(t, t.TempDir()), newMemTransport(log), newProcRunner(map[string]agentFunc{"a": poster}),
		[]*policy.Plan{p})
	in := msg(1, "news")
	h.send(in)
	waitFor(t, "final reply", func() bool { return len(log.Posts()) == 2 })
	time.Sleep(20 * time.Millisecond)
	want := []post{{"C9", "", "to C9: news"}, {"C1", in.Message.Thread, "done"}}
	if got := log.Posts(); !slices.Equal(got, want) {
		t.Fatalf("posts %+v, want %+v", got, want)
	}
	if n, _ := h.store.QueueLen("a"); n != 0 {
		t.Fatalf("%d messages still queued after the final reply", n)
	}
	// The status line with a channel still counted as progress.
	if got := log.Reactions(); len(got) != 2 || !got[0].Add {
		t.Fatalf("reactions %+v, want add and remove of :eyes:", got)
	}

	// Without post_to, nothing leaves the thread.
	log2 := &postLog{}
	h2 := start(t, openStore(t, t.TempDir()), newMemTransport(log2), newProcRunner(map[string]agentFunc{"a": poster}),
		[]*policy.Plan{plan("a")})
	h2.send(msg(2, "news"))
	waitFor(t, "final reply", func() bool { return len(log2.Posts()) == 1 })
	time.Sleep(20 * time.Millisecond)
	if got := texts(log2.Posts()); !slices.Equal(got, []string{"done"}) {
		t.Fatalf("posts without post_to: %v", got)
	}
}

// A failed post is retried; the reply is not lost.
func TestPostRetried(t *testing.T) {
	log := &postLog{}
	tr := newMemTransport(log)
	tr.failPosts.Store(2)
	h := start(t, openStore(t, t.TempDir()), tr, newProcRunner(map[string]agentFunc{"a": echo}), []*policy.Plan{plan("a")})
	h.send(msg(1, "persist"))
	waitFor(t, "reply", func() bool { return len(log.Posts()) == 1 })
}

// A crash of the whole gateway (the store closed under it, nothing more
// reaching Slack) in the middle of a stream, then a restart on the same
// store with every message delivered again by the platform: every message
// is answered, and none whose reply was recorded as posted is answered
// twice.
func TestCrashMidStreamNeverAnswersTwice(t *testing.T) {
	dir := t.TempDir()
	log := &postLog{}
	const total = 20
	const crashAt = 8 // the reply to this message is in progress at the crash

	store1 := openStore(t, dir)
	tr1 := newMemTransport(log)
	crashed := make(chan struct{})
	var once sync.Once
	tr1.postHook = func(p post) {
		if p.Text == fmt.Sprintf("echo: %d", crashAt) {
			// Die inside the post: it never reaches Slack.
			tr1.crashed.Store(true)
			once.Do(func() { close(crashed) })
		}
	}
	runner1 := newProcRunner(map[string]agentFunc{"a": echo})
	// The post in progress retries until StopTimeout after the "crash".
	h1 := start(t, store1, tr1, runner1, []*policy.Plan{plan("a")},
		func(o *Options) { o.StopTimeout = 200 * time.Millisecond })
	for i := range total {
		h1.send(msg(i, fmt.Sprint(i)))
	}
	<-crashed
	// Simulate the process dying: the store goes away without a clean
	// shutdown, so nothing after this point is recorded.
	if err := store1.Close(); err != nil {
		t.Fatal(err)
	}
	h1.stop()
	if n := len(log.Posts()); n != crashAt {
		t.Fatalf("%d replies before the crash, want %d", n, crashAt)
	}

	store2 := openStore(t, dir)
	defer store2.Close()
	tr2 := newMemTransport(log)
	h2 := start(t, store2, tr2, newProcRunner(map[string]agentFunc{"a": echo}), []*policy.Plan{plan("a")})
	// The platform redelivers everything (as if no ack had arrived) and
	// sends a few new messages.
	for i := range total + 5 {
		h2.send(msg(i, fmt.Sprint(i)))
	}
	waitFor(t, "all replies", func() bool { return len(log.Posts()) >= total+5 })
	time.Sleep(50 * time.Millisecond)
	counts := map[string]int{}
	for _, p := range log.Posts() {
		counts[p.Text]++
	}
	for i := range total + 5 {
		if c := counts[fmt.Sprintf("echo: %d", i)]; c != 1 {
			t.Errorf("message %d answered %d times", i, c)
		}
	}
	if n, _ := store2.QueueLen("a"); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
}

// On a clean shutdown the agent gets end of input and may finish the
// message it is working on; messages it had not started wait in the store
// for the next start.
func TestShutdownKeepsPending(t *testing.T) {
	dir := t.TempDir()
	log := &postLog{}
	started := make(chan struct{}, 10)
	slow := func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			started <- struct{}{}
			time.Sleep(50 * time.Millisecond)
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: "ok " + m.Text})
		}
	}
	store := openStore(t, dir)
	h := start(t, store, newMemTransport(log), newProcRunner(map[string]agentFunc{"a": slow}), []*policy.Plan{plan("a")})
	for i := range 3 {
		h.send(msg(i, fmt.Sprint(i)))
	}
	<-started
	h.stop()
	if got := texts(log.Posts()); !slices.Equal(got, []string{"ok 0"}) {
		t.Fatalf("posts at shutdown %v, want the message in progress finished", got)
	}
	if n, _ := store.QueueLen("a"); n != 2 {
		t.Fatalf("%d messages pending after shutdown, want 2", n)
	}
	h2 := start(t, store, newMemTransport(log), newProcRunner(map[string]agentFunc{"a": echo}), []*policy.Plan{plan("a")})
	_ = h2
	waitFor(t, "pending answered after restart", func() bool { return len(log.Posts()) == 3 })
}
