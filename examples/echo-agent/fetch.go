package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// The "fetch URL" command shows what an agent with an egress grant can
// reach: it GETs URL the way most HTTP clients do, through HTTP_PROXY /
// HTTPS_PROXY (Go's default transport reads them), and replies with the
// status and the start of the body. $NAME in URL is expanded from the
// agent's environment, so "fetch $ANTHROPIC_BASE_URL/v1/models" reaches a
// base-URL secret's port — and "fetch http://host/?k=$API_KEY" shows that
// the agent holds only a placeholder.

// maxFetchBody bounds the part of a body that goes into the reply.
const maxFetchBody = 500

// fetchTimeout bounds one fetch, so a stalled upstream cannot stall the
// agent's other messages.
const fetchTimeout = 30 * time.Second

// fetcher is implemented by systems that can reach the network; tests of
// answer use a fake without it.
type fetcher interface {
	Fetch(url string) (status string, body []byte, err error)
}

func (hostSystem) Fetch(url string) (string, []byte, error) {
	c := &http.Client{Timeout: fetchTimeout}
	resp, err := c.Get(url)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBody+1))
	return resp.Status, body, err
}

// fetch answers "fetch URL". Slack sends a URL typed in a message as
// <https://x> or <https://x|label>; both are unwrapped.
func fetch(sys system, arg string) string {
	f, ok := sys.(fetcher)
	if !ok {
		return "fetch: this agent cannot reach the network"
	}
	if strings.HasPrefix(arg, "<") && strings.HasSuffix(arg, ">") {
		arg, _, _ = strings.Cut(arg[1:len(arg)-1], "|")
	}
	if arg == "" || strings.ContainsAny(arg, " \t") {
		return "usage: fetch URL, e.g. fetch https://example.com/ ($NAME is taken from my environment)"
	}
	url := os.ExpandEnv(arg)
	status, body, err := f.Fetch(url)
	if err != nil {
		return fmt.Sprintf("fetch %s: %v", url, err)
	}
	more := ""
	if len(body) > maxFetchBody {
		body, more = body[:maxFetchBody], " …"
	}
	text := strings.TrimSpace(strings.ToValidUTF8(string(body), string(utf8.RuneError)))
	return fmt.Sprintf("fetch %s: %s: %s%s", url, status, text, more)
}
