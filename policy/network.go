package policy

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clawrun/clawrun/egress"
)

// Network modes of an agent.
const (
	// NetworkNone: loopback only (the default).
	NetworkNone Network = "none"
	// NetworkEgress: still no route out; the hosts of Plan.Egress are
	// reached through the agent's egress proxy on the host.
	NetworkEgress Network = "egress"
	// NetworkHost shares the host's network namespace: the agent reaches
	// everything the host reaches, including services on the host's
	// loopback. Only with network: {unsafe_host_network: true}.
	NetworkHost Network = "host"
)

// Expose says where a secret's value goes.
type Expose string

const (
	// ExposeProxy (the default): the egress proxy adds the value to requests
	// to the secret's host; the container sees only a placeholder.
	ExposeProxy Expose = "proxy"
	// ExposeEnv puts the value itself into the agent's environment.
	ExposeEnv Expose = "env"
)

// Secret is one secret of an agent: its name and how it is used, never its
// value (that comes from the environment of clawrun run/serve or a secrets
// file, at run time only).
type Secret struct {
	Name string // environment variable name, and the key of the value
	// Host is "name" or "name:port" (default 443) the proxy injects the
	// value into requests to; empty for ExposeEnv.
	Host string `json:",omitempty"`
	// Header carries the value; empty means "Authorization: Bearer".
	Header string `json:",omitempty"`
	// BaseURLEnv chooses base-URL mode (the agent gets
	// BaseURLEnv=http://127.0.0.1:PORT); empty means interception mode.
	BaseURLEnv string `json:",omitempty"`
	Expose     Expose
}

// Mode names how the secret reaches its host: "env", "base_url" or
// "intercept".
func (s Secret) Mode() string {
	switch {
	case s.Expose == ExposeEnv:
		return "env"
	case s.BaseURLEnv != "":
		return "base_url"
	}
	return "intercept"
}

// Proxied reports whether the egress proxy holds the value.
func (s Secret) Proxied() bool { return s.Expose != ExposeEnv }

var (
	networkFields = []string{"egress", "unsafe_host_network"}
	secretFields  = []string{"name", "host", "header", "base_url_env", "expose"}
)

// network reads agents.NAME.network: none, or a mapping with egress or
// unsafe_host_network.
func (l *loader) network(v *yaml.Node, path string, p *Plan) {
	v = deref(v)
	if v.Kind == yaml.ScalarNode {
		switch v.Value {
		case string(NetworkNone):
			p.Network = NetworkNone
		case string(NetworkHost):
			l.c.add(v.Line, path, "host shares the host's whole network with the agent (every host it can reach, services on its loopback): if you mean it, write network: {unsafe_host_network: true}; to reach a few hosts, write network: {egress: [\"api.example.com:443\"]}")
		default:
			l.c.add(v.Line, path, "invalid network %q: use none (loopback only, the default) or {egress: [\"host:port\", ...]} (see docs/egress.md)", v.Value)
		}
		return
	}
	m := l.mapping(v, path, networkFields)
	if m == nil {
		return
	}
	eg, unsafe := m.get("egress"), m.get("unsafe_host_network")
	if eg != nil && unsafe != nil {
		l.c.add(unsafe.Line, path+".unsafe_host_network", "egress (line %d) and unsafe_host_network are both set: the host's network has no allowlist; keep one", eg.Line)
		return
	}
	if unsafe != nil {
		s, ok := l.scalar(unsafe, path+".unsafe_host_network", "true")
		if !ok {
			return
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			l.c.add(unsafe.Line, path+".unsafe_host_network", "must be true or false, not %q", s)
			return
		}
		if b {
			p.Network = NetworkHost
		}
		return
	}
	if eg == nil {
		l.c.add(m.line, path, "give egress: [\"host:port\", ...] (or write network: none)")
		return
	}
	eg = deref(eg)
	if eg.Kind != yaml.SequenceNode {
		l.c.add(eg.Line, path+".egress", `must be a list of "host:port" entries, e.g. egress: ["api.anthropic.com:443"], not %s`, describe(eg))
		return
	}
	seen := map[string]int{}
	var entries []string
	for i, item := range eg.Content {
		ip := fmt.Sprintf("%s.egress[%d]", path, i)
		s, ok := l.scalar(item, ip, `"host:port"`)
		if !ok {
			continue
		}
		pat, err := egress.ParsePattern(s)
		if err != nil {
			l.c.add(item.Line, ip, "%v (see docs/egress.md#the-allowlist)", err)
			continue
		}
		c := pat.String()
		if first, dup := seen[c]; dup {
			l.c.add(item.Line, ip, "%s is already listed on line %d", c, first)
			continue
		}
		seen[c] = item.Line
		entries = append(entries, c)
	}
	if len(eg.Content) == 0 {
		l.c.add(eg.Line, path+".egress", `is empty: list the hosts the agent may reach, e.g. ["api.anthropic.com:443"], or write network: none`)
		return
	}
	p.Network = NetworkEgress
	p.Egress = entries
}

// secrets reads agents.NAME.secrets. Hosts are checked against the egress
// allowlist by checkSecretHosts once the whole agent is read.
func (l *loader) secrets(v *yaml.Node, path string) ([]Secret, []int) {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		l.c.add(v.Line, path, "must be a list of {name, host, header, base_url_env, expose} entries, not %s", describe(v))
		return nil, nil
	}
	var out []Secret
	var lines []int
	names := map[string]int{}
	type hostHeader struct{ host, header string }
	headers := map[hostHeader]string{}
	for i, item := range v.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		m := l.mapping(item, ip, secretFields)
		if m == nil {
			continue
		}
		before := l.c.n()
		s := Secret{Expose: ExposeProxy}
		str := func(key, example string) (string, int) {
			n := m.get(key)
			if n == nil {
				return "", 0
			}
			t, _ := l.scalar(n, ip+"."+key, example)
			return t, n.Line
		}
		name, nameLine := str("name", "an environment variable name")
		switch {
		case m.get("name") == nil:
			l.c.add(m.line, ip+".name", "missing: add name: with the environment variable that holds the value, e.g. name: ANTHROPIC_API_KEY")
		case checkEnvKey(name) != nil:
			l.c.add(nameLine, ip+".name", "%v", checkEnvKey(name))
		default:
			if first, dup := names[name]; dup {
				l.c.add(nameLine, ip+".name", "secret %s is already declared on line %d", name, first)
			}
			names[name] = nameLine
			s.Name = name
		}
		exp, expLine := str("expose", "env")
		if expLine > 0 {
			if Expose(exp) != ExposeEnv && Expose(exp) != ExposeProxy {
				l.c.add(expLine, ip+".expose", "invalid expose %q: write expose: env to put the value itself into the agent's environment, or leave it out so the egress proxy injects it and the agent never sees it", exp)
			} else {
				s.Expose = Expose(exp)
			}
		}
		host, hostLine := str("host", "a host name such as api.anthropic.com")
		header, headerLine := str("header", "a header name such as x-api-key")
		base, baseLine := str("base_url_env", "an environment variable name such as ANTHROPIC_BASE_URL")
		if s.Expose == ExposeEnv {
			for _, f := range []struct {
				key  string
				line int
			}{{"host", hostLine}, {"header", headerLine}, {"base_url_env", baseLine}} {
				if f.line > 0 {
					l.c.add(f.line, ip+"."+f.key, "does not apply with expose: env (the agent holds the value and sends it itself): remove it, or remove expose: env so the proxy injects the value")
				}
			}
		} else {
			if hostLine == 0 {
				l.c.add(m.line, ip+".host", "missing: add host: with the host the proxy adds the secret to, e.g. host: api.anthropic.com (or expose: env to give the agent the value itself)")
			} else if h, err := secretHost(host); err != nil {
				l.c.add(hostLine, ip+".host", "%v", err)
			} else {
				s.Host = h
			}
			if headerLine > 0 {
				if !validHeaderName(header) || forbiddenSecretHeader(header) {
					l.c.add(headerLine, ip+".header", "invalid header %q: give a header name such as x-api-key (not Host, Content-Length, Connection or another header that frames the request), or leave it out for Authorization: Bearer", header)
				} else {
					s.Header = header
				}
			}
			if baseLine > 0 {
				if err := checkEnvKey(base); err != nil {
					l.c.add(baseLine, ip+".base_url_env", "%v", err)
				} else {
					s.BaseURLEnv = base
				}
			}
			if s.Host != "" {
				k := hostHeader{s.Host, strings.ToLower(s.Header)}
				if other, dup := headers[k]; dup {
					l.c.add(m.line, ip+".header", "secret %s already goes to %s in the same header: give each secret of a host its own header", other, s.Host)
				}
				headers[k] = s.Name
			}
		}
		if l.c.n() == before {
			out = append(out, s)
			lines = append(lines, m.line)
		}
	}
	return out, lines
}

// secretHost checks a secret's host: a name (not an address, not a
// wildcard) with an optional port, 443 by default. It returns "name:port".
func secretHost(s string) (string, error) {
	h, port := s, "443"
	if hh, pp, err := net.SplitHostPort(s); err == nil {
		h, port = hh, pp
	}
	pat, err := egress.ParsePattern(net.JoinHostPort(h, port))
	if err != nil {
		return "", fmt.Errorf("invalid host %q: %v", s, err)
	}
	if pat.Wildcard || pat.IP {
		return "", fmt.Errorf("invalid host %q: a secret goes to one host name, not a wildcard or an address", s)
	}
	return pat.String(), nil
}

// checkSecrets ties an agent's secrets to its network: every proxied
// secret's host must be allowed by the egress allowlist (the check the
// proxy makes again when it starts), and no secret may clash with env.
func (l *loader) checkSecrets(p *Plan, path string, lines []int, envLine map[string]int) {
	var allow *egress.Allowlist
	if p.Network == NetworkEgress {
		allow, _ = egress.ParseAllowlist(p.Egress)
	}
	set := map[string]string{}
	for i, s := range p.Secrets {
		ip := fmt.Sprintf("%s.secrets[%d]", path, i)
		for _, k := range []string{s.Name, s.BaseURLEnv} {
			if k == "" {
				continue
			}
			if line, ok := envLine[k]; ok {
				l.c.add(lines[i], ip, "%s is also set in env (line %d): the secret sets it; remove one", k, line)
			}
			if other, ok := set[k]; ok {
				l.c.add(lines[i], ip, "%s is already set by secret %s", k, other)
			}
			set[k] = s.Name
		}
		if !s.Proxied() {
			continue
		}
		if allow == nil {
			l.c.add(lines[i], ip+".host", "secret %s is injected by the egress proxy, but the agent has no egress: add network: {egress: [%q]}, or expose: env", s.Name, s.Host)
			continue
		}
		h, ps, _ := net.SplitHostPort(s.Host)
		port, _ := strconv.ParseUint(ps, 10, 16)
		if _, ok := allow.Match(h, uint16(port)); !ok {
			l.c.add(lines[i], ip+".host", "%s is not in network.egress: add %q there", s.Host, s.Host)
		}
	}
}

// forbiddenSecretHeader mirrors the egress proxy's list of headers that
// frame a message and so cannot carry a secret.
func forbiddenSecretHeader(h string) bool {
	switch strings.ToLower(h) {
	case "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
		"keep-alive", "expect", "proxy-authorization", "proxy-connection":
		return true
	}
	return false
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c > 0x7e || c <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}

// NetworkDescription says what the agent's network is, for policy check and
// inspect.
func (p *Plan) NetworkDescription() string {
	switch p.Network {
	case NetworkEgress:
		return "egress: loopback only, no route out; the egress proxy reaches " + strings.Join(p.Egress, ", ")
	case NetworkHost:
		return "host: UNSAFE, the host's network is shared (unsafe_host_network: true)"
	}
	return "none: loopback only, no route out"
}

// Describe says where a secret goes, never its value.
func (s Secret) Describe() string {
	switch s.Mode() {
	case "env":
		return s.Name + ": expose: env, the value itself is in the agent's environment"
	case "base_url":
		return fmt.Sprintf("%s: injected by the egress proxy into requests to %s (%s), base URL in %s; the agent holds a placeholder", s.Name, s.Host, s.header(), s.BaseURLEnv)
	}
	return fmt.Sprintf("%s: injected by the egress proxy into requests to %s (%s) through TLS interception; the agent holds a placeholder", s.Name, s.Host, s.header())
}

func (s Secret) header() string {
	if s.Header == "" {
		return "Authorization: Bearer"
	}
	return "header " + s.Header
}
