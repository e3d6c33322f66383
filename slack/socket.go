package slack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"

	goslack "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/clawrun/clawrun/chat"
)

// receiveSocket runs a Socket Mode connection. slack-go's client reconnects
// by itself on dropped connections, missed pings and Slack's `disconnect`
// requests (refresh_requested, warning); it gives up only on auth errors,
// and so does Receive.
//
// Envelopes are handled one at a time, in arrival order, so the gateway
// sees a channel's messages in the order Slack sent them.
func (t *Transport) receiveSocket(ctx context.Context, h func(context.Context, chat.Inbound) error) error {
	api := t.appClient()
	// Debug stays off (it would log payloads); the logger only catches
	// anything slack-go prints regardless.
	smc := socketmode.New(api, socketmode.OptionLog(log.New(io.Discard, "", 0)))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- smc.RunContext(ctx) }()

	for {
		select {
		case <-ctx.Done():
			<-done
			return ctx.Err()
		case err := <-done:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("slack socket mode: %w (check %s: an app-level token with connections:write)", err, EnvAppToken)
		case evt := <-smc.Events:
			t.socketEvent(ctx, smc, evt, h)
		}
	}
}

// appClient is a Web API client that also holds the app-level token, which
// only apps.connections.open uses.
func (t *Transport) appClient() *goslack.Client {
	return goslack.New(t.cfg.BotToken,
		goslack.OptionAPIURL(t.cfg.APIURL),
		goslack.OptionAppLevelToken(t.cfg.AppToken),
		goslack.OptionHTTPClient(t.http))
}

func (t *Transport) socketEvent(ctx context.Context, smc *socketmode.Client, evt socketmode.Event, h func(context.Context, chat.Inbound) error) {
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		if e, ok := evt.Data.(*goslack.ConnectingEvent); ok && e.ConnectionCount > 0 && e.Attempt == 1 {
			// Slack asked for it (disconnect), or the connection dropped.
			t.log.Info("slack socket mode reconnecting", "connection", e.ConnectionCount+1)
		} else {
			t.log.Debug("slack socket mode connecting")
		}
	case socketmode.EventTypeConnected:
		t.log.Info("slack socket mode connected")
	case socketmode.EventTypeHello:
		t.log.Debug("slack socket mode hello")
	case socketmode.EventTypeConnectionError:
		if e, ok := evt.Data.(*goslack.ConnectionErrorEvent); ok {
			t.log.Warn("slack socket mode connection failed, retrying", "err", e.ErrorObj, "backoff", e.Backoff)
		}
	case socketmode.EventTypeInvalidAuth:
		t.log.Error("slack socket mode: invalid app token")
	case socketmode.EventTypeIncomingError:
		if e, ok := evt.Data.(*goslack.IncomingEventError); ok {
			t.log.Warn("slack socket mode read failed, reconnecting", "err", e.ErrorObj)
		}
	case socketmode.EventTypeErrorBadMessage:
		// The message itself may hold user text: log only why it failed.
		if e, ok := evt.Data.(*socketmode.ErrorBadMessage); ok {
			t.log.Warn("slack socket mode: unreadable message skipped", "err", e.Cause)
		}
	case socketmode.EventTypeErrorWriteFailed:
		if e, ok := evt.Data.(*socketmode.ErrorWriteFailed); ok {
			t.log.Warn("slack socket mode: ack not sent; Slack will deliver the envelope again", "envelope", e.Response.EnvelopeID, "err", e.Cause)
		}
	case socketmode.EventTypeEventsAPI:
		ev, ok := evt.Data.(slackevents.EventsAPIEvent)
		if !ok || evt.Request == nil {
			return
		}
		if err := t.handle(ctx, ev, h); err != nil {
			// No ack: Slack redelivers the envelope, and a message is never
			// acknowledged before the gateway has stored it.
			if !errors.Is(err, context.Canceled) {
				t.log.Warn("slack message not accepted; leaving it unacknowledged for redelivery", "envelope", evt.Request.EnvelopeID, "retry", evt.Request.RetryAttempt, "err", err)
			}
			return
		}
		t.ack(ctx, smc, evt.Request)
	default:
		// Slash commands and interactivity are not enabled in the manifest;
		// acknowledge anything that comes anyway so Slack stops retrying.
		if evt.Request != nil && evt.Request.EnvelopeID != "" {
			t.ack(ctx, smc, evt.Request)
		}
	}
}

func (t *Transport) ack(ctx context.Context, smc *socketmode.Client, req *socketmode.Request) {
	if err := smc.AckCtx(ctx, req.EnvelopeID, nil); err != nil && !errors.Is(err, context.Canceled) {
		t.log.Warn("slack socket mode: ack failed; Slack will deliver the envelope again", "envelope", req.EnvelopeID, "err", err)
	}
}
