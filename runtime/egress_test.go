package runtime

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/seccomp"
)

func egressPlan() *policy.Plan {
	p := testPlan()
	p.Network = policy.NetworkEgress
	p.Egress = []string{"api.anthropic.com:443", "api.openai.com:443"}
	p.Secrets = []policy.Secret{
		{Name: "ANTHROPIC_API_KEY", Host: "api.anthropic.com:443", Header: "x-api-key", BaseURLEnv: "ANTHROPIC_BASE_URL", Expose: policy.ExposeProxy},
		{Name: "GITHUB_TOKEN", Expose: policy.ExposeEnv},
		{Name: "OPENAI_API_KEY", Host: "api.openai.com:443", BaseURLEnv: "OPENAI_BASE_URL", Expose: policy.ExposeProxy},
	}
	return p
}

func TestEgressEnv(t *testing.T) {
	got := EgressEnv(egressPlan())
	want := []string{
		"HTTP_PROXY=http://127.0.0.1:3128", "HTTPS_PROXY=http://127.0.0.1:3128",
		"http_proxy=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128",
		"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1",
		"ANTHROPIC_API_KEY=clawrun-placeholder-ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL=http://127.0.0.1:3129",
		"OPENAI_API_KEY=clawrun-placeholder-OPENAI_API_KEY", "OPENAI_BASE_URL=http://127.0.0.1:3130",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EgressEnv =\n%q\nwant\n%q", got, want)
	}
}

func TestSpecEgress(t *testing.T) {
	p := egressPlan()
	p.Seccomp = "agent" // default allows inet sockets either way
	s, err := Spec(p, testIdentity(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range EgressEnv(p) {
		if !slices.Contains(s.Process.Env, e) {
			t.Errorf("env lacks %s", e)
		}
	}
	for _, e := range s.Process.Env {
		if strings.HasPrefix(e, "GITHUB_TOKEN=") {
			t.Errorf("an expose: env secret is in the spec: %s (its value goes to the process only)", e)
		}
	}
	if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace }) {
		t.Error("an egress agent must keep its own network namespace")
	}
	want, err := seccomp.Resolve("agent", seccomp.Options{Network: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Linux.Seccomp, want) {
		t.Error("an egress agent's seccomp profile lacks the network variant")
	}
	np := testPlan()
	np.Seccomp = "agent"
	none, err := Spec(np, testIdentity(), "")
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(none.Linux.Seccomp, want) {
		t.Error("an agent without network got the network variant of its seccomp profile")
	}
}

func TestSpecHostNetwork(t *testing.T) {
	p := testPlan()
	p.Network = policy.NetworkHost
	s, err := Spec(p, testIdentity(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			t.Error("unsafe_host_network kept a network namespace")
		}
	}
	if len(s.Linux.Namespaces) != len(agentNamespaces)-1 {
		t.Errorf("namespaces %v: only the network one may go", s.Linux.Namespaces)
	}
}

func TestWithEnvReplaces(t *testing.T) {
	s, err := apply(t, Compose(WithProcess([]string{"/a"}, []string{"A=1", "B=2"}, "/", policy.User{}), WithEnv("A=3", "C=4")))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"B=2", "A=3", "C=4"}; !reflect.DeepEqual(s.Process.Env, want) {
		t.Errorf("env %q, want %q", s.Process.Env, want)
	}
	if _, err := apply(t, WithEnv("novalue")); err == nil {
		t.Error("WithEnv accepted a variable without =")
	}
}

func TestPlanSecrets(t *testing.T) {
	p := egressPlan()
	_, err := planSecrets(p, map[string]string{"ANTHROPIC_API_KEY": "a", "OTHER": "x"})
	if err == nil || !strings.Contains(err.Error(), "GITHUB_TOKEN, OPENAI_API_KEY") || strings.Contains(err.Error(), "=a") {
		t.Errorf("missing values: %v", err)
	}
	got, err := planSecrets(p, map[string]string{"ANTHROPIC_API_KEY": "a", "GITHUB_TOKEN": "g", "OPENAI_API_KEY": "o", "OTHER": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["OTHER"]; ok || len(got) != 3 {
		t.Errorf("planSecrets kept %v: only the plan's own secrets may go on", got)
	}
	if env := exposedEnv(p, got); !reflect.DeepEqual(env, []string{"GITHUB_TOKEN=g"}) {
		t.Errorf("exposedEnv = %q", env)
	}
}

// Interception-mode secrets give the agent the trust-bundle variables and
// name its CA's hosts (without ports); base-URL secrets do neither.
func TestEgressInterceptEnv(t *testing.T) {
	p := egressPlan()
	if h := interceptHosts(p); len(h) != 0 {
		t.Errorf("interceptHosts without interception secrets = %q", h)
	}
	for _, e := range EgressEnv(p) {
		if strings.HasPrefix(e, "SSL_CERT_FILE=") {
			t.Errorf("EgressEnv sets %s without an interception secret", e)
		}
	}
	p.Secrets = append(p.Secrets,
		policy.Secret{Name: "GH", Host: "api.github.com:443", Expose: policy.ExposeProxy},
		policy.Secret{Name: "GL", Host: "gitlab.example", Expose: policy.ExposeProxy})
	if h := interceptHosts(p); !reflect.DeepEqual(h, []string{"api.github.com", "gitlab.example"}) {
		t.Errorf("interceptHosts = %q", h)
	}
	env := EgressEnv(p)
	for _, k := range egressCAEnv {
		if !slices.Contains(env, k+"="+EgressCAPath) {
			t.Errorf("EgressEnv lacks %s=%s", k, EgressCAPath)
		}
	}
}

func TestHostIDOfRoot(t *testing.T) {
	for _, c := range []struct {
		m    []specs.LinuxIDMapping
		want int
	}{
		{nil, -1},
		{[]specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 1000, HostID: 1000, Size: 1}}, 100000},
		{[]specs.LinuxIDMapping{{ContainerID: 1000, HostID: 1000, Size: 1}}, -1},
	} {
		if got := hostIDOfRoot(c.m); got != c.want {
			t.Errorf("hostIDOfRoot(%v) = %d, want %d", c.m, got, c.want)
		}
	}
}

func TestParseHosts(t *testing.T) {
	h, err := parseHosts(strings.NewReader("# test\n127.0.0.1 a.example B.Example.\n::1 a.example\n\n"), "hosts")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]netip.Addr{
		"a.example": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
		"b.example": {netip.MustParseAddr("127.0.0.1")},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("parseHosts = %v", h)
	}
	for _, bad := range []string{"nonsense a.example\n", "127.0.0.1\n"} {
		if _, err := parseHosts(strings.NewReader(bad), "hosts"); err == nil || !strings.Contains(err.Error(), "hosts line 1") {
			t.Errorf("parseHosts(%q): %v", bad, err)
		}
	}
	got, err := hostsResolver(want).LookupNetIP(t.Context(), "ip", "B.example.")
	if err != nil || !reflect.DeepEqual(got, want["b.example"]) {
		t.Errorf("LookupNetIP = %v, %v", got, err)
	}
}
