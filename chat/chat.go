// Package chat holds the transport-neutral shapes of chat traffic: the
// message an agent reads and the reply it writes (docs/protocol.md), and
// what a transport hands the gateway. Slack is one transport; others plug in
// without touching the gateway or the runtime.
package chat

// Message is one chat message as the agent protocol carries it: one JSON
// object a line on the agent's stdin.
type Message struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Thread  string `json:"thread"`
	User    string `json:"user"`
	Text    string `json:"text"`
	TS      string `json:"ts"`
}

// Reply is one line an agent writes on stdout. A line with Status is
// progress ("working"); a line with Channel (and no Status) is a separate
// post into that channel, which the agent's file must grant (post_to); a
// line with neither is the final answer to ReplyTo.
type Reply struct {
	ReplyTo string `json:"reply_to"`
	Text    string `json:"text,omitempty"`
	Status  string `json:"status,omitempty"`
	Channel string `json:"channel,omitempty"`
}

// Final reports whether the reply completes its message.
func (r Reply) Final() bool { return r.Status == "" && r.Channel == "" }

// PostTo reports whether the line is a post into another channel.
func (r Reply) PostTo() bool { return r.Status == "" && r.Channel != "" }

// Inbound is a message as a transport delivers it, with what routing needs.
type Inbound struct {
	Message Message
	// DeliveryID identifies the transport's delivery (Slack: the event_id)
	// so that redeliveries of one event are handled once.
	DeliveryID string
	// DM is true for a direct message to the bot.
	DM bool
	// Mentioned is true when the text mentions the bot.
	Mentioned bool
}
