package runtime

import (
	"encoding/json"
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
