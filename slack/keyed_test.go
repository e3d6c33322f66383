package slack_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/slack"
	"github.com/clawrun/clawrun/test/fakeslack"
)

// keyedEnv is a connected transport and a message in C1 to answer.
func keyedEnv(t *testing.T, o fakeslack.Options) (*env, string) {
	t.Helper()
	e := setup(t, o, nil)
	if err := e.tr.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := e.fs.NextTS()
	e.fs.Send(message("C1", "channel", "U1", "question", ts))
	return e, ts
}

// longText splits into three messages.
func longText() string {
	line := strings.Repeat("x", 99) + "\n"
	return strings.Repeat(line, 5*slack.MaxChunk/2/100)
}

// Every part of a keyed post carries the key, its number and the number of
// parts in Slack's message metadata, and Posted reads them back from the
// thread (conversations.replies with include_all_metadata).
func TestPostKeyedMetadataFoundAgain(t *testing.T) {
	e, ts := keyedEnv(t, fakeslack.Options{})
	ctx := context.Background()
	done, err := e.tr.PostKeyed(ctx, "C1", ts, longText(), "r:store:bot:C1:"+ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	posts := e.fs.Posts()
	if len(posts) != 3 || len(done) != 3 {
		t.Fatalf("%d posts, %d parts reported, want 3 and 3", len(posts), len(done))
	}
	for i, p := range posts {
		md := p.Metadata
		if md == nil || md.EventType != slack.MetadataEventType {
			t.Fatalf("post %d has metadata %+v, want event_type %s", i, md, slack.MetadataEventType)
		}
		if md.EventPayload["key"] != "r:store:bot:C1:"+ts || md.EventPayload["part"] != float64(i) || md.EventPayload["parts"] != float64(3) {
			t.Fatalf("post %d payload %v", i, md.EventPayload)
		}
	}
	found, complete, err := e.tr.Posted(ctx, "C1", ts, ts, "r:store:bot:C1:"+ts)
	if err != nil {
		t.Fatal(err)
	}
	if !complete || len(found) != 3 {
		t.Fatalf("Posted = %v complete=%v, want 3 parts, complete", found, complete)
	}
	if e.fs.Calls("conversations.replies") != 1 {
		t.Fatalf("conversations.replies called %d times, want 1", e.fs.Calls("conversations.replies"))
	}
	// Another key, or a post without one, is not found.
	if found, complete, err := e.tr.Posted(ctx, "C1", ts, ts, "r:store:bot:C1:other"); err != nil || complete || len(found) != 0 {
		t.Fatalf("Posted(other key) = %v, %v, %v; want nothing", found, complete, err)
	}
}

// A split post of which only some parts reached Slack: Posted says which,
// and PostKeyed with them posts only the rest.
func TestPostKeyedHalfPostedPostsTheRest(t *testing.T) {
	e, ts := keyedEnv(t, fakeslack.Options{})
	ctx := context.Background()
	key := "r:store:bot:C1:" + ts
	// The first part reached Slack, then the process died: the fake
	// takes the post and never answers, the client gives up.
	e.fs.StallPosts(1)
	pctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = e.fs.WaitPosts(1, wait)
		cancel()
	}()
	if _, err := e.tr.PostKeyed(pctx, "C1", ts, longText(), key, nil); err == nil {
		t.Fatal("PostKeyed succeeded although its first part never got an answer")
	}
	found, complete, err := e.tr.Posted(ctx, "C1", ts, ts, key)
	if err != nil {
		t.Fatal(err)
	}
	if complete || len(found) != 1 {
		t.Fatalf("Posted = %v complete=%v, want 1 part, incomplete", found, complete)
	}
	if _, err := e.tr.PostKeyed(ctx, "C1", ts, longText(), key, found); err != nil {
		t.Fatal(err)
	}
	posts := e.fs.Posts()
	if len(posts) != 3 {
		t.Fatalf("%d posts, want 3 (the rest, not the part already there)", len(posts))
	}
	for i, p := range posts {
		if p.Metadata.EventPayload["part"] != float64(i) {
			t.Fatalf("post %d is part %v", i, p.Metadata.EventPayload["part"])
		}
	}
	if _, complete, _ := e.tr.Posted(ctx, "C1", ts, ts, key); !complete {
		t.Fatal("post not complete after the rest was posted")
	}
	// An agent that answers differently the second time: the parts found
	// are of another text, so the whole new text is posted.
	e.fs.StallPosts(1)
	pctx, cancel = context.WithCancel(ctx)
	go func() {
		_, _ = e.fs.WaitPosts(4, wait)
		cancel()
	}()
	key2 := "r:store:bot:C1:second"
	_, _ = e.tr.PostKeyed(pctx, "C1", ts, longText(), key2, nil)
	found, _, err = e.tr.Posted(ctx, "C1", ts, ts, key2)
	if err != nil || len(found) != 1 {
		t.Fatalf("Posted = %v, %v; want one part", found, err)
	}
	if _, err := e.tr.PostKeyed(ctx, "C1", ts, "a short, different answer", key2, found); err != nil {
		t.Fatal(err)
	}
	if posts := e.fs.Posts(); len(posts) != 5 || posts[4].Text != "a short, different answer" {
		t.Fatalf("posts %d, last %q; want the different answer posted whole", len(posts), posts[len(posts)-1].Text)
	}
}

// Without a thread the lookup reads the channel (conversations.history)
// from the message answered on; long conversations are read page by page.
func TestPostedInChannelAndAcrossPages(t *testing.T) {
	e, ts := keyedEnv(t, fakeslack.Options{})
	ctx := context.Background()
	// More messages than one page holds, after the one answered.
	for i := range 250 {
		if err := e.tr.Post(ctx, "C1", "", fmt.Sprintf("chatter %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.tr.PostKeyed(ctx, "C1", "", "top-level answer", "n:store:7", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 250 {
		if err := e.tr.Post(ctx, "C1", "", fmt.Sprintf("more chatter %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	found, complete, err := e.tr.Posted(ctx, "C1", "", ts, "n:store:7")
	if err != nil || !complete || len(found) != 1 {
		t.Fatalf("Posted = %v, %v, %v; want the one post", found, complete, err)
	}
	if n := e.fs.Calls("conversations.history"); n < 3 {
		t.Fatalf("conversations.history called %d times for 500 messages, want a page at a time", n)
	}
	// Posts before the message answered are not searched.
	if found, _, err := e.tr.Posted(ctx, "C1", "", e.fs.NextTS(), "n:store:7"); err != nil || len(found) != 0 {
		t.Fatalf("Posted after a later ts = %v, %v; want nothing", found, err)
	}
}

// A bot token without the history scopes cannot look up: the error names
// the scopes and how to add them.
func TestPostedMissingScope(t *testing.T) {
	e, ts := keyedEnv(t, fakeslack.Options{Scopes: []string{"chat:write", "app_mentions:read"}})
	_, _, err := e.tr.Posted(context.Background(), "C1", ts, ts, "r:store:bot:C1:"+ts)
	if err == nil {
		t.Fatal("lookup succeeded without channels:history")
	}
	for _, want := range []string{"missing_scope", "channels:history", "clawrun slack manifest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
