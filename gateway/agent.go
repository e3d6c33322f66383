package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/policy"
)

// maxLine bounds one protocol line from an agent (docs/protocol.md).
const maxLine = 1 << 20

// exitGrace is how long stdout may stay open after the agent exited (a
// leftover child holding it) before the gateway stops reading.
const exitGrace = 2 * time.Second

// agent supervises one agent's process: it starts it, feeds it its queue
// in order, posts its replies and restarts it when it exits.
type agent struct {
	g     *Gateway
	plan  *policy.Plan
	name  string
	conc  int
	limit int
	log   *slog.Logger
	wake  chan struct{}
	// failures counts failed starts and crashes since the agent last
	// answered a message.
	failures atomic.Int32
	// partial holds, by message id, the parts of a reply that a lookup
	// after a restart found already posted, for as long as the message
	// waits (an agent crash in between must not post them again). Only
	// the supervisor goroutine uses it.
	partial map[string][]string
}

func newAgent(g *Gateway, p *policy.Plan) *agent {
	a := &agent{g: g, plan: p, name: p.Name, conc: p.Slack.Concurrency, limit: p.Slack.QueueLimit,
		log: g.log.With("agent", p.Name), wake: make(chan struct{}, 1), partial: map[string][]string{}}
	if a.conc <= 0 {
		a.conc = 1
	}
	if a.limit <= 0 {
		a.limit = DefaultQueueLimit
	}
	return a
}

// poke tells the agent's supervisor that its queue changed.
func (a *agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *agent) down() bool { return int(a.failures.Load()) >= a.g.o.DownAfter }

func (a *agent) backoff(failures int32) time.Duration {
	d := a.g.o.BackoffMin
	for i := int32(1); i < failures && d < a.g.o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, a.g.o.BackoffMax)
}

// run keeps the agent running until ctx ends.
func (a *agent) run(ctx context.Context) {
	if !a.settleSuspects(ctx) {
		return
	}
	starts := 0
	for ctx.Err() == nil {
		proc, err := a.g.o.Runner.Start(ctx, a.plan)
		if err != nil {
			n := a.failures.Add(1)
			d := a.backoff(n)
			a.log.Error("agent failed to start", "err", err, "failures", n, "retry_in", d)
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		starts++
		attrs := []any{}
		if named, ok := proc.(interface{ Name() string }); ok {
			attrs = append(attrs, "container", named.Name())
		}
		if starts == 1 {
			a.log.Info("agent started", attrs...)
		} else {
			a.log.Info("agent restarted", append(attrs, "restarts", starts-1)...)
		}
		began := time.Now()
		end := a.session(ctx, proc)
		if ctx.Err() != nil {
			a.log.Info("agent stopped", "code", end.exit.Code)
			return
		}
		if time.Since(began) >= a.g.o.BackoffMax {
			a.failures.Store(0) // it ran long enough to count as healthy
		}
		n := a.failures.Add(1)
		d := a.backoff(n)
		a.log.Warn("agent exited; restarting", "reason", a.exitReason(end), "code", end.exit.Code, "err", end.err,
			"unanswered", len(end.unanswered), "failures", n, "retry_in", d)
		if !sleep(ctx, d) {
			return
		}
	}
}

// settleSuspects looks up, before the agent first starts, the replies that
// the run before a crash of serve may have posted (the messages queued at
// startup, suspects): a reply there whole is recorded and the message is
// not delivered again; one there in part keeps its found parts (partial)
// so that only the rest of the new reply is posted. It runs before the
// agent starts, not while it serves, so that a lookup waiting out a rate
// limit holds up no reply and no exit of the agent, only its first
// start. It reports false when ctx ended: a lookup cut short by a stop is
// no answer, and the message stays queued for the next start's lookup
// (delivered now, its reply would be posted in full during the stop).
func (a *agent) settleSuspects(ctx context.Context) bool {
	pending, err := a.g.o.Store.Pending(a.name)
	if err != nil {
		a.log.Error("read queue", "err", err)
		return ctx.Err() == nil
	}
	for _, e := range pending {
		m := e.Message
		if !a.g.suspects.takeReply(a.name, m.ID) {
			continue
		}
		done, complete := a.g.lookup(ctx, a.log.With("id", m.ID), m.Channel, m.Thread, m.TS, a.g.replyKey(a.name, m.ID))
		if ctx.Err() != nil {
			return false
		}
		if !complete {
			if len(done) > 0 {
				a.partial[m.ID] = done
			}
			continue
		}
		a.log.Info("reply was posted before the restart; not delivering the message again", "id", m.ID)
		if err := a.g.o.Store.Done(a.name, m.ID); err != nil {
			a.log.Error("record reply posted", "id", m.ID, "err", err)
		}
		// The crashed run may have left its "working" reaction on the
		// message; with no delivery, nothing else takes it off (removing
		// one that is not there is harmless).
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := a.g.o.Transport.React(rctx, m.Channel, m.TS, "eyes", false); err != nil {
			a.log.Debug("remove reaction", "id", m.ID, "err", err)
		}
		cancel()
	}
	return true
}

type sessionEnd struct {
	exit Exit
	err  error
	// closedOutput: the agent closed its stdout while it ran, and the
	// gateway stopped it (it could no longer answer).
	closedOutput bool
	unanswered   []string
}

// flight is a message written to the agent and not yet answered.
type flight struct {
	msg     chat.Message
	reacted bool
	// done are the parts of the reply found in the conversation before
	// the message was delivered again (a suspect after a restart).
	done []string
}

// session serves one run of the agent's process until it exits or ctx
// ends (then the agent gets end of file on stdin, StopTimeout to finish,
// and is stopped).
func (a *agent) session(ctx context.Context, proc Process) sessionEnd {
	o := a.g.o
	// Replies in progress may still be posted while the agent shuts down.
	postCtx, cancelPost := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPost()

	quit := make(chan struct{})
	defer close(quit)
	go func() {
		// Posting may take StopTimeout past shutdown, not longer.
		select {
		case <-ctx.Done():
		case <-quit:
			return
		}
		t := time.NewTimer(o.StopTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelPost()
		case <-quit:
		}
	}()
	replies := make(chan chat.Reply)
	go a.readReplies(proc, replies, quit)

	var end sessionEnd
	exited := make(chan struct{})
	go func() {
		end.exit, end.err = proc.Wait()
		close(exited)
	}()

	// Writes go through their own goroutine so that an agent that stops
	// reading cannot wedge the supervisor. At most conc messages are in
	// flight, so the buffer never fills.
	writes := make(chan []byte, a.conc)
	stdin := proc.Stdin()
	go func() {
		defer stdin.Close()
		for b := range writes {
			if _, err := stdin.Write(b); err != nil {
				a.log.Debug("write to agent failed", "err", err)
				for range writes {
				}
				return
			}
		}
	}()
	closeWrites := sync.OnceFunc(func() { close(writes) })
	defer closeWrites()
	stopOnce := sync.OnceFunc(func() { go func() { _ = proc.Stop() }() })

	inflight := map[string]*flight{}
	stopping := false
	ctxDone := ctx.Done()
	exitedC := (<-chan struct{})(exited)
	var stopTimer, graceTimer, outputTimer <-chan time.Time
	for replies != nil || exitedC != nil {
		if !stopping && exitedC != nil && replies != nil && len(inflight) < a.conc {
			a.dispatch(inflight, writes)
		}
		select {
		case <-a.wake:
		case r, ok := <-replies:
			if !ok {
				replies = nil
				if exitedC != nil {
					// stdout closed, usually because the process is exiting;
					// if it lives on, it can no longer answer: end it then.
					outputTimer = time.After(exitGrace)
				}
				continue
			}
			a.handleReply(postCtx, r, inflight)
		case <-exitedC:
			exitedC = nil
			graceTimer = time.After(exitGrace)
		case <-outputTimer:
			if exitedC != nil {
				// Its end is then serve's stop, which says nothing of why.
				end.closedOutput = !stopping
				stopOnce()
			}
		case <-graceTimer:
			a.log.Warn("agent exited but its stdout stays open; ignoring further output")
			replies = nil
		case <-ctxDone:
			ctxDone = nil
			stopping = true
			closeWrites() // end of file: finish the current message and exit
			stopTimer = time.After(o.StopTimeout)
		case <-stopTimer:
			a.log.Warn("agent did not exit after end of input; stopping it", "timeout", o.StopTimeout)
			stopOnce()
		}
	}
	if err := proc.Stop(); err != nil {
		a.log.Debug("remove agent container", "err", err)
	}
	for id, f := range inflight {
		end.unanswered = append(end.unanswered, id)
		if f.reacted {
			// The message goes back to waiting; a new run reacts again.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = o.Transport.React(rctx, f.msg.Channel, f.msg.TS, "eyes", false)
			cancel()
		}
	}
	// Only an exit of the agent's own counts against a message; a stop on
	// shutdown (or the shutdown signal reaching the agent first) does not.
	if !stopping && ctx.Err() == nil && len(end.unanswered) > 0 {
		a.countAttempts(end.unanswered, a.exitReason(end))
	}
	return end
}

// readReplies parses the agent's stdout into replies until it closes.
func (a *agent) readReplies(proc Process, out chan<- chat.Reply, quit <-chan struct{}) {
	defer close(out)
	sc := bufio.NewScanner(proc.Stdout())
	sc.Buffer(make([]byte, 64*1024), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var r chat.Reply
		if err := json.Unmarshal(line, &r); err != nil || r.ReplyTo == "" {
			a.log.Warn("skipped a line that is not a protocol reply", "line", truncate(string(line), 200))
			continue
		}
		select {
		case out <- r:
		case <-quit:
			return
		}
	}
	if err := sc.Err(); err != nil {
		a.log.Warn("stopped reading agent output", "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// dispatch writes the oldest waiting messages not yet in flight, up to the
// agent's concurrency. A message with parts of its reply already posted
// before a restart (settleSuspects) gets only the rest posted.
func (a *agent) dispatch(inflight map[string]*flight, writes chan<- []byte) {
	pending, err := a.g.o.Store.Pending(a.name)
	if err != nil {
		a.log.Error("read queue", "err", err)
		return
	}
	for _, e := range pending {
		if len(inflight) >= a.conc {
			return
		}
		if inflight[e.Message.ID] != nil {
			continue
		}
		f := &flight{msg: e.Message, done: a.partial[e.Message.ID]}
		b, err := json.Marshal(e.Message)
		if err != nil {
			continue
		}
		inflight[e.Message.ID] = f
		writes <- append(b, '\n')
	}
}

// handleReply acts on one line of the agent. Only a message in flight to
// this agent can be answered: the agent names a message, and a channel
// only among those its file grants with post_to.
func (a *agent) handleReply(ctx context.Context, r chat.Reply, inflight map[string]*flight) {
	o := a.g.o
	f := inflight[r.ReplyTo]
	if f == nil {
		a.log.Warn("dropped a reply to a message that is not waiting for this agent", "reply_to", r.ReplyTo)
		return
	}
	if r.PostTo() {
		a.postTo(ctx, f.msg, r)
		return
	}
	if !r.Final() {
		if r.Status == "working" && !f.reacted {
			f.reacted = true
			if err := o.Transport.React(ctx, f.msg.Channel, f.msg.TS, "eyes", true); err != nil {
				a.log.Debug("add reaction", "id", f.msg.ID, "err", err)
			}
		}
		return
	}
	if strings.TrimSpace(r.Text) != "" {
		if err := a.post(ctx, f, r.Text); err != nil {
			if ctx.Err() != nil {
				// Shutting down: the message stays queued and is
				// delivered again on the next start.
				return
			}
			a.log.Error("reply is undeliverable; giving up on it", "id", f.msg.ID,
				"channel", f.msg.Channel, "thread", f.msg.Thread, "text", truncate(r.Text, 500), "err", err)
		}
	}
	// The reply is out: record it before anything else, so that a crash
	// from here on never answers the message twice.
	if err := o.Store.Done(a.name, f.msg.ID); err != nil {
		a.log.Error("record reply posted", "id", f.msg.ID, "err", err)
	}
	delete(inflight, r.ReplyTo)
	delete(a.partial, r.ReplyTo)
	a.failures.Store(0)
	a.log.Debug("message answered", "id", f.msg.ID)
	if f.reacted {
		if err := o.Transport.React(ctx, f.msg.Channel, f.msg.TS, "eyes", false); err != nil {
			a.log.Debug("remove reaction", "id", f.msg.ID, "err", err)
		}
	}
}

// postTo posts a separate, top-level message into r.Channel on behalf of
// the message being handled, if the agent's file grants that channel
// (slack.post_to); otherwise the post is refused and logged. It never
// completes the message. It is not recorded: if the agent is given the
// message again after a crash, it may post again (at least once, as
// replies).
func (a *agent) postTo(ctx context.Context, m chat.Message, r chat.Reply) {
	log := a.log.With("id", m.ID, "channel", r.Channel)
	if !slices.Contains(a.plan.Slack.PostTo, r.Channel) {
		log.Warn("refused a post to a channel the agent file does not grant (add it to slack.post_to)",
			"post_to", strings.Join(a.plan.Slack.PostTo, ","), "text", truncate(r.Text, 200))
		return
	}
	if strings.TrimSpace(r.Text) == "" {
		log.Warn("skipped an empty post to another channel")
		return
	}
	// Not keyed: a post_to is not recorded, so it is never looked up.
	err := retryPost(ctx, a.g.o, log, r.Channel, func() error { return a.g.o.Transport.Post(ctx, r.Channel, "", r.Text) })
	if err != nil {
		if ctx.Err() == nil {
			log.Error("post to another channel is undeliverable; giving up on it", "text", truncate(r.Text, 500), "err", err)
		}
		return
	}
	log.Info("posted to another channel (post_to)")
}

// post posts a reply into the message's thread. The transport already
// waits out rate limits; other failures are retried with backoff for as
// long as it takes (Slack being down must not lose replies), unless the
// transport says the reply is undeliverable.
func (a *agent) post(ctx context.Context, f *flight, text string) error {
	m := f.msg
	return a.g.post(ctx, a.log.With("id", m.ID), m.Channel, m.Thread, text, a.g.replyKey(a.name, m.ID), f.done)
}

// retryPost runs send, a post into channel, until it succeeds, fails for
// good (Undeliverable) or ctx ends, with backoff between attempts.
func retryPost(ctx context.Context, o Options, log *slog.Logger, channel string, send func() error) error {
	d := o.BackoffMin
	for attempt := 1; ; attempt++ {
		err := send()
		if err == nil || Undeliverable(err) || ctx.Err() != nil {
			return err
		}
		log.Warn("post failed; retrying", "channel", channel, "attempt", attempt, "retry_in", d, "err", err)
		if !sleep(ctx, d) {
			return ctx.Err()
		}
		d = min(2*d, o.BackoffMax)
	}
}

// countAttempts records that the agent exited while these messages were in
// flight, tells each sender what happened (why, and whether the message is
// retried or given up after MaxAttempts) and gives up on those that reached
// MaxAttempts. The count, the notices and the give-ups are one store record.
func (a *agent) countAttempts(ids []string, reason string) {
	o := a.g.o
	note := func(at Attempt) *Notice {
		return &Notice{Channel: at.Entry.Message.Channel, Thread: at.Entry.Message.Thread,
			Text: a.attemptNotice(reason, at), Since: at.Entry.Message.TS}
	}
	atts, err := o.Store.AddAttempt(a.name, ids, o.MaxAttempts, note)
	if err != nil {
		a.log.Error("count delivery attempts", "err", err)
		return
	}
	for _, at := range atts {
		if at.GaveUp {
			delete(a.partial, at.Entry.Message.ID) // never delivered again
			a.log.Error("gave up on a message after repeated agent failures", "id", at.Entry.Message.ID,
				"attempts", at.Entry.Attempts, "reason", reason)
		} else {
			a.log.Warn("agent failed on a message; retrying it", "id", at.Entry.Message.ID,
				"attempt", at.Entry.Attempts, "reason", reason)
		}
	}
	if len(atts) > 0 {
		a.g.pokeOutbox()
	}
}

// attemptNotice is what the sender of a message is told when the agent
// ended while handling it. It never counts as the message's reply: a retry
// that succeeds still answers it.
func (a *agent) attemptNotice(reason string, at Attempt) string {
	n, limit := at.Entry.Attempts, a.g.o.MaxAttempts
	if at.GaveUp {
		return fmt.Sprintf("Agent `%s` %s while handling this message (attempt %d of %d); giving up on this message. "+
			"The agent's log has the details.", a.name, reason, n, limit)
	}
	return fmt.Sprintf("Agent `%s` %s while handling this message; restarting it and retrying (attempt %d of %d).",
		a.name, reason, n+1, limit)
}

// exitReason says in a chat user's terms why a run of the agent ended.
func (a *agent) exitReason(end sessionEnd) string {
	switch e := end.exit; {
	case end.err != nil:
		return "could not be run"
	case end.closedOutput:
		return "closed its output and was stopped"
	case e.OOMKilled:
		if m := a.plan.Limits.MemoryBytes; m > 0 {
			return "ran out of memory (limit " + memSize(m) + ")"
		}
		return "ran out of memory"
	case e.Signal != "":
		return "was killed by " + e.Signal
	case e.Code == 0:
		return "exited without answering"
	default:
		return fmt.Sprintf("crashed (exit code %d)", e.Code)
	}
}

// memSize renders a memory limit in MiB, as agent files usually give it.
func memSize(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
