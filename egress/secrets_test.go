package egress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	apiKey   = "sk-test-REAL-SECRET-0123456789"
	apiToken = "tok-test-REAL-SECRET-abcdef"
)

// seen is what an upstream test server received.
type seen struct {
	mu      sync.Mutex
	headers []http.Header
	hosts   []string
	paths   []string
	bodies  []string
}

func (s *seen) last(t *testing.T) (http.Header, string, string, string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.headers) == 0 {
		t.Fatal("upstream saw no request")
	}
	i := len(s.headers) - 1
	return s.headers[i], s.hosts[i], s.paths[i], s.bodies[i]
}

// recordingUpstream records each request and echoes the secret headers back
// in response headers, as a careless server might.
func recordingUpstream(s *seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.headers = append(s.headers, r.Header.Clone())
		s.hosts = append(s.hosts, r.Host)
		s.paths = append(s.paths, r.URL.RequestURI())
		s.bodies = append(s.bodies, string(body))
		s.mu.Unlock()
		w.Header().Set("X-Echo-Key", r.Header.Get("X-Api-Key"))
		w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
		w.Header().Set("X-Fine", "kept")
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			fmt.Fprint(w, "data: late\n\n")
			return
		}
		fmt.Fprintf(w, "ok %s", body)
	})
}

// checkHeaders fails if any header holds a placeholder.
func noPlaceholder(t *testing.T, h http.Header) {
	t.Helper()
	for k, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, "clawrun-placeholder") {
				t.Errorf("upstream saw the placeholder in %s: %q", k, v)
			}
		}
	}
}

func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{apiKey, apiToken} {
		if strings.Contains(s, secret) {
			t.Errorf("%s holds a secret value:\n%s", what, s)
		}
	}
}

func TestBaseURLInjection(t *testing.T) {
	var keySeen, tokSeen seen
	keySrv, _ := tlsUpstream(t, "api.example.test", recordingUpstream(&keySeen))
	tokSrv, _ := tlsUpstream(t, "tok.example.test", recordingUpstream(&tokSeen))
	keyPort := portOf(t, keySrv.Listener.Addr().String())
	tokPort := portOf(t, tokSrv.Listener.Addr().String())
	roots := mergePools(t, keySrv.TLS, tokSrv.TLS)

	logBuf := &syncBuffer{}
	p, err := New(Config{
		Agent: "base",
		Egress: []string{
			fmt.Sprintf("api.example.test:%d", keyPort),
			fmt.Sprintf("tok.example.test:%d", tokPort),
		},
		Secrets: []Secret{
			{Name: "API_KEY", Host: fmt.Sprintf("api.example.test:%d", keyPort), Header: "x-api-key", BaseURLEnv: "API_BASE_URL"},
			{Name: "API_TOKEN", Host: fmt.Sprintf("tok.example.test:%d", tokPort), BaseURLEnv: "TOK_BASE_URL"},
		},
		Values:      map[string]string{"API_KEY": apiKey, "API_TOKEN": apiToken, "UNUSED": "x"},
		Resolver:    &mapResolver{names: map[string][]string{"api.example.test": {"127.0.0.1"}, "tok.example.test": {"127.0.0.1"}}},
		UpstreamTLS: &tls.Config{RootCAs: roots},
		Log:         logBuf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if got := p.BaseURLSecrets(); strings.Join(got, ",") != "API_KEY,API_TOKEN" {
		t.Errorf("BaseURLSecrets = %v", got)
	}
	base := map[string]string{}
	for _, name := range p.BaseURLSecrets() {
		l := listen(t)
		go p.ServeBaseURL(name, l)
		base[name] = "http://" + l.Addr().String()
	}
	if _, err := p.BaseURLHandler("NOPE"); err == nil {
		t.Error("BaseURLHandler of an unknown secret: no error")
	}

	env := Secret{Name: "API_KEY", BaseURLEnv: "API_BASE_URL"}.Env(8123)
	if strings.Join(env, " ") != "API_KEY=clawrun-placeholder-API_KEY API_BASE_URL=http://127.0.0.1:8123" {
		t.Errorf("Env = %v", env)
	}

	client := &http.Client{Timeout: 10 * time.Second}
	send := func(name, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base[name]+path, strings.NewReader(`{"q":1}`))
		req.Header.Set("X-Api-Key", Placeholder("API_KEY"))
		req.Header.Set("Authorization", "Bearer "+Placeholder(name))
		req.Header.Set("X-Sneaky", "prefix "+Placeholder(name))
		req.Header.Set("Anthropic-Version", "2023-06-01")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		dump, _ := httputil.DumpResponse(resp, true)
		noSecret(t, "the response to the client", string(dump))
		return resp, string(dump)
	}

	resp, dump := send("API_KEY", "/v1/messages?beta=true")
	if resp.StatusCode != 200 || !strings.Contains(dump, `ok {"q":1}`) || resp.Header.Get("X-Fine") != "kept" {
		t.Errorf("response:\n%s", dump)
	}
	if resp.Header.Get("X-Echo-Key") != "" {
		t.Errorf("a response header echoing the secret reached the client")
	}
	h, host, path, body := keySeen.last(t)
	if h.Get("X-Api-Key") != apiKey || h.Get("Authorization") != "" || h.Get("X-Sneaky") != "" ||
		h.Get("Anthropic-Version") != "2023-06-01" || len(h.Values("X-Api-Key")) != 1 {
		t.Errorf("upstream headers %v", h)
	}
	noPlaceholder(t, h)
	if host != fmt.Sprintf("api.example.test:%d", keyPort) || path != "/v1/messages?beta=true" || body != `{"q":1}` {
		t.Errorf("upstream saw host %q path %q body %q", host, path, body)
	}

	resp, dump = send("API_TOKEN", "/v1/chat")
	if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Auth") != "" {
		t.Errorf("response:\n%s", dump)
	}
	h, _, _, _ = tokSeen.last(t)
	if h.Get("Authorization") != "Bearer "+apiToken || h.Get("X-Api-Key") != "" {
		t.Errorf("upstream headers %v", h)
	}
	noPlaceholder(t, h)

	// Server-sent events stream through as they come.
	req, _ := http.NewRequest(http.MethodGet, base["API_KEY"]+"/stream", nil)
	start := time.Now()
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" || time.Since(start) > time.Second {
		t.Errorf("first event %q %v after %v: not streamed", line, err, time.Since(start))
	}
	resp.Body.Close()

	recs := logBuf.waitRecords(t, 3)
	for _, r := range recs {
		if r.Mode != ModeBaseURL || !r.Allowed || r.Agent != "base" || r.IP != "127.0.0.1" || r.Secrets == "" {
			t.Errorf("record %+v", r)
		}
	}
	// Records are written as requests end, so their order may vary.
	bySecret := map[string]Record{}
	for _, r := range recs {
		if r.Method == "POST" {
			bySecret[r.Secrets] = r
		}
	}
	if r := bySecret["API_KEY"]; r.BytesUp != 7 || r.Status != 200 || r.Port != uint16(keyPort) {
		t.Errorf("records %+v", recs)
	}
	if r := bySecret["API_TOKEN"]; r.Host != "tok.example.test" || r.Status != 200 {
		t.Errorf("records %+v", recs)
	}
	noSecret(t, "the log", logBuf.String())
	if strings.Contains(strings.ToLower(logBuf.String()), "authorization") || strings.Contains(logBuf.String(), "beta=true") {
		t.Errorf("log holds headers or a query:\n%s", logBuf)
	}
}

// mergePools trusts the issuers of two test servers' certificates.
func mergePools(t *testing.T, confs ...*tls.Config) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range confs {
		chain := c.Certificates[0].Certificate
		ca, err := x509.ParseCertificate(chain[len(chain)-1])
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(ca)
	}
	return pool
}

func TestBaseURLRefusesUnsafeUpstream(t *testing.T) {
	// The secret's host resolves to loopback, but is only allowed by a
	// wildcard: the secret must not go there.
	p, err := New(Config{
		Egress:   []string{"*.example.test:443"},
		Secrets:  []Secret{{Name: "K", Host: "api.example.test", Header: "x-api-key", BaseURLEnv: "K_URL"}},
		Values:   map[string]string{"K": apiKey},
		Resolver: &mapResolver{names: map[string][]string{"api.example.test": {"127.0.0.1"}}},
		Log:      io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	l := listen(t)
	go p.ServeBaseURL("K", l)
	resp, err := http.Get("http://" + l.Addr().String() + "/v1")
	if err != nil {
		t.Fatal(err)
	}
	if body := bodyOf(t, resp); resp.StatusCode != 403 || !strings.Contains(body, "a loopback address") {
		t.Errorf("%s %q", resp.Status, body)
	}
	// A base-URL port is no tunnel.
	_, _, resp = connect(t, l.Addr().String(), "api.example.test:443")
	if body := bodyOf(t, resp); resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(body, "opens no tunnels") {
		t.Errorf("CONNECT to a base URL: %s %q", resp.Status, body)
	}
}

func TestInterception(t *testing.T) {
	var up seen
	srv, upPool := tlsUpstream(t, "api.example.test", recordingUpstream(&up))
	port := portOf(t, srv.Listener.Addr().String())
	echoPort := echoServer(t)
	caDir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreateCA(caDir, []string{"api.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	_, addr, logBuf := startProxy(t, Config{
		Agent:       "icpt",
		Egress:      []string{fmt.Sprintf("api.example.test:%d", port), fmt.Sprintf("plain.example.test:%d", echoPort)},
		Secrets:     []Secret{{Name: "API_KEY", Host: fmt.Sprintf("api.example.test:%d", port), Header: "x-api-key"}},
		Values:      map[string]string{"API_KEY": apiKey},
		CA:          ca,
		Resolver:    &mapResolver{names: map[string][]string{"api.example.test": {"127.0.0.1"}, "plain.example.test": {"127.0.0.1"}}},
		UpstreamTLS: &tls.Config{RootCAs: upPool},
	})

	// A client that trusts only the clawrun CA reaches the upstream, whose own
	// certificate it could not verify: the proxy terminated its TLS.
	onlyClawrun := x509.NewCertPool()
	if !onlyClawrun.AppendCertsFromPEM(ca.CertPEM()) {
		t.Fatal("CA PEM does not parse")
	}
	client := proxyClient(t, addr, onlyClawrun)
	for i := range 2 { // the second request reuses the tunnel
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://api.example.test:%d/v1/messages", port), strings.NewReader("hi"))
		req.Header.Set("X-Api-Key", Placeholder("API_KEY"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		dump, _ := httputil.DumpResponse(resp, true)
		noSecret(t, "the response", string(dump))
		if resp.StatusCode != 200 || !strings.Contains(string(dump), "ok hi") || resp.TLS == nil ||
			resp.TLS.PeerCertificates[0].Issuer.CommonName != "clawrun egress CA" {
			t.Errorf("request %d:\n%s", i, dump)
		}
		h, host, _, _ := up.last(t)
		if h.Get("X-Api-Key") != apiKey || host != fmt.Sprintf("api.example.test:%d", port) {
			t.Errorf("upstream saw %v, host %q", h, host)
		}
		noPlaceholder(t, h)
	}
	client.Transport.(*http.Transport).CloseIdleConnections()

	// The CA does not vouch for other hosts: a tunnel elsewhere is plain.
	c, br, resp := connect(t, addr, fmt.Sprintf("plain.example.test:%d", echoPort))
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	fmt.Fprint(c, "raw")
	buf := make([]byte, 3)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "raw" {
		t.Errorf("plain tunnel: %q %v", buf, err)
	}
	c.Close()

	recs := logBuf.waitRecords(t, 4)
	modes := map[string]int{}
	for _, r := range recs {
		modes[r.Mode+" "+r.Method]++
		if r.Mode == ModeIntercept && r.Method == "POST" && (r.Secrets != "API_KEY" || r.Status != 200 || r.BytesUp != 2) {
			t.Errorf("record %+v", r)
		}
	}
	if modes["intercept POST"] != 2 || modes["intercept CONNECT"] != 1 || modes["connect CONNECT"] != 1 {
		t.Errorf("records %v:\n%s", modes, logBuf)
	}
	noSecret(t, "the log", logBuf.String())
}

// Inside a terminated tunnel the Host must be the tunnel's host: another
// name served by the same upstream (a CDN) would otherwise get the secret.
func TestInterceptionHostMismatch(t *testing.T) {
	var up seen
	srv, upPool := tlsUpstream(t, "api.example.test", recordingUpstream(&up))
	port := portOf(t, srv.Listener.Addr().String())
	ca, err := LoadOrCreateCA(t.TempDir(), []string{"api.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	_, addr, logBuf := startProxy(t, Config{
		Egress:      []string{fmt.Sprintf("api.example.test:%d", port)},
		Secrets:     []Secret{{Name: "API_KEY", Host: fmt.Sprintf("api.example.test:%d", port)}},
		Values:      map[string]string{"API_KEY": apiKey},
		CA:          ca,
		Resolver:    &mapResolver{names: map[string][]string{"api.example.test": {"127.0.0.1"}}},
		UpstreamTLS: &tls.Config{RootCAs: upPool},
	})
	c, _, resp := connect(t, addr, fmt.Sprintf("api.example.test:%d", port))
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	tc := tls.Client(c, &tls.Config{ServerName: "api.example.test", RootCAs: pool})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(tc, "GET /v1 HTTP/1.1\r\nHost: evil.example.net\r\n\r\n")
	r, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := bodyOf(t, r); r.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(body, "the Host must be") {
		t.Errorf("%s %q", r.Status, body)
	}
	up.mu.Lock()
	n := len(up.headers)
	up.mu.Unlock()
	if n != 0 {
		t.Errorf("upstream got %d requests", n)
	}
	tc.Close()
	for _, rec := range logBuf.waitRecords(t, 2) {
		if rec.Method == "GET" && (rec.Allowed || rec.Reason != "host_mismatch") {
			t.Errorf("record %+v", rec)
		}
	}
}

// A client that does not trust the clawrun CA fails the handshake, and the
// failure is logged; nothing reaches the upstream.
func TestInterceptionUntrustedClient(t *testing.T) {
	var up seen
	srv, upPool := tlsUpstream(t, "api.example.test", recordingUpstream(&up))
	port := portOf(t, srv.Listener.Addr().String())
	ca, err := LoadOrCreateCA(t.TempDir(), []string{"api.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	_, addr, logBuf := startProxy(t, Config{
		Egress:      []string{fmt.Sprintf("api.example.test:%d", port)},
		Secrets:     []Secret{{Name: "API_KEY", Host: fmt.Sprintf("api.example.test:%d", port)}},
		Values:      map[string]string{"API_KEY": apiKey},
		CA:          ca,
		Resolver:    &mapResolver{names: map[string][]string{"api.example.test": {"127.0.0.1"}}},
		UpstreamTLS: &tls.Config{RootCAs: upPool},
	})
	client := proxyClient(t, addr, upPool) // trusts the real upstream, not clawrun
	_, err = client.Get(fmt.Sprintf("https://api.example.test:%d/", port))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("want a certificate error, got %v", err)
	}
	rec := logBuf.waitRecords(t, 1)[0]
	if !strings.Contains(rec.Error, "TLS handshake with the agent failed") {
		t.Errorf("record %+v", rec)
	}
}

func TestNewRejectsBadSecrets(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir(), []string{"api.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	egress := []string{"api.example.test:443", "other.example.test:443"}
	tests := []struct {
		name    string
		secrets []Secret
		values  map[string]string
		ca      *CA
		want    string
	}{
		{"no value", []Secret{{Name: "K", Host: "api.example.test", BaseURLEnv: "U"}}, nil, nil, "secret K: no value"},
		{"empty value", []Secret{{Name: "K", Host: "api.example.test", BaseURLEnv: "U"}}, map[string]string{"K": ""}, nil, "no value"},
		{"newline", []Secret{{Name: "K", Host: "api.example.test", BaseURLEnv: "U"}}, map[string]string{"K": "a\nb"}, nil, "control character"},
		{"not allowed", []Secret{{Name: "K", Host: "nope.example.test", BaseURLEnv: "U"}}, map[string]string{"K": "v"}, nil, `add "nope.example.test:443" to network.egress`},
		{"ip host", []Secret{{Name: "K", Host: "127.0.0.1", BaseURLEnv: "U"}}, map[string]string{"K": "v"}, nil, "IP address"},
		{"bad name", []Secret{{Name: "K-1", Host: "api.example.test", BaseURLEnv: "U"}}, map[string]string{"K-1": "v"}, nil, "environment variable name"},
		{"bad header", []Secret{{Name: "K", Host: "api.example.test", Header: "x key", BaseURLEnv: "U"}}, map[string]string{"K": "v"}, nil, "not a valid header name"},
		{"host header", []Secret{{Name: "K", Host: "api.example.test", Header: "host", BaseURLEnv: "U"}}, map[string]string{"K": "v"}, nil, "cannot carry a secret"},
		{"same header", []Secret{{Name: "K", Host: "api.example.test", BaseURLEnv: "U"}, {Name: "L", Host: "api.example.test:443", BaseURLEnv: "V"}}, map[string]string{"K": "v", "L": "w"}, nil, "already sets header Authorization"},
		{"same env", []Secret{{Name: "K", Host: "api.example.test", BaseURLEnv: "U"}, {Name: "L", Host: "other.example.test", BaseURLEnv: "U"}}, map[string]string{"K": "v", "L": "w"}, nil, "also used by secret K"},
		{"twice", []Secret{{Name: "K", Host: "api.example.test", BaseURLEnv: "U"}, {Name: "K", Host: "other.example.test", BaseURLEnv: "V"}}, map[string]string{"K": "v"}, nil, "listed twice"},
		{"intercept without CA", []Secret{{Name: "K", Host: "api.example.test"}}, map[string]string{"K": "v"}, nil, "needs a clawrun CA"},
		{"CA for other hosts", []Secret{{Name: "K", Host: "other.example.test"}}, map[string]string{"K": "v"}, ca, "may not issue certificates for other.example.test:443"},
	}
	for _, tc := range tests {
		_, err := New(Config{Egress: egress, Secrets: tc.secrets, Values: tc.values, CA: tc.ca})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "a\nb") {
			t.Errorf("%s: the error holds the value: %v", tc.name, err)
		}
	}
}

func TestCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreateCA(dir, []string{"B.example.test", "a.example.test", "a.example.test."})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ca.Hosts(), ",") != "a.example.test,b.example.test" {
		t.Errorf("hosts %v", ca.Hosts())
	}
	for name, mode := range map[string]os.FileMode{"": 0o700, CAKeyFile: 0o600, CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, mode)
		}
	}
	again, err := LoadOrCreateCA(dir, []string{"a.example.test", "b.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if string(again.CertPEM()) != string(ca.CertPEM()) {
		t.Error("loading the same hosts made a new CA")
	}
	other, err := LoadOrCreateCA(dir, []string{"c.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if string(other.CertPEM()) == string(ca.CertPEM()) {
		t.Error("other hosts kept the old CA")
	}

	// Leaf certificates verify for their host only; the name constraints
	// stop the CA from vouching for anything else, even if it signed it.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(other.CertPEM())
	leaf, err := other.Leaf("c.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "c.example.test", Roots: pool}); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}
	if cached, _ := other.Leaf("C.example.test"); cached != leaf {
		t.Error("leaf not cached")
	}
	if _, err := other.Leaf("a.example.test"); err == nil {
		t.Error("issued a leaf outside the constraints")
	}
	if other.Covers("evil.test") || !other.Covers("x.c.example.test") || other.Covers("xc.example.test") {
		t.Error("Covers is wrong")
	}

	// A key readable by others is refused, not used.
	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir, []string{"c.example.test"}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("loose key mode: %v", err)
	}
	if _, err := LoadOrCreateCA(t.TempDir(), nil); err == nil {
		t.Error("a CA without hosts")
	}
}

// The log redacts a secret value even where the proxy did not expect one.
func TestLogRedacts(t *testing.T) {
	var buf syncBuffer
	l := newConnLog(&buf, "a", []string{apiKey, `q"uote`})
	l.write(&Record{Host: "x", Error: "upstream said " + apiKey + ` and q"uote`}, time.Now())
	if s := buf.String(); strings.Contains(s, apiKey) || strings.Contains(s, `q\"uote`) || strings.Count(s, "[redacted]") != 2 {
		t.Errorf("log line %s", s)
	}
}
