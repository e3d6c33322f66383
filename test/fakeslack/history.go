package fakeslack

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Message metadata and the conversation reads that return it. Slack keeps
// every message of a conversation; conversations.replies returns a thread
// (its parent and replies, oldest first), conversations.history the
// channel's top-level messages (newest first), both filtered by oldest and
// latest (exclusive unless inclusive=true), a page of limit at a time with
// an opaque next_cursor, and with each message's metadata only when
// include_all_metadata is true.

// Metadata is Slack message metadata (chat.postMessage `metadata`).
type Metadata struct {
	EventType    string         `json:"event_type"`
	EventPayload map[string]any `json:"event_payload"`
}

// message is one message in a conversation: a user's (from an event the
// test sent) or the bot's (a post).
type message struct {
	Channel, TS, ThreadTS string
	User, BotID, Text     string
	Metadata              *Metadata
}

// wire is the message as conversations.* return it.
func (m message) wire(withMetadata bool) map[string]any {
	out := map[string]any{"type": "message", "user": m.User, "text": m.Text, "ts": m.TS}
	if m.BotID != "" {
		out["bot_id"], out["app_id"] = m.BotID, AppID
	}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
	}
	if withMetadata && m.Metadata != nil {
		out["metadata"] = m.Metadata
	}
	return out
}

// parseMetadata reads chat.postMessage's metadata argument (JSON); an
// empty one is none. Slack refuses one without an event_type.
func parseMetadata(s string) (*Metadata, bool) {
	if s == "" {
		return nil, true
	}
	var md Metadata
	if err := json.Unmarshal([]byte(s), &md); err != nil || md.EventType == "" {
		return nil, false
	}
	return &md, true
}

// StallPosts makes the next n chat.postMessage calls take their message
// (it is in the conversation and in Posts) but never answer: the client
// waits until it gives up or dies, as when a connection breaks after Slack
// accepted a post.
func (s *Server) StallPosts(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stall = n
}

// addMessage keeps m in ts order; s.mu must be held.
func (s *Server) addMessage(m message) {
	i, found := slices.BinarySearchFunc(s.messages, m, func(a, b message) int {
		if a.Channel != b.Channel {
			return strings.Compare(a.Channel, b.Channel)
		}
		return strings.Compare(a.TS, b.TS)
	})
	if found {
		return // a message event and its app_mention twin are one message
	}
	s.messages = slices.Insert(s.messages, i, m)
}

// recordEvent keeps the message an event the test sends carries, so that
// the conversation reads see it as Slack would; s.mu must be held.
func (s *Server) recordEvent(inner json.RawMessage) {
	var ev struct {
		Type, Subtype, Channel, User, Text, TS string
		ThreadTS                               string `json:"thread_ts"`
	}
	if json.Unmarshal(inner, &ev) != nil || ev.Subtype != "" || ev.Channel == "" || ev.TS == "" ||
		(ev.Type != "message" && ev.Type != "app_mention") {
		return
	}
	s.addMessage(message{Channel: ev.Channel, TS: ev.TS, ThreadTS: ev.ThreadTS, User: ev.User, Text: ev.Text})
}

// historyScope is the scope reading a conversation needs, by the type its
// id tells: C public channel, G private channel (or group DM), D DM.
func historyScope(channel string) string {
	switch {
	case strings.HasPrefix(channel, "G"):
		return "groups:history"
	case strings.HasPrefix(channel, "D"):
		return "im:history"
	}
	return "channels:history"
}

// history answers conversations.replies and conversations.history; s.mu
// must be held.
func (s *Server) history(w http.ResponseWriter, method string, params map[string]string) {
	channel, thread := params["channel"], params["ts"]
	if scope := historyScope(channel); !slices.Contains(s.opts.Scopes, scope) {
		reply(w, map[string]any{"ok": false, "error": "missing_scope", "needed": scope,
			"provided": strings.Join(s.opts.Scopes, ",")})
		return
	}
	if channel == "" || !slices.ContainsFunc(s.messages, func(m message) bool { return m.Channel == channel }) {
		reply(w, map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	replies := method == "conversations.replies"
	if replies && thread == "" {
		reply(w, map[string]any{"ok": false, "error": "invalid_arguments"})
		return
	}
	inclusive := truthy(params["inclusive"])
	inRange := func(ts string) bool {
		if o := params["oldest"]; o != "" && (ts < o || ts == o && !inclusive) {
			return false
		}
		if l := params["latest"]; l != "" && (ts > l || ts == l && !inclusive) {
			return false
		}
		return true
	}
	var list []message
	parent := false
	for _, m := range s.messages {
		if m.Channel != channel {
			continue
		}
		if replies {
			if m.TS == thread {
				parent = true
			} else if m.ThreadTS != thread {
				continue
			}
		} else if m.ThreadTS != "" && m.ThreadTS != m.TS {
			continue // a reply in a thread is not in the channel's history
		}
		if inRange(m.TS) {
			list = append(list, m)
		}
	}
	if replies && !parent {
		reply(w, map[string]any{"ok": false, "error": "thread_not_found"})
		return
	}
	if !replies {
		slices.Reverse(list) // newest first
	}
	// The cursor names the first message of the next page.
	start := 0
	if c := params["cursor"]; c != "" {
		b, err := base64.StdEncoding.DecodeString(c)
		ts, ok := strings.CutPrefix(string(b), "next_ts:")
		i := slices.IndexFunc(list, func(m message) bool { return m.TS == ts })
		if err != nil || !ok || i < 0 {
			reply(w, map[string]any{"ok": false, "error": "invalid_cursor"})
			return
		}
		start = i
	}
	limit := 100
	if n, err := strconv.Atoi(params["limit"]); err == nil && n > 0 {
		limit = min(n, 1000)
	}
	end := min(start+limit, len(list))
	withMetadata := truthy(params["include_all_metadata"])
	msgs := []map[string]any{}
	for _, m := range list[start:end] {
		msgs = append(msgs, m.wire(withMetadata))
	}
	next := ""
	if end < len(list) {
		next = base64.StdEncoding.EncodeToString([]byte("next_ts:" + list[end].TS))
	}
	out := map[string]any{"ok": true, "messages": msgs, "has_more": next != "",
		"response_metadata": map[string]any{"next_cursor": next}}
	if !replies {
		out["pin_count"] = 0
	}
	reply(w, out)
}

func truthy(v string) bool { return v == "1" || v == "true" }
