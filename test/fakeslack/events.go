package fakeslack

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// sign computes Slack's v0 request signature: HMAC-SHA256 over
// "v0:TIMESTAMP:BODY" with the signing secret, hex, prefixed "v0=".
func sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

func post(ctx context.Context, url, ts, sig string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
	if ts != "" {
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", sig)
	}
	return http.DefaultClient.Do(req)
}

// Message is a Slack `message` event from user, as Send takes it:
// channelType is "channel", "group", "im" (a direct message to the bot) or
// "mpim"; ts is the message's timestamp (NextTS).
func Message(channel, channelType, user, text, ts string) map[string]any {
	return map[string]any{"type": "message", "channel": channel, "channel_type": channelType,
		"user": user, "text": text, "ts": ts, "event_ts": ts}
}
