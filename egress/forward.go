package egress

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"sync/atomic"
	"time"
)

// serveForward carries a plain HTTP request in absolute form
// ("GET http://host/path"). It never injects secrets: they only travel over
// TLS.
func (p *Proxy) serveForward(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &Record{Mode: ModeHTTP, Method: r.Method, Host: truncate(r.URL.Host, 256)}
	if r.URL.Scheme != "http" || r.URL.Host == "" {
		msg := "this is an egress proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port"
		if r.URL.Scheme == "https" {
			msg = "use CONNECT for https:// destinations (set HTTPS_PROXY)"
		}
		p.refused(w, rec, start, refuse(http.StatusBadRequest, "bad_target", "http_request_error", "%s", msg))
		return
	}
	host, port := r.URL.Hostname(), uint16(80)
	if ps := r.URL.Port(); ps != "" {
		n, err := parsePort(ps)
		if err != nil {
			p.refused(w, rec, start, refuse(http.StatusBadRequest, "bad_target", "http_request_error", "bad destination %q: %v", truncate(r.URL.Host, 100), err))
			return
		}
		port = n
	}
	rec.Host, rec.Port = host, port
	t, bad := p.check(r.Context(), host, port)
	if bad != nil {
		p.refused(w, rec, start, bad)
		return
	}
	rec.Host = t.host
	rec.Allowed = true
	authority := t.hostport()
	if port == 80 {
		authority = hostForURL(t.host)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = t.hostport()
			pr.Out.Host = authority
		},
		Transport: p.plain,
	}
	p.roundTrip(w, r, rp, t, rec, start)
}

// hostForURL brackets an IPv6 address.
func hostForURL(host string) string {
	if ip, ok := parseIP(host); ok && ip.Is6() {
		return "[" + host + "]"
	}
	return host
}

// roundTrip runs rp for a checked target, counting bytes, noting the
// upstream address and status, and logs the request when it is done.
func (p *Proxy) roundTrip(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, t *target, rec *Record, start time.Time) {
	var ip atomic.Value
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if a, ok := info.Conn.RemoteAddr().(*net.TCPAddr); ok {
				ip.Store(a.AddrPort().Addr().Unmap().String())
			}
		},
	}
	ctx := httptrace.WithClientTrace(contextWithTarget(r.Context(), t), trace)
	body := &countingReader{r: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	cw := &countingWriter{ResponseWriter: w}
	var upstreamErr error
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		upstreamErr = err
		status, kind := http.StatusBadGateway, "destination_unavailable"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			status, kind = http.StatusGatewayTimeout, "connection_timeout"
		}
		(&refusal{status: status, proxy: kind, msg: "clawrun egress: " + t.hostport() + ": " + upstreamMessage(err)}).write(w)
	}
	rp.ErrorLog = log.New(io.Discard, "", 0)
	// The reverse proxy aborts with a panic when the response breaks off
	// after its headers were sent; the request is logged all the same.
	defer func() {
		v := recover()
		if s, ok := ip.Load().(string); ok {
			rec.IP = s
		}
		rec.Status = cw.status
		rec.BytesUp = body.n.Load()
		rec.BytesDown = cw.n
		if upstreamErr != nil {
			rec.Error = upstreamErr.Error()
		} else if v != nil {
			rec.Error = "response cut off: the client or the upstream went away"
		}
		p.log.write(rec, start)
		if v != nil {
			panic(v)
		}
	}()
	rp.ServeHTTP(cw, r.WithContext(ctx))
}

// upstreamMessage shortens an upstream error for the client.
func upstreamMessage(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "upstream timed out"
	default:
		return err.Error()
	}
}

type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// countingWriter notes the status and counts the body bytes sent to the
// client. Unwrap lets the reverse proxy flush (server-sent events) through it.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
