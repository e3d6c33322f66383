// Command echo-agent is the example clawrun agent. It speaks the agent
// protocol (docs/protocol.md): one JSON message per line on stdin, one JSON
// reply per line on stdout, diagnostics on stderr.
//
// It echoes what it is sent and knows a few commands that show what the
// agent sees from inside its container:
//
//	help          list the commands
//	ping          pong
//	whoami        uid, gid and hostname inside the container
//	ls [dir]      entries of dir (default /)
//	time          the message's Slack timestamp, as UTC
//	post CHANNEL TEXT  post TEXT into another channel (a channel id, or a
//	              Slack channel link <#C…|name>); clawrun posts it only if
//	              the agent file grants that channel with slack.post_to
//	fetch URL     GET URL through HTTP_PROXY/HTTPS_PROXY and reply with
//	              the status and the start of the body ($NAME expanded
//	              from the agent's environment; see fetch.go)
//
// With -faults it also fails on demand, to show (and test) what clawrun
// serve tells the chat when an agent dies while handling a message:
//
//	crash [CODE]  exit at once with CODE (default 3), without answering
//	oom           allocate memory until the memory limit gets the agent
//	              OOM-killed (it gives up and answers after hogMiB)
//
// It is built static (CGO_ENABLED=0) so it runs in any root filesystem,
// e.g. the busybox rootfs of package rootfs.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"
	"time"
)

// maxLine bounds one input line so a runaway sender cannot exhaust the
// agent's memory limit; longer lines are skipped.
const maxLine = 1 << 20

// maxEntries bounds the reply of "ls" so it stays one readable chat message.
const maxEntries = 100

type message struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Thread  string `json:"thread"`
	User    string `json:"user"`
	Text    string `json:"text"`
	TS      string `json:"ts"`
}

type reply struct {
	ReplyTo string `json:"reply_to"`
	Status  string `json:"status,omitempty"`
	Text    string `json:"text,omitempty"`
	Channel string `json:"channel,omitempty"`
}

// identity is who and where the agent is, as seen inside the container.
type identity struct {
	UID, GID    int
	User, Group string // "" when /etc/passwd or /etc/group has no entry
	Host        string
}

// system is what the agent observes of its container; tests fake it so
// replies are deterministic.
type system interface {
	Whoami() (identity, error)
	ReadDir(dir string) ([]string, error)
	// Exit ends the agent (-faults: crash); it does not return.
	Exit(code int)
	// Hog allocates and touches memory, a MiB at a time, up to maxMiB,
	// keeping all of it, and returns how many MiB it got (-faults: oom).
	Hog(maxMiB int) int
}

// hogMiB bounds the oom command: without a memory limit the agent must not
// take the host down, only show that nothing stopped it.
const hogMiB = 1024

type hostSystem struct{}

func (hostSystem) Whoami() (identity, error) {
	id := identity{UID: os.Getuid(), GID: os.Getgid()}
	// With CGO_ENABLED=0 os/user parses /etc/passwd and /etc/group of the
	// rootfs, so the names are the container's, not the host's.
	if u, err := user.LookupId(strconv.Itoa(id.UID)); err == nil {
		id.User = u.Username
	}
	if g, err := user.LookupGroupId(strconv.Itoa(id.GID)); err == nil {
		id.Group = g.Name
	}
	host, err := os.Hostname()
	id.Host = host
	return id, err
}

func (hostSystem) Exit(code int) { os.Exit(code) }

func (hostSystem) Hog(maxMiB int) int {
	var kept [][]byte
	for len(kept) < maxMiB {
		b := make([]byte, 1<<20)
		// Touch every page: untouched pages are never charged.
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		kept = append(kept, b)
	}
	return len(kept)
}

func (hostSystem) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			name += "/"
		}
		names = append(names, name)
	}
	return names, err
}

const helpText = "commands: help, ping, whoami, ls [dir], time, post CHANNEL TEXT, fetch URL; anything else is echoed back"

// answer is the reply text for m. It depends only on m and what sys reports.
func answer(m message, sys system) string {
	text := strings.TrimSpace(stripMention(m.Text))
	cmd, arg, _ := strings.Cut(text, " ")
	arg = strings.TrimSpace(arg)
	switch strings.ToLower(cmd) {
	case "":
		return `echo: (empty message); try "help"`
	case "help":
		if arg == "" {
			return helpText
		}
	case "ping":
		if arg == "" {
			return "pong"
		}
	case "whoami":
		if arg == "" {
			return whoami(sys)
		}
	case "ls":
		return ls(sys, arg)
	case "time":
		if arg == "" {
			return slackTime(m.TS)
		}
	case "fetch":
		return fetch(sys, arg)
	case "post":
		if channel, _, ok := postRequest(m); ok {
			return "asked clawrun to post that in " + channel + " (it appears there only if my agent file grants it with post_to)"
		}
		return "usage: post CHANNEL TEXT, e.g. post C0123ABC hello"
	}
	return "echo: " + text
}

// postRequest parses "post CHANNEL TEXT". CHANNEL is a channel id or a
// Slack channel link, as Slack sends "#general" typed in a message:
// <#C0123ABC|general> or <#C0123ABC>.
func postRequest(m message) (channel, text string, ok bool) {
	t := strings.TrimSpace(stripMention(m.Text))
	cmd, rest, _ := strings.Cut(t, " ")
	if !strings.EqualFold(cmd, "post") {
		return "", "", false
	}
	channel, text, _ = strings.Cut(strings.TrimSpace(rest), " ")
	if strings.HasPrefix(channel, "<#") && strings.HasSuffix(channel, ">") {
		channel, _, _ = strings.Cut(channel[2:len(channel)-1], "|")
	}
	text = strings.TrimSpace(text)
	if channel == "" || text == "" {
		return "", "", false
	}
	return channel, text, true
}

// stripMention drops a leading Slack mention ("<@U123> ping"), which is how
// messages addressed to the bot in a channel arrive.
func stripMention(s string) string {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "<@") {
		if i := strings.IndexByte(t, '>'); i > 0 {
			return t[i+1:]
		}
	}
	return s
}

func whoami(sys system) string {
	id, err := sys.Whoami()
	var b strings.Builder
	fmt.Fprintf(&b, "uid=%d", id.UID)
	if id.User != "" {
		fmt.Fprintf(&b, "(%s)", id.User)
	}
	fmt.Fprintf(&b, " gid=%d", id.GID)
	if id.Group != "" {
		fmt.Fprintf(&b, "(%s)", id.Group)
	}
	if err != nil {
		fmt.Fprintf(&b, " host=? (%v)", err)
	} else {
		fmt.Fprintf(&b, " host=%s", id.Host)
	}
	return b.String()
}

func ls(sys system, dir string) string {
	if dir == "" {
		dir = "/"
	}
	if !path.IsAbs(dir) {
		// The agent's working directory is an implementation detail of the
		// container; absolute paths make the demo output unambiguous.
		dir = "/" + dir
	}
	dir = path.Clean(dir)
	names, err := sys.ReadDir(dir)
	if err != nil && len(names) == 0 {
		return fmt.Sprintf("ls %s: %v", dir, unwrapPath(err))
	}
	if len(names) == 0 {
		return fmt.Sprintf("ls %s: (empty)", dir)
	}
	more := ""
	if len(names) > maxEntries {
		more = fmt.Sprintf(" … (%d more)", len(names)-maxEntries)
		names = names[:maxEntries]
	}
	return fmt.Sprintf("ls %s: %s%s", dir, strings.Join(names, " "), more)
}

// unwrapPath drops the "open /x:" prefix of a *PathError; the reply
// already names the directory.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// slackTime renders a Slack ts ("1712345678.000200", seconds since the
// epoch) as UTC. It uses only the message, so replies stay deterministic.
func slackTime(ts string) string {
	if ts == "" {
		return "time: this message has no timestamp (ts)"
	}
	secStr, fracStr, _ := strings.Cut(ts, ".")
	sec, err := strconv.ParseInt(secStr, 10, 64)
	if err != nil {
		return fmt.Sprintf("time: cannot read timestamp %q", ts)
	}
	var nsec int64
	if fracStr != "" {
		f := (fracStr + "000000000")[:9]
		if nsec, err = strconv.ParseInt(f, 10, 64); err != nil {
			return fmt.Sprintf("time: cannot read timestamp %q", ts)
		}
	}
	return "message sent at " + time.Unix(sec, nsec).UTC().Format("2006-01-02 15:04:05 UTC")
}

// options are the command-line switches.
type options struct {
	status bool // send a working status before each reply
	faults bool // obey crash and oom
}

// fault carries out a fault command (-faults): crash never returns, oom
// returns only if nothing stopped it, with the reply saying so.
func fault(m message, sys system) (string, bool) {
	cmd, arg, _ := strings.Cut(strings.TrimSpace(stripMention(m.Text)), " ")
	arg = strings.TrimSpace(arg)
	switch strings.ToLower(cmd) {
	case "crash":
		code := 3
		if n, err := strconv.Atoi(arg); err == nil && n > 0 && n < 256 {
			code = n
		}
		sys.Exit(code)
		return fmt.Sprintf("crash: exit %d did not end the agent", code), true
	case "oom":
		if arg == "" {
			n := sys.Hog(hogMiB)
			return fmt.Sprintf("oom: allocated %d MiB and nothing stopped me: no memory limit applies (or it is higher)", n), true
		}
	}
	return "", false
}

// run serves messages from in until EOF. Malformed lines are reported on
// logw and skipped; only failing to write a reply is an error.
func run(in io.Reader, out, logw io.Writer, sys system, o options) error {
	r := bufio.NewReader(in)
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	// Slack markup such as "<@U123>" stays readable in the output.
	enc.SetEscapeHTML(false)
	send := func(rep reply) error {
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("writing reply to %q: %w", rep.ReplyTo, err)
		}
		// The gateway waits for this line; never leave it in a buffer.
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing reply to %q: %w", rep.ReplyTo, err)
		}
		return nil
	}

	for lineNo := 1; ; lineNo++ {
		line, tooLong, err := readLine(r)
		// Blank lines carry nothing to answer; skip them quietly.
		if len(bytes.TrimSpace(line)) > 0 || tooLong {
			m, perr := parse(line, tooLong)
			if perr != nil {
				fmt.Fprintf(logw, "echo-agent: line %d skipped: %v\n", lineNo, perr)
			} else {
				if o.status {
					if err := send(reply{ReplyTo: m.ID, Status: "working"}); err != nil {
						return err
					}
				}
				text, isFault := "", false
				if o.faults {
					text, isFault = fault(m, sys)
				}
				if channel, post, ok := postRequest(m); ok && !isFault {
					if err := send(reply{ReplyTo: m.ID, Channel: channel, Text: post}); err != nil {
						return err
					}
				}
				if !isFault {
					text = answer(m, sys)
				}
				if err := send(reply{ReplyTo: m.ID, Text: text}); err != nil {
					return err
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
	}
}

// readLine returns the next line without its newline. A line longer than
// maxLine is consumed and reported as tooLong with no content.
func readLine(r *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > maxLine+1 {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), tooLong, err
	}
}

func parse(line []byte, tooLong bool) (message, error) {
	var m message
	if tooLong {
		return m, fmt.Errorf("longer than %d bytes", maxLine)
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return m, fmt.Errorf("not a JSON message object: %v", err)
	}
	if m.ID == "" {
		return m, errors.New(`message has no "id", so no reply can refer to it`)
	}
	return m, nil
}

func main() {
	var o options
	flag.BoolVar(&o.status, "status", false, `send {"reply_to": id, "status": "working"} before each reply`)
	flag.BoolVar(&o.faults, "faults", false, "obey the fault commands crash [CODE] and oom (to test how clawrun reports a dying agent)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-status] [-faults]\n\nReads clawrun agent messages (JSON lines) on stdin and writes replies on stdout.\n\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout, os.Stderr, hostSystem{}, o); err != nil {
		fmt.Fprintf(os.Stderr, "echo-agent: %v\n", err)
		os.Exit(1)
	}
}
