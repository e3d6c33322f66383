package runtime

import (
	"bufio"
	"context"
	"errors"
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

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
// A bundle's OCI hook did not create the container and may lack that right
// (rootless runc): it opens them through nsenter (egress_listen.go).

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
	if len(interceptHosts(p)) > 0 {
		for _, k := range egressCAEnv {
			env = append(env, k+"="+EgressCAPath)
		}
	}
	return env
}

// EgressCAPath is where an agent with interception-mode secrets finds the
// trust bundle: the image's own CA bundle (if it has one) followed by the
// agent's clawrun CA. It lives in the container's /tmp tmpfs, written
// through the container's root after setup and before the agent runs
// (writeCABundle), because a mount point of its own (say a tmpfs on
// /run/clawrun) would have to be created in the rootfs, which is shared and
// read-only. The cost: the agent can read the file (it is a certificate,
// public anyway) and, when it runs as the user owning it, replace it, which
// only changes whom the agent itself trusts.
const EgressCAPath = "/tmp/clawrun-egress-ca.pem"

// egressCAEnv are the variables common TLS stacks read a trust bundle from:
// OpenSSL and Go (SSL_CERT_FILE), Python requests, curl, git, Node. All but
// Node's replace the default roots, hence the image's bundle in the file.
var egressCAEnv = []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"}

// systemCABundles are where images keep their CA bundle (Debian, Alpine,
// Fedora); the first present is copied into the container's bundle, so
// hosts reached through plain CONNECT tunnels stay trusted.
var systemCABundles = []string{"etc/ssl/certs/ca-certificates.crt", "etc/ssl/cert.pem", "etc/pki/tls/certs/ca-bundle.crt"}

// interceptHosts are the host names of the plan's interception-mode
// secrets: the names its clawrun CA is constrained to.
func interceptHosts(p *policy.Plan) []string {
	var hosts []string
	for _, s := range p.Secrets {
		if s.Proxied() && s.BaseURLEnv == "" {
			h, _, err := net.SplitHostPort(s.Host)
			if err != nil {
				h = s.Host
			}
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// EgressCADir is where the clawrun CA of an agent with interception-mode
// secrets is kept (mode 0700, the key 0600); it never enters a container.
func (r *Runtime) EgressCADir(agent string) string {
	return filepath.Join(r.DataDir, "egress", agent, "ca")
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
func (r *Runtime) startEgress(p *policy.Plan, o RunOptions, pid int, spec *specs.Spec, logPath string) (*egressRun, error) {
	return r.startEgressWith(p, o, pid, spec, logPath, listenInNetns)
}

// netnsListen opens TCP listeners on addrs inside the network namespace of
// pid: listenInNetns for a process that created the container, or
// listenThroughNsenter for an OCI hook, which did not.
type netnsListen func(pid int, addrs []string) ([]net.Listener, error)

func (r *Runtime) startEgressWith(p *policy.Plan, o RunOptions, pid int, spec *specs.Spec, logPath string, listen netnsListen) (*egressRun, error) {
	if p.Network != policy.NetworkEgress {
		return nil, nil
	}
	var ca *egress.CA
	if hosts := interceptHosts(p); len(hosts) > 0 {
		var err error
		if ca, err = egress.LoadOrCreateCA(r.EgressCADir(p.Name), hosts); err != nil {
			return nil, fmt.Errorf("agent %s: %w", p.Name, err)
		}
		if err := writeCABundle(pid, spec, ca.CertPEM()); err != nil {
			return nil, fmt.Errorf("agent %s: trust bundle for interception mode: %w", p.Name, err)
		}
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent %s: connection log: %w", p.Name, err)
	}
	cfg := egress.Config{Agent: p.Name, Egress: p.Egress, Values: map[string]string{}, Log: logFile, CA: ca}
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
	ls, err := listen(pid, addrs)
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
			return listenAll(addrs)
		}()
		ch <- result{ls, err}
	}()
	res := <-ch
	return res.ls, res.err
}

// listenAll opens a TCP listener on each of addrs in the caller's network
// namespace (the container's, by then), all or none.
func listenAll(addrs []string) ([]net.Listener, error) {
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
}

// writeCABundle writes EgressCAPath into the container whose init is pid
// (set up, parked before exec): the image's CA bundle, if any, then caPEM.
// Both are reached through the container's root (RESOLVE_IN_ROOT), so no
// link in the image leads outside it. The file is created with the file
// system ids of the container's root user: a tmpfs mounted in the
// container's user namespace refuses files owned by ids it cannot map, and
// in the sticky /tmp another user (the agent, unless it is that root)
// cannot remove or replace it.
func writeCABundle(pid int, spec *specs.Spec, caPEM []byte) error {
	root, err := os.OpenFile(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the container's root: %w", err)
	}
	defer root.Close()
	var bundle []byte
	for _, name := range systemCABundles {
		b, err := readInRoot(root, name, 16<<20)
		if err == nil {
			bundle = append(b, '\n')
			break
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("read the image's /%s: %w", name, err)
		}
	}
	bundle = append(bundle, caPEM...)
	dir := strings.TrimPrefix(filepath.Dir(EgressCAPath), "/")
	tmp, err := unix.Openat2(int(root.Fd()), dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("open /%s in the container: %w", dir, err)
	}
	defer unix.Close(tmp)
	uid, gid := hostIDOfRoot(spec.Linux.UIDMappings), hostIDOfRoot(spec.Linux.GIDMappings)
	ch := make(chan error, 1)
	go func() {
		// setfsuid applies to this thread only; it is never unlocked, so
		// the Go runtime discards it rather than reuse its ids.
		goruntime.LockOSThread()
		ch <- func() error {
			if gid >= 0 {
				if err := unix.Setfsgid(gid); err != nil {
					return fmt.Errorf("setfsgid %d: %w", gid, err)
				}
			}
			if uid >= 0 {
				if err := unix.Setfsuid(uid); err != nil {
					return fmt.Errorf("setfsuid %d: %w", uid, err)
				}
			}
			fd, err := unix.Openat(tmp, filepath.Base(EgressCAPath), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return fmt.Errorf("create %s in the container: %w", EgressCAPath, err)
			}
			f := os.NewFile(uintptr(fd), EgressCAPath)
			defer f.Close()
			if err := f.Chmod(0o644); err != nil {
				return fmt.Errorf("%s: %w", EgressCAPath, err)
			}
			if _, err := f.Write(bundle); err != nil {
				return fmt.Errorf("write %s in the container: %w", EgressCAPath, err)
			}
			return nil
		}()
	}()
	return <-ch
}

// hostIDOfRoot is the id container id 0 maps to, or -1 when unmapped.
func hostIDOfRoot(m []specs.LinuxIDMapping) int {
	for _, e := range m {
		if e.ContainerID == 0 && e.Size > 0 {
			return int(e.HostID)
		}
	}
	return -1
}

// readInRoot reads the regular file name (relative to root), at most max
// bytes, without leaving root.
func readInRoot(root *os.File, name string, max int64) ([]byte, error) {
	fd, err := unix.Openat2(int(root.Fd()), name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, fmt.Errorf("not a regular file of at most %d bytes", max)
	}
	return io.ReadAll(io.LimitReader(f, max))
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
