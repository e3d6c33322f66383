package gateway

import (
	"slices"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/policy"
)

// addressed reports whether a message falls under the route, before the
// user allowlist: a listed channel, or a direct message with dm: true.
// mentions_only applies to channels only: a direct message is addressed to
// the bot by nature, and asking for an @-mention there would only confuse.
func addressed(r *policy.SlackRoute, in chat.Inbound) bool {
	if r == nil {
		return false
	}
	switch {
	case in.DM && r.DM:
		return true
	case slices.Contains(r.Channels, in.Message.Channel):
		return !r.MentionsOnly || in.Mentioned
	}
	return false
}

// allowed reports whether the route's allowlist admits the sender.
func allowed(r *policy.SlackRoute, user string) bool {
	return len(r.Users) == 0 || slices.Contains(r.Users, user)
}

// Route splits the agents into those that get the message and those whose
// route matches but whose allowlist refuses the sender. Agents appear in
// the order given.
func Route(plans []*policy.Plan, in chat.Inbound) (accepted, refused []*policy.Plan) {
	for _, p := range plans {
		if !addressed(p.Slack, in) {
			continue
		}
		if allowed(p.Slack, in.Message.User) {
			accepted = append(accepted, p)
		} else {
			refused = append(refused, p)
		}
	}
	return accepted, refused
}
