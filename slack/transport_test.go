package slack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/slack"
	"github.com/clawrun/clawrun/test/fakeslack"
)

const (
	wait          = 10 * time.Second
	signingSecret = "fake-signing-secret-8f3a"
)

// logBuffer collects slog output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	fs   *fakeslack.Server
	tr   *slack.Transport
	logs *logBuffer
	cfg  slack.Config
}

// setup starts a fake Slack and a transport against it. Every test checks
// at the end that no token or secret reached the log.
func setup(t *testing.T, o fakeslack.Options, mut func(*slack.Config)) *env {
	t.Helper()
	fs := fakeslack.New(o)
	t.Cleanup(fs.Close)
	logs := &logBuffer{}
	cfg := slack.Config{
		BotToken:      fakeslack.BotToken,
		AppToken:      fakeslack.AppToken,
		SigningSecret: signingSecret,
		APIURL:        fs.APIURL,
		PostInterval:  -1,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mut != nil {
		mut(&cfg)
	}
	tr, err := slack.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out := logs.String()
		if testing.Verbose() {
			t.Log("transport log:\n" + out)
		}
		for _, secret := range []string{cfg.BotToken, cfg.AppToken, cfg.SigningSecret, "fake-bot-token", "fake-app-token"} {
			if secret != "" && strings.Contains(out, secret) {
				t.Errorf("a token or secret appears in the log:\n%s", out)
			}
		}
	})
	return &env{fs: fs, tr: tr, logs: logs, cfg: cfg}
}

// receive runs Receive until the test ends; h is called for every inbound
// message.
func (e *env) receive(t *testing.T, h func(context.Context, chat.Inbound) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.tr.Receive(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Receive returned %v, want context.Canceled", err)
			}
		case <-time.After(wait):
			t.Error("Receive did not return after cancel")
		}
	})
}

// recorder is a handler that records what it gets and can be told to fail.
type recorder struct {
	mu   sync.Mutex
	got  []chat.Inbound
	fail map[string]int // message id → failures left
	ch   chan chat.Inbound
}

func newRecorder() *recorder {
	return &recorder{fail: map[string]int{}, ch: make(chan chat.Inbound, 100)}
}

func (r *recorder) handle(_ context.Context, in chat.Inbound) error {
	r.mu.Lock()
	defer func() { r.mu.Unlock(); r.ch <- in }()
	r.got = append(r.got, in)
	if r.fail[in.Message.ID] > 0 {
		r.fail[in.Message.ID]--
		return fmt.Errorf("store unavailable")
	}
	return nil
}

func (r *recorder) next(t *testing.T) chat.Inbound {
	t.Helper()
	select {
	case in := <-r.ch:
		return in
	case <-time.After(wait):
		t.Fatal("no message reached the handler")
		return chat.Inbound{}
	}
}

func message(channel, channelType, user, text, ts string) map[string]any {
	return map[string]any{"type": "message", "channel": channel, "channel_type": channelType,
		"user": user, "text": text, "ts": ts, "event_ts": ts}
}

func TestSocketModeAcksOnlyAfterHandler(t *testing.T) {
	e := setup(t, fakeslack.Options{}, nil)
	release := make(chan struct{})
	entered := make(chan chat.Inbound, 1)
	e.receive(t, func(_ context.Context, in chat.Inbound) error {
		entered <- in
		<-release
		return nil
	})
	ts := e.fs.NextTS()
	env := e.fs.Send(message("C1", "channel", "U1", "hello <@UBOT>", ts))
	var in chat.Inbound
	select {
	case in = <-entered:
	case <-time.After(wait):
		t.Fatal("handler not called")
	}
	if e.fs.Acked(env) {
		t.Fatal("envelope acked while the handler was still running")
	}
	want := chat.Inbound{
		Message:    chat.Message{ID: "C1:" + ts, Channel: "C1", Thread: ts, User: "U1", Text: "hello <@UBOT>", TS: ts},
		DeliveryID: e.fs.EventID(env), Mentioned: true,
	}
	if in != want {
		t.Fatalf("inbound = %+v\nwant %+v", in, want)
	}
	if e.tr.BotUserID() != fakeslack.BotUserID {
		t.Fatalf("BotUserID = %q", e.tr.BotUserID())
	}
	close(release)
	if err := e.fs.WaitAck(env, wait); err != nil {
		t.Fatal(err)
	}
}

func TestSocketModeHandlerErrorLeavesEnvelopeForRedelivery(t *testing.T) {
	e := setup(t, fakeslack.Options{}, nil)
	r := newRecorder()
	ts := e.fs.NextTS()
	r.fail["C1:"+ts] = 1
	e.receive(t, r.handle)

	first := e.fs.Send(message("C1", "channel", "U1", "one", ts))
	r.next(t)
	// Envelopes are handled and acked in order: once a later one is acked,
	// an ack of the failed one would have been seen.
	second := e.fs.Send(message("C1", "channel", "U1", "two", e.fs.NextTS()))
	r.next(t)
	if err := e.fs.WaitAck(second, wait); err != nil {
		t.Fatal(err)
	}
	if e.fs.Acked(first) {
		t.Fatal("envelope acked although the handler failed")
	}

	e.fs.Redeliver(first)
	again := r.next(t)
	if again.DeliveryID != e.fs.EventID(first) || again.Message.ID != "C1:"+ts {
		t.Fatalf("redelivery = %+v, want event %s", again, e.fs.EventID(first))
	}
	if err := e.fs.WaitAck(first, wait); err != nil {
		t.Fatal(err)
	}
}

// Slack redelivers unacked envelopes by itself; so does the fake when told.
func TestSocketModeAutomaticRedelivery(t *testing.T) {
	e := setup(t, fakeslack.Options{RedeliverAfter: 200 * time.Millisecond}, nil)
	r := newRecorder()
	ts := e.fs.NextTS()
	r.fail["C1:"+ts] = 2
	e.receive(t, r.handle)
	env := e.fs.Send(message("C1", "channel", "U1", "persist me", ts))
	if err := e.fs.WaitAck(env, wait); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 3 {
		t.Fatalf("handler called %d times, want 3 (two failures, then stored)", len(r.got))
	}
}

func TestSocketModeReconnects(t *testing.T) {
	e := setup(t, fakeslack.Options{}, nil)
	r := newRecorder()
	e.receive(t, r.handle)

	send := func(text string) {
		t.Helper()
		env := e.fs.Send(message("C1", "channel", "U1", text, e.fs.NextTS()))
		if in := r.next(t); in.Message.Text != text {
			t.Fatalf("got %q, want %q", in.Message.Text, text)
		}
		if err := e.fs.WaitAck(env, wait); err != nil {
			t.Fatal(err)
		}
	}
	send("before")
	// Slack asks clients to reconnect every few hours.
	e.fs.Disconnect("refresh_requested", 5*time.Second)
	if err := e.fs.WaitConnections(2, wait); err != nil {
		t.Fatal(err)
	}
	send("after refresh")
	// A connection that just dies.
	e.fs.DropConnections()
	if err := e.fs.WaitConnections(3, wait); err != nil {
		t.Fatal(err)
	}
	send("after drop")
}

func TestSocketModeFiltersAndDeduplicates(t *testing.T) {
	e := setup(t, fakeslack.Options{}, nil)
	r := newRecorder()
	e.receive(t, r.handle)

	// Ignored, but acked so Slack does not retry them.
	ignored := []string{
		e.fs.Send(message("C1", "channel", fakeslack.BotUserID, "my own reply", e.fs.NextTS())),
		e.fs.Send(map[string]any{"type": "message", "subtype": "message_changed", "channel": "C1", "ts": e.fs.NextTS(),
			"message": map[string]any{"user": "U1", "text": "edited", "ts": "1.0"}}),
		e.fs.Send(map[string]any{"type": "message", "subtype": "bot_message", "bot_id": "B2", "channel": "C1", "text": "beep", "ts": e.fs.NextTS()}),
		e.fs.Send(map[string]any{"type": "reaction_added", "user": "U1", "reaction": "eyes"}),
	}
	for _, env := range ignored {
		if err := e.fs.WaitAck(env, wait); err != nil {
			t.Fatal(err)
		}
	}

	dmTS := e.fs.NextTS()
	e.fs.Send(message("D1", "im", "U1", "hi bot", dmTS))
	if in := r.next(t); !in.DM || in.Mentioned || in.Message.ID != "D1:"+dmTS {
		t.Fatalf("direct message = %+v, want DM", in)
	}

	// A mention in a channel arrives twice: as a message and as an
	// app_mention, with different event ids. The agent sees it once.
	ts := e.fs.NextTS()
	m := e.fs.Send(message("C2", "channel", "U1", "<@UBOT> help", ts))
	a := e.fs.Send(map[string]any{"type": "app_mention", "channel": "C2", "user": "U1", "text": "<@UBOT> help", "ts": ts, "event_ts": ts})
	if in := r.next(t); !in.Mentioned || in.DM || in.Message.ID != "C2:"+ts {
		t.Fatalf("mention = %+v", in)
	}
	for _, env := range []string{m, a} {
		if err := e.fs.WaitAck(env, wait); err != nil {
			t.Fatal(err)
		}
	}
	// The other order: app_mention first.
	ts2 := e.fs.NextTS()
	a2 := e.fs.Send(map[string]any{"type": "app_mention", "channel": "C2", "user": "U1", "text": "<@UBOT|clawrun> again", "ts": ts2, "thread_ts": ts})
	m2 := e.fs.Send(message("C2", "channel", "U1", "<@UBOT|clawrun> again", ts2))
	if in := r.next(t); !in.Mentioned || in.Message.Thread != ts || in.DeliveryID != e.fs.EventID(a2) {
		t.Fatalf("app_mention = %+v", in)
	}
	if err := e.fs.WaitAck(m2, wait); err != nil {
		t.Fatal(err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 3 {
		t.Fatalf("handler got %d messages, want 3: %+v", len(r.got), r.got)
	}
}

func TestReceiveFailsForGoodOnBadTokens(t *testing.T) {
	e := setup(t, fakeslack.Options{}, func(c *slack.Config) { c.BotToken = "xoxb-wrong" })
	err := e.tr.Receive(context.Background(), newRecorder().handle)
	if err == nil || !strings.Contains(err.Error(), "invalid_auth") {
		t.Fatalf("Receive with a wrong bot token = %v, want invalid_auth", err)
	}

	e = setup(t, fakeslack.Options{}, func(c *slack.Config) { c.AppToken = "xapp-wrong" })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err = e.tr.Receive(ctx, newRecorder().handle)
	if err == nil || !strings.Contains(err.Error(), "invalid_auth") || !strings.Contains(err.Error(), slack.EnvAppToken) {
		t.Fatalf("Receive with a wrong app token = %v, want invalid_auth naming %s", err, slack.EnvAppToken)
	}
}

func TestPostSplitsLongReplies(t *testing.T) {
	e := setup(t, fakeslack.Options{}, nil)
	var b strings.Builder
	for i := 0; b.Len() < 3*slack.MaxChunk; i++ {
		fmt.Fprintf(&b, "line %d: ünïcode and some words to fill the line\n", i)
	}
	text := b.String()
	if err := e.tr.Post(context.Background(), "C1", "1700000000.000001", text); err != nil {
		t.Fatal(err)
	}
	posts := e.fs.Posts()
	if len(posts) < 3 {
		t.Fatalf("%d posts, want the reply split into at least 3", len(posts))
	}
	var parts []string
	for _, p := range posts {
		if n := len([]rune(p.Text)); n > slack.MaxChunk {
			t.Fatalf("a part has %d characters, over %d", n, slack.MaxChunk)
		}
		if p.Channel != "C1" || p.ThreadTS != "1700000000.000001" {
			t.Fatalf("part posted to %s thread %q", p.Channel, p.ThreadTS)
		}
		if strings.HasSuffix(p.Text, "fill the") {
			t.Fatalf("part cut mid-line: ...%q", p.Text[len(p.Text)-30:])
		}
		parts = append(parts, p.Text)
	}
	// Parts are cut at line breaks, so joining them with one restores it.
	if strings.Join(parts, "\n") != text {
		t.Fatal("the parts, in order, do not make up the reply")
	}
}

func TestPostWaitsOutRateLimits(t *testing.T) {
	e := setup(t, fakeslack.Options{}, nil)
	e.fs.FailNext("chat.postMessage", 2, 0)
	if err := e.tr.Post(context.Background(), "C1", "", "answer"); err != nil {
		t.Fatal(err)
	}
	if posts := e.fs.Posts(); len(posts) != 1 || posts[0].Text != "answer" {
		t.Fatalf("posts = %+v, want the reply exactly once", posts)
	}
	if n := e.fs.Calls("chat.postMessage"); n != 3 {
		t.Fatalf("chat.postMessage called %d times, want 3 (two 429s, then the post)", n)
	}
	if !strings.Contains(e.logs.String(), "rate limited") {
		t.Fatal("the rate limit was not logged")
	}

	// A post whose context ends while rate limited fails instead of
	// pretending success.
	e.fs.FailNext("chat.postMessage", 100, 30)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.tr.Post(ctx, "C1", "", "later"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Post = %v, want the deadline error", err)
	}
}

// Replies posted concurrently into one channel arrive whole: the parts of
// one reply are never interleaved with another's, and each reply's parts are
// in order. Timing is not asserted.
func TestPostPacesPerChannel(t *testing.T) {
	e := setup(t, fakeslack.Options{}, func(c *slack.Config) { c.PostInterval = time.Millisecond })
	const replies = 5
	var wg sync.WaitGroup
	for r := range replies {
		wg.Go(func() {
			var b strings.Builder
			for i := 0; b.Len() < 2*slack.MaxChunk; i++ {
				fmt.Fprintf(&b, "reply %d line %d\n", r, i)
			}
			if err := e.tr.Post(context.Background(), "C1", "", b.String()); err != nil {
				t.Error(err)
			}
		})
	}
	e.fs.FailNext("chat.postMessage", 1, 0)
	wg.Wait()
	posts := e.fs.Posts()
	last := map[string]int{}
	current := ""
	done := map[string]bool{}
	for _, p := range posts {
		var r, line int
		if _, err := fmt.Sscanf(p.Text, "reply %d line %d", &r, &line); err != nil {
			t.Fatalf("unexpected part %q", p.Text[:20])
		}
		key := fmt.Sprint(r)
		if key != current {
			if done[key] {
				t.Fatalf("reply %s interleaved with another", key)
			}
			done[current] = true
			current = key
		} else if line <= last[key] {
			t.Fatalf("reply %s parts out of order", key)
		}
		last[key] = line
	}
	if len(last) != replies || len(posts) < 2*replies {
		t.Fatalf("%d posts from %d replies, want %d replies of at least 2 parts", len(posts), len(last), replies)
	}
}

func TestPostRefusesEmptyAndDefusesBroadcasts(t *testing.T) {
	e := setup(t, fakeslack.Options{}, nil)
	if err := e.tr.Post(context.Background(), "C1", "", " \n "); !errors.Is(err, slack.ErrEmptyText) {
		t.Fatalf("empty post = %v, want ErrEmptyText", err)
	}
	if err := e.tr.Post(context.Background(), "C1", "", "<!channel> and <!here|here> but <@U1>"); err != nil {
		t.Fatal(err)
	}
	if got := e.fs.Posts()[0].Text; got != "@channel and @here but <@U1>" {
		t.Fatalf("posted %q", got)
	}
}

func TestReact(t *testing.T) {
	e := setup(t, fakeslack.Options{}, nil)
	ctx := context.Background()
	for range 2 { // the second add is already_reacted: fine
		if err := e.tr.React(ctx, "C1", "1.1", ":eyes:", true); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.fs.Reactions(); len(got) != 1 || got[0] != (fakeslack.Reaction{Channel: "C1", TS: "1.1", Name: "eyes"}) {
		t.Fatalf("reactions = %+v", got)
	}
	e.fs.FailNext("reactions.remove", 1, 0)
	for range 2 { // the second remove is no_reaction: fine
		if err := e.tr.React(ctx, "C1", "1.1", "eyes", false); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.fs.Reactions(); len(got) != 0 {
		t.Fatalf("reactions left: %+v", got)
	}
	if err := e.tr.React(ctx, "C1", "", "eyes", true); err == nil {
		t.Fatal("a failing reactions.add returned nil")
	}
}

func TestEventsAPI(t *testing.T) {
	e := setup(t, fakeslack.Options{}, func(c *slack.Config) { c.ListenAddr = "127.0.0.1:0" })
	r := newRecorder()
	e.receive(t, r.handle)
	deadline := time.Now().Add(wait)
	for e.tr.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("events API server not listening")
		}
		time.Sleep(5 * time.Millisecond)
	}
	url := "http://" + e.tr.Addr().String() + "/slack/events"
	ctx := context.Background()
	status := func(resp *http.Response, err error) (int, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := status(fakeslack.PostSigned(ctx, url, signingSecret, time.Now(), fakeslack.URLVerification("chal-123")))
	if code != 200 || body != "chal-123" {
		t.Fatalf("url_verification: %d %q", code, body)
	}

	ts := e.fs.NextTS()
	ev, id := e.fs.EventCallback(message("C1", "channel", "U1", "over http", ts))
	if code, _ := status(fakeslack.PostSigned(ctx, url, signingSecret, time.Now(), ev)); code != 200 {
		t.Fatalf("signed event: %d", code)
	}
	if in := r.next(t); in.DeliveryID != id || in.Message.Text != "over http" {
		t.Fatalf("inbound = %+v", in)
	}

	refused := map[string]func() (*http.Response, error){
		"bad signature": func() (*http.Response, error) { return fakeslack.PostBadlySigned(ctx, url, ev) },
		"unsigned":      func() (*http.Response, error) { return fakeslack.PostUnsigned(ctx, url, ev) },
		"stale timestamp": func() (*http.Response, error) {
			return fakeslack.PostSigned(ctx, url, signingSecret, time.Now().Add(-10*time.Minute), ev)
		},
	}
	for name, send := range refused {
		if code, _ := status(send()); code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, code)
		}
	}

	// The handler failing must not be answered 200: Slack then retries.
	ts2 := e.fs.NextTS()
	r.mu.Lock()
	r.fail["C1:"+ts2] = 1
	r.mu.Unlock()
	ev2, _ := e.fs.EventCallback(message("C1", "channel", "U1", "retry me", ts2))
	if code, _ := status(fakeslack.PostSigned(ctx, url, signingSecret, time.Now(), ev2)); code != http.StatusInternalServerError {
		t.Fatalf("failed handler: status %d, want 500", code)
	}
	r.next(t)
	if code, _ := status(fakeslack.PostSigned(ctx, url, signingSecret, time.Now(), ev2)); code != 200 {
		t.Fatalf("retry: status %d, want 200", code)
	}
	r.next(t)

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 3 {
		t.Fatalf("handler called %d times, want 3 (refused requests never reach it)", len(r.got))
	}
}

func TestCheck(t *testing.T) {
	e := setup(t, fakeslack.Options{Scopes: []string{"chat:write", "channels:history", "users:read"}}, nil)
	rep, err := e.tr.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.BotUser != fakeslack.BotUserID || rep.TeamID != fakeslack.TeamID || !rep.ScopesKnown || rep.AppToken != nil {
		t.Fatalf("report = %+v", rep)
	}
	want := "app_mentions:read groups:history im:history mpim:history reactions:write"
	if got := strings.Join(rep.Missing, " "); got != want {
		t.Fatalf("missing = %q, want %q", got, want)
	}

	e = setup(t, fakeslack.Options{}, func(c *slack.Config) { c.AppToken = "xapp-wrong" })
	rep, err = e.tr.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Missing) != 0 || rep.AppToken == nil || !strings.Contains(rep.AppToken.Error(), "invalid_auth") {
		t.Fatalf("report = %+v, want app token invalid_auth", rep)
	}
}

func TestConfigNeverPrintsTokens(t *testing.T) {
	cfg := slack.Config{BotToken: "xoxb-123-SEKRIT", AppToken: "xapp-1-SEKRIT", SigningSecret: "shh-SEKRIT"}
	var b bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	log.Info("config", "cfg", cfg)
	fmt.Fprintf(&b, "%v %+v %#v %s", cfg, cfg, cfg, cfg)
	if strings.Contains(b.String(), "SEKRIT") || !strings.Contains(b.String(), "xoxb-…") {
		t.Fatalf("config printed as %s", b.String())
	}
}
