package slack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	goslack "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/clawrun/clawrun/chat"
)

// Transport is clawrun's connection to one Slack app: messages in through
// Socket Mode (or the Events API over HTTP), replies and reactions out
// through the Web API. It satisfies gateway.Transport.
type Transport struct {
	cfg  Config
	log  *slog.Logger
	api  *goslack.Client // bot token, Web API
	http *http.Client

	pace *pacer
	seen *recent // message ids handled, to drop an app_mention's twin

	mu       sync.Mutex
	auth     *goslack.AuthTestResponse
	listener net.Addr
}

// New checks cfg for the chosen mode and returns a transport. It makes no
// network call; Connect (or Receive) verifies the tokens.
func New(cfg Config) (*Transport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "slack")
	if u, err := url.Parse(cfg.APIURL); err == nil && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		log.Warn("the Slack Web API URL is plain http: tokens cross the network unencrypted", "api_url", cfg.APIURL)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	interval := cfg.PostInterval
	if interval == 0 {
		interval = DefaultPostInterval
	}
	return &Transport{
		cfg:  cfg,
		log:  log,
		http: hc,
		// slack-go logs only in debug mode, which stays off: its debug
		// output includes request payloads.
		api:  goslack.New(cfg.BotToken, goslack.OptionAPIURL(cfg.APIURL), goslack.OptionHTTPClient(hc)),
		pace: newPacer(interval, postBurst),
		seen: newRecent(4096),
	}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Connect verifies the bot token with auth.test and learns the bot's user
// id, which Receive needs to ignore the bot's own messages. Receive calls it
// when it was not called before.
func (t *Transport) Connect(ctx context.Context) error {
	var res *goslack.AuthTestResponse
	err := t.retry(ctx, "auth.test", func() error {
		var err error
		res, err = t.api.AuthTestContext(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("slack auth.test with %s: %w (check the bot token and %s)", EnvBotToken, err, EnvAPIURL)
	}
	t.mu.Lock()
	t.auth = res
	t.mu.Unlock()
	t.log.Info("slack bot authenticated", "team", res.Team, "bot_user", res.UserID)
	return nil
}

// BotUserID is the bot's Slack user id, known after Connect or once Receive
// has started; empty before.
func (t *Transport) BotUserID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.auth == nil {
		return ""
	}
	return t.auth.UserID
}

// Receive delivers inbound messages to h until ctx ends or the connection
// fails for good (e.g. a revoked token). A delivery is acknowledged to
// Slack only after h returned nil; when h fails, Slack delivers it again.
func (t *Transport) Receive(ctx context.Context, h func(context.Context, chat.Inbound) error) error {
	if t.BotUserID() == "" {
		if err := t.Connect(ctx); err != nil {
			return err
		}
	}
	if t.cfg.ListenAddr != "" {
		return t.receiveHTTP(ctx, h)
	}
	return t.receiveSocket(ctx, h)
}

// handle turns one Events API callback into at most one call of h. It
// returns nil when the delivery may be acknowledged: h accepted the message,
// or clawrun does not answer the event at all (own messages, edits, other
// event types, the twin of a message already accepted).
func (t *Transport) handle(ctx context.Context, ev slackevents.EventsAPIEvent, h func(context.Context, chat.Inbound) error) error {
	cb, ok := ev.Data.(*slackevents.EventsAPICallbackEvent)
	if !ok {
		return nil
	}
	in, ok := t.inbound(ev.InnerEvent, cb.EventID)
	if !ok {
		return nil
	}
	if t.seen.has(in.Message.ID) {
		t.log.Debug("slack message already delivered by its twin event", "event_id", cb.EventID, "message", in.Message.ID)
		return nil
	}
	if err := h(ctx, in); err != nil {
		return err
	}
	t.seen.add(in.Message.ID)
	return nil
}

// inbound converts a message or app_mention event. Slack sends both for a
// message that mentions the bot in a channel it is in, with different
// event_ids; both convert to the same Message.ID (channel:ts), and the
// second one to arrive is dropped (handle, t.seen). The gateway can rely on
// Message.ID being stable across the two and across redeliveries.
func (t *Transport) inbound(ie slackevents.EventsAPIInnerEvent, eventID string) (chat.Inbound, bool) {
	bot := t.BotUserID()
	switch ev := ie.Data.(type) {
	case *slackevents.MessageEvent:
		msg, ok := FromEvent(ev, bot)
		if !ok {
			return chat.Inbound{}, false
		}
		return chat.Inbound{
			Message:    msg,
			DeliveryID: eventID,
			DM:         ev.ChannelType == "im",
			Mentioned:  mentions(msg.Text, bot),
		}, true
	case *slackevents.AppMentionEvent:
		if ev.Edited != nil {
			return chat.Inbound{}, false
		}
		msg, ok := FromEvent(&slackevents.MessageEvent{
			Type: "message", User: ev.User, Text: ev.Text, TimeStamp: ev.TimeStamp,
			ThreadTimeStamp: ev.ThreadTimeStamp, Channel: ev.Channel, BotID: ev.BotID,
		}, bot)
		if !ok {
			return chat.Inbound{}, false
		}
		return chat.Inbound{Message: msg, DeliveryID: eventID, Mentioned: true}, true
	}
	return chat.Inbound{}, false
}

// mentions reports whether text mentions the user: Slack writes a mention
// as <@U123> or, from some clients, <@U123|name>.
func mentions(text, user string) bool {
	if user == "" {
		return false
	}
	return strings.Contains(text, "<@"+user+">") || strings.Contains(text, "<@"+user+"|")
}

// recent is a bounded set of message ids, oldest forgotten first.
type recent struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	next int
}

func newRecent(n int) *recent {
	return &recent{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

func (r *recent) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[id]
	return ok
}

func (r *recent) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[id]; ok {
		return
	}
	delete(r.set, r.ring[r.next])
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}
