package test

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawrun/clawrun/rootfs"
)

// egressFixture is an agent with an egress grant and a base-URL secret,
// two loopback servers on the host it may reach by name (mapped through
// CLAWRUN_EGRESS_HOSTS_FILE, listed exactly since loopback is otherwise
// refused), and the secret's value in clawrun's environment.
type egressFixture struct {
	e        *env
	env      []string // clawrun's environment
	extraEnv []string // what the fixture adds to it
	secret   string
	plain    *httptest.Server // http://allowed.example:PORT
	tlsSrv   *httptest.Server // https://example.com:PORT, the secret's host
	mu       sync.Mutex
	gotKeys  []string // x-api-key headers that reached tlsSrv
	plainMsg string
}

func newEgressFixture(t *testing.T) *egressFixture {
	t.Helper()
	f := &egressFixture{e: newEnv(t), plainMsg: "hello-from-allowed"}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	f.secret = "sk-test-" + hex.EncodeToString(b)
	f.plain = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, f.plainMsg)
	}))
	t.Cleanup(f.plain.Close)
	f.tlsSrv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.gotKeys = append(f.gotKeys, r.Header.Get("X-Api-Key"))
		f.mu.Unlock()
		fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.Path)
		// What the agent sees of the injection, without the value.
		if r.Header.Get("X-Api-Key") == f.secret {
			fmt.Fprint(w, " with the secret injected")
		}
		if r.URL.RawQuery != "" {
			fmt.Fprintf(w, " query %s", r.URL.RawQuery)
		}
	}))
	t.Cleanup(f.tlsSrv.Close)

	hosts := f.e.writeFile("hosts", "127.0.0.1 allowed.example refused.example example.com\n")
	ca := f.e.writeFile("upstream-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.tlsSrv.Certificate().Raw})))
	f.extraEnv = []string{
		"CLAWRUN_EGRESS_HOSTS_FILE=" + hosts,
		// The proxy verifies the secret's host against the host's roots;
		// Go reads them from here when set.
		"SSL_CERT_FILE=" + ca,
		"API_KEY=" + f.secret,
		"VISIBLE_TOKEN=visible-value",
	}
	f.env = append(os.Environ(), f.extraEnv...)
	f.e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  net:
    rootfs: %s
    command: ["/bin/true"]
    network:
      egress: ["allowed.example:%d", "example.com:%d"]
    secrets:
      - {name: API_KEY, host: "example.com:%d", header: x-api-key, base_url_env: API_BASE_URL}
      - {name: VISIBLE_TOKEN, expose: env}
`, baseRootfs, f.port(f.plain), f.port(f.tlsSrv), f.port(f.tlsSrv)))
	return f
}

func (f *egressFixture) port(s *httptest.Server) int {
	return s.Listener.Addr().(*net.TCPAddr).Port
}

// run runs clawrun with the fixture's environment.
func (f *egressFixture) run(args ...string) result {
	f.e.t.Helper()
	c := f.e.cmd(args...)
	c.Env = f.env
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := c.Start(); err != nil {
		f.e.t.Fatal(err)
	}
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		_ = c.Process.Kill()
		f.e.t.Fatalf("clawrun %v hung; stdout=%s stderr=%s", args, out.String(), errb.String())
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		f.e.t.Fatal(err)
	}
	return r
}

func TestEgressFromInside(t *testing.T) {
	f := newEgressFixture(t)
	p1 := f.port(f.plain)
	script := fmt.Sprintf(`
echo "proxy=$http_proxy https=$HTTPS_PROXY no=$no_proxy"
echo "key=$API_KEY base=$API_BASE_URL visible=$VISIBLE_TOKEN"
echo "allowed: $(wget -q -O - http://allowed.example:%[1]d/x)"
wget -q -O - http://refused.example:%[1]d/ >/dev/null 2>&1; echo "refused-wget=$?"
printf 'GET http://refused.example:%[1]d/ HTTP/1.0\r\n\r\n' | nc -w 5 127.0.0.1 3128 | tail -n 1; echo
(printf 'CONNECT allowed.example:%[1]d HTTP/1.1\r\nHost: allowed.example:%[1]d\r\n\r\n'; sleep 1; printf 'GET /t HTTP/1.0\r\nHost: allowed.example\r\n\r\n'; sleep 2) | nc -w 5 127.0.0.1 3128 | sed -n 's/^\(hello.*\)/tunnel: \1/p'; echo
printf 'CONNECT 127.0.0.1:%[1]d HTTP/1.1\r\n\r\n' | nc -w 5 127.0.0.1 3128 | head -n 1
nc -w 3 1.1.1.1 80 </dev/null; echo "direct-ext=$?"
nc -w 3 127.0.0.1 %[1]d </dev/null; echo "direct-host-port=$?"
timeout 5 nslookup example.com 8.8.8.8 >/dev/null 2>&1; echo "dns-public=$?"
timeout 5 nslookup example.com >/dev/null 2>&1; echo "dns-default=$?"
echo "base: $(wget -q -Y off -O - --header "x-api-key: $API_KEY" "$API_BASE_URL/v1/messages")"
`, p1)
	r := f.run("run", "--name", "egress1", "net", "--", "/bin/sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	out := r.stdout
	t.Logf("inside:\n%s", out)
	for _, want := range []string{
		"proxy=http://127.0.0.1:3128 https=http://127.0.0.1:3128 no=localhost,127.0.0.1,::1",
		"key=clawrun-placeholder-API_KEY base=http://127.0.0.1:3129 visible=visible-value",
		"allowed: " + f.plainMsg,
		"refused-wget=1",
		fmt.Sprintf("clawrun egress: refused.example:%d is not in this agent's egress allowlist", p1),
		"tunnel: " + f.plainMsg, // through a CONNECT tunnel
		"HTTP/1.1 403",
		"direct-ext=1",
		"direct-host-port=1",
		"dns-public=1",
		"dns-default=1",
		"base: upstream saw GET /v1/messages",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(out+r.stderr, f.secret) {
		t.Errorf("the secret's value reached the container's output:\n%s", r)
	}
	f.mu.Lock()
	keys := append([]string(nil), f.gotKeys...)
	f.mu.Unlock()
	if len(keys) != 1 || keys[0] != f.secret {
		t.Errorf("x-api-key headers at the upstream = %q, want the secret once (the placeholder replaced)", keys)
	}

	// The connection log: allowed and refused, secret names, no values.
	netlog := f.run("logs", "--net", "egress1")
	if netlog.code != 0 {
		t.Fatalf("logs --net: %s", netlog)
	}
	t.Logf("logs --net:\n%s", netlog.stdout)
	for _, want := range []string{
		fmt.Sprintf("DENY  http GET refused.example:%d", p1), "not_in_allowlist",
		fmt.Sprintf("ALLOW http GET allowed.example:%d", p1),
		fmt.Sprintf("ALLOW connect CONNECT allowed.example:%d", p1),
		"ip_literal",
		"base_url GET example.com", "secrets=API_KEY",
	} {
		if !strings.Contains(netlog.stdout, want) {
			t.Errorf("logs --net lacks %q:\n%s", want, netlog.stdout)
		}
	}
	raw, err := os.ReadFile(filepath.Join(f.e.data, "logs", "egress1.net.log"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(f.secret)) {
		t.Error("the connection log holds the secret's value")
	}
	if fi, err := os.Stat(filepath.Join(f.e.data, "logs", "egress1.net.log")); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("connection log mode %v, want 0600", fi.Mode().Perm())
	}

	// inspect names the grants and secrets, never the value.
	insp := f.run("inspect", "egress1")
	for _, want := range []string{"egress", fmt.Sprintf("allowed.example:%d", p1), "API_KEY: injected by the egress proxy", "VISIBLE_TOKEN: expose: env"} {
		if !strings.Contains(insp.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, insp)
		}
	}
	if strings.Contains(insp.stdout, f.secret) {
		t.Error("inspect shows the secret's value")
	}
	// Nothing clawrun keeps in its state holds the value.
	_ = filepath.WalkDir(f.e.root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(f.secret)) {
				t.Errorf("%s holds the secret's value", p)
			}
		}
		return nil
	})
	f.run("rm", "egress1")
	if _, err := os.Stat(filepath.Join(f.e.data, "logs", "egress1.net.log")); err == nil {
		t.Error("rm left the connection log behind")
	}
}

// The secret's value is nowhere in the container: not in any process's
// environment or arguments, nor in any file it can read.
func TestEgressSecretAbsentInside(t *testing.T) {
	f := newEgressFixture(t)
	// A second process runs beside the shell, so /proc holds more than one.
	script := `
sleep 30 &
for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null; echo; done
cd / && tar -cf - $(for d in /*; do case $d in /proc|/sys|/dev) ;; *) echo ${d#/};; esac; done) dev/shm 2>/dev/null
kill %1
`
	r := f.run("run", "net", "--", "/bin/sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("run: exit %d, stderr %s", r.code, r.stderr)
	}
	if len(r.stdout) < 100000 {
		t.Fatalf("the dump is too small (%d bytes) to have covered the files:\n%s", len(r.stdout), r.stderr)
	}
	if !strings.Contains(r.stdout, "API_KEY=clawrun-placeholder-API_KEY") {
		t.Errorf("no process environment holds the placeholder: dump did not cover /proc/*/environ")
	}
	if strings.Contains(r.stdout, f.secret) {
		t.Error("the secret's value is inside the container")
	}
}

// An agent without egress has no route out, not even through a proxy.
func TestEgressNoneHasNoProxy(t *testing.T) {
	f := newEgressFixture(t)
	r := f.run("run", "--rootfs", baseRootfs, "--", "/bin/sh", "-c",
		`echo "proxy=$http_proxy"; nc -w 3 127.0.0.1 3128 </dev/null; echo "proxy-port=$?"; nc -w 3 1.1.1.1 80 </dev/null; echo "direct=$?"`)
	for _, want := range []string{"proxy=\n", "proxy-port=1", "direct=1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r)
		}
	}
}

// A secret without a value fails the run before a container exists, naming
// the secret.
func TestEgressMissingSecret(t *testing.T) {
	f := newEgressFixture(t)
	var env []string
	for _, kv := range f.env {
		if !strings.HasPrefix(kv, "API_KEY=") {
			env = append(env, kv)
		}
	}
	f.env = env
	r := f.run("run", "net")
	if r.code != 125 || !strings.Contains(r.stderr, "no value for secret API_KEY") {
		t.Fatalf("want exit 125 naming API_KEY: %s", r)
	}
	if left := f.e.stateEntries(); len(left) != 0 {
		t.Fatalf("state left behind: %v", left)
	}
}

// A detached agent's proxy lives in its monitor and ends with it; here with
// a single-id map, where the agent is root of its user namespace, and the
// agent seccomp profile, which allows inet sockets only with a network grant.
func TestEgressDetached(t *testing.T) {
	f := newEgressFixture(t)
	f.e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  net:
    rootfs: %s
    command: ["/bin/sleep", "60"]
    idmap: single
    seccomp: agent   # inet sockets only because of the egress grant
    network:
      egress: ["allowed.example:%d"]
`, baseRootfs, f.port(f.plain)))
	if r := f.run("run", "-d", "--name", "egress-d", "net"); r.code != 0 {
		t.Fatalf("run -d: %s", r)
	}
	r := f.run("exec", "egress-d", "/bin/sh", "-c", fmt.Sprintf("wget -q -O - http://allowed.example:%d/", f.port(f.plain)))
	if r.code != 0 || r.stdout != f.plainMsg {
		t.Fatalf("exec through the proxy: %s", r)
	}
	if r := f.run("stop", "-t", "1", "egress-d"); r.code != 0 {
		t.Fatalf("stop: %s", r)
	}
	netlog := f.run("logs", "--net", "egress-d")
	if !strings.Contains(netlog.stdout, "ALLOW http GET allowed.example") {
		t.Errorf("logs --net:\n%s", netlog)
	}
}

//go:embed tlsclient/main.go
var tlsClientSource []byte

var (
	tlsClientBin string // the built HTTPS client, for /tlsclient in a rootfs
	tlsClientErr error  // why it could not be built
)

// buildTLSClient builds test/tlsclient into dir, static (CGO_ENABLED=0) so
// it runs in a busybox rootfs. The suite runs as a copied binary with no
// source tree, hence the embedded source; go is found in PATH, else in the
// GOROOT this test binary was built with.
func buildTLSClient(dir string) (string, error) {
	src := filepath.Join(dir, "tlsclient.go")
	if err := os.WriteFile(src, tlsClientSource, 0o644); err != nil {
		return "", fmt.Errorf("tls client: %w", err)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(goruntime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "tlsclient")
	c := exec.Command(gobin, "build", "-trimpath", "-o", bin, src)
	c.Dir = dir
	c.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=", "GO111MODULE=on")
	if os.Getenv("HOME") == "" && os.Getenv("GOCACHE") == "" {
		c.Env = append(c.Env, "GOCACHE="+filepath.Join(dir, "gocache"))
	}
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the HTTPS test client with %s (CGO_ENABLED=0): %v\n%s", gobin, err, out)
	}
	return bin, nil
}

// Interception mode: a secret without base_url_env. The agent speaks TLS to
// the secret's host by name through HTTPS_PROXY; the proxy terminates it
// with a certificate of the agent's clawrun CA (trusted through
// SSL_CERT_FILE, written into the container's /tmp) and injects the header.
// A non-intercepted TLS host reached through a plain CONNECT tunnel stays
// trusted through the image's own bundle, which the container's bundle
// includes. The secret's value is nowhere inside.
func TestEgressInterception(t *testing.T) {
	if tlsClientErr != nil {
		t.Fatal(tlsClientErr)
	}
	f := newEgressFixture(t)
	var plainKeys []string
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		plainKeys = append(plainKeys, r.Header.Get("X-Api-Key"))
		f.mu.Unlock()
		fmt.Fprint(w, "tunnelled-tls")
	}))
	t.Cleanup(other.Close)
	// The image's own bundle trusts the test servers' certificate (the
	// same for both, valid for example.com).
	rootDir := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Chmod(filepath.Dir(rootDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := rootfs.BuildBusybox(rootDir, "/bin/busybox", map[string]string{
		"/tlsclient":                         tlsClientBin,
		"/etc/ssl/certs/ca-certificates.crt": filepath.Join(f.e.dir, "upstream-ca.pem"),
	}); err != nil {
		t.Fatal(err)
	}
	p1, p2 := f.port(f.tlsSrv), f.port(other)
	f.e.writeFile("clawrun.yaml", fmt.Sprintf(`agents:
  net:
    rootfs: %s
    command: ["/bin/true"]
    network:
      egress: ["example.com:%d", "example.com:%d"]
    secrets:
      - {name: API_KEY, host: "example.com:%d", header: x-api-key}
`, rootDir, p1, p2, p1))
	script := fmt.Sprintf(`
echo "ssl=$SSL_CERT_FILE node=$NODE_EXTRA_CA_CERTS curl=$CURL_CA_BUNDLE key=$API_KEY"
echo "certs=$(grep -c 'BEGIN CERTIFICATE' $SSL_CERT_FILE)"
echo "intercepted: $(/tlsclient https://example.com:%d/v1/messages)"
echo "tunnel: $(/tlsclient https://example.com:%d/plain)"
echo "owner=$(stat -c %%u $SSL_CERT_FILE) me=$(id -u) mode=$(stat -c %%a $SSL_CERT_FILE)"
rm -f $SSL_CERT_FILE 2>/dev/null; echo "rm=$?"
sleep 30 &
for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null; echo; done
cd / && tar -cf - $(for d in /*; do case $d in /proc|/sys|/dev) ;; *) echo ${d#/};; esac; done) dev/shm 2>/dev/null
kill %%1
`, p1, p2)
	r := f.run("run", "--name", "intercept", "net", "--", "/bin/sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("run: exit %d, stderr %s", r.code, r.stderr)
	}
	head, _, _ := strings.Cut(r.stdout, "\nrm=")
	t.Logf("inside:\n%s", head)
	for _, want := range []string{
		"ssl=/tmp/clawrun-egress-ca.pem node=/tmp/clawrun-egress-ca.pem curl=/tmp/clawrun-egress-ca.pem key=clawrun-placeholder-API_KEY",
		"certs=2", // the image's bundle and the clawrun CA
		"intercepted: upstream saw GET /v1/messages",
		"tunnel: tunnelled-tls",
		"owner=0 ", "mode=644",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%.2000s", want, r.stdout)
		}
	}
	// Owned by the container's root in the sticky /tmp: an agent running as
	// another user (the default with subordinate ids) cannot remove or
	// replace it.
	if !strings.Contains(r.stdout, "owner=0 me=0 ") && !strings.Contains(r.stdout, "rm=1") {
		t.Errorf("a non-root agent removed the trust bundle:\n%s", head)
	}
	if !strings.Contains(r.stdout, "API_KEY=clawrun-placeholder-API_KEY") {
		t.Errorf("no process environment holds the placeholder: dump did not cover /proc/*/environ")
	}
	if strings.Contains(r.stdout+r.stderr, f.secret) {
		t.Error("the secret's value is inside the container")
	}
	f.mu.Lock()
	keys, pkeys := append([]string(nil), f.gotKeys...), append([]string(nil), plainKeys...)
	f.mu.Unlock()
	if len(keys) != 1 || keys[0] != f.secret {
		t.Errorf("x-api-key headers at the secret's host = %q, want the secret once", keys)
	}
	if len(pkeys) != 1 || pkeys[0] != "" {
		t.Errorf("x-api-key headers at the tunnelled host = %q, want one request without it", pkeys)
	}
	// The CA stays in clawrun's data directory, its key private.
	caDir := filepath.Join(f.e.data, "egress", "net", "ca")
	for name, want := range map[string]os.FileMode{caDir: 0o700, filepath.Join(caDir, "ca-key.pem"): 0o600} {
		if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, want mode %04o", name, err, want)
		}
	}
	key, err := os.ReadFile(filepath.Join(caDir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains([]byte(r.stdout), key) {
		t.Error("the CA key is inside the container")
	}
	netlog := f.run("logs", "--net", "intercept")
	for _, want := range []string{fmt.Sprintf("intercept CONNECT example.com:%d", p1), "secrets=API_KEY", fmt.Sprintf("connect CONNECT example.com:%d", p2)} {
		if !strings.Contains(netlog.stdout, want) {
			t.Errorf("logs --net lacks %q:\n%s", want, netlog.stdout)
		}
	}
}

// inspect reads the proxy's listeners and the routes from the container's
// own network namespace (/proc/PID/net), not from the plan: while the
// monitor serves the proxy each port listens; once the monitor is killed,
// inspect fails naming the port; a listener the agent opens on that port
// in the proxy's place is reported as held inside the container.
func TestEgressInspectLive(t *testing.T) {
	f := newEgressFixture(t)
	const name = "hc-egress-insp"
	if r := f.run("run", "-d", "--name", name, "net", "--", "/bin/sleep", "120"); r.code != 0 {
		t.Fatalf("run -d: %s", r)
	}
	r := f.run("inspect", name)
	if r.code != 0 {
		t.Fatalf("inspect of a healthy egress container: %s", r)
	}
	for _, want := range []string{
		"network interfaces", "lo (ok)",
		"routes out of loopback", "none (ok)",
		"egress proxy 127.0.0.1:3128 (HTTP_PROXY)", "egress proxy 127.0.0.1:3129 (API_BASE_URL)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, r.stdout)
		}
	}
	if n := len(regexp.MustCompile(`\) +listening \(ok\)`).FindAllString(r.stdout, -1)); n != 2 {
		t.Errorf("%d listening proxy ports, want 2:\n%s", n, r.stdout)
	}

	// The monitor holds the proxy; killed, the proxy is gone while the
	// agent runs on.
	monitor := findMonitor(t, name)
	if err := syscall.Kill(monitor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the monitor to exit", func() bool { return syscall.Kill(monitor, 0) != nil })
	r = f.run("inspect", name)
	proxyGone := regexp.MustCompile(`egress proxy 127\.0\.0\.1:3128 \(HTTP_PROXY\) +not listening .*MISMATCH`)
	if r.code == 0 || !proxyGone.MatchString(r.stdout) ||
		!strings.Contains(r.stderr, `egress proxy 127.0.0.1:3128 (HTTP_PROXY) is "not listening`) {
		t.Fatalf("inspect without the proxy must fail naming the port: %s", r)
	}

	// The agent takes the port over: it listens, but not as the proxy.
	squat := f.e.cmd("exec", name, "/bin/sh", "-c", "nc -l -p 3128")
	squat.Env = f.env
	if err := squat.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = squat.Process.Kill(); _ = squat.Wait() })
	waitFor(t, "the agent's listener", func() bool {
		r = f.run("inspect", name)
		return !proxyGone.MatchString(r.stdout)
	})
	if r.code == 0 || !strings.Contains(r.stdout, "listening, but held by a process inside the container") {
		t.Fatalf("inspect must refuse an agent's own listener on the proxy port: %s", r)
	}
}

// findMonitor is the pid of the process that runs the container name
// (`clawrun __nested-run NAME`, see runtime/nested.go).
func findMonitor(t *testing.T, name string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 3 && args[0] == clawrunBin && args[1] == "__nested-run" && args[2] == name {
			return pid
		}
	}
	t.Fatalf("no monitor process for %s", name)
	return 0
}
