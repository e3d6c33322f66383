package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/egress"
	"github.com/clawrun/clawrun/policy"
)

// An agent with network: {egress: [...]} keeps a network namespace with
// only loopback. The process that waits for the agent (the foreground run,
// the outer namespace's child, the monitor of a detached run, serve's
// runner) runs the agent's egress.Proxy, and opens its listeners *inside*
// the container's network namespace: a locked OS thread joins that
// namespace (setns needs CAP_SYS_ADMIN over the namespace's user namespace,
// which that process has: it created the container), creates the listening
// sockets on 127.0.0.1 there and ends with its goroutine. A socket stays in
// the namespace it was created in, while the proxy serving it keeps
// dialling from the host's. So nothing runs inside the container, nothing
// is mounted into it, and the agent cannot kill or replace the listeners.

// EgressProxyPort is the in-container port of the forward proxy
// (HTTP_PROXY); base-URL secrets get the ports after it, in file order.
const EgressProxyPort = 3128

// egressNoProxy keeps base-URL requests (to 127.0.0.1) away from the forward
// proxy, which refuses IP literals.
const egressNoProxy = "localhost,127.0.0.1,::1"

// EgressEnv is what an egress agent's environment gets: the proxy variables
// (upper and lower case: curl reads only http_proxy) and, per proxied
// secret, its placeholder and base URL (egress.Secret.Env).
func EgressEnv(p *policy.Plan) []string {
	proxy := "http://127.0.0.1:" + strconv.Itoa(EgressProxyPort)
	env := []string{
		"HTTP_PROXY=" + proxy, "HTTPS_PROXY=" + proxy, "http_proxy=" + proxy, "https_proxy=" + proxy,
		"NO_PROXY=" + egressNoProxy, "no_proxy=" + egressNoProxy,
	}
	ports := baseURLPorts(p)
	for _, s := range p.Secrets {
		if s.Proxied() {
			env = append(env, egressSecret(s).Env(ports[s.Name])...)
		}
	}
	return env
}

// baseURLPorts assigns the in-container port of each base-URL secret.
func baseURLPorts(p *policy.Plan) map[string]int {
	ports := map[string]int{}
	next := EgressProxyPort + 1
	for _, s := range p.Secrets {
		if s.Proxied() && s.BaseURLEnv != "" {
			ports[s.Name] = next
			next++
		}
	}
	return ports
}

func egressSecret(s policy.Secret) egress.Secret {
	return egress.Secret{Name: s.Name, Host: s.Host, Header: s.Header, BaseURLEnv: s.BaseURLEnv}
}

// checkEgress refuses what the runtime cannot wire yet, before anything
// exists.
func checkEgress(p *policy.Plan) error {
	for _, s := range p.Secrets {
		if s.Proxied() && s.BaseURLEnv == "" {
			return fmt.Errorf("agent %s: secret %s uses interception mode (no base_url_env), which clawrun does not wire into containers yet: set base_url_env (docs/egress.md#base-url-mode-baseurlenv-set)", p.Name, s.Name)
		}
	}
	return nil
}

// MissingSecrets names the plan's secrets that have no value in values.
func MissingSecrets(p *policy.Plan, values map[string]string) []string {
	var missing []string
	for _, s := range p.Secrets {
		if values[s.Name] == "" {
			missing = append(missing, s.Name)
		}
	}
	return missing
}

// planSecrets keeps the values of the plan's own secrets (a supervisor
// holds those of all its agents) and refuses a plan whose secret has none.
func planSecrets(p *policy.Plan, values map[string]string) (map[string]string, error) {
	if m := MissingSecrets(p, values); len(m) > 0 {
		return nil, fmt.Errorf("agent %s: no value for secret %s: set it in the environment of clawrun, or in a --secrets file (KEY=VALUE lines, mode 0600)", p.Name, strings.Join(m, ", "))
	}
	if len(p.Secrets) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, s := range p.Secrets {
		out[s.Name] = values[s.Name]
	}
	return out, nil
}

// exposedEnv is the KEY=value of every expose: env secret: it goes into the
// agent's process only, never into the spec, config.json or clawrun.json.
func exposedEnv(p *policy.Plan, values map[string]string) []string {
	var env []string
	for _, s := range p.Secrets {
		if !s.Proxied() {
			env = append(env, s.Name+"="+values[s.Name])
		}
	}
	return env
}

// NetLogPath is where a container's connection log goes unless RunOptions
// name another file.
func (r *Runtime) NetLogPath(name string) string {
	return filepath.Join(r.DataDir, "logs", name+".net.log")
}

// egressRun is the running proxy of one container.
type egressRun struct {
	proxy *egress.Proxy
	log   *os.File
	wg    sync.WaitGroup
}

// Close stops the proxy and its listeners; nil-safe.
func (e *egressRun) Close() {
	if e == nil {
		return
	}
	_ = e.proxy.Close()
	e.wg.Wait()
	_ = e.log.Close()
}

// startEgress starts the proxy of the container whose init is pid, with its
// listeners inside that init's network namespace.
func (r *Runtime) startEgress(p *policy.Plan, o RunOptions, pid int, logPath string) (*egressRun, error) {
	if p.Network != policy.NetworkEgress {
		return nil, nil
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent %s: connection log: %w", p.Name, err)
	}
	cfg := egress.Config{Agent: p.Name, Egress: p.Egress, Values: map[string]string{}, Log: logFile}
	for _, s := range p.Secrets {
		if s.Proxied() {
			cfg.Secrets = append(cfg.Secrets, egressSecret(s))
			cfg.Values[s.Name] = o.Secrets[s.Name]
		}
	}
	if len(o.EgressHosts) > 0 {
		cfg.Resolver = hostsResolver(o.EgressHosts)
	}
	px, err := egress.New(cfg)
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("agent %s: egress proxy: %w", p.Name, err)
	}
	ports := baseURLPorts(p)
	addrs := []string{"127.0.0.1:" + strconv.Itoa(EgressProxyPort)}
	names := px.BaseURLSecrets()
	for _, n := range names {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(ports[n]))
	}
	ls, err := listenInNetns(pid, addrs)
	if err != nil {
		_ = px.Close()
		logFile.Close()
		return nil, fmt.Errorf("agent %s: egress proxy: %w", p.Name, err)
	}
	e := &egressRun{proxy: px, log: logFile}
	serve := func(f func() error) {
		e.wg.Add(1)
		go func() { defer e.wg.Done(); _ = f() }()
	}
	serve(func() error { return px.Serve(ls[0]) })
	for i, n := range names {
		l := ls[i+1]
		serve(func() error { return px.ServeBaseURL(n, l) })
	}
	return e, nil
}

// listenInNetns opens TCP listeners on addrs inside the network namespace
// of pid. The goroutine's thread joins that namespace and is never
// unlocked, so the Go runtime discards it instead of reusing it elsewhere.
func listenInNetns(pid int, addrs []string) ([]net.Listener, error) {
	type result struct {
		ls  []net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		ls, err := func() ([]net.Listener, error) {
			ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err != nil {
				return nil, fmt.Errorf("open the container's network namespace: %w", err)
			}
			defer ns.Close()
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("join the container's network namespace: %w", err)
			}
			var ls []net.Listener
			for _, a := range addrs {
				l, err := net.Listen("tcp4", a)
				if err != nil {
					for _, l := range ls {
						l.Close()
					}
					return nil, fmt.Errorf("listen on %s inside the container: %w", a, err)
				}
				ls = append(ls, l)
			}
			return ls, nil
		}()
		ch <- result{ls, err}
	}()
	res := <-ch
	return res.ls, res.err
}

// hostsResolver answers the names it maps and looks up every other name in
// DNS, rooted (as the proxy's default resolver does).
type hostsResolver map[string][]netip.Addr

func (h hostsResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, ok := h[strings.TrimSuffix(strings.ToLower(host), ".")]; ok {
		return a, nil
	}
	if !strings.HasSuffix(host, ".") {
		host += "."
	}
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// ReadHostsFile reads an /etc/hosts-style file ("ADDRESS NAME..." lines,
// # comments) into a name → addresses map for RunOptions.EgressHosts.
func ReadHostsFile(path string) (map[string][]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseHosts(f, path)
}

func parseHosts(rd io.Reader, path string) (map[string][]netip.Addr, error) {
	out := map[string][]netip.Addr{}
	sc := bufio.NewScanner(rd)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		a, err := netip.ParseAddr(fs[0])
		if err != nil || len(fs) < 2 {
			return nil, fmt.Errorf("%s line %d: want ADDRESS NAME...", path, n)
		}
		for _, name := range fs[1:] {
			name = strings.TrimSuffix(strings.ToLower(name), ".")
			out[name] = append(out[name], a)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
