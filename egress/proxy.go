// Package egress is the host-side egress proxy of one agent: it lets the
// agent's container reach the hosts of its egress allowlist and nothing else,
// injects the agent's secrets into requests to their hosts so the values never
// enter the container, and logs every allowed and refused connection.
//
// A Proxy serves HTTP CONNECT and plain (absolute-form) HTTP on a listener it
// is given (in production a unix socket per agent), and one base-URL reverse
// proxy per base-URL secret on listeners of their own. It knows nothing of
// the agent beyond its name (for the log), its allowlist and its secrets.
// See docs/egress.md.
package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Resolver looks up the addresses of a host name. *net.Resolver satisfies
// it; tests map names to loopback servers.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer opens TCP connections. The proxy only ever passes it an IP:port it
// has checked, never a name. *net.Dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Timeouts bound every wait of the proxy, so a silent agent or upstream
// cannot hold a connection open forever. Zero fields take the defaults.
type Timeouts struct {
	Resolve        time.Duration // DNS lookup (default 5s)
	Dial           time.Duration // TCP connect, per address (default 10s)
	TLSHandshake   time.Duration // with the client (interception) or upstream (default 10s)
	RequestHeader  time.Duration // client's request line and headers (default 30s)
	ResponseHeader time.Duration // upstream's response headers (default 10m: model APIs think)
	Idle           time.Duration // keep-alive between requests, and a CONNECT tunnel with no traffic either way (default 5m)
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Resolve, 5*time.Second)
	def(&t.Dial, 10*time.Second)
	def(&t.TLSHandshake, 10*time.Second)
	def(&t.RequestHeader, 30*time.Second)
	def(&t.ResponseHeader, 10*time.Minute)
	def(&t.Idle, 5*time.Minute)
	return t
}

// Config is everything a Proxy knows about its agent.
type Config struct {
	// Agent names the agent in the connection log; nothing else.
	Agent string
	// Egress is the allowlist: "host:port", "*.suffix:port" or "IP:port".
	Egress []string
	// Secrets are injected into requests to their hosts. Every secret's
	// host:port must be allowed by Egress.
	Secrets []Secret
	// Values holds the secret values by Secret.Name. They are never logged
	// and never sent anywhere but to their secret's host.
	Values map[string]string
	// CA issues the per-host certificates of interception mode; required
	// when a secret has no BaseURLEnv.
	CA *CA
	// Log receives the connection log as JSON lines (Record); nil discards it.
	Log io.Writer
	// Resolver defaults to net.DefaultResolver (names are looked up rooted,
	// so no search domain applies).
	Resolver Resolver
	// Dialer defaults to a net.Dialer.
	Dialer Dialer
	// UpstreamTLS is the base TLS client configuration towards the hosts of
	// secrets (RootCAs, mostly); nil means the host's roots. ServerName is
	// always set to the secret's host.
	UpstreamTLS *tls.Config
	Timeouts    Timeouts
	// MaxConns bounds the client connections open at once over all
	// listeners of the proxy (default 256); further clients wait.
	MaxConns int
}

// Proxy is the egress proxy of one agent. It is safe for concurrent use.
type Proxy struct {
	allow    *Allowlist
	resolver Resolver
	dialer   Dialer
	timeouts Timeouts
	log      *connLog
	ca       *CA

	// hosts are the secret hosts by "host:port"; CONNECT tunnels to those
	// marked intercept are terminated by the proxy.
	hosts        map[string]*secretHost
	baseURL      map[string]*secretHost // by secret name
	placeholders []string

	plain *http.Transport
	sem   chan struct{}

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	servers map[*http.Server]bool
	tunnels map[net.Conn]bool
}

// New checks the configuration and builds a proxy. It opens no socket.
func New(cfg Config) (*Proxy, error) {
	allow, err := ParseAllowlist(cfg.Egress)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		allow:    allow,
		resolver: cfg.Resolver,
		dialer:   cfg.Dialer,
		timeouts: cfg.Timeouts.withDefaults(),
		ca:       cfg.CA,
		servers:  map[*http.Server]bool{},
		tunnels:  map[net.Conn]bool{},
	}
	if p.resolver == nil {
		p.resolver = rootedResolver{net.DefaultResolver}
	}
	if p.dialer == nil {
		p.dialer = &net.Dialer{}
	}
	maxConns := cfg.MaxConns
	if maxConns <= 0 {
		maxConns = 256
	}
	p.sem = make(chan struct{}, maxConns)
	values, err := p.addSecrets(cfg)
	if err != nil {
		return nil, err
	}
	p.log = newConnLog(cfg.Log, cfg.Agent, values)
	p.plain = p.transport(nil)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// Allowlist returns the parsed allowlist.
func (p *Proxy) Allowlist() *Allowlist { return p.allow }

// rootedResolver looks names up as fully qualified, so a resolver's search
// domains never turn an allowed "api" into "api.corp.internal".
type rootedResolver struct{ r *net.Resolver }

func (r rootedResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return r.r.LookupNetIP(ctx, network, host+".")
}

// Serve answers HTTP CONNECT and absolute-form HTTP requests on l until Close.
// It returns http.ErrServerClosed after Close.
func (p *Proxy) Serve(l net.Listener) error {
	return p.serve(l, http.HandlerFunc(p.serveProxy))
}

func (p *Proxy) serve(l net.Listener, h http.Handler) error {
	srv := p.server(h)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	p.servers[srv] = true
	p.mu.Unlock()
	return srv.Serve(&limitListener{Listener: l, sem: p.sem, done: p.ctx.Done()})
}

func (p *Proxy) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            p.timeouts.RequestHeader,
		IdleTimeout:                  p.timeouts.Idle,
		MaxHeaderBytes:               64 << 10,
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     log.New(io.Discard, "", 0),
		BaseContext:                  func(net.Listener) context.Context { return p.ctx },
	}
}

// Close stops every listener, open tunnel and pooled upstream connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	servers := p.servers
	tunnels := p.tunnels
	p.servers = map[*http.Server]bool{}
	p.tunnels = map[net.Conn]bool{}
	p.mu.Unlock()
	p.cancel()
	var errs []error
	for s := range servers {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for c := range tunnels {
		c.Close()
	}
	p.plain.CloseIdleConnections()
	for _, h := range p.hosts {
		h.transport.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// track registers a hijacked connection so Close can end it; it reports
// false when the proxy is already closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.tunnels[c] = true
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.tunnels, c)
	p.mu.Unlock()
}

// serveProxy is the forward proxy: CONNECT tunnels and plain HTTP.
func (p *Proxy) serveProxy(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.serveConnect(w, r)
		return
	}
	p.serveForward(w, r)
}

// refusal is a request the proxy will not carry, with the reason for the log
// and the message for the client.
type refusal struct {
	status int
	reason string // for the log
	proxy  string // Proxy-Status error type (RFC 9209)
	msg    string // for the client; starts with "clawrun egress: "
	detail string // for the log only
}

func (r *refusal) Error() string { return r.msg }

func refuse(status int, reason, proxyStatus, format string, args ...any) *refusal {
	return &refusal{status: status, reason: reason, proxy: proxyStatus, msg: "clawrun egress: " + fmt.Sprintf(format, args...)}
}

func (r *refusal) write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Proxy-Status", "clawrun; error="+r.proxy)
	w.WriteHeader(r.status)
	io.WriteString(w, r.msg+"\n")
}

// target is a destination that passed every check: the addresses are the
// only ones the proxy may dial for it.
type target struct {
	host  string // normalized name or canonical IP
	port  uint16
	addrs []netip.Addr
}

func (t *target) hostport() string { return net.JoinHostPort(t.host, strconv.Itoa(int(t.port))) }

// parseTarget normalizes a requested host and port.
func parseTarget(host string, port uint16) (string, bool, *refusal) {
	if ip, ok := parseIP(host); ok {
		return ip.String(), true, nil
	}
	name, err := normalizeName(host)
	if err != nil {
		return "", false, refuse(http.StatusBadRequest, "bad_target", "http_request_error", "bad destination %q: %v", truncate(host, 100), err)
	}
	return name, false, nil
}

// check decides whether host:port may be reached and, for a name, resolves
// it once; the proxy then dials only the addresses returned, so a second DNS
// answer (rebinding) never comes into play.
func (p *Proxy) check(ctx context.Context, rawHost string, port uint16) (*target, *refusal) {
	host, isIP, bad := parseTarget(rawHost, port)
	if bad != nil {
		return nil, bad
	}
	hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
	pat, ok := p.allow.Match(host, port)
	if isIP {
		if !ok {
			return nil, refuse(http.StatusForbidden, "ip_literal", "destination_ip_prohibited",
				"%s refused: an IP address is reachable only when listed exactly in this agent's egress allowlist; use the host name", hp)
		}
		ip, _ := parseIP(host)
		return &target{host: host, port: port, addrs: []netip.Addr{ip}}, nil
	}
	if !ok {
		return nil, refuse(http.StatusForbidden, "not_in_allowlist", "http_request_denied",
			"%s is not in this agent's egress allowlist", hp)
	}
	rctx, cancel := context.WithTimeout(ctx, p.timeouts.Resolve)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		var dnsErr *net.DNSError
		why, kind := "lookup failed", "dns_error"
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			why = "no such host"
		} else if rctx.Err() != nil {
			why, kind = "lookup timed out", "dns_timeout"
		}
		// The resolver's own message is left out: it names the host's DNS
		// servers, which are none of the agent's business.
		bad := refuse(http.StatusBadGateway, "resolve_failed", kind, "cannot resolve %s: %s", host, why)
		bad.detail = err.Error()
		return nil, bad
	}
	seen := map[netip.Addr]bool{}
	var checked []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if seen[a] {
			continue
		}
		seen[a] = true
		if class := addrClass(a); class != "" && pat.Wildcard {
			return nil, refuse(http.StatusForbidden, "non_public_address", "destination_ip_prohibited",
				"%s refused: %s resolves to %s, a %s address; only an exact egress entry %q (not %s) reaches a non-public address",
				hp, host, a, class, hp, pat)
		}
		checked = append(checked, a)
	}
	// IPv4 first: a host with a broken IPv6 route would otherwise wait out
	// the dial timeout on every connection.
	slices.SortStableFunc(checked, func(a, b netip.Addr) int {
		switch {
		case a.Is4() == b.Is4():
			return 0
		case a.Is4():
			return -1
		}
		return 1
	})
	if len(checked) == 0 {
		return nil, refuse(http.StatusBadGateway, "resolve_failed", "dns_error", "cannot resolve %s: no addresses", host)
	}
	return &target{host: host, port: port, addrs: checked}, nil
}

// dial connects to the first reachable checked address of t.
func (p *Proxy) dial(ctx context.Context, t *target) (net.Conn, error) {
	var errs []error
	for _, a := range t.addrs {
		dctx, cancel := context.WithTimeout(ctx, p.timeouts.Dial)
		c, err := p.dialer.DialContext(dctx, "tcp", netip.AddrPortFrom(a, t.port).String())
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("cannot connect to %s: %w", t.hostport(), errors.Join(errs...))
}

// targetKey carries the checked target of a request to the dial function of
// the upstream transports.
type targetKey struct{}

// transport is an HTTP client transport that dials only the target checked
// for the request at hand; tlsConf is set for secret hosts.
func (p *Proxy) transport(tlsConf *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy: nil, // never the host's proxy settings
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			t, ok := ctx.Value(targetKey{}).(*target)
			if !ok || t.hostport() != addr {
				return nil, fmt.Errorf("clawrun egress: internal error: no checked target for %s", addr)
			}
			return p.dial(ctx, t)
		},
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     tlsConf != nil,
		TLSHandshakeTimeout:   p.timeouts.TLSHandshake,
		ResponseHeaderTimeout: p.timeouts.ResponseHeader,
		IdleConnTimeout:       p.timeouts.Idle,
		MaxIdleConnsPerHost:   8,
		DisableCompression:    true, // pass the agent's Accept-Encoding through untouched
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// limitListener bounds the connections open at once; Accept waits for a
// free slot.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done <-chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes the client side of a tunnel when the upstream is
// done sending.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
