package slack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	goslack "github.com/slack-go/slack"
)

// MaxChunk is the most characters clawrun puts in one Slack message. Slack
// accepts up to 40,000 in chat.postMessage but recommends staying under
// 4,000, and long messages are collapsed behind "Show more"; a long reply
// becomes several messages in the thread instead, split on line breaks.
const MaxChunk = 3900

// postBurst is how many posts into one channel may go out back to back
// before pacing to one per interval.
const postBurst = 3

// transientRetries bounds retries of server errors and network failures;
// rate limits are retried until ctx ends.
const transientRetries = 4

// ErrEmptyText is returned by Post for a reply with nothing to show; Slack
// refuses empty messages (no_text).
var ErrEmptyText = errors.New("slack: empty message text")

// Post sends text into channel, in thread (a thread_ts; empty for the
// channel itself). Text over MaxChunk is split into several messages, sent
// in order. Rate limits (429) are waited out for as long as ctx allows, and
// posts into one channel are paced, so a reply is delayed, never dropped.
//
// The text is Slack mrkdwn as the agent wrote it, except that broadcast
// mentions (<!here>, <!channel>, <!everyone>) are defused to plain text: an
// agent cannot page a whole channel.
func (t *Transport) Post(ctx context.Context, channel, thread, text string) error {
	_, err := t.post(ctx, channel, thread, text, "", nil)
	return err
}

// post is Post and PostKeyed: with a key, every part carries it in the
// message's metadata (keyed.go) and parts in done are skipped. It returns
// done with the parts it posted added.
func (t *Transport) post(ctx context.Context, channel, thread, text, key string, done []string) ([]string, error) {
	text = defuse(text)
	chunks := Split(text, MaxChunk)
	if len(chunks) == 0 {
		return done, undeliverable{fmt.Errorf("post to %s: %w", channel, ErrEmptyText)}
	}
	digest := textDigest(text)
	lane := t.pace.lane(channel)
	// Holding the channel's lane for the whole reply keeps its parts
	// together and in order when several agents answer in one channel.
	lane.mu.Lock()
	defer lane.mu.Unlock()
	for i, c := range chunks {
		part := postPart{Part: i, Parts: len(chunks), Digest: digest}
		if key != "" && slices.Contains(done, part.String()) {
			continue
		}
		if err := lane.wait(ctx); err != nil {
			return done, fmt.Errorf("post to %s: %w", channel, err)
		}
		opts := []goslack.MsgOption{goslack.MsgOptionText(c, false)}
		if thread != "" {
			opts = append(opts, goslack.MsgOptionTS(thread))
		}
		if key != "" {
			opts = append(opts, goslack.MsgOptionMetadata(part.metadata(key)))
		}
		err := t.retry(ctx, "chat.postMessage", func() error {
			_, _, err := t.api.PostMessageContext(ctx, channel, opts...)
			return err
		})
		if err != nil {
			err = markUndeliverable(err)
			if len(chunks) > 1 {
				return done, fmt.Errorf("post to %s (part %d of %d): %w", channel, i+1, len(chunks), err)
			}
			return done, fmt.Errorf("post to %s: %w", channel, err)
		}
		if key != "" {
			done = append(done, part.String())
		}
	}
	return done, nil
}

// React adds (add) or removes a reaction, e.g. "eyes", on the message at ts.
// Adding one that is there already, or removing one that is not, succeeds.
func (t *Transport) React(ctx context.Context, channel, ts, name string, add bool) error {
	name = strings.Trim(name, ":")
	item := goslack.NewRefToMessage(channel, ts)
	method, benign := "reactions.add", "already_reacted"
	call := t.api.AddReactionContext
	if !add {
		method, benign = "reactions.remove", "no_reaction"
		call = t.api.RemoveReactionContext
	}
	err := t.retry(ctx, method, func() error { return call(ctx, name, item) })
	var se goslack.SlackErrorResponse
	if errors.As(err, &se) && se.Err == benign {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s :%s: on %s %s: %w", method, name, channel, ts, err)
	}
	return nil
}

// retry runs a Web API call until it succeeds, fails for good, or ctx ends.
// A 429 waits the Retry-After Slack sent; 5xx and network failures back off
// a few times. Errors from Slack itself (ok:false) are final.
func (t *Transport) retry(ctx context.Context, method string, call func() error) error {
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := call()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var wait time.Duration
		var rl *goslack.RateLimitedError
		var sc goslack.StatusCodeError
		var ne net.Error
		switch {
		case errors.As(err, &rl):
			wait = max(rl.RetryAfter, time.Second)
			t.log.Info("slack rate limited; waiting", "method", method, "retry_after", wait)
		case attempt < transientRetries && (errors.As(err, &sc) && sc.Code >= 500 || errors.As(err, &ne)):
			wait = backoff
			backoff *= 2
			t.log.Warn("slack call failed; retrying", "method", method, "err", err, "in", wait)
		default:
			return err
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var broadcast = regexp.MustCompile(`<!(here|channel|everyone)(\|[^>]*)?>`)

// defuse turns broadcast mentions into plain text ("@here"), which Slack
// shows without notifying anyone.
func defuse(text string) string {
	return broadcast.ReplaceAllString(text, "@$1")
}

const fence = "```"

// Split cuts text into messages of at most limit characters (runes). It cuts
// at the last line break in the second half of a window, else at the last
// space, else mid-word; a code block cut in two is closed at the end of one
// part and reopened at the start of the next. Blank parts are dropped.
func Split(text string, limit int) []string {
	if limit < 2*len(fence)+8 {
		limit = 2*len(fence) + 8
	}
	var out []string
	for {
		if strings.TrimSpace(text) == "" {
			return out
		}
		if utf8.RuneCountInString(text) <= limit {
			return append(out, text)
		}
		// Leave room to close a code block ("\n```").
		end := byteOffset(text, limit-len(fence)-1)
		window := text[:end]
		cut, skip := end, 0
		if i := strings.LastIndexByte(window, '\n'); i > len(window)/2 {
			cut, skip = i, 1
		} else if i := strings.LastIndexByte(window, ' '); i > len(window)/2 {
			cut, skip = i, 1
		}
		part, rest := text[:cut], text[cut+skip:]
		if strings.Count(part, fence)%2 == 1 {
			part += "\n" + fence
			rest = fence + "\n" + rest
		}
		if strings.TrimSpace(part) != "" {
			out = append(out, part)
		}
		text = rest
	}
}

// byteOffset is the byte index of the n-th rune of s.
func byteOffset(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}

// pacer spaces posts per channel: a token bucket per channel holding burst
// tokens, one refilled per interval.
type pacer struct {
	interval time.Duration
	burst    int
	mu       sync.Mutex
	lanes    map[string]*lane
}

type lane struct {
	p      *pacer
	mu     sync.Mutex // held by a Post for its whole reply
	tokens float64
	last   time.Time
}

func newPacer(interval time.Duration, burst int) *pacer {
	return &pacer{interval: interval, burst: burst, lanes: map[string]*lane{}}
}

func (p *pacer) lane(channel string) *lane {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.lanes[channel]
	if !ok {
		l = &lane{p: p, tokens: float64(p.burst), last: time.Now()}
		p.lanes[channel] = l
	}
	return l
}

// wait takes a token, sleeping until one is there. The caller holds l.mu.
func (l *lane) wait(ctx context.Context) error {
	if l.p.interval <= 0 {
		return nil
	}
	now := time.Now()
	l.tokens = min(float64(l.p.burst), l.tokens+float64(now.Sub(l.last))/float64(l.p.interval))
	l.last = now
	if l.tokens < 1 {
		d := time.Duration((1 - l.tokens) * float64(l.p.interval))
		if err := sleep(ctx, d); err != nil {
			return err
		}
		l.tokens, l.last = 1, time.Now()
	}
	l.tokens--
	return nil
}

// finalPostErrors are Slack errors that no retry can fix: the reply can
// never be posted there, and the gateway should stop trying.
var finalPostErrors = map[string]bool{
	"channel_not_found": true, "not_in_channel": true, "is_archived": true, "no_text": true,
	"msg_too_long": true, "invalid_blocks": true, "restricted_action": true,
	"cannot_reply_to_message": true, "thread_not_found": true,
}

// undeliverable marks an error as final for the gateway (which checks for an
// Undeliverable() bool method, so this package need not import it).
type undeliverable struct{ error }

func (u undeliverable) Undeliverable() bool { return true }
func (u undeliverable) Unwrap() error       { return u.error }

func markUndeliverable(err error) error {
	var se goslack.SlackErrorResponse
	if errors.As(err, &se) && finalPostErrors[se.Err] {
		return undeliverable{err}
	}
	return err
}
