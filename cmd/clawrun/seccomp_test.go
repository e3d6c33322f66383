package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runRoot runs the root command in-process and returns stdout and the exit
// code main would use.
func runRoot(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	code := 0
	if err != nil {
		code = exitFailure
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return out.String(), code, err
}

func TestSeccompShow(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"seccomp", "show"}, []string{"agent\n", "agent-log\n", "default\n"}},
		{[]string{"seccomp", "show", "agent"}, []string{
			"profile: agent\n",
			"default action: SCMP_ACT_ERRNO (errno 38, ENOSYS)",
			"rules (",
			"SCMP_ACT_ERRNO (errno 1, EPERM): ioctl if arg1 & 0xffffffff == 0x5412 (TIOCSTI)",
			"SCMP_ACT_ERRNO (errno 97, EAFNOSUPPORT): socket if arg0 == 0x2 (AF_INET)",
		}},
		{[]string{"seccomp", "show", "--network", "agent"}, []string{
			"profile: agent (with network)",
			"allowed: socket if arg0 == 0x2 (AF_INET) and arg1 & 0xf == 0x1 (SOCK_STREAM)",
		}},
		{[]string{"seccomp", "show", "agent-log"}, []string{"default action: SCMP_ACT_LOG"}},
		{[]string{"seccomp", "show", "default"}, []string{"default action: SCMP_ACT_ERRNO (errno 1, EPERM)"}},
	}
	for _, tt := range tests {
		out, code, err := runRoot(t, tt.args...)
		if err != nil || code != 0 {
			t.Errorf("%v: exit %d, %v", tt.args, code, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
}

// TestSeccompShowJSONRoundTrip: show --json prints a profile that loads back
// as a custom profile, by path and with custom:.
func TestSeccompShowJSONRoundTrip(t *testing.T) {
	out, code, err := runRoot(t, "seccomp", "show", "--json", "agent")
	if err != nil || code != 0 {
		t.Fatalf("show --json: exit %d, %v", code, err)
	}
	var p specs.LinuxSeccomp
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.DefaultAction != specs.ActErrno {
		t.Fatalf("show --json printed %v (%v)", p.DefaultAction, err)
	}
	path := filepath.Join(t.TempDir(), "mine.json")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{path, "custom:" + path} {
		got, code, err := runRoot(t, "seccomp", "show", ref)
		if err != nil || code != 0 || !strings.Contains(got, "default action: SCMP_ACT_ERRNO (errno 38, ENOSYS)") {
			t.Errorf("show %s: exit %d, %v\n%s", ref, code, err, got)
		}
		if _, code, _ := runRoot(t, "seccomp", "check", ref, "mount"); code != 1 {
			t.Errorf("check %s mount: exit %d, want 1", ref, code)
		}
	}
}

func TestSeccompCheck(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"agent", "mount"}, 1, []string{"mount(): denied with errno 1, EPERM", "rules naming mount:"}},
		{[]string{"agent", "getppid"}, 0, []string{"getppid(): allowed"}},
		{[]string{"agent", "socket", "AF_UNIX", "SOCK_STREAM", "0"}, 0, []string{"socket(0x1, 0x1, 0x0): allowed"}},
		{[]string{"agent", "socket", "AF_INET", "SOCK_STREAM", "0"}, 1, []string{"denied with errno 97, EAFNOSUPPORT"}},
		{[]string{"--network", "agent", "socket", "AF_INET", "SOCK_STREAM|SOCK_CLOEXEC", "0"}, 0, []string{"allowed", "(with network)"}},
		{[]string{"--network", "agent", "socket", "AF_INET", "SOCK_RAW", "1"}, 1, []string{"denied with errno 1, EPERM"}},
		{[]string{"agent", "ioctl", "0", "TIOCSTI"}, 1, []string{"ioctl(0x0, 0x5412): denied with errno 1, EPERM"}},
		{[]string{"agent", "ioctl", "0", "0x100005412"}, 1, []string{"denied with errno 1, EPERM"}},
		{[]string{"agent", "ioctl", "0", "TIOCGWINSZ"}, 0, []string{"allowed"}},
		{[]string{"agent", "mknodat", "AT_FDCWD", "0", "S_IFCHR|0600"}, 1, []string{"denied with errno 1, EPERM"}},
		{[]string{"agent", "mknodat", "AT_FDCWD", "0", "S_IFIFO|0600"}, 0, []string{"allowed"}},
		{[]string{"agent", "clone", "CLONE_NEWUSER|SIGCHLD"}, 1, []string{"denied with errno 1, EPERM"}},
		{[]string{"agent", "clone3"}, 1, []string{"denied with errno 38, ENOSYS", "no rule names clone3"}},
		{[]string{"agent", "syslog"}, 1, []string{"denied with errno 38, ENOSYS"}},
		{[]string{"agent-log", "mount"}, 0, []string{"allowed and logged"}},
		{[]string{"default", "socket", "AF_INET"}, 0, []string{"allowed"}},
	}
	for _, tt := range tests {
		out, code, _ := runRoot(t, append([]string{"seccomp", "check"}, tt.args...)...)
		if code != tt.code {
			t.Errorf("check %v: exit %d, want %d\n%s", tt.args, code, tt.code, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("check %v output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
}

func TestSeccompErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["raed"], "action": "SCMP_ACT_ALLOW"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"seccomp", "show", "nope"}, `unknown seccomp profile "nope"`},
		{[]string{"seccomp", "show", bad}, `unknown syscall "raed"`},
		{[]string{"seccomp", "check", "agent", "no_such_call"}, `unknown syscall "no_such_call"`},
		{[]string{"seccomp", "check", "agent", "socket", "AF_NOPE"}, `"AF_NOPE" is neither`},
		{[]string{"seccomp", "check", "agent"}, "requires at least 2 arg(s)"},
	}
	for _, tt := range tests {
		_, code, err := runRoot(t, tt.args...)
		if code != exitFailure || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: exit %d, error %v; want exit 1 and %q", tt.args, code, err, tt.want)
		}
	}
}

func TestSeccompHelp(t *testing.T) {
	for _, args := range [][]string{{"seccomp", "--help"}, {"seccomp", "show", "--help"}, {"seccomp", "check", "--help"}} {
		out, code, err := runRoot(t, args...)
		if err != nil || code != 0 || !strings.Contains(out, "agent") || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d, %v\n%s", args, code, err, out)
		}
	}
}
