package slack

import (
	"encoding/json"
	"testing"

	"github.com/slack-go/slack/slackevents"

	"github.com/clawrun/clawrun/chat"
)

// The events are parsed from Slack's wire JSON by slack-go, as they arrive.
func TestFromEvent(t *testing.T) {
	cases := []struct {
		name string
		json string
		ok   bool
		want chat.Message
	}{
		{"channel message", `{"type":"message","user":"U1","text":"hi","ts":"1.2","channel":"C1"}`, true,
			chat.Message{ID: "C1:1.2", Channel: "C1", Thread: "1.2", User: "U1", Text: "hi", TS: "1.2"}},
		{"thread reply", `{"type":"message","user":"U1","text":"more","ts":"1.5","thread_ts":"1.2","channel":"C1"}`, true,
			chat.Message{ID: "C1:1.5", Channel: "C1", Thread: "1.2", User: "U1", Text: "more", TS: "1.5"}},
		{"own message", `{"type":"message","user":"UBOT","text":"reply","ts":"1.3","channel":"C1"}`, false, chat.Message{}},
		{"other bot", `{"type":"message","bot_id":"B9","text":"x","ts":"1.3","channel":"C1","user":"U7"}`, false, chat.Message{}},
		{"bot_message subtype", `{"type":"message","subtype":"bot_message","text":"x","ts":"1.3","channel":"C1"}`, false, chat.Message{}},
		{"edit", `{"type":"message","subtype":"message_changed","channel":"C1","ts":"1.4","message":{"user":"U1","text":"edited","ts":"1.2"}}`, false, chat.Message{}},
		{"deletion", `{"type":"message","subtype":"message_deleted","channel":"C1","ts":"1.4","deleted_ts":"1.2"}`, false, chat.Message{}},
		{"no sender", `{"type":"message","text":"x","ts":"1.3","channel":"C1"}`, false, chat.Message{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ev slackevents.MessageEvent
			if err := json.Unmarshal([]byte(tc.json), &ev); err != nil {
				t.Fatal(err)
			}
			got, ok := FromEvent(&ev, "UBOT")
			if ok != tc.ok || got != tc.want {
				t.Fatalf("FromEvent = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if _, ok := FromEvent(nil, "UBOT"); ok {
		t.Fatal("nil event accepted")
	}
}
