// Package gateway carries chat messages between a transport (Slack) and
// agent containers: routing, a durable queue, delivery and acknowledgement,
// agent restarts. It never speaks a chat platform's wire format and never
// builds containers itself; both sides sit behind the interfaces below.
package gateway

import (
	"context"
	"errors"
	"io"

	"github.com/clawrun/clawrun/chat"
	"github.com/clawrun/clawrun/policy"
)

// Handler receives one inbound message. It returns nil only once the message
// is durably stored (or deliberately dropped, e.g. a duplicate); a transport
// acknowledges the platform's delivery only after that, so a crash in
// between means a redelivery, never a loss.
//
// It is an alias so that a transport package can declare its Receive with
// the plain func type and satisfy Transport without importing gateway.
type Handler = func(ctx context.Context, in chat.Inbound) error

// ErrUndeliverable marks a Post error that no retry can fix (the channel
// is gone, the bot is not in it, the text is refused): the gateway then
// logs the reply and gives up on it. Any other error is taken as transient
// and the post is retried, with backoff, until it succeeds. A transport
// marks such an error by wrapping ErrUndeliverable, or, to stay free of an
// import of this package, by returning an error (anywhere in its chain)
// with a method Undeliverable() bool that reports true.
var ErrUndeliverable = errors.New("undeliverable")

// Undeliverable reports whether err marks a post that no retry can fix.
func Undeliverable(err error) bool {
	if errors.Is(err, ErrUndeliverable) {
		return true
	}
	var u interface{ Undeliverable() bool }
	return errors.As(err, &u) && u.Undeliverable()
}

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

// KeyedTransport is a Transport that tags each post with a key stable
// across restarts and can find a tagged post in the conversation again
// (Slack: message metadata, read back with conversations.replies or
// conversations.history). The gateway uses it to close the window of a
// crash between a post reaching the platform and the store recording it:
// after a restart, before posting again what may have gone out, it asks
// Posted and posts only what is missing. It is optional (the gateway
// checks with a type assertion), so a transport without such a lookup
// still works, at least once.
//
// done lists parts of a post in the transport's own encoding (a long
// text is split into several messages); the gateway only hands them back.
type KeyedTransport interface {
	Transport
	// PostKeyed posts text like Post, tagging every part with key. Parts
	// in done (from Posted, or from an earlier PostKeyed of the same
	// text that failed half-way) are not posted again. It returns done
	// with the parts it posted added, also when it fails.
	PostKeyed(ctx context.Context, channel, thread, text, key string, done []string) ([]string, error)
	// Posted finds the parts of the post tagged with key in the
	// conversation's thread (or, without a thread, in the channel) after
	// the message at since. complete reports that every part of one post
	// is there: nothing is left to post.
	Posted(ctx context.Context, channel, thread, since, key string) (done []string, complete bool, err error)
}

// Runner starts an agent's long-running process in its container.
type Runner interface {
	Start(ctx context.Context, p *policy.Plan) (Process, error)
}

// Process is a running agent: JSON lines in on Stdin, out on Stdout.
type Process interface {
	Stdin() io.WriteCloser
	Stdout() io.Reader
	// Wait blocks until the agent exits and returns how it ended; an
	// error means it could not be run at all.
	Wait() (Exit, error)
	// Stop ends the agent and removes its container.
	Stop() error
}

// Exit is how an agent's process ended: all the gateway needs to tell the
// chat why an agent went away.
type Exit struct {
	// Code is the exit code, or 128+N when signal N killed the agent.
	Code int
	// Signal names the signal that killed the agent ("SIGKILL"), if one did.
	Signal string
	// OOMKilled: the kernel's OOM killer killed a process of the agent in
	// its memory cgroup. Only a runner with a cgroup can tell (as root, or
	// rootless on a delegated cgroup v2).
	OOMKilled bool
}
