package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
)

func TestWithEgressHooks(t *testing.T) {
	base := func(secrets ...policy.Secret) *policy.Plan {
		return &policy.Plan{Name: "a", Network: policy.NetworkEgress, Egress: []string{"example.com:443"}, Secrets: secrets}
	}
	proxied := policy.Secret{Name: "K", Host: "example.com", Header: "x-api-key", BaseURLEnv: "K_URL"}
	cfg := EgressHookConfig{Data: "/data", SecretsFile: "/s.env"}
	tests := []struct {
		name    string
		plan    *policy.Plan
		cfg     EgressHookConfig
		wantErr string
	}{
		{"no network", &policy.Plan{Name: "a", Network: policy.NetworkNone}, cfg, ""},
		{"egress, base-URL secret", base(proxied), cfg, ""},
		{"egress, no secret, no file", base(), EgressHookConfig{Data: "/data"}, ""},
		{"expose env", base(policy.Secret{Name: "T", Expose: policy.ExposeEnv}), cfg, "secret T is expose: env"},
		{"interception", base(policy.Secret{Name: "K", Host: "example.com"}), cfg, "secret K uses interception mode"},
		{"no secrets file", base(proxied), EgressHookConfig{Data: "/data"}, "pass --secrets FILE"},
		{"relative data", base(), EgressHookConfig{Data: "data"}, "absolute paths"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &specs.Spec{}
			err := WithEgressHooks(tc.plan, "/usr/bin/clawrun", tc.cfg)(s)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.plan.Network != policy.NetworkEgress {
				if s.Hooks != nil || s.Annotations != nil {
					t.Fatalf("hooks for an agent without egress: %+v", s)
				}
				return
			}
			if len(s.Hooks.CreateRuntime) != 1 || len(s.Hooks.Poststop) != 1 || s.Hooks.CreateRuntime[0].Path != "/usr/bin/clawrun" ||
				strings.Join(s.Hooks.CreateRuntime[0].Args, " ") != "clawrun "+EgressHookCommand+" start" {
				t.Fatalf("hooks %+v", s.Hooks)
			}
			// The annotation is what the hook reads back from the state.
			st, _ := json.Marshal(specs.State{ID: "c1", Pid: 42, Annotations: s.Annotations})
			_, got, err := ReadHookState(strings.NewReader(string(st)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Agent != "a" || got.Data != "/data" || got.SecretsFile != tc.cfg.SecretsFile || len(got.Secrets) != len(tc.plan.Secrets) {
				t.Errorf("annotation read back as %+v", got)
			}
		})
	}
}

func TestReadHookStateRefuses(t *testing.T) {
	for in, want := range map[string]string{
		"not json":            "run only as an OCI hook",
		`{"id":"c1","pid":1}`: "no \"clawrun.egress\" annotation",
		`{"id":"../x","pid":1,"annotations":{"clawrun.egress":"{}"}}`: "container id",
	} {
		if _, _, err := ReadHookState(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", in, err, want)
		}
	}
}

// The pid file is never written through a symlink planted in its place.
func TestWritePidFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.pid")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := writePidFile(p); err == nil {
		t.Fatal("writePidFile followed a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep\n" {
		t.Errorf("target rewritten: %q", b)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := writePidFile(p); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid file holds %q", b)
	}
}

// A data directory of another user (named by a config.json the hook
// trusts for paths only) is refused before anything is written there.
func TestStartEgressHookRefusesForeignData(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the directory to another user")
	}
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cfg := &EgressHookConfig{Agent: "a", Egress: []string{"example.com:443"}, Data: data}
	err := StartEgressHook(&specs.State{ID: "c1", Pid: os.Getpid()}, cfg, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("StartEgressHook = %v, want a refusal naming the owner", err)
	}
	if ents, _ := os.ReadDir(data); len(ents) != 0 {
		t.Errorf("the hook wrote into the foreign directory: %v", ents)
	}
}
