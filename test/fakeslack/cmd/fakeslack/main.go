// Command fakeslack runs the fake Slack of package fakeslack on 127.0.0.1,
// plays a short scripted conversation into it and prints it as a chat
// transcript. `make demo` points `clawrun serve` at it, so a newcomer sees
// the whole path (Socket Mode in, agent container, chat.postMessage out)
// without a Slack account. It is a test tool: product code never imports
// it.
//
// The script's workspace, which the agent file of the demo must route:
//
//	C0DEMO   #demo, a channel the agent answers in
//	C0NEWS   #news, where the agent may post (slack.post_to)
//	D0ALICE  alice's direct messages with the bot
//	U0ALICE  alice, allowed to talk to the agent (slack.users)
//	U0MALLORY mallory, not allowed
//
// Usage:
//
//	fakeslack -url-file FILE [-done-file FILE] [-agent NAME] [-timeout 30s]
//
// It writes the Web API URL (for CLAWRUN_SLACK_API_URL) to the url file and
// to stdout, waits for a Socket Mode connection, sends each message and
// waits for its answer in the thread, printing the transcript as it goes.
// Then it exits 0, or, with -done-file, creates that file and keeps serving
// until SIGTERM or SIGINT, so that serve can be stopped while its Slack is
// still there. It exits 1 if an answer does not come within the timeout.
// The tokens it accepts are fakeslack.BotToken and fakeslack.AppToken.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/clawrun/clawrun/test/fakeslack"
)

// step is one message of the script.
type step struct {
	channel, kind, user, text string
}

var script = []step{
	{"C0DEMO", "channel", "U0ALICE", "hello"},
	{"C0DEMO", "channel", "U0ALICE", "<@" + fakeslack.BotUserID + "> whoami"},
	{"D0ALICE", "im", "U0ALICE", "ls /"},
	{"C0DEMO", "channel", "U0ALICE", "post <#C0NEWS|news> the demo works"},
	{"C0DEMO", "channel", "U0MALLORY", "let me in"},
}

var (
	channelNames = map[string]string{"C0DEMO": "#demo", "C0NEWS": "#news", "D0ALICE": "DM"}
	userNames    = map[string]string{"U0ALICE": "alice", "U0MALLORY": "mallory", fakeslack.BotUserID: "@bot"}
)

func main() {
	urlFile := flag.String("url-file", "", "write the Web API URL to this file once listening")
	doneFile := flag.String("done-file", "", "when the script is over, create this file and keep serving until SIGTERM")
	agent := flag.String("agent", "demo", "the agent's name, to label its replies")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for serve to connect, and for each answer")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdout, *urlFile, *doneFile, *agent, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "fakeslack:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, urlFile, doneFile, agent string, timeout time.Duration) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	fs := fakeslack.New(fakeslack.Options{})
	defer fs.Close()
	fmt.Fprintf(out, "» fake Slack listening: CLAWRUN_SLACK_API_URL=%s\n", fs.APIURL)
	if urlFile != "" {
		if err := writeFile(urlFile, fs.APIURL+"\n"); err != nil {
			return err
		}
	}
	if err := fs.WaitConnections(1, timeout); err != nil {
		return fmt.Errorf("%w: is clawrun serve running with CLAWRUN_SLACK_API_URL=%s?", err, fs.APIURL)
	}
	fmt.Fprintln(out, "» clawrun serve connected over Socket Mode; the conversation (replies in threads):")
	seen := 0
	for _, s := range script {
		ts := fs.NextTS()
		fmt.Fprintf(out, "  %-6s %s › %s\n", channelNames[s.channel], userNames[s.user], display(s.text))
		fs.Send(fakeslack.Message(s.channel, s.kind, s.user, s.text, ts))
		posts, err := waitAnswer(fs, ts, seen, timeout)
		if err != nil {
			return err
		}
		for _, p := range posts[seen:] {
			switch {
			case p.ThreadTS == ts:
				fmt.Fprintf(out, "  %-6s   └ %s › %s\n", "", agent, p.Text)
			case p.ThreadTS == "":
				fmt.Fprintf(out, "  %-6s %s › %s   (a new message, allowed by post_to)\n", channelNames[p.Channel], agent, p.Text)
			default:
				fmt.Fprintf(out, "  %-6s %s › %s   (in thread %s)\n", channelNames[p.Channel], agent, p.Text, p.ThreadTS)
			}
		}
		seen = len(posts)
	}
	fmt.Fprintf(out, "» %d messages in (%d envelopes acknowledged after they were stored), %d posts out\n",
		len(script), len(fs.Acks()), seen)
	if doneFile != "" {
		if err := writeFile(doneFile, "done\n"); err != nil {
			return err
		}
		<-stop
	}
	return nil
}

// writeFile writes the file whole and renames it into place, so a reader
// polling for it never sees it half written.
func writeFile(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Clean(path))
}

// waitAnswer waits for the post in the thread of the message at ts (the
// agent's answer, or the gateway's refusal) and returns every post so far.
// An agent's posts to other channels come before its answer.
func waitAnswer(fs *fakeslack.Server, ts string, seen int, timeout time.Duration) ([]fakeslack.Post, error) {
	deadline := time.Now().Add(timeout)
	for {
		posts := fs.Posts()
		for _, p := range posts[seen:] {
			if p.ThreadTS == ts {
				return posts, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no answer to the message at %s within %s (see the serve log)", ts, timeout)
		}
		if _, err := fs.WaitPosts(len(posts)+1, time.Until(deadline)); err != nil {
			return nil, fmt.Errorf("no answer to the message at %s within %s (see the serve log)", ts, timeout)
		}
	}
}

// display shows Slack markup as a Slack client would: <@U…> as @name,
// <#C…|name> as #name.
func display(text string) string {
	for id, name := range userNames {
		text = strings.ReplaceAll(text, "<@"+id+">", name)
	}
	for id, name := range channelNames {
		text = strings.ReplaceAll(text, "<#"+id+"|"+strings.TrimPrefix(name, "#")+">", name)
	}
	return text
}
