package fakeslack

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
)

// The fake is driven by slack-go, the client clawrun uses.
func TestWebAPI(t *testing.T) {
	s := New(Options{Scopes: []string{"chat:write"}})
	defer s.Close()
	ctx := context.Background()
	api := slack.New(BotToken, slack.OptionAPIURL(s.APIURL))

	res, err := api.AuthTestContext(ctx)
	if err != nil || res.UserID != BotUserID || res.Header.Get("X-OAuth-Scopes") != "chat:write" {
		t.Fatalf("auth.test = %+v, %v", res, err)
	}
	if _, err := slack.New("xoxb-other", slack.OptionAPIURL(s.APIURL)).AuthTestContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("wrong token: %v", err)
	}

	s.FailNext("chat.postMessage", 1, 7)
	_, _, err = api.PostMessageContext(ctx, "C1", slack.MsgOptionText("hi", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
		t.Fatalf("rate limited post = %v", err)
	}
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("hi", false), slack.MsgOptionTS("1.1"))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Posts()
	if len(p) != 1 || p[0].At.IsZero() || time.Since(p[0].At) > time.Minute {
		t.Fatalf("posts = %+v, want one with its time of arrival", p)
	}
	p[0].At = time.Time{}
	if p[0] != (Post{Channel: "C1", ThreadTS: "1.1", Text: "hi", TS: ts}) || s.Calls("chat.postMessage") != 2 {
		t.Fatalf("posts = %+v", p)
	}

	ref := slack.NewRefToMessage("C1", ts)
	if err := api.AddReactionContext(ctx, "eyes", ref); err != nil {
		t.Fatal(err)
	}
	if err := api.AddReactionContext(ctx, "eyes", ref); err == nil || err.Error() != "already_reacted" {
		t.Fatalf("second add: %v", err)
	}
	if err := api.RemoveReactionContext(ctx, "eyes", ref); err != nil {
		t.Fatal(err)
	}
	if err := api.RemoveReactionContext(ctx, "eyes", ref); err == nil || err.Error() != "no_reaction" {
		t.Fatalf("second remove: %v", err)
	}
}

func TestSocketURLIsOneTime(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	app := slack.New(BotToken, slack.OptionAPIURL(s.APIURL), slack.OptionAppLevelToken(AppToken))
	_, url, err := app.StartSocketModeContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var hello struct{ Type string }
	if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		t.Fatalf("first frame %+v, %v", hello, err)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatal("a used connection URL was accepted again")
	}
}

func TestSignMatchesSlackVerifier(t *testing.T) {
	body := URLVerification("c")
	now := time.Now()
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("X-Slack-Signature", Sign("secret", now, body))
	sv, err := slack.NewSecretsVerifier(h, "secret")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = sv.Write(body)
	if err := sv.Ensure(); err != nil {
		t.Fatal(err)
	}
}
