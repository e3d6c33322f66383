package gateway

// The fakes below stand in for Slack (memTransport) and for containers
// (procRunner, which runs an agent as a goroutine speaking the protocol over
// pipes). They let these tests drive ordering, restarts and crashes
// precisely; the real Slack transport and real containers are exercised
// end to end in test/serve_test.go.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/policy"
)

type post struct{ Channel, Thread, Text string }

type reaction struct {
	Channel, TS, Name string
	Add               bool
}

// postLog is what reached "Slack", shared by the transports of a test so
// that it survives a simulated crash.
type postLog struct {
	mu        sync.Mutex
	posts     []post
	reactions []reaction
}

func (l *postLog) Posts() []post {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.posts)
}

func (l *postLog) Reactions() []reaction {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reactions)
}

// memTransport is an in-memory Transport.
type memTransport struct {
	log     *postLog
	handler chan Handler
	// crashed makes every call fail, as if the process had died: nothing
	// it does afterwards reaches the platform.
	crashed atomic.Bool
	// failPosts makes the next n posts fail.
	failPosts atomic.Int32
	// postHook, if set, runs before a post is recorded.
	postHook func(p post)
}

func newMemTransport(l *postLog) *memTransport {
	if l == nil {
		l = &postLog{}
	}
	return &memTransport{log: l, handler: make(chan Handler, 1)}
}

func (m *memTransport) Receive(ctx context.Context, h Handler) error {
	m.handler <- h
	<-ctx.Done()
	return ctx.Err()
}

func (m *memTransport) Post(ctx context.Context, channel, thread, text string) error {
	if m.crashed.Load() {
		return errors.New("crashed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.failPosts.Load() > 0 {
		m.failPosts.Add(-1)
		return errors.New("injected post failure")
	}
	p := post{channel, thread, text}
	if m.postHook != nil {
		m.postHook(p)
	}
	if m.crashed.Load() {
		return errors.New("crashed")
	}
	m.log.mu.Lock()
	m.log.posts = append(m.log.posts, p)
	m.log.mu.Unlock()
	return nil
}

func (m *memTransport) React(ctx context.Context, channel, ts, name string, add bool) error {
	if m.crashed.Load() {
		return errors.New("crashed")
	}
	m.log.mu.Lock()
	m.log.reactions = append(m.log.reactions, reaction{channel, ts, name, add})
	m.log.mu.Unlock()
	return nil
}

// fakeAgent is the inside of a fake container: an agent program.
type fakeAgent struct {
	name   string
	run    int // 1 for the first start of this agent, 2 after a restart, …
	sc     *bufio.Scanner
	out    io.Writer
	killed <-chan struct{}
	// ended, set by Die, is how the "container" ended instead of the
	// program's exit code.
	ended *Exit
}

// Die ends the program as the kernel would (an OOM kill, a signal): the
// program returns what Die returns.
func (a *fakeAgent) Die(e Exit) int {
	a.ended = &e
	return e.Code
}

// Next reads the next message; false at end of input.
func (a *fakeAgent) Next() (chat.Message, bool) {
	for a.sc.Scan() {
		var m chat.Message
		if err := json.Unmarshal(a.sc.Bytes(), &m); err == nil {
			return m, true
		}
	}
	return chat.Message{}, false
}

func (a *fakeAgent) Reply(r chat.Reply) {
	b, _ := json.Marshal(r)
	_, _ = a.out.Write(append(b, '\n'))
}

// agentFunc is an agent program; its result is the exit code.
type agentFunc func(a *fakeAgent) int

// echo answers every message with "echo: TEXT", after a working status.
func echo(a *fakeAgent) int {
	for {
		m, ok := a.Next()
		if !ok {
			return 0
		}
		a.Reply(chat.Reply{ReplyTo: m.ID, Status: "working"})
		a.Reply(chat.Reply{ReplyTo: m.ID, Text: "echo: " + m.Text})
	}
}

// procRunner runs agentFuncs as in-process "containers".
type procRunner struct {
	mu       sync.Mutex
	programs map[string]agentFunc
	starts   map[string]int
	failing  map[string]bool // Start fails
	running  atomic.Int32
}

func newProcRunner(programs map[string]agentFunc) *procRunner {
	return &procRunner{programs: programs, starts: map[string]int{}, failing: map[string]bool{}}
}

func (r *procRunner) setFailing(agent string, v bool) {
	r.mu.Lock()
	r.failing[agent] = v
	r.mu.Unlock()
}

func (r *procRunner) Starts(agent string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts[agent]
}

func (r *procRunner) Start(_ context.Context, p *policy.Plan) (Process, error) {
	r.mu.Lock()
	fn := r.programs[p.Name]
	fail := r.failing[p.Name]
	if !fail {
		r.starts[p.Name]++
	}
	run := r.starts[p.Name]
	r.mu.Unlock()
	if fail || fn == nil {
		return nil, fmt.Errorf("agent %s: cannot start (test)", p.Name)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	killed := make(chan struct{})
	fp := &fakeProc{inR: inR, inW: inW, outR: outR, outW: outW, done: make(chan struct{}), killed: killed}
	sc := bufio.NewScanner(inR)
	r.running.Add(1)
	go func() {
		defer r.running.Add(-1)
		fa := &fakeAgent{name: p.Name, run: run, sc: sc, out: outW, killed: killed}
		fp.exit = Exit{Code: fn(fa)}
		if fa.ended != nil {
			fp.exit = *fa.ended
		}
		inR.Close()
		outW.Close()
		close(fp.done)
	}()
	return fp, nil
}

type fakeProc struct {
	inR    *io.PipeReader
	inW    *io.PipeWriter
	outR   *io.PipeReader
	outW   *io.PipeWriter
	done   chan struct{}
	exit   Exit
	killed chan struct{}
	once   sync.Once
}

func (p *fakeProc) Stdin() io.WriteCloser { return p.inW }
func (p *fakeProc) Stdout() io.Reader     { return p.outR }
func (p *fakeProc) Wait() (Exit, error) {
	<-p.done
	return p.exit, nil
}

func (p *fakeProc) Stop() error {
	p.once.Do(func() {
		p.inW.Close()
		select {
		case <-p.done:
		case <-time.After(time.Second):
			close(p.killed)
			p.inR.CloseWithError(errors.New("killed"))
			<-p.done
		}
	})
	return nil
}

// plan is an agent with a Slack route on channel C1 (and DMs).
func plan(name string, mod ...func(*policy.SlackRoute)) *policy.Plan {
	r := &policy.SlackRoute{Channels: []string{"C1"}, DM: true}
	for _, f := range mod {
		f(r)
	}
	return &policy.Plan{Name: name, Slack: r}
}

// harness is one gateway over a store, a memTransport and a procRunner.
type harness struct {
	t      *testing.T
	gw     *Gateway
	tr     testTransport
	runner *procRunner
	store  *Store
	cancel context.CancelFunc
	done   chan error
	h      Handler
	once   sync.Once
}

func testOptions(o *Options) {
	o.BackoffMin = 5 * time.Millisecond
	o.BackoffMax = 50 * time.Millisecond
	o.StopTimeout = 2 * time.Second
}

// testTransport is a fake transport start can drive: memTransport, or
// one that embeds it.
type testTransport interface {
	Transport
	handlers() chan Handler
}

func (m *memTransport) handlers() chan Handler { return m.handler }

func start(t *testing.T, store *Store, tr testTransport, runner *procRunner, plans []*policy.Plan, mod ...func(*Options)) *harness {
	t.Helper()
	o := Options{Transport: tr, Runner: runner, Store: store, Agents: plans}
	testOptions(&o)
	for _, f := range mod {
		f(&o)
	}
	gw, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, gw: gw, tr: tr, runner: runner, store: store, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- gw.Run(ctx) }()
	select {
	case h.h = <-tr.handlers():
	case <-time.After(5 * time.Second):
		t.Fatal("gateway did not start receiving")
	}
	t.Cleanup(h.stop)
	return h
}

// stop shuts the gateway down cleanly and waits for it.
func (h *harness) stop() {
	h.once.Do(func() {
		h.cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			h.t.Error("gateway did not stop")
		}
	})
}

func (h *harness) send(in chat.Inbound) {
	h.t.Helper()
	if err := h.h(context.Background(), in); err != nil {
		h.t.Fatalf("handler: %v", err)
	}
}

// msg is a channel message in C1 from U1 with a unique ts.
func msg(n int, text string) chat.Inbound {
	ts := fmt.Sprintf("1700000000.%06d", n)
	return chat.Inbound{
		Message:    chat.Message{ID: "C1:" + ts, Channel: "C1", Thread: ts, User: "U1", Text: text, TS: ts},
		DeliveryID: "Ev" + ts,
	}
}

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir + "/gateway.db")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func texts(ps []post) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Text
	}
	return out
}
