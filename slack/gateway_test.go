package slack_test

import (
	"github.com/clawrun/clawrun/gateway"
	"github.com/clawrun/clawrun/slack"
)

// The gateway depends on the Transport interface; package slack must not
// import gateway, so the match is checked here.
var _ gateway.Transport = (*slack.Transport)(nil)
