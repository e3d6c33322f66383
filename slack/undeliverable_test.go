package slack

import (
	"errors"
	"fmt"
	"testing"

	goslack "github.com/slack-go/slack"

	"github.com/clawrun/clawrun/gateway"
)

// Errors no retry can fix are marked so the gateway stops retrying; others
// (rate limits are retried inside Post) stay retryable.
func TestMarkUndeliverable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{goslack.SlackErrorResponse{Err: "channel_not_found"}, true},
		{goslack.SlackErrorResponse{Err: "not_in_channel"}, true},
		{goslack.SlackErrorResponse{Err: "is_archived"}, true},
		{goslack.SlackErrorResponse{Err: "internal_error"}, false},
		{errors.New("connection reset"), false},
	}
	for _, tc := range cases {
		err := fmt.Errorf("post to C1: %w", markUndeliverable(tc.err))
		if got := gateway.Undeliverable(err); got != tc.want {
			t.Errorf("%v: undeliverable=%v, want %v", tc.err, got, tc.want)
		}
	}
	if !gateway.Undeliverable(undeliverable{ErrEmptyText}) {
		t.Error("empty text must be undeliverable")
	}
}
