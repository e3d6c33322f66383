package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawrun/clawrun/internal/syncbuf"
)

// mapResolver is the only stand-in of the tests: it maps test names to
// addresses, and counts lookups.
type mapResolver struct {
	names map[string][]string
	calls atomic.Int64
}

func (m *mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	m.calls.Add(1)
	list, ok := m.names[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range list {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

// syncBuffer is the proxy's log sink, with readers of its JSON records.
type syncBuffer struct{ syncbuf.Buffer }

// records parses the log; every line must be a Record.
func (b *syncBuffer) records(t *testing.T) []Record {
	t.Helper()
	var out []Record
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var r Record
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// waitRecords waits until the log holds n records: a record is written when
// its connection ends, just after the client saw the end.
func (b *syncBuffer) waitRecords(t *testing.T, n int) []Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := b.records(t)
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) < n {
				t.Fatalf("log has %d records, want %d:\n%s", len(recs), n, b.String())
			}
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listen opens a loopback listener.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(ps)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startProxy serves a proxy for cfg on a loopback port and returns its
// address. The log goes to the returned buffer unless cfg.Log is set.
func startProxy(t *testing.T, cfg Config) (*Proxy, string, *syncBuffer) {
	t.Helper()
	logBuf := &syncBuffer{}
	if cfg.Log == nil {
		cfg.Log = logBuf
	}
	if cfg.Agent == "" {
		cfg.Agent = "tester"
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := listen(t)
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return p, l.Addr().String(), logBuf
}

// echoServer echoes every connection back on a loopback port.
func echoServer(t *testing.T) int {
	t.Helper()
	l := listen(t)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return portOf(t, l.Addr().String())
}

// connect sends CONNECT target to the proxy and returns the connection and
// the proxy's response; on 200 the connection is the tunnel.
func connect(t *testing.T, proxyAddr, target string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return connectOn(t, c, target)
}

func connectOn(t *testing.T, c net.Conn, target string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	c.SetDeadline(time.Time{})
	return c, br, resp
}

func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return string(b)
}

// proxyClient is an HTTP client that goes through the proxy and trusts only
// roots (nil: the host's roots).
func proxyClient(t *testing.T, proxyAddr string, roots *x509.CertPool) *http.Client {
	t.Helper()
	u, err := url.Parse("http://" + proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		Proxy:           http.ProxyURL(u),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// tlsUpstream is an HTTPS server on loopback whose certificate, for name,
// comes from a CA of its own (not the clawrun CA under test). It returns the
// server and a pool that trusts it.
func tlsUpstream(t *testing.T, name string, h http.Handler) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	ca, err := LoadOrCreateCA(t.TempDir(), []string{name})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf(name)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	return srv, pool
}
