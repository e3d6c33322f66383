// Package gateway carries chat messages between a transport (Slack) and
// agent containers: routing, a durable queue, delivery and acknowledgement,
// agent restarts. It never speaks a chat platform's wire format and never
// builds containers itself; both sides sit behind the interfaces below.
package gateway

import (
	"context"
	"io"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/policy"
)

// Handler receives one inbound message. It returns nil only once the message
// is durably stored (or deliberately dropped, e.g. a duplicate); a transport
// acknowledges the platform's delivery only after that, so a crash in
// between means a redelivery, never a loss.
type Handler func(ctx context.Context, in chat.Inbound) error

// Transport is a chat platform connection.
type Transport interface {
	// Receive delivers inbound messages to h until ctx ends or the
	// connection fails for good.
	Receive(ctx context.Context, h Handler) error
	// Post sends text into a conversation's thread. It splits text over the
	// platform's length limit and waits out rate limits rather than
	// dropping the reply.
	Post(ctx context.Context, channel, thread, text string) error
	// React adds (or removes) a reaction on a message, e.g. "eyes" while an
	// agent works.
	React(ctx context.Context, channel, ts, name string, add bool) error
}

// Runner starts an agent's long-running process in its container.
type Runner interface {
	Start(ctx context.Context, p *policy.Plan) (Process, error)
}

// Process is a running agent: JSON lines in on Stdin, out on Stdout.
type Process interface {
	Stdin() io.WriteCloser
	Stdout() io.Reader
	// Wait blocks until the agent exits and returns its exit code.
	Wait() (int, error)
	// Stop ends the agent and removes its container.
	Stop() error
}
