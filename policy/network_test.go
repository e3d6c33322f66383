package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestLoadNetworkAndSecrets(t *testing.T) {
	f := newFixture(t)
	path := f.write(t, "clawrun.yaml", `agents:
  demo:
    rootfs: ./rootfs
    command: ["/agent"]
    network:
      egress: ["API.Anthropic.com:443", "*.githubusercontent.com:443", "gh.example:8443"]
    secrets:
      - {name: ANTHROPIC_API_KEY, host: api.anthropic.com, header: x-api-key, base_url_env: ANTHROPIC_BASE_URL}
      - {name: GH, host: "gh.example:8443"}
      - {name: GITHUB_TOKEN, expose: env}
  open:
    rootfs: ./rootfs
    command: ["/agent"]
    network: {unsafe_host_network: true}
`)
	file, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := file.Agents["demo"]
	if p.Network != NetworkEgress {
		t.Errorf("Network = %q", p.Network)
	}
	if want := []string{"api.anthropic.com:443", "*.githubusercontent.com:443", "gh.example:8443"}; !reflect.DeepEqual(p.Egress, want) {
		t.Errorf("Egress = %q, want %q", p.Egress, want)
	}
	want := []Secret{
		{Name: "ANTHROPIC_API_KEY", Host: "api.anthropic.com:443", Header: "x-api-key", BaseURLEnv: "ANTHROPIC_BASE_URL", Expose: ExposeProxy},
		{Name: "GH", Host: "gh.example:8443", Expose: ExposeProxy},
		{Name: "GITHUB_TOKEN", Expose: ExposeEnv},
	}
	if !reflect.DeepEqual(p.Secrets, want) {
		t.Errorf("Secrets = %+v\nwant %+v", p.Secrets, want)
	}
	if modes := []string{p.Secrets[0].Mode(), p.Secrets[1].Mode(), p.Secrets[2].Mode()}; !reflect.DeepEqual(modes, []string{"base_url", "intercept", "env"}) {
		t.Errorf("modes = %q", modes)
	}
	if o := file.Agents["open"]; o.Network != NetworkHost {
		t.Errorf("open: Network = %q, want host", o.Network)
	}
}

func TestLoadNetworkErrors(t *testing.T) {
	const agent = "agents:\n  demo:\n    rootfs: ./rootfs\n    command: [\"/agent\"]\n"
	const eg = "    network: {egress: [\"api.example.com:443\"]}\n"
	tests := []struct {
		name, body string
		line       int
		field, msg string
	}{
		{"host scalar", agent + "    network: host\n", 5, "agents.demo.network", "unsafe_host_network: true"},
		{"unknown mode", agent + "    network: bridge\n", 5, "agents.demo.network", `invalid network "bridge"`},
		{"unknown field", agent + "    network: {allow: []}\n", 5, "agents.demo.network.allow", "known fields: egress, unsafe_host_network"},
		{"both", agent + "    network:\n      egress: [\"a.example:443\"]\n      unsafe_host_network: true\n", 7, "agents.demo.network.unsafe_host_network", "both set"},
		{"no port", agent + "    network:\n      egress:\n        - api.example.com\n", 7, "agents.demo.network.egress[0]", "port"},
		{"bare wildcard", agent + "    network:\n      egress:\n        - \"a.example:443\"\n        - \"*.com:443\"\n", 8, "agents.demo.network.egress[1]", ""},
		{"numeric tld", agent + "    network: {egress: [\"127.1:80\"]}\n", 5, "agents.demo.network.egress[0]", ""},
		{"duplicate", agent + "    network:\n      egress:\n        - a.example:443\n        - A.example:443\n", 8, "agents.demo.network.egress[1]", "already listed on line 7"},
		{"empty", agent + "    network: {egress: []}\n", 5, "agents.demo.network.egress", "is empty"},
		{"unsafe word", agent + "    network: {unsafe_host_network: yes please}\n", 5, "agents.demo.network.unsafe_host_network", "true or false"},
		{"secret no host", agent + eg + "    secrets:\n      - {name: K}\n", 7, "agents.demo.secrets[0].host", "missing"},
		{"secret no name", agent + eg + "    secrets:\n      - {host: api.example.com}\n", 7, "agents.demo.secrets[0].name", "missing"},
		{"secret bad name", agent + eg + "    secrets:\n      - {name: 1K, host: api.example.com}\n", 7, "agents.demo.secrets[0].name", "invalid variable name"},
		{"secret host not allowed", agent + eg + "    secrets:\n      - name: K\n        host: other.example.com\n", 7, "agents.demo.secrets[0].host", `add "other.example.com:443"`},
		{"secret port not allowed", agent + eg + "    secrets:\n      - {name: K, host: \"api.example.com:8443\"}\n", 7, "agents.demo.secrets[0].host", "not in network.egress"},
		{"secret without egress", agent + "    secrets:\n      - {name: K, host: api.example.com}\n", 6, "agents.demo.secrets[0].host", "has no egress"},
		{"secret wildcard host", agent + eg + "    secrets:\n      - {name: K, host: \"*.example.com\"}\n", 7, "agents.demo.secrets[0].host", "not a wildcard"},
		{"secret header", agent + eg + "    secrets:\n      - {name: K, host: api.example.com, header: Content-Length}\n", 7, "agents.demo.secrets[0].header", "invalid header"},
		{"secret expose bad", agent + eg + "    secrets:\n      - {name: K, host: api.example.com, expose: file}\n", 7, "agents.demo.secrets[0].expose", "invalid expose"},
		{"secret env with host", agent + "    secrets:\n      - name: K\n        expose: env\n        host: api.example.com\n", 8, "agents.demo.secrets[0].host", "does not apply with expose: env"},
		{"secret twice", agent + eg + "    secrets:\n      - {name: K, host: api.example.com}\n      - {name: K, expose: env}\n", 8, "agents.demo.secrets[1].name", "already declared on line 7"},
		{"secret same header", agent + eg + "    secrets:\n      - {name: K, host: api.example.com}\n      - {name: L, host: api.example.com}\n", 8, "agents.demo.secrets[1].header", "its own header"},
		{"secret clashes with env", agent + eg + "    env: {K: x}\n    secrets:\n      - {name: K, host: api.example.com}\n", 8, "agents.demo.secrets[0]", "also set in env (line 6)"},
		{"base url clashes", agent + eg + "    secrets:\n      - {name: K, host: api.example.com, header: a, base_url_env: B}\n      - {name: B, host: api.example.com, header: b}\n", 8, "agents.demo.secrets[1]", "already set by secret K"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			path := f.write(t, "clawrun.yaml", tt.body)
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, fe := range FieldErrors(err) {
				if fe.Line == tt.line && fe.Field == tt.field && strings.Contains(fe.Msg, tt.msg) {
					return
				}
			}
			t.Errorf("no error at line %d field %q containing %q in:\n%v", tt.line, tt.field, tt.msg, err)
		})
	}
}
