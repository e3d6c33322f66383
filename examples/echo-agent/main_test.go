package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"
)

type fakeSystem struct {
	id     identity
	idErr  error
	dirs   map[string][]string
	dirErr error
	exits  *[]int
}

func (f fakeSystem) Whoami() (identity, error) { return f.id, f.idErr }

// Exit records the code instead of exiting, so a test sees the reply that
// says the crash did not happen.
func (f fakeSystem) Exit(code int) {
	if f.exits != nil {
		*f.exits = append(*f.exits, code)
	}
}

func (f fakeSystem) Hog(maxMiB int) int { return min(maxMiB, 7) }

func (f fakeSystem) ReadDir(dir string) ([]string, error) {
	if names, ok := f.dirs[dir]; ok {
		return names, nil
	}
	if f.dirErr != nil {
		return nil, f.dirErr
	}
	return nil, &os.PathError{Op: "open", Path: dir, Err: fs.ErrNotExist}
}

var fake = fakeSystem{
	id: identity{UID: 1000, GID: 1000, User: "agent", Group: "agent", Host: "clawrun"},
	dirs: map[string][]string{
		"/":      {"agent", "bin/", "data/", "etc/", "proc/", "tmp/"},
		"/empty": {},
		"/big":   manyNames(maxEntries + 3),
	},
}

func manyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("f%03d", i)
	}
	return names
}

func TestAnswer(t *testing.T) {
	tests := []struct {
		name string
		msg  message
		sys  system
		want string
	}{
		{name: "echo", msg: message{Text: "hello"}, want: "echo: hello"},
		{name: "echo trims", msg: message{Text: "  hello world \n"}, want: "echo: hello world"},
		{name: "echo keeps unicode", msg: message{Text: "héllo 👋"}, want: "echo: héllo 👋"},
		{name: "empty", msg: message{Text: "   "}, want: `echo: (empty message); try "help"`},
		{name: "help", msg: message{Text: "help"}, want: helpText},
		{name: "ping", msg: message{Text: "ping"}, want: "pong"},
		{name: "command is case-insensitive", msg: message{Text: "PING"}, want: "pong"},
		{name: "mention stripped", msg: message{Text: "<@U012AB3CD> ping"}, want: "pong"},
		{name: "mention stripped from echo", msg: message{Text: "<@U1> hi there"}, want: "echo: hi there"},
		{name: "command with extra words is echoed", msg: message{Text: "ping me"}, want: "echo: ping me"},
		{name: "whoami", msg: message{Text: "whoami"}, want: "uid=1000(agent) gid=1000(agent) host=clawrun"},
		{
			name: "whoami without names", msg: message{Text: "whoami"},
			sys:  fakeSystem{id: identity{UID: 0, GID: 65534, Host: "box"}},
			want: "uid=0 gid=65534 host=box",
		},
		{
			name: "whoami hostname error", msg: message{Text: "whoami"},
			sys:  fakeSystem{id: identity{UID: 1000, GID: 1000}, idErr: errors.New("uname failed")},
			want: "uid=1000 gid=1000 host=? (uname failed)",
		},
		{name: "ls root", msg: message{Text: "ls /"}, want: "ls /: agent bin/ data/ etc/ proc/ tmp/"},
		{name: "ls default is root", msg: message{Text: "ls"}, want: "ls /: agent bin/ data/ etc/ proc/ tmp/"},
		{name: "ls cleans path", msg: message{Text: "ls /empty/../"}, want: "ls /: agent bin/ data/ etc/ proc/ tmp/"},
		{name: "ls relative is from root", msg: message{Text: "ls empty"}, want: "ls /empty: (empty)"},
		{name: "ls missing", msg: message{Text: "ls /nope"}, want: "ls /nope: file does not exist"},
		{
			name: "ls permission", msg: message{Text: "ls /root"},
			sys:  fakeSystem{dirErr: &os.PathError{Op: "open", Path: "/root", Err: fs.ErrPermission}},
			want: "ls /root: permission denied",
		},
		{
			name: "ls truncates", msg: message{Text: "ls /big"},
			want: "ls /big: " + strings.Join(manyNames(maxEntries), " ") + " … (3 more)",
		},
		{name: "time", msg: message{Text: "time", TS: "1700000000.000200"}, want: "message sent at 2023-11-14 22:13:20 UTC"},
		{name: "time without fraction", msg: message{Text: "time", TS: "0"}, want: "message sent at 1970-01-01 00:00:00 UTC"},
		{name: "time without ts", msg: message{Text: "time"}, want: "time: this message has no timestamp (ts)"},
		{name: "time bad ts", msg: message{Text: "time", TS: "yesterday"}, want: `time: cannot read timestamp "yesterday"`},
		{name: "time bad fraction", msg: message{Text: "time", TS: "1.x"}, want: `time: cannot read timestamp "1.x"`},
		{name: "post", msg: message{Text: "post C0NEWS hello all"}, want: "asked clawrun to post that in C0NEWS (it appears there only if my agent file grants it with post_to)"},
		{name: "post channel link", msg: message{Text: "<@U1> post <#C0NEWS|news> hi"}, want: "asked clawrun to post that in C0NEWS (it appears there only if my agent file grants it with post_to)"},
		{name: "post without text", msg: message{Text: "post C0NEWS"}, want: "usage: post CHANNEL TEXT, e.g. post C0123ABC hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := tt.sys
			if sys == nil {
				sys = fake
			}
			if got := answer(tt.msg, sys); got != tt.want {
				t.Errorf("answer(%q) = %q, want %q", tt.msg.Text, got, tt.want)
			}
		})
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		status  bool
		want    []reply
		wantLog []string // substrings of stderr, in any order
	}{
		{
			name: "one message",
			in:   `{"id":"m1","channel":"C1","thread":"","user":"U1","text":"hello","ts":"1.0"}` + "\n",
			want: []reply{{ReplyTo: "m1", Text: "echo: hello"}},
		},
		{
			name:   "status first",
			in:     `{"id":"m1","text":"ping"}` + "\n" + `{"id":"m2","text":"hi"}` + "\n",
			status: true,
			want: []reply{
				{ReplyTo: "m1", Status: "working"}, {ReplyTo: "m1", Text: "pong"},
				{ReplyTo: "m2", Status: "working"}, {ReplyTo: "m2", Text: "echo: hi"},
			},
		},
		{
			name: "last line without newline, CRLF, blank lines, unknown fields",
			in:   "\n" + `{"id":"a","text":"one","extra":42}` + "\r\n   \n" + `{"id":"b","text":"two"}`,
			want: []reply{{ReplyTo: "a", Text: "echo: one"}, {ReplyTo: "b", Text: "echo: two"}},
		},
		{
			name: "malformed lines are skipped",
			in: strings.Join([]string{
				`not json`,
				`{"id":"x","text":`,
				`{"id":7,"text":"number id"}`,
				`["id","text"]`,
				`{"text":"no id"}`,
				`{"id":"ok","text":"still here"}`,
			}, "\n") + "\n",
			want: []reply{{ReplyTo: "ok", Text: "echo: still here"}},
			wantLog: []string{
				"line 1 skipped: not a JSON message object",
				"line 2 skipped",
				"line 3 skipped",
				"line 4 skipped",
				`line 5 skipped: message has no "id"`,
			},
		},
		{
			name:    "too long line is skipped",
			in:      `{"id":"big","text":"` + strings.Repeat("a", maxLine) + `"}` + "\n" + `{"id":"next","text":"ok"}` + "\n",
			want:    []reply{{ReplyTo: "next", Text: "echo: ok"}},
			wantLog: []string{"line 1 skipped: longer than"},
		},
		{
			name: "post to another channel, then the answer",
			in:   `{"id":"m1","text":"post <#C0NEWS|news> release is out"}` + "\n",
			want: []reply{
				{ReplyTo: "m1", Channel: "C0NEWS", Text: "release is out"},
				{ReplyTo: "m1", Text: "asked clawrun to post that in C0NEWS (it appears there only if my agent file grants it with post_to)"},
			},
		},
		{name: "empty input", in: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, logw bytes.Buffer
			if err := run(strings.NewReader(tt.in), &out, &logw, fake, options{status: tt.status}); err != nil {
				t.Fatalf("run: %v", err)
			}
			var got []reply
			for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
				if line == "" {
					continue
				}
				var r reply
				dec := json.NewDecoder(strings.NewReader(line))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&r); err != nil {
					t.Fatalf("output line %q: %v", line, err)
				}
				got = append(got, r)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("replies:\n got %v\nwant %v", got, tt.want)
			}
			for _, s := range tt.wantLog {
				if !strings.Contains(logw.String(), s) {
					t.Errorf("stderr %q lacks %q", logw.String(), s)
				}
			}
			if len(tt.wantLog) == 0 && logw.Len() > 0 {
				t.Errorf("unexpected stderr: %q", logw.String())
			}
		})
	}
}

// A reply line must be exactly {"reply_to":...,"text":...}: no status key
// unless asked for, and markup left unescaped.
func TestRunWireFormat(t *testing.T) {
	var out bytes.Buffer
	in := `{"id":"m<1>","text":"a <b> & c"}` + "\n"
	if err := run(strings.NewReader(in), &out, &bytes.Buffer{}, fake, options{}); err != nil {
		t.Fatal(err)
	}
	want := `{"reply_to":"m<1>","text":"echo: a <b> & c"}` + "\n"
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestRunWriteError(t *testing.T) {
	err := run(strings.NewReader(`{"id":"m1","text":"hi"}`+"\n"), failWriter{}, &bytes.Buffer{}, fake, options{})
	if err == nil || !strings.Contains(err.Error(), `writing reply to "m1"`) {
		t.Fatalf("run with a broken stdout: %v, want a write error naming the message", err)
	}
}

// stepReader records the output as it stands at each Read, proving
// each reply reaches the pipe before the next message is read.
type stepReader struct {
	lines []string
	out   *bytes.Buffer
	seen  []string
}

func (s *stepReader) Read(p []byte) (int, error) {
	s.seen = append(s.seen, s.out.String())
	if len(s.lines) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.lines[0])
	s.lines = s.lines[1:]
	return n, nil
}

func TestRunFlushesEachReply(t *testing.T) {
	var out bytes.Buffer
	r := &stepReader{lines: []string{`{"id":"1","text":"a"}` + "\n", `{"id":"2","text":"b"}` + "\n"}, out: &out}
	if err := run(r, &out, &bytes.Buffer{}, fake, options{}); err != nil {
		t.Fatal(err)
	}
	// Before reading the second message, the first reply must be written.
	if len(r.seen) < 2 || !strings.Contains(r.seen[1], `"reply_to":"1"`) {
		t.Fatalf("output seen at each read: %q; want reply 1 flushed before message 2 is read", r.seen)
	}
}

// With -faults, crash exits with the code given (3 by default) and oom
// hogs memory; without it both are echoed like any text.
func TestFaults(t *testing.T) {
	in := `{"id":"c1","text":"crash 7"}` + "\n" + `{"id":"c2","text":"<@U1> crash"}` + "\n" +
		`{"id":"o1","text":"oom"}` + "\n"
	for _, faults := range []bool{true, false} {
		var exits []int
		sys := fake
		sys.exits = &exits
		var out bytes.Buffer
		if err := run(strings.NewReader(in), &out, &bytes.Buffer{}, sys, options{faults: faults}); err != nil {
			t.Fatal(err)
		}
		want := `{"reply_to":"c1","text":"echo: crash 7"}
{"reply_to":"c2","text":"echo: crash"}
{"reply_to":"o1","text":"echo: oom"}
`
		wantExits := []int(nil)
		if faults {
			want = `{"reply_to":"c1","text":"crash: exit 7 did not end the agent"}
{"reply_to":"c2","text":"crash: exit 3 did not end the agent"}
{"reply_to":"o1","text":"oom: allocated 7 MiB and nothing stopped me: no memory limit applies (or it is higher)"}
`
			wantExits = []int{7, 3}
		}
		if out.String() != want {
			t.Errorf("faults=%v: output\n%s\nwant\n%s", faults, out.String(), want)
		}
		if fmt.Sprint(exits) != fmt.Sprint(wantExits) {
			t.Errorf("faults=%v: exits %v, want %v", faults, exits, wantExits)
		}
	}
}
