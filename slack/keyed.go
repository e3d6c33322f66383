package slack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	goslack "github.com/slack-go/slack"
)

// Keyed posts (gateway.KeyedTransport). Every reply and notice the gateway
// posts carries Slack message metadata:
//
//	{"event_type": "clawrun_post",
//	 "event_payload": {"key": KEY, "part": I, "parts": N, "digest": D}}
//
// KEY names the post for good (the gateway's choice: store, agent and
// message, or store and notice); a text over MaxChunk is N messages, part I
// of them; D is a short hash of the whole text, so that parts of two
// different texts under one key (an agent that answers differently after
// a restart) are never taken for one post. After a crash, Posted reads
// the thread back with include_all_metadata and reports which parts are
// there; PostKeyed then posts only the others.

// MetadataEventType is the event_type of clawrun's message metadata.
const MetadataEventType = "clawrun_post"

// historyPage is how many messages one conversations.replies or
// conversations.history call asks for; maxHistoryPages bounds a lookup
// (a thread of 10,000 messages after the one answered is not searched to
// its end: the post is then made again).
const (
	historyPage     = 200
	maxHistoryPages = 50
)

// HistoryScopes are the scopes the lookups need, by conversation type
// (channels, private channels, DMs, group DMs).
var HistoryScopes = []string{"channels:history", "groups:history", "im:history", "mpim:history"}

// postPart is one message of a keyed post.
type postPart struct {
	Part, Parts int
	Digest      string
}

// String is the part as the gateway keeps it (opaque to it).
func (p postPart) String() string {
	return strconv.Itoa(p.Part) + "/" + strconv.Itoa(p.Parts) + "/" + p.Digest
}

func (p postPart) metadata(key string) goslack.SlackMetadata {
	return goslack.SlackMetadata{EventType: MetadataEventType, EventPayload: map[string]any{
		"key": key, "part": p.Part, "parts": p.Parts, "digest": p.Digest,
	}}
}

// textDigest identifies a text among the texts posted under one key.
func textDigest(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:8])
}

// partOf reads the part of the post with key from a message's metadata.
func partOf(md goslack.SlackMetadata, key string) (postPart, bool) {
	if md.EventType != MetadataEventType {
		return postPart{}, false
	}
	pl := md.EventPayload
	if k, _ := pl["key"].(string); k != key {
		return postPart{}, false
	}
	p := postPart{Part: intOf(pl["part"]), Parts: intOf(pl["parts"])}
	p.Digest, _ = pl["digest"].(string)
	if p.Parts < 1 || p.Part < 0 || p.Part >= p.Parts {
		return postPart{}, false
	}
	return p, true
}

// intOf reads a JSON number (float64 once decoded into an any).
func intOf(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int:
		return n
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return -1
}

// complete reports whether the parts hold every part of one text.
func complete(done []string) bool {
	have := map[string]map[int]bool{} // parts/digest → part numbers
	for _, s := range done {
		fields := strings.SplitN(s, "/", 3)
		if len(fields) != 3 {
			continue
		}
		i, err1 := strconv.Atoi(fields[0])
		n, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil || i < 0 || i >= n {
			continue
		}
		group := fields[1] + "/" + fields[2]
		if have[group] == nil {
			have[group] = map[int]bool{}
		}
		have[group][i] = true
		if len(have[group]) == n {
			return true
		}
	}
	return false
}

// PostKeyed posts text like Post and tags every part with key in the
// message's metadata; parts in done (the same text's, from Posted or an
// earlier attempt) are skipped. It returns done with the parts it posted.
func (t *Transport) PostKeyed(ctx context.Context, channel, thread, text, key string, done []string) ([]string, error) {
	return t.post(ctx, channel, thread, text, key, done)
}

// Posted finds the bot's messages tagged with key in the thread
// (conversations.replies) or, without a thread, in the channel
// (conversations.history), after the message at since, and returns their
// parts; complete when every part of one text is there. It needs the
// history scope of the conversation's type (HistoryScopes).
func (t *Transport) Posted(ctx context.Context, channel, thread, since, key string) ([]string, bool, error) {
	var done []string
	err := t.history(ctx, channel, thread, since, func(m goslack.Message) {
		if !t.own(m) {
			return
		}
		if p, ok := partOf(m.Metadata, key); ok && !slices.Contains(done, p.String()) {
			done = append(done, p.String())
		}
	})
	if err != nil {
		return nil, false, err
	}
	return done, complete(done), nil
}

// own reports whether the bot posted m (anyone may post any metadata).
func (t *Transport) own(m goslack.Message) bool {
	t.mu.Lock()
	a := t.auth
	t.mu.Unlock()
	if a == nil {
		// Not connected, so the bot is unknown: count nothing as found
		// (anyone may post any metadata) and let the post go out again.
		return false
	}
	return m.BotID != "" && m.BotID == a.BotID || m.User != "" && m.User == a.UserID
}

// history calls f for every message after since in the thread, or in the
// channel when thread is empty, with their metadata, page by page.
func (t *Transport) history(ctx context.Context, channel, thread, since string, f func(goslack.Message)) error {
	method := "conversations.replies"
	if thread == "" {
		method = "conversations.history"
	}
	cursor := ""
	for range maxHistoryPages {
		var msgs []goslack.Message
		var more bool
		var next string
		err := t.retry(ctx, method, func() error {
			var err error
			if thread != "" {
				msgs, more, next, err = t.api.GetConversationRepliesContext(ctx, &goslack.GetConversationRepliesParameters{
					ChannelID: channel, Timestamp: thread, Oldest: since, Limit: historyPage, Cursor: cursor,
					IncludeAllMetadata: true,
				})
				return err
			}
			r, err := t.api.GetConversationHistoryContext(ctx, &goslack.GetConversationHistoryParameters{
				ChannelID: channel, Oldest: since, Limit: historyPage, Cursor: cursor, IncludeAllMetadata: true,
			})
			if r != nil {
				msgs, more, next = r.Messages, r.HasMore, r.ResponseMetaData.NextCursor
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("%s in %s after %s: %w%s", method, channel, since, err, historyHint(err))
		}
		for _, m := range msgs {
			f(m)
		}
		if !more || next == "" {
			return nil
		}
		cursor = next
	}
	return fmt.Errorf("%s in %s after %s: more than %d messages; not searched further", method, channel, since, maxHistoryPages*historyPage)
}

// historyHint says how to fix a lookup that Slack refused for want of a
// scope.
func historyHint(err error) string {
	var se goslack.SlackErrorResponse
	if errors.As(err, &se) && se.Err == "missing_scope" {
		return " (the bot token needs " + strings.Join(HistoryScopes, ", ") +
			" to find its posts after a restart: reinstall the app from `clawrun slack manifest`; `clawrun slack check` lists what is missing)"
	}
	return ""
}
