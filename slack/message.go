// Package slack is clawrun's Slack transport: Socket Mode and the Events API
// in, the Web API out, through github.com/slack-go/slack. It never starts
// containers; the gateway routes what it delivers.
package slack

import (
	"github.com/slack-go/slack/slackevents"

	"github.com/clawrun/clawrun/chat"
)

// ignoredSubtypes are message events that are not new human messages;
// answering them would make agents talk to themselves or to edits.
var ignoredSubtypes = map[string]bool{
	"bot_message":     true,
	"message_changed": true,
	"message_deleted": true,
	"channel_join":    true,
	"channel_leave":   true,
}

// FromEvent converts a Slack message event into an agent message. It
// reports false for events clawrun does not answer: the bot's own messages,
// other bots, edits and deletions, and events without text or sender.
func FromEvent(ev *slackevents.MessageEvent, botUserID string) (chat.Message, bool) {
	if ev == nil || ignoredSubtypes[ev.SubType] || ev.BotID != "" {
		return chat.Message{}, false
	}
	if ev.User == "" || ev.User == botUserID || ev.Channel == "" || ev.TimeStamp == "" {
		return chat.Message{}, false
	}
	thread := ev.ThreadTimeStamp
	if thread == "" {
		// Replies go into a thread rooted at the message itself.
		thread = ev.TimeStamp
	}
	return chat.Message{
		// A channel's message timestamps are unique, so channel+ts is a
		// stable id: redelivery of the same event yields the same id.
		ID:      ev.Channel + ":" + ev.TimeStamp,
		Channel: ev.Channel,
		Thread:  thread,
		User:    ev.User,
		Text:    ev.Text,
		TS:      ev.TimeStamp,
	}, true
}
