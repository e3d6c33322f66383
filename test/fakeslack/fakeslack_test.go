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

// Conversation reads as Slack answers them: a thread oldest first, the
// channel newest first without thread replies, metadata only with
// include_all_metadata, unknown threads and invalid metadata refused.
func TestConversationReads(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	ctx := context.Background()
	api := slack.New(BotToken, slack.OptionAPIURL(s.APIURL))
	parent := s.NextTS()
	s.Send(Message("C1", "channel", "U1", "question", parent))
	md := slack.SlackMetadata{EventType: "clawrun_post", EventPayload: map[string]any{"key": "k", "part": 0}}
	_, replyTS, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("answer", false), slack.MsgOptionTS(parent), slack.MsgOptionMetadata(md))
	if err != nil {
		t.Fatal(err)
	}
	_, topTS, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("top", false))
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Posts()[0]; p.Metadata == nil || p.Metadata.EventPayload["key"] != "k" {
		t.Fatalf("post metadata %+v", p.Metadata)
	}

	msgs, more, _, err := api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: "C1", Timestamp: parent})
	if err != nil || more || len(msgs) != 2 || msgs[0].Timestamp != parent || msgs[1].Timestamp != replyTS {
		t.Fatalf("replies = %+v, %v, %v", msgs, more, err)
	}
	if msgs[1].Metadata.EventType != "" {
		t.Fatalf("metadata returned without include_all_metadata: %+v", msgs[1].Metadata)
	}
	msgs, _, _, err = api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{
		ChannelID: "C1", Timestamp: parent, Oldest: parent, IncludeAllMetadata: true})
	if err != nil || len(msgs) != 1 || msgs[0].Metadata.EventType != "clawrun_post" || msgs[0].Metadata.EventPayload["key"] != "k" {
		t.Fatalf("replies after the parent with metadata = %+v, %v", msgs, err)
	}
	// Paging one message at a time.
	var seen []string
	cursor := ""
	for {
		r, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: "C1", Limit: 1, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range r.Messages {
			seen = append(seen, m.Timestamp)
		}
		if !r.HasMore {
			break
		}
		cursor = r.ResponseMetaData.NextCursor
	}
	if len(seen) != 2 || seen[0] != topTS || seen[1] != parent {
		t.Fatalf("history pages %v, want the top-level messages newest first [%s %s]", seen, topTS, parent)
	}
	if _, _, _, err := api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: "C1", Timestamp: "1.000009"}); err == nil || err.Error() != "thread_not_found" {
		t.Fatalf("unknown thread: %v", err)
	}
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false), slack.MsgOptionMetadata(slack.SlackMetadata{})); err == nil || err.Error() != "invalid_metadata_format" {
		t.Fatalf("metadata without event_type: %v", err)
	}
}
