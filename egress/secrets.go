package egress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Secret is a credential the proxy adds to requests to one host, so its value
// never enters the container.
type Secret struct {
	// Name names the value in Config.Values, and is the environment variable
	// that holds the placeholder inside the container.
	Name string
	// Host is "name" (port 443) or "name:port". Requests reach it over TLS
	// only; an IP address is not accepted.
	Host string
	// Header carries the value ("x-api-key"); empty means
	// "Authorization: Bearer VALUE".
	Header string
	// BaseURLEnv chooses base-URL mode: the container gets
	// BaseURLEnv=http://127.0.0.1:PORT, served by ServeBaseURL. Empty means
	// interception mode: CONNECT tunnels to Host are terminated with a
	// certificate of the clawrun CA.
	BaseURLEnv string
}

// Intercepted reports whether the secret is injected by terminating TLS.
func (s Secret) Intercepted() bool { return s.BaseURLEnv == "" }

// Placeholder is the value the container sees instead of the secret. The
// proxy strips any header that carries it.
func Placeholder(name string) string { return "clawrun-placeholder-" + name }

// Env is what the container's environment gets for s: the placeholder key
// and, in base-URL mode, the base URL of the in-container port that leads to
// ServeBaseURL.
func (s Secret) Env(port int) []string {
	env := []string{s.Name + "=" + Placeholder(s.Name)}
	if !s.Intercepted() {
		env = append(env, s.BaseURLEnv+"=http://127.0.0.1:"+strconv.Itoa(port))
	}
	return env
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Headers a secret may not be put in: they frame the message or the
// connection, or belong to the proxy.
var forbiddenHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Upgrade": true, "Te": true, "Trailer": true, "Keep-Alive": true, "Expect": true,
	"Proxy-Authorization": true, "Proxy-Connection": true,
}

// injected is a secret resolved for injection.
type injected struct {
	name   string
	header string // canonical
	value  string
	bearer bool
}

// secretHost is a host with secrets: its requests go out over TLS with the
// secrets injected.
type secretHost struct {
	host      string
	port      uint16
	secrets   []injected
	names     string // for the log
	intercept bool
	transport *http.Transport
}

func (sh *secretHost) hostport() string { return net.JoinHostPort(sh.host, strconv.Itoa(int(sh.port))) }

// authority is the Host header for the upstream: the port only when it is
// not 443.
func (sh *secretHost) authority() string {
	if sh.port == 443 {
		return sh.host
	}
	return sh.hostport()
}

// parseSecretHost accepts "name" or "name:port".
func parseSecretHost(s string) (string, uint16, error) {
	host, port := s, uint16(443)
	if h, ps, err := net.SplitHostPort(s); err == nil {
		n, err := parsePort(ps)
		if err != nil {
			return "", 0, err
		}
		host, port = h, n
	}
	if _, ok := parseIP(host); ok {
		return "", 0, fmt.Errorf("host %q is an IP address; a secret goes to a host name, checked by TLS", s)
	}
	name, err := normalizeName(host)
	if err != nil {
		return "", 0, err
	}
	return name, port, nil
}

// addSecrets checks the secrets and builds their hosts. It returns the
// values, which the log redacts.
func (p *Proxy) addSecrets(cfg Config) ([]string, error) {
	p.hosts = map[string]*secretHost{}
	p.baseURL = map[string]*secretHost{}
	var errs []error
	var values []string
	names := map[string]bool{}
	baseEnvs := map[string]string{}
	for _, s := range cfg.Secrets {
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("secret %s: "+format, append([]any{s.Name}, args...)...))
		}
		if !envName.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("secret %q: the name must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", s.Name))
			continue
		}
		if names[s.Name] {
			fail("listed twice")
			continue
		}
		names[s.Name] = true
		value, ok := cfg.Values[s.Name]
		if !ok || value == "" {
			fail("no value; set %s in the environment of clawrun or in the secrets file", s.Name)
			continue
		}
		if !validHeaderValue(value) {
			fail("the value holds a control character (a newline?); it cannot go into an HTTP header")
			continue
		}
		host, port, err := parseSecretHost(s.Host)
		if err != nil {
			fail("%v", err)
			continue
		}
		hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
		if _, ok := p.allow.Match(host, port); !ok {
			fail("host %s is not in the egress allowlist; add %q to network.egress", hp, hp)
			continue
		}
		inj := injected{name: s.Name, value: value, header: http.CanonicalHeaderKey(s.Header)}
		if s.Header == "" {
			inj.header, inj.bearer = "Authorization", true
		} else if !validToken(s.Header) {
			fail("header %q is not a valid header name", s.Header)
			continue
		} else if forbiddenHeaders[inj.header] {
			fail("header %s cannot carry a secret", inj.header)
			continue
		}
		sh := p.hosts[hp]
		if sh == nil {
			sh = &secretHost{host: host, port: port}
			p.hosts[hp] = sh
		}
		dup := false
		for _, o := range sh.secrets {
			dup = dup || o.header == inj.header
		}
		if dup {
			fail("another secret for %s already sets header %s", hp, inj.header)
			continue
		}
		sh.secrets = append(sh.secrets, inj)
		if s.Intercepted() {
			sh.intercept = true
		} else {
			if !envName.MatchString(s.BaseURLEnv) {
				fail("base_url_env %q is not an environment variable name", s.BaseURLEnv)
				continue
			}
			if other, ok := baseEnvs[s.BaseURLEnv]; ok {
				fail("base_url_env %s is also used by secret %s", s.BaseURLEnv, other)
				continue
			}
			baseEnvs[s.BaseURLEnv] = s.Name
			p.baseURL[s.Name] = sh
		}
		values = append(values, value)
		p.placeholders = append(p.placeholders, Placeholder(s.Name))
	}
	for hp, sh := range p.hosts {
		var ns []string
		for _, s := range sh.secrets {
			ns = append(ns, s.name)
		}
		sort.Strings(ns)
		sh.names = strings.Join(ns, ",")
		if !sh.intercept {
			continue
		}
		if cfg.CA == nil {
			errs = append(errs, fmt.Errorf("secret %s: interception mode (no base_url_env) needs a clawrun CA", sh.names))
		} else if !cfg.CA.Covers(sh.host) {
			errs = append(errs, fmt.Errorf("secret %s: the clawrun CA in %s may not issue certificates for %s; create it with that host", sh.names, cfg.CA.Dir(), hp))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, sh := range p.hosts {
		conf := &tls.Config{}
		if cfg.UpstreamTLS != nil {
			conf = cfg.UpstreamTLS.Clone()
		}
		conf.ServerName = sh.host
		conf.InsecureSkipVerify = false
		if conf.MinVersion < tls.VersionTLS12 {
			conf.MinVersion = tls.VersionTLS12
		}
		sh.transport = p.transport(conf)
	}
	return values, nil
}

// validHeaderValue refuses control characters other than tab (RFC 9110).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validToken is an RFC 9110 token (a header field name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// ServeBaseURL serves the base-URL reverse proxy of the named secret on l
// until Close: plain HTTP from the container in, HTTPS with the secret to
// the secret's host out.
func (p *Proxy) ServeBaseURL(secret string, l net.Listener) error {
	h, err := p.BaseURLHandler(secret)
	if err != nil {
		l.Close()
		return err
	}
	return p.serve(l, h)
}

// BaseURLHandler is the handler ServeBaseURL serves.
func (p *Proxy) BaseURLHandler(secret string) (http.Handler, error) {
	sh, ok := p.baseURL[secret]
	if !ok {
		return nil, fmt.Errorf("secret %q has no base_url_env: it is not served in base-URL mode", secret)
	}
	return p.injectHandler(sh, ModeBaseURL), nil
}

// BaseURLSecrets lists the names of the secrets served in base-URL mode,
// sorted; each needs its own listener (ServeBaseURL).
func (p *Proxy) BaseURLSecrets() []string {
	var names []string
	for n := range p.baseURL {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// injectHandler forwards each request to sh over TLS with the secrets of sh
// in place of whatever the client sent.
func (p *Proxy) injectHandler(sh *secretHost, mode string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &Record{Mode: mode, Method: r.Method, Host: sh.host, Port: sh.port}
		if r.Method == http.MethodConnect {
			p.refused(w, rec, start, refuse(http.StatusMethodNotAllowed, "bad_target", "http_request_error",
				"%s forwards requests to %s; it opens no tunnels (use HTTPS_PROXY for that)", mode, sh.hostport()))
			return
		}
		// In a terminated tunnel the Host header must name the tunnel's host:
		// another name on the same server (a CDN) would get the secret.
		if mode == ModeIntercept && !sh.isAuthority(r.Host) {
			p.refused(w, rec, start, refuse(http.StatusMisdirectedRequest, "host_mismatch", "http_request_denied",
				"request for %q inside the tunnel to %s refused: the Host must be %s", truncate(r.Host, 100), sh.hostport(), sh.authority()))
			return
		}
		t, bad := p.check(r.Context(), sh.host, sh.port)
		if bad != nil {
			p.refused(w, rec, start, bad)
			return
		}
		rec.Allowed = true
		rec.Secrets = sh.names
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme = "https"
				pr.Out.URL.Host = t.hostport()
				pr.Out.Host = sh.authority()
				sh.inject(pr.Out.Header, p.placeholders)
			},
			Transport:     sh.transport,
			FlushInterval: -1, // stream server-sent events as they come
			ModifyResponse: func(resp *http.Response) error {
				sh.scrub(resp.Header)
				sh.scrub(resp.Trailer)
				return nil
			},
			ErrorLog: log.New(io.Discard, "", 0),
		}
		p.roundTrip(w, r, rp, t, rec, start)
	})
}

// isAuthority reports whether a request's Host names sh.
func (sh *secretHost) isAuthority(hostHeader string) bool {
	host, port := hostHeader, uint16(443)
	if h, ps, err := net.SplitHostPort(hostHeader); err == nil {
		n, err := parsePort(ps)
		if err != nil {
			return false
		}
		host, port = h, n
	}
	name, err := normalizeName(host)
	return err == nil && name == sh.host && port == sh.port
}

// inject removes what the client sent in the secrets' headers and every
// header carrying a placeholder, then sets the real values.
func (sh *secretHost) inject(h http.Header, placeholders []string) {
	for _, s := range sh.secrets {
		h.Del(s.header)
	}
	for k, vs := range h {
		for _, v := range vs {
			if containsAny(v, placeholders) {
				delete(h, k)
				break
			}
		}
	}
	for _, s := range sh.secrets {
		if s.bearer {
			h.Set("Authorization", "Bearer "+s.value)
		} else {
			h.Set(s.header, s.value)
		}
	}
}

// scrub drops response headers that echo a secret back, so the client never
// sees it. A body that echoes it is the upstream's doing and is passed on.
func (sh *secretHost) scrub(h http.Header) {
	for k, vs := range h {
		for _, v := range vs {
			leak := false
			for _, s := range sh.secrets {
				leak = leak || strings.Contains(v, s.value)
			}
			if leak {
				delete(h, k)
				break
			}
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
