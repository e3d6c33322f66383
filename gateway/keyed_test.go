package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/internal/syncbuf"
	"github.com/clawrun/clawrun/policy"
)

// keyedMem is a memTransport that also keeps the keys of its posts, as
// Slack keeps message metadata: a KeyedTransport. A text splits into parts
// at "|" (the Slack transport splits at its length limit); a part is
// "I/N" in done. The tags live in the shared keyTags so that they survive
// a simulated crash with the post log.
type keyedMem struct {
	*memTransport
	tags *keyTags
	// lookupErr makes every Posted fail.
	lookupErr error
	// afterPost, if set, runs after each part reached the "platform".
	afterPost func(key string)
	// lookupHeld, if set, makes Posted close it and then wait for its
	// context to end: a lookup still running when serve stops (a 429
	// being waited out).
	lookupHeld chan struct{}
}

type keyTags struct {
	mu      sync.Mutex
	parts   map[string][]string // key → parts posted
	lookups []string            // keys looked up, in order
}

func newKeyedMem(l *postLog, tags *keyTags) *keyedMem {
	if tags.parts == nil {
		tags.parts = map[string][]string{}
	}
	return &keyedMem{memTransport: newMemTransport(l), tags: tags}
}

func (k *keyedMem) PostKeyed(ctx context.Context, channel, thread, text, key string, done []string) ([]string, error) {
	parts := strings.Split(text, "|")
	for i, p := range parts {
		part := fmt.Sprintf("%d/%d", i, len(parts))
		if slices.Contains(done, part) {
			continue
		}
		if err := k.Post(ctx, channel, thread, p); err != nil {
			return done, err
		}
		k.tags.mu.Lock()
		k.tags.parts[key] = append(k.tags.parts[key], part)
		k.tags.mu.Unlock()
		done = append(done, part)
		if k.afterPost != nil {
			k.afterPost(key)
		}
	}
	return done, nil
}

func (k *keyedMem) Posted(ctx context.Context, _, _, _, key string) ([]string, bool, error) {
	k.tags.mu.Lock()
	k.tags.lookups = append(k.tags.lookups, key)
	k.tags.mu.Unlock()
	if k.lookupHeld != nil {
		close(k.lookupHeld)
		<-ctx.Done()
		return nil, false, ctx.Err()
	}
	k.tags.mu.Lock()
	defer k.tags.mu.Unlock()
	if k.lookupErr != nil {
		return nil, false, k.lookupErr
	}
	done := slices.Clone(k.tags.parts[key])
	n := 0
	if len(done) > 0 {
		fmt.Sscanf(done[0], "%d/%d", new(int), &n)
	}
	return done, n > 0 && len(done) == n, nil
}

func (t *keyTags) Lookups() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.lookups)
}

// deliveries records the message ids an agent program was given.
type deliveries struct {
	mu  sync.Mutex
	ids []string
}

func (d *deliveries) Got() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ids)
}

// answer is an agent that records what it is given and answers with
// reply(text).
func (d *deliveries) answer(reply func(string) string) agentFunc {
	return func(a *fakeAgent) int {
		for {
			m, ok := a.Next()
			if !ok {
				return 0
			}
			d.mu.Lock()
			d.ids = append(d.ids, m.ID)
			d.mu.Unlock()
			a.Reply(chat.Reply{ReplyTo: m.ID, Text: reply(m.Text)})
		}
	}
}

// leftQueued stores messages for agent "a" as an earlier run would have left
// them, and returns the store's id.
func leftQueued(t *testing.T, dir string, ins ...chat.Inbound) string {
	t.Helper()
	s := openStore(t, dir)
	defer s.Close()
	for _, in := range ins {
		if _, err := s.Accept(in, []Target{{Agent: "a"}}, nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return s.ID()
}

// After a restart: a queued message whose reply the crashed run got out
// is looked up, found, recorded as answered and neither delivered to the
// agent nor posted again; one that was not posted is delivered and
// answered once; a message that arrives after the start is never looked
// up.
func TestSuspectReplyAlreadyPostedIsNotPostedAgain(t *testing.T) {
	dir := t.TempDir()
	m0, m1, m2 := msg(0, "zero"), msg(1, "one"), msg(2, "two")
	id := leftQueued(t, dir, m0, m1)
	log := &postLog{posts: []post{{"C1", m0.Message.Thread, "echo: zero"}}}
	tags := &keyTags{parts: map[string][]string{"r:" + id + ":a:" + m0.Message.ID: {"0/1"}}}

	store := openStore(t, dir)
	defer store.Close()
	d := &deliveries{}
	h := start(t, store, newKeyedMem(log, tags), newProcRunner(map[string]agentFunc{"a": d.answer(func(s string) string { return "echo: " + s })}),
		[]*policy.Plan{plan("a")})
	waitFor(t, "the reply to the unposted message", func() bool { return len(log.Posts()) == 2 })
	h.send(m2)
	waitFor(t, "the reply to the new message", func() bool { return len(log.Posts()) == 3 })
	h.stop()

	if got, want := texts(log.Posts()), []string{"echo: zero", "echo: one", "echo: two"}; !slices.Equal(got, want) {
		t.Fatalf("posts %q, want %q", got, want)
	}
	if got := d.Got(); !slices.Equal(got, []string{m1.Message.ID, m2.Message.ID}) {
		t.Fatalf("agent was given %v, want only the messages without a posted reply", got)
	}
	want := []string{"r:" + id + ":a:" + m0.Message.ID, "r:" + id + ":a:" + m1.Message.ID}
	if got := tags.Lookups(); !slices.Equal(got, want) {
		t.Fatalf("lookups %q, want one per queued message at start (%q)", got, want)
	}
	// The crashed run's "working" reaction on the message found answered
	// is taken off: no later reply would.
	if !slices.Contains(log.Reactions(), reaction{"C1", m0.Message.TS, "eyes", false}) {
		t.Fatalf("reactions %+v, want eyes removed from %s", log.Reactions(), m0.Message.TS)
	}
	if n, _ := store.QueueLen("a"); n != 0 {
		t.Fatalf("%d messages left queued", n)
	}
}

// A split reply of which the crashed run got one part out: after the
// restart only the other part is posted.
func TestSuspectHalfPostedPostsTheRest(t *testing.T) {
	dir := t.TempDir()
	m0 := msg(0, "zero")
	id := leftQueued(t, dir, m0)
	log := &postLog{posts: []post{{"C1", m0.Message.Thread, "first half"}}}
	tags := &keyTags{parts: map[string][]string{"r:" + id + ":a:" + m0.Message.ID: {"0/2"}}}
	store := openStore(t, dir)
	defer store.Close()
	d := &deliveries{}
	h := start(t, store, newKeyedMem(log, tags), newProcRunner(map[string]agentFunc{"a": d.answer(func(string) string { return "first half|second half" })}),
		[]*policy.Plan{plan("a")})
	waitFor(t, "the message answered", func() bool { n, _ := store.QueueLen("a"); return n == 0 })
	h.stop()
	if got, want := texts(log.Posts()), []string{"first half", "second half"}; !slices.Equal(got, want) {
		t.Fatalf("posts %q, want %q", got, want)
	}
}

// A lookup that fails (network, a missing scope) loses nothing: the reply
// and the notice are posted (at least once), and the failure is logged as
// a warning once, not once per post.
func TestLookupErrorFallsBackToPosting(t *testing.T) {
	dir := t.TempDir()
	m0, m1 := msg(0, "zero"), msg(1, "one")
	s := openStore(t, dir)
	for _, in := range []chat.Inbound{m0, m1} {
		if _, err := s.Accept(in, []Target{{Agent: "a"}}, []Notice{{Channel: "C1", Thread: in.Message.TS, Text: "note " + in.Message.Text}}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	log := &postLog{}
	tr := newKeyedMem(log, &keyTags{})
	tr.lookupErr = errors.New("missing_scope")
	var logs syncbuf.Buffer
	store := openStore(t, dir)
	defer store.Close()
	d := &deliveries{}
	h := start(t, store, tr, newProcRunner(map[string]agentFunc{"a": d.answer(func(s string) string { return "echo: " + s })}),
		[]*policy.Plan{plan("a")}, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	waitFor(t, "replies and notices", func() bool { return len(log.Posts()) == 4 })
	h.stop()
	got := texts(log.Posts())
	slices.Sort(got)
	if want := []string{"echo: one", "echo: zero", "note one", "note zero"}; !slices.Equal(got, want) {
		t.Fatalf("posts %q, want %q", got, want)
	}
	if n := len(tr.tags.Lookups()); n != 4 {
		t.Fatalf("%d lookups, want 4 (two replies, two notices)", n)
	}
	if n := strings.Count(logs.String(), "could not check whether a post went out"); n != 1 {
		t.Fatalf("lookup failure logged %d times at info level or above, want once:\n%s", n, logs.String())
	}
}

// A notice still in the outbox at the start that the crashed run had
// posted is recorded as posted without a second post; keys of notices
// name the store, so another store's notice with the same seq is not
// taken for it.
func TestSuspectNoticeAlreadyPosted(t *testing.T) {
	dir := t.TempDir()
	m0 := msg(0, "zero")
	s := openStore(t, dir)
	notices := []Notice{{Channel: "C1", Thread: m0.Message.TS, Text: "posted before"}, {Channel: "C1", Thread: m0.Message.TS, Text: "not yet"}}
	if _, err := s.Accept(m0, nil, notices, time.Now()); err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	s.Close()
	log := &postLog{posts: []post{{"C1", m0.Message.TS, "posted before"}}}
	tags := &keyTags{parts: map[string][]string{
		"n:" + id + ":1":       {"0/1"},
		"n:0123456789abcdef:2": {"0/1"}, // another store's notice 2
	}}
	store := openStore(t, dir)
	defer store.Close()
	if store.ID() != id {
		t.Fatalf("store id changed on reopen: %s, was %s", store.ID(), id)
	}
	h := start(t, store, newKeyedMem(log, tags), newProcRunner(map[string]agentFunc{"a": echo}), []*policy.Plan{plan("a")})
	waitFor(t, "outbox empty", func() bool { items, _ := store.Outbox(); return len(items) == 0 })
	h.stop()
	if got, want := texts(log.Posts()), []string{"posted before", "not yet"}; !slices.Equal(got, want) {
		t.Fatalf("posts %q, want %q", got, want)
	}
}

// The crash itself, as in TestCrashMidStreamNeverAnswersTwice but with a
// transport that keys its posts and the crash right after a reply reached
// the platform, before the store recorded it: after the restart, with
// everything redelivered, no message is answered twice.
func TestCrashAfterPostNeverAnswersTwice(t *testing.T) {
	dir := t.TempDir()
	log := &postLog{}
	tags := &keyTags{}
	const total = 12
	const crashAt = 5

	store1 := openStore(t, dir)
	tr1 := newKeyedMem(log, tags)
	crashed := make(chan struct{})
	var once sync.Once
	tr1.afterPost = func(key string) {
		if strings.HasSuffix(key, fmt.Sprintf(":1700000000.%06d", crashAt)) {
			// The reply is out; the process dies before Done.
			once.Do(func() {
				tr1.crashed.Store(true)
				_ = store1.Close()
				close(crashed)
			})
		}
	}
	// The agent answers only once every message is stored: the crash
	// closes the store, and a send after it would fail.
	allSent := make(chan struct{})
	held := func(a *fakeAgent) int { <-allSent; return echo(a) }
	h1 := start(t, store1, tr1, newProcRunner(map[string]agentFunc{"a": held}), []*policy.Plan{plan("a")},
		func(o *Options) { o.StopTimeout = 200 * time.Millisecond })
	for i := range total {
		h1.send(msg(i, fmt.Sprint(i)))
	}
	close(allSent)
	<-crashed
	h1.stop()
	if n := len(log.Posts()); n != crashAt+1 {
		t.Fatalf("%d replies before the crash, want %d", n, crashAt+1)
	}

	store2 := openStore(t, dir)
	defer store2.Close()
	h2 := start(t, store2, newKeyedMem(log, tags), newProcRunner(map[string]agentFunc{"a": echo}), []*policy.Plan{plan("a")})
	for i := range total {
		h2.send(msg(i, fmt.Sprint(i)))
	}
	waitFor(t, "all answered", func() bool { n, _ := store2.QueueLen("a"); return n == 0 })
	h2.stop()
	counts := map[string]int{}
	for _, p := range log.Posts() {
		counts[p.Text]++
	}
	for i := range total {
		if c := counts[fmt.Sprintf("echo: %d", i)]; c != 1 {
			t.Errorf("message %d answered %d times", i, c)
		}
	}
	// Only the messages queued at the restart were looked up.
	if n := len(tags.Lookups()); n != total-crashAt {
		t.Errorf("%d lookups, want %d (the messages queued at the restart)", n, total-crashAt)
	}
}

// Serve stopping while a lookup runs: the lookup ends without an answer,
// and the message must then stay queued for the next start (which looks
// it up again), not be delivered to the agent, whose reply would be
// posted in full during the stop although the crashed run posted it.
func TestStopDuringLookupDoesNotDeliver(t *testing.T) {
	dir := t.TempDir()
	m0 := msg(0, "zero")
	id := leftQueued(t, dir, m0)
	log := &postLog{posts: []post{{"C1", m0.Message.Thread, "echo: zero"}}}
	tags := &keyTags{parts: map[string][]string{"r:" + id + ":a:" + m0.Message.ID: {"0/1"}}}
	store := openStore(t, dir)
	defer store.Close()
	tr := newKeyedMem(log, tags)
	tr.lookupHeld = make(chan struct{})
	d := &deliveries{}
	h := start(t, store, tr, newProcRunner(map[string]agentFunc{"a": d.answer(func(s string) string { return "echo: " + s })}),
		[]*policy.Plan{plan("a")})
	<-tr.lookupHeld
	h.stop()
	if got := d.Got(); len(got) != 0 {
		t.Fatalf("agent was given %v after its lookup was cut short by the stop, want nothing", got)
	}
	if got, want := texts(log.Posts()), []string{"echo: zero"}; !slices.Equal(got, want) {
		t.Fatalf("posts %q, want %q (no second reply)", got, want)
	}
	if n, _ := store.QueueLen("a"); n != 1 {
		t.Fatalf("%d messages queued after the stop, want 1 (looked up again on the next start)", n)
	}
}
