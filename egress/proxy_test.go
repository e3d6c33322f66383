package egress

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConnectAllowed(t *testing.T) {
	port := echoServer(t)
	res := &mapResolver{names: map[string][]string{"allowed.example.test": {"127.0.0.1"}}}
	_, addr, logBuf := startProxy(t, Config{
		Egress:   []string{fmt.Sprintf("allowed.example.test:%d", port)},
		Resolver: res,
	})
	c, br, resp := connect(t, addr, fmt.Sprintf("Allowed.Example.Test.:%d", port))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s %s", resp.Status, bodyOf(t, resp))
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "hello through the tunnel")
	buf := make([]byte, len("hello through the tunnel"))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hello through the tunnel" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	c.Close()
	recs := logBuf.waitRecords(t, 1)
	r := recs[0]
	if r.Mode != ModeConnect || !r.Allowed || r.Host != "allowed.example.test" || r.Port != uint16(port) ||
		r.IP != "127.0.0.1" || r.Agent != "tester" || r.BytesUp != 24 || r.BytesDown != 24 || r.Method != "CONNECT" {
		t.Errorf("log record %+v", r)
	}
	if n := res.calls.Load(); n != 1 {
		t.Errorf("%d DNS lookups, want 1", n)
	}
}

func TestPlainHTTPAllowed(t *testing.T) {
	var seenHost, seenPath, seenProxyAuth string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenHost, seenPath, seenProxyAuth = r.Host, r.URL.RequestURI(), r.Header.Get("Proxy-Authorization")
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", body)
	}))
	t.Cleanup(upstream.Close)
	port := portOf(t, upstream.Listener.Addr().String())
	_, addr, logBuf := startProxy(t, Config{
		Egress:   []string{fmt.Sprintf("web.example.test:%d", port)},
		Resolver: &mapResolver{names: map[string][]string{"web.example.test": {"127.0.0.1"}}},
	})
	client := proxyClient(t, addr, nil)
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://web.example.test:%d/a/b?c=d", port), strings.NewReader("ping"))
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := bodyOf(t, resp); resp.StatusCode != 200 || body != "got ping" {
		t.Fatalf("response %s %q", resp.Status, body)
	}
	if seenHost != fmt.Sprintf("web.example.test:%d", port) || seenPath != "/a/b?c=d" || seenProxyAuth != "" {
		t.Errorf("upstream saw Host %q, path %q, Proxy-Authorization %q", seenHost, seenPath, seenProxyAuth)
	}
	r := logBuf.waitRecords(t, 1)[0]
	if r.Mode != ModeHTTP || !r.Allowed || r.Method != "POST" || r.Status != 200 || r.IP != "127.0.0.1" || r.BytesUp != 4 || r.BytesDown != 8 {
		t.Errorf("log record %+v", r)
	}
	if strings.Contains(logBuf.String(), "c=d") || strings.Contains(logBuf.String(), "c2VjcmV0") {
		t.Errorf("log holds the query or a credential: %s", logBuf)
	}
}

func TestRefusedHost(t *testing.T) {
	port := echoServer(t)
	_, addr, logBuf := startProxy(t, Config{
		Egress: []string{fmt.Sprintf("allowed.example.test:%d", port)},
		Resolver: &mapResolver{names: map[string][]string{
			"allowed.example.test": {"127.0.0.1"},
			"other.example.test":   {"127.0.0.1"},
		}},
	})
	for _, target := range []string{
		fmt.Sprintf("other.example.test:%d", port),
		fmt.Sprintf("allowed.example.test:%d", port+1),
	} {
		_, _, resp := connect(t, addr, target)
		body := bodyOf(t, resp)
		want := "clawrun egress: " + target + " is not in this agent's egress allowlist\n"
		if resp.StatusCode != http.StatusForbidden || body != want {
			t.Errorf("CONNECT %s: %s %q, want 403 %q", target, resp.Status, body, want)
		}
		if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, "error=") {
			t.Errorf("CONNECT %s: Proxy-Status %q", target, ps)
		}
	}
	client := proxyClient(t, addr, nil)
	resp, err := client.Get(fmt.Sprintf("http://other.example.test:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	if body := bodyOf(t, resp); resp.StatusCode != 403 || !strings.Contains(body, "is not in this agent's egress allowlist") {
		t.Errorf("GET: %s %q", resp.Status, body)
	}
	recs := logBuf.waitRecords(t, 3)
	for _, r := range recs {
		if r.Allowed || r.Reason != "not_in_allowlist" || r.Status != 403 || r.IP != "" {
			t.Errorf("log record %+v", r)
		}
	}
}

func TestIPLiteralRefused(t *testing.T) {
	port := echoServer(t)
	_, addr, logBuf := startProxy(t, Config{
		Egress:   []string{fmt.Sprintf("127.0.0.1:%d", port+1)},
		Resolver: &mapResolver{},
	})
	for _, target := range []string{
		fmt.Sprintf("127.0.0.1:%d", port),
		fmt.Sprintf("[::1]:%d", port),
		fmt.Sprintf("[::ffff:127.0.0.1]:%d", port),
		"8.8.8.8:443",
		"169.254.169.254:80",
	} {
		_, _, resp := connect(t, addr, target)
		body := bodyOf(t, resp)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "an IP address is reachable only when listed exactly") {
			t.Errorf("CONNECT %s: %s %q", target, resp.Status, body)
		}
	}
	for _, target := range []string{"127.1:80", "2130706433:80", "0x7f000001.0x1:80", "host:0", "nohost", ":80", "a..b:80"} {
		_, _, resp := connect(t, addr, target)
		if body := bodyOf(t, resp); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("CONNECT %s: %s %q, want 400", target, resp.Status, body)
		}
	}
	for _, r := range logBuf.waitRecords(t, 12) {
		if r.Allowed {
			t.Errorf("allowed: %+v", r)
		}
	}
}

func TestIPLiteralListedExactly(t *testing.T) {
	port := echoServer(t)
	_, addr, _ := startProxy(t, Config{Egress: []string{fmt.Sprintf("127.0.0.1:%d", port)}, Resolver: &mapResolver{}})
	c, br, resp := connect(t, addr, fmt.Sprintf("127.0.0.1:%d", port))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s %s", resp.Status, bodyOf(t, resp))
	}
	fmt.Fprint(c, "x")
	if b, err := br.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo: %q %v", b, err)
	}
}

// A name that resolves to a non-public address is refused unless its
// host:port is listed exactly: a wildcard entry does not cover it (DNS
// rebinding, or a public name pointing into the host's network).
func TestNonPublicResolutionRefused(t *testing.T) {
	port := echoServer(t)
	res := &mapResolver{names: map[string][]string{
		"loop.example.test":     {"127.0.0.1"},
		"ten.example.test":      {"10.1.2.3"},
		"meta.example.test":     {"169.254.169.254"},
		"mixed.example.test":    {"93.184.215.14", "10.0.0.1"},
		"mapped.example.test":   {"::ffff:127.0.0.1"},
		"ula.example.test":      {"fd00::1"},
		"cgnat.example.test":    {"100.64.1.1"},
		"internal.example.test": {"127.0.0.1"},
	}}
	_, addr, logBuf := startProxy(t, Config{
		Egress: []string{
			fmt.Sprintf("*.example.test:%d", port),
			fmt.Sprintf("internal.example.test:%d", port),
		},
		Resolver: res,
	})
	refused := map[string]string{
		"loop":   "127.0.0.1, a loopback address",
		"ten":    "10.1.2.3, a private address",
		"meta":   "169.254.169.254, a cloud metadata address",
		"mixed":  "10.0.0.1, a private address",
		"mapped": "127.0.0.1, a loopback address",
		"ula":    "fd00::1, a private (ULA) address",
		"cgnat":  "100.64.1.1, a shared (CGNAT) address",
	}
	for name, what := range refused {
		target := fmt.Sprintf("%s.example.test:%d", name, port)
		_, _, resp := connect(t, addr, target)
		body := bodyOf(t, resp)
		want := fmt.Sprintf("clawrun egress: %s refused: %s.example.test resolves to %s; only an exact egress entry %q (not *.example.test:%d) reaches a non-public address\n",
			target, name, what, target, port)
		if resp.StatusCode != http.StatusForbidden || body != want {
			t.Errorf("CONNECT %s: %s\n%q\nwant\n%q", target, resp.Status, body, want)
		}
	}
	// Listed exactly, the same kind of name is reachable.
	c, br, resp := connect(t, addr, fmt.Sprintf("internal.example.test:%d", port))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT internal: %s %s", resp.Status, bodyOf(t, resp))
	}
	fmt.Fprint(c, "y")
	if b, err := br.ReadByte(); err != nil || b != 'y' {
		t.Fatalf("echo: %q %v", b, err)
	}
	c.Close()
	var reasons []string
	for _, r := range logBuf.waitRecords(t, len(refused)+1) {
		reasons = append(reasons, r.Reason)
	}
	if n := strings.Count(strings.Join(reasons, " "), "non_public_address"); n != len(refused) {
		t.Errorf("reasons %v", reasons)
	}
}

// recordingDialer notes what the proxy asks for and connects to a loopback
// server instead, standing in for a public address the test cannot reach.
type recordingDialer struct {
	mu     sync.Mutex
	dialed []string
	to     string
}

func (d *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, address)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, d.to)
}

// The proxy dials the address it checked, never the name again.
func TestDialsTheCheckedAddress(t *testing.T) {
	port := echoServer(t)
	res := &mapResolver{names: map[string][]string{
		"pub.example.test":  {"93.184.215.14"},
		"dual.example.test": {"2606:4700::1111", "93.184.215.14"},
	}}
	d := &recordingDialer{to: fmt.Sprintf("127.0.0.1:%d", port)}
	_, addr, _ := startProxy(t, Config{
		Egress:   []string{"*.example.test:443"},
		Resolver: res,
		Dialer:   d,
	})
	c, br, resp := connect(t, addr, "pub.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s %s", resp.Status, bodyOf(t, resp))
	}
	fmt.Fprint(c, "z")
	if b, err := br.ReadByte(); err != nil || b != 'z' {
		t.Fatalf("echo: %q %v", b, err)
	}
	c.Close()
	// IPv4 is tried first.
	c, br, resp = connect(t, addr, "dual.example.test:443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s %s", resp.Status, bodyOf(t, resp))
	}
	c.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	if strings.Join(d.dialed, " ") != "93.184.215.14:443 93.184.215.14:443" || res.calls.Load() != 2 {
		t.Errorf("dialed %v after %d lookups; want 93.184.215.14:443 twice after 2", d.dialed, res.calls.Load())
	}
}

func TestUnresolvableAndUnreachable(t *testing.T) {
	l := listen(t)
	closedPort := portOf(t, l.Addr().String())
	l.Close()
	_, addr, logBuf := startProxy(t, Config{
		Egress:   []string{"gone.example.test:443", fmt.Sprintf("down.example.test:%d", closedPort)},
		Resolver: &mapResolver{names: map[string][]string{"down.example.test": {"127.0.0.1"}}},
	})
	_, _, resp := connect(t, addr, "gone.example.test:443")
	if body := bodyOf(t, resp); resp.StatusCode != 502 || body != "clawrun egress: cannot resolve gone.example.test: no such host\n" {
		t.Errorf("unresolvable: %s %q", resp.Status, body)
	}
	_, _, resp = connect(t, addr, fmt.Sprintf("down.example.test:%d", closedPort))
	if body := bodyOf(t, resp); resp.StatusCode != 502 || !strings.Contains(body, "cannot connect to down.example.test") {
		t.Errorf("unreachable: %s %q", resp.Status, body)
	}
	recs := logBuf.waitRecords(t, 2)
	if recs[0].Reason != "resolve_failed" || recs[1].Error == "" || !recs[1].Allowed {
		t.Errorf("records %+v", recs)
	}
}

func TestOriginFormAndHTTPSRefused(t *testing.T) {
	_, addr, _ := startProxy(t, Config{Egress: []string{"a.example.test:80"}, Resolver: &mapResolver{}})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	if body := bodyOf(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "this is an egress proxy") {
		t.Errorf("origin-form: %s %q", resp.Status, body)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET https://a.example.test/ HTTP/1.1\r\nHost: a.example.test\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := bodyOf(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "use CONNECT") {
		t.Errorf("https absolute-form: %s %q", resp.Status, body)
	}
}

func TestUnixSocketListener(t *testing.T) {
	port := echoServer(t)
	p, err := New(Config{
		Agent:    "sock",
		Egress:   []string{fmt.Sprintf("allowed.example.test:%d", port)},
		Resolver: &mapResolver{names: map[string][]string{"allowed.example.test": {"127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "egress.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(l)
	t.Cleanup(func() { p.Close() })
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c, br, resp := connectOn(t, c, fmt.Sprintf("allowed.example.test:%d", port))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	fmt.Fprint(c, "unix")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "unix" {
		t.Fatalf("echo %q %v", buf, err)
	}
	// Half-close from the client: the upstream's answer still arrives.
	c.(*net.UnixConn).CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: %q %v", rest, err)
	}
}

func TestConcurrentConnections(t *testing.T) {
	port := echoServer(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	t.Cleanup(upstream.Close)
	webPort := portOf(t, upstream.Listener.Addr().String())
	_, addr, logBuf := startProxy(t, Config{
		Egress: []string{fmt.Sprintf("echo.example.test:%d", port), fmt.Sprintf("web.example.test:%d", webPort)},
		Resolver: &mapResolver{names: map[string][]string{
			"echo.example.test": {"127.0.0.1"},
			"web.example.test":  {"127.0.0.1"},
		}},
		MaxConns: 16, // fewer than the clients: the rest wait for a slot
	})
	client := proxyClient(t, addr, nil)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "CONNECT echo.example.test:%d HTTP/1.1\r\nHost: x\r\n\r\n", port)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
			if err != nil || resp.StatusCode != 200 {
				errs <- fmt.Errorf("CONNECT %d: %v %v", i, resp, err)
				return
			}
			msg := bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10)
			go c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("tunnel %d: %v", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			resp, err := client.Get(fmt.Sprintf("http://web.example.test:%d/req/%d", webPort, i))
			if err != nil {
				errs <- err
				return
			}
			if body := bodyOf(t, resp); body != fmt.Sprintf("/req/%d", i) {
				errs <- fmt.Errorf("request %d: %q", i, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	recs := logBuf.waitRecords(t, 2*n)
	var up int64
	for _, r := range recs {
		if r.Mode == ModeConnect {
			up += r.BytesUp
		}
	}
	if up != n*64<<10 {
		t.Errorf("tunnels carried %d bytes up, want %d", up, n*64<<10)
	}
}

func TestTimeouts(t *testing.T) {
	port := echoServer(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	slowPort := portOf(t, slow.Listener.Addr().String())
	_, addr, logBuf := startProxy(t, Config{
		Egress: []string{fmt.Sprintf("echo.example.test:%d", port), fmt.Sprintf("slow.example.test:%d", slowPort)},
		Resolver: &mapResolver{names: map[string][]string{
			"echo.example.test": {"127.0.0.1"},
			"slow.example.test": {"127.0.0.1"},
		}},
		Timeouts: Timeouts{RequestHeader: 200 * time.Millisecond, Idle: 300 * time.Millisecond, ResponseHeader: 200 * time.Millisecond},
	})
	closedWithin := func(name string, c net.Conn, r io.Reader, min, max time.Duration) {
		t.Helper()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(max))
		_, err := io.Copy(io.Discard, r)
		took := time.Since(start)
		if err != nil || took < min {
			t.Errorf("%s: closed after %v with %v; want a close between %v and %v", name, took, err, min, max)
		}
	}

	t.Run("silent client", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		closedWithin("no request line", c, c, 100*time.Millisecond, 3*time.Second)
	})
	t.Run("idle tunnel", func(t *testing.T) {
		c, br, resp := connect(t, addr, fmt.Sprintf("echo.example.test:%d", port))
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		closedWithin("idle tunnel", c, br, 250*time.Millisecond, 3*time.Second)
	})
	t.Run("busy tunnel outlives the idle timeout", func(t *testing.T) {
		c, br, resp := connect(t, addr, fmt.Sprintf("echo.example.test:%d", port))
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		for i := range 8 { // 8 x 100ms > 300ms idle
			fmt.Fprint(c, "k")
			if b, err := br.ReadByte(); err != nil || b != 'k' {
				t.Fatalf("byte %d: %q %v", i, b, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("slow upstream", func(t *testing.T) {
		client := proxyClient(t, addr, nil)
		start := time.Now()
		resp, err := client.Get(fmt.Sprintf("http://slow.example.test:%d/", slowPort))
		if err != nil {
			t.Fatal(err)
		}
		body := bodyOf(t, resp)
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "upstream timed out") || time.Since(start) > 3*time.Second {
			t.Errorf("%s %q after %v", resp.Status, body, time.Since(start))
		}
	})
	for _, r := range logBuf.records(t) {
		if r.Mode == ModeHTTP && r.Status != http.StatusGatewayTimeout {
			t.Errorf("record %+v", r)
		}
	}
}

func TestCloseEndsTunnels(t *testing.T) {
	port := echoServer(t)
	p, addr, _ := startProxy(t, Config{
		Egress:   []string{fmt.Sprintf("echo.example.test:%d", port)},
		Resolver: &mapResolver{names: map[string][]string{"echo.example.test": {"127.0.0.1"}}},
	})
	c, br, resp := connect(t, addr, fmt.Sprintf("echo.example.test:%d", port))
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	p.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("tunnel not closed by Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepts after Close")
	}
}
