//go:build cgo

package seccomp

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func writeProfile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadCustomGood(t *testing.T) {
	path := writeProfile(t, `{
	"defaultAction": "SCMP_ACT_ERRNO",
	"defaultErrnoRet": 38,
	"architectures": ["SCMP_ARCH_X86_64"],
	"flags": ["SECCOMP_FILTER_FLAG_LOG"],
	"syscalls": [
		{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
		{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
		{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
		{"names": ["bpf"], "action": "SCMP_ACT_LOG"}
	]
}`)
	p, err := LoadCustom(path)
	if err != nil {
		t.Fatalf("LoadCustom: %v", err)
	}
	if p.DefaultAction != specs.ActErrno || *p.DefaultErrnoRet != 38 || len(p.Syscalls) != 4 {
		t.Errorf("loaded %+v", p)
	}
	r, err := Resolve(CustomPrefix+path, Options{})
	if err != nil || len(r.Syscalls) != 4 {
		t.Errorf("Resolve(custom:...) = %v, %v", r, err)
	}
}

// TestLoadCustomRoundTrip: every built-in profile, as JSON, loads as a
// custom profile.
func TestLoadCustomRoundTrip(t *testing.T) {
	for _, name := range Names() {
		p, err := Profile(name)
		if err != nil {
			t.Skip(err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCustom(writeProfile(t, string(b))); err != nil {
			t.Errorf("%s as a custom profile: %v", name, err)
		}
	}
}

func TestLoadCustomBad(t *testing.T) {
	rule := func(s string) string {
		return `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [` + s + `]}`
	}
	tests := []struct {
		name string
		body string
		want []string // substrings of the error, besides the path
	}{
		{"empty", ``, []string{"empty file"}},
		{"not json", `defaultAction: x`, []string{"not OCI LinuxSeccomp JSON"}},
		{"trailing", `{"defaultAction": "SCMP_ACT_ALLOW"} {}`, []string{"trailing data"}},
		{"unknown field", `{"defaultAction": "SCMP_ACT_ALLOW", "syscall": []}`, []string{`unknown field "syscall"`}},
		{"docker profile", `{"defaultAction": "SCMP_ACT_ERRNO", "archMap": []}`, []string{"Docker/moby profile"}},
		{"no default", `{"syscalls": []}`, []string{"defaultAction is missing"}},
		{"bad default", `{"defaultAction": "SCMP_ACT_NOPE"}`, []string{"defaultAction", `"SCMP_ACT_NOPE" unknown`}},
		{"notify", `{"defaultAction": "SCMP_ACT_NOTIFY"}`, []string{"not supported"}},
		{"errno on allow", `{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}`, []string{"defaultErrnoRet is set"}},
		{"bad arch", `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}`, []string{`architecture "SCMP_ARCH_Z80" unknown`}},
		{"arch twice", `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86_64"]}`, []string{"listed twice"}},
		{"bad flag", `{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}`, []string{"flag", "unknown"}},
		{"listener", `{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}`, []string{"notify agents are not supported"}},
		{"unknown syscall", rule(`{"names": ["read", "raed"], "action": "SCMP_ACT_ALLOW"}`), []string{`unknown syscall "raed"`, "syscalls[0]"}},
		{"other arch syscall", rule(`{"names": ["socketcall"], "action": "SCMP_ACT_ALLOW"}`), []string{`"socketcall" does not exist on`}},
		{"no names", rule(`{"names": [], "action": "SCMP_ACT_ALLOW"}`), []string{"syscalls[0]: no names"}},
		{"blank name", rule(`{"names": [" read"], "action": "SCMP_ACT_ALLOW"}`), []string{"empty or has spaces"}},
		{"no action", rule(`{"names": ["read"]}`), []string{"action is missing"}},
		{"bad action", rule(`{"names": ["read"], "action": "ALLOW"}`), []string{`action "ALLOW" unknown`}},
		{"errno on log", rule(`{"names": ["read"], "action": "SCMP_ACT_LOG", "errnoRet": 1}`), []string{"errnoRet is set"}},
		{"bad op", rule(`{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "EQ"}]}`), []string{`operator "EQ" unknown`}},
		{"bad index", rule(`{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}`), []string{"index 6 out of range"}},
		{"same arg twice", rule(`{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_NE"}, {"index": 0, "value": 2, "op": "SCMP_CMP_NE"}]}`), []string{"two conditions on arg0", "OR"}},
		{"override equals default", rule(`{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_GE"}]},
			{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_EQ"}]}`), []string{"syscalls[1] (ioctl)", "equals the default action", "distinct errnoRet"}},
		{"unconditional beside conditional", rule(`{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"},
			{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_EQ"}]}`), []string{"syscalls[0] (ioctl)", "unconditional", "never apply"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeProfile(t, tt.body)
			p, err := LoadCustom(path)
			if err == nil {
				t.Fatalf("LoadCustom accepted %s: %+v", tt.body, p)
			}
			for _, w := range append(tt.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := LoadCustom(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Resolve(CustomPrefix, Options{}); err == nil {
		t.Error(`Resolve("custom:") accepted`)
	}
}
