package slack_test

import (
	"github.com/clawrun/clawrun/gateway"
	"github.com/clawrun/clawrun/slack"
)

// The gateway depends on the Transport interface; package slack must not
// import gateway, so the match is checked here.
var _ gateway.Transport = (*slack.Transport)(nil)

// After a restart the gateway finds the Slack transport's posts again
// (message metadata), so it must satisfy the optional interface too.
var _ gateway.KeyedTransport = (*slack.Transport)(nil)
