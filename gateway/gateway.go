package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/policy"
)

// Defaults of Options.
const (
	DefaultQueueLimit  = 100
	DefaultBackoffMin  = time.Second
	DefaultBackoffMax  = 30 * time.Second
	DefaultStopTimeout = 10 * time.Second
	DefaultMaxAttempts = 5
	DefaultDownAfter   = 3
	// SeenRetention is how long delivery and message ids are remembered
	// for de-duplication after their message was answered. Slack retries
	// an unacknowledged event for minutes, not days.
	SeenRetention = 7 * 24 * time.Hour
)

// Options wire a Gateway.
type Options struct {
	Transport Transport
	Runner    Runner
	Store     *Store
	// Agents are the plans to serve; each needs a Slack route.
	Agents []*policy.Plan
	Logger *slog.Logger
	// BackoffMin and BackoffMax bound the delay before an agent that
	// exited is started again: it doubles from Min with every failure in a
	// row, up to Max. They also pace retries of a failed post.
	BackoffMin, BackoffMax time.Duration
	// StopTimeout is how long an agent may take to finish its message
	// after end of file on stdin before it is stopped by force.
	StopTimeout time.Duration
	// MaxAttempts is how many times a message may be delivered to an agent
	// that then exits without answering before the gateway gives up on it
	// (a message that crashes its agent would otherwise block its queue).
	MaxAttempts int
	// DownAfter is the number of failed starts or crashes in a row from
	// which an agent counts as down: a new message for it is queued and its
	// sender told that the answer will wait.
	DownAfter int
	// Now is the clock (tests).
	Now func() time.Time
}

// Gateway routes a transport's messages to agent processes and their
// replies back. Create it with New, then Run it.
type Gateway struct {
	o      Options
	log    *slog.Logger
	plans  []*policy.Plan
	agents map[string]*agent
	order  []*agent
	outbox chan struct{}
	// keyed is the transport when it can find its own posts again
	// (KeyedTransport); nil otherwise.
	keyed    KeyedTransport
	suspects suspects
	// lookupWarned: a failed lookup is logged as a warning once, then at
	// debug level (a missing scope would fail every one of them).
	lookupWarned atomic.Bool
}

// lookupTimeout bounds one lookup of a post at startup. Slack answers
// history reads in well under a second but rate-limits them (a 429 is
// waited out); past this the post is made again rather than held up.
const lookupTimeout = time.Minute

// New checks the options and prepares one supervisor per agent.
func New(o Options) (*Gateway, error) {
	if o.Transport == nil || o.Runner == nil || o.Store == nil {
		return nil, errors.New("gateway: Transport, Runner and Store are required")
	}
	if len(o.Agents) == 0 {
		return nil, errors.New("gateway: no agents to serve")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(DefaultBackoffMax, o.BackoffMin)
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.DownAfter <= 0 {
		o.DownAfter = DefaultDownAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	g := &Gateway{o: o, log: o.Logger, agents: map[string]*agent{}, outbox: make(chan struct{}, 1)}
	g.keyed, _ = o.Transport.(KeyedTransport)
	for _, p := range o.Agents {
		if p.Slack == nil {
			return nil, fmt.Errorf("agent %s has no slack section: add one with the channels it answers in", p.Name)
		}
		if g.agents[p.Name] != nil {
			return nil, fmt.Errorf("agent %s is listed twice", p.Name)
		}
		a := newAgent(g, p)
		g.agents[p.Name] = a
		g.order = append(g.order, a)
		g.plans = append(g.plans, p)
	}
	return g, nil
}

// Handle is the transport's Handler: it routes one inbound message and
// stores it for every agent it reaches before returning nil, so the
// transport acknowledges only what survives a crash.
func (g *Gateway) Handle(_ context.Context, in chat.Inbound) error {
	m := &in.Message
	if m.ID == "" {
		if m.Channel == "" || m.TS == "" {
			g.log.Warn("dropped a message without id, channel or ts", "delivery", in.DeliveryID)
			return nil
		}
		// A channel's timestamps are unique: a stable id across redeliveries.
		m.ID = m.Channel + ":" + m.TS
	}
	if m.Thread == "" {
		m.Thread = m.TS
	}
	accepted, refused := Route(g.plans, in)
	if len(accepted) == 0 && len(refused) == 0 {
		g.log.Debug("message matches no agent's route", "id", m.ID, "channel", m.Channel)
		return nil
	}
	var targets []Target
	for _, p := range accepted {
		a := g.agents[p.Name]
		t := Target{Agent: p.Name, Limit: a.limit, Full: g.notice(in, fmt.Sprintf(
			"Agent %s is busy: %d messages are already waiting for it. This message was not queued; please send it again later.",
			p.Name, a.limit))}
		if a.down() {
			n := g.notice(in, fmt.Sprintf(
				"Agent %s is down (it keeps failing and is being restarted). Your message is queued and will be answered when it is back.",
				p.Name))
			t.Note = &n
		}
		targets = append(targets, t)
	}
	var notices []Notice
	if len(accepted) == 0 {
		notices = append(notices, g.notice(in, fmt.Sprintf(
			"Sorry, you are not on the list of people allowed to talk to %s here.", agentNames(refused))))
	}
	acc, err := g.o.Store.Accept(in, targets, notices, g.o.Now())
	if err != nil {
		return err
	}
	if acc.Duplicate {
		g.log.Info("duplicate delivery ignored", "id", m.ID, "delivery", in.DeliveryID)
		return nil
	}
	for _, name := range acc.Queued {
		g.agents[name].poke()
	}
	if len(notices) > 0 || len(acc.Full) > 0 || hasNote(targets) {
		g.pokeOutbox()
	}
	switch {
	case len(acc.Queued) > 0:
		g.log.Info("message queued", "id", m.ID, "agents", strings.Join(acc.Queued, ","))
	case len(acc.Full) > 0:
		g.log.Warn("message refused: queue full", "id", m.ID, "agents", strings.Join(acc.Full, ","))
	default:
		g.log.Info("message refused: user not allowed", "id", m.ID, "user", m.User, "agents", agentNames(refused))
	}
	return nil
}

func hasNote(ts []Target) bool {
	for _, t := range ts {
		if t.Note != nil {
			return true
		}
	}
	return false
}

func agentNames(ps []*policy.Plan) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

func (g *Gateway) notice(in chat.Inbound, text string) Notice {
	return Notice{Channel: in.Message.Channel, Thread: in.Message.Thread, Text: text, Since: in.Message.TS}
}

func (g *Gateway) pokeOutbox() {
	select {
	case g.outbox <- struct{}{}:
	default:
	}
}

// Run starts the agents, then receives messages until ctx ends or the
// transport fails for good. It returns once every agent has stopped; its
// error is the transport's (nil after ctx ended).
func (g *Gateway) Run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Before anything is posted: what the store holds now is all that a
	// crash of the previous run can have left posted but not recorded.
	g.markSuspects()
	var wg sync.WaitGroup
	for _, a := range g.order {
		wg.Go(func() { a.run(rctx) })
	}
	wg.Go(func() { g.postNotices(rctx) })
	wg.Go(func() { g.prune(rctx) })
	err := g.o.Transport.Receive(rctx, g.Handle)
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("transport stopped receiving")
	}
	return err
}

// postNotices posts the outbox (the gateway's own replies) until ctx
// ends, oldest first, retrying like agent replies.
func (g *Gateway) postNotices(ctx context.Context) {
	for {
		items, err := g.o.Store.Outbox()
		if err != nil {
			g.log.Error("read outbox", "err", err)
		}
		for _, it := range items {
			key := g.noticeKey(it.Seq)
			var done []string
			if g.suspects.takeNotice(it.Seq) {
				var complete bool
				done, complete = g.lookup(ctx, g.log.With("notice", it.Seq), it.Channel, it.Thread, noticeSince(it.Notice), key)
				if ctx.Err() != nil {
					return // looked up again on the next start
				}
				if complete {
					g.log.Info("notice was posted before the restart; not posting it again", "channel", it.Channel, "thread", it.Thread)
					if err := g.o.Store.NoticePosted(it.Seq); err != nil {
						g.log.Error("record notice posted", "err", err)
					}
					continue
				}
			}
			if err := g.post(ctx, g.log, it.Channel, it.Thread, it.Text, key, done); err != nil {
				if ctx.Err() != nil {
					return
				}
				g.log.Error("notice is undeliverable; giving up on it", "channel", it.Channel, "thread", it.Thread, "text", it.Text, "err", err)
			}
			if err := g.o.Store.NoticePosted(it.Seq); err != nil {
				g.log.Error("record notice posted", "err", err)
			}
		}
		select {
		case <-g.outbox:
		case <-ctx.Done():
			return
		}
	}
}

func (g *Gateway) prune(ctx context.Context) {
	for {
		if n, err := g.o.Store.Prune(g.o.Now().Add(-SeenRetention)); err != nil {
			g.log.Error("prune seen ids", "err", err)
		} else if n > 0 {
			g.log.Debug("pruned seen ids", "count", n)
		}
		select {
		case <-time.After(time.Hour):
		case <-ctx.Done():
			return
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// suspects are the posts that a crash of the previous run may have left
// posted but not recorded as posted: the messages still queued and the
// notices still in the outbox when the gateway starts. Each is looked up
// once, before it is posted (or delivered to its agent) again; anything
// accepted later was never posted by an earlier run. Marking them needs
// no write: the store's content at startup is the list.
type suspects struct {
	mu      sync.Mutex
	replies map[string]map[string]bool // agent → message id
	notices map[uint64]bool            // outbox seq
}

// markSuspects takes the list from the store, if the transport can look
// posts up at all.
func (g *Gateway) markSuspects() {
	if g.keyed == nil {
		return
	}
	s := &g.suspects
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies, s.notices = map[string]map[string]bool{}, map[uint64]bool{}
	for name := range g.agents {
		pending, err := g.o.Store.Pending(name)
		if err != nil {
			g.log.Error("read queue", "agent", name, "err", err)
			continue
		}
		for _, e := range pending {
			if s.replies[name] == nil {
				s.replies[name] = map[string]bool{}
			}
			s.replies[name][e.Message.ID] = true
		}
	}
	items, err := g.o.Store.Outbox()
	if err != nil {
		g.log.Error("read outbox", "err", err)
	}
	for _, it := range items {
		s.notices[it.Seq] = true
	}
}

// takeReply reports whether the agent's reply to message id is a suspect,
// and forgets it: it is looked up once.
func (s *suspects) takeReply(agent, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.replies[agent][id] {
		return false
	}
	delete(s.replies[agent], id)
	return true
}

// takeNotice is takeReply for the notice at outbox seq.
func (s *suspects) takeNotice(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.notices[seq] {
		return false
	}
	delete(s.notices, seq)
	return true
}

// replyKey names the agent's reply to a message in every store and run:
// message ids are unique in a workspace, agent names contain no ':'.
func (g *Gateway) replyKey(agent, id string) string {
	return "r:" + g.o.Store.ID() + ":" + agent + ":" + id
}

// noticeKey names a notice: outbox seqs are unique within a store only.
func (g *Gateway) noticeKey(seq uint64) string {
	return "n:" + g.o.Store.ID() + ":" + strconv.FormatUint(seq, 10)
}

// noticeSince is where a notice can be found from; notices stored before
// they had Since are found from their thread.
func noticeSince(n Notice) string {
	if n.Since != "" {
		return n.Since
	}
	return n.Thread
}

// lookup asks the transport what of the post with key is already in the
// conversation. A failed lookup is not fatal: the post is then made in
// full (at least once stays the floor), and the first failure is logged
// as a warning.
func (g *Gateway) lookup(ctx context.Context, log *slog.Logger, channel, thread, since, key string) (done []string, complete bool) {
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	done, complete, err := g.keyed.Posted(lctx, channel, thread, since, key)
	if err == nil {
		return done, complete
	}
	if ctx.Err() == nil && g.lookupWarned.CompareAndSwap(false, true) {
		log.Warn("could not check whether a post went out before the restart; posting it, so it may show twice "+
			"(further failures are logged at debug level)", "channel", channel, "thread", thread, "err", err)
	} else {
		log.Debug("could not check whether a post went out before the restart; posting it", "channel", channel, "thread", thread, "err", err)
	}
	return nil, false
}

// post posts text into the thread, keyed when the transport supports it,
// with retries (retryPost). done are parts already in the conversation;
// parts a failed attempt got out are not posted again by the next.
func (g *Gateway) post(ctx context.Context, log *slog.Logger, channel, thread, text, key string, done []string) error {
	return retryPost(ctx, g.o, log, channel, func() error {
		if g.keyed == nil {
			return g.o.Transport.Post(ctx, channel, thread, text)
		}
		var err error
		done, err = g.keyed.PostKeyed(ctx, channel, thread, text, key, done)
		return err
	})
}
