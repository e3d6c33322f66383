package slack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	goslack "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/clawrun/clawrun/chat"
)

// maxEventBody bounds a request body read before its signature is checked.
const maxEventBody = 1 << 20

// receiveHTTP serves the Events API on cfg.ListenAddr until ctx ends.
func (t *Transport) receiveHTTP(ctx context.Context, h func(context.Context, chat.Inbound) error) error {
	ln, err := net.Listen("tcp", t.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("slack events API: listen on %s: %w", t.cfg.ListenAddr, err)
	}
	t.mu.Lock()
	t.listener = ln.Addr()
	t.mu.Unlock()
	srv := &http.Server{
		Handler:           t.EventsHandler(h),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	t.log.Info("slack events API listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("slack events API on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	<-errc
	return ctx.Err()
}

// Addr is the address the Events API server listens on, nil until Receive
// has bound it (useful with ListenAddr ":0").
func (t *Transport) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.listener
}

// EventsHandler is the Events API endpoint (any path) Receive serves with
// ListenAddr; it can also be mounted in another server. It answers 401 to a
// request whose signature or timestamp (±5 minutes) fails, the challenge to
// url_verification, and 200 to an event callback only after h accepted the
// message, 500 otherwise so that Slack retries. Connect must have been
// called first, so the bot's own messages are recognised.
func (t *Transport) EventsHandler(h func(context.Context, chat.Inbound) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBody))
		if err != nil {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := verify(r.Header, body, t.cfg.SigningSecret); err != nil {
			t.log.Warn("slack events API: request refused", "remote", r.RemoteAddr, "err", err)
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		ev, err := slackevents.ParseEvent(body, slackevents.OptionNoVerifyToken())
		if err != nil {
			t.log.Warn("slack events API: unreadable event", "err", err)
			http.Error(w, "unreadable event", http.StatusBadRequest)
			return
		}
		switch ev.Type {
		case slackevents.URLVerification:
			v, _ := ev.Data.(*slackevents.EventsAPIURLVerificationEvent)
			if v == nil {
				http.Error(w, "no challenge", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, v.Challenge)
		case slackevents.CallbackEvent:
			if err := t.handle(r.Context(), ev, h); err != nil {
				t.log.Warn("slack message not accepted; answering 500 so Slack retries", "retry", r.Header.Get("X-Slack-Retry-Num"), "err", err)
				http.Error(w, "not accepted, retry", http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusOK)
		default:
			// app_rate_limited and anything new: nothing to deliver.
			w.WriteHeader(http.StatusOK)
		}
	})
}

// verify checks Slack's v0 signature over the raw body, and that the
// request timestamp is within five minutes (replays of old requests fail).
func verify(header http.Header, body []byte, secret string) error {
	sv, err := goslack.NewSecretsVerifier(header, secret)
	if err != nil {
		if errors.Is(err, goslack.ErrExpiredTimestamp) {
			return fmt.Errorf("request timestamp is more than 5 minutes off (replay, or check the clock): %w", err)
		}
		return err
	}
	if _, err := sv.Write(body); err != nil {
		return err
	}
	return sv.Ensure()
}
