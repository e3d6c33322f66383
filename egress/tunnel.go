package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// serveConnect handles "CONNECT host:port": refused, intercepted (a secret
// host), or a plain tunnel to a checked address.
func (p *Proxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &Record{Mode: ModeConnect, Method: r.Method}
	host, portText, err := net.SplitHostPort(r.Host)
	var port uint16
	if err == nil {
		port, err = parsePort(portText)
	}
	if err != nil || host == "" {
		rec.Host = truncate(r.Host, 256)
		p.refused(w, rec, start, refuse(http.StatusBadRequest, "bad_target", "http_request_error",
			"bad CONNECT target %q: want host:port", truncate(r.Host, 100)))
		return
	}
	rec.Host, rec.Port = host, port
	t, bad := p.check(r.Context(), host, port)
	if bad != nil {
		p.refused(w, rec, start, bad)
		return
	}
	rec.Host = t.host
	if sh := p.hosts[t.hostport()]; sh != nil && sh.intercept {
		p.intercept(w, r, rec, start, sh)
		return
	}
	upstream, err := p.dial(r.Context(), t)
	if err != nil {
		rec.Allowed = true
		rec.Status = http.StatusBadGateway
		rec.Error = err.Error()
		p.log.write(rec, start)
		(&refusal{status: http.StatusBadGateway, proxy: "destination_unavailable", msg: "clawrun egress: " + err.Error()}).write(w)
		return
	}
	rec.Allowed = true
	rec.IP = remoteIP(upstream)
	client, buffered, ok := p.hijack(w, upstream)
	if !ok {
		rec.Error = "client connection could not be taken over"
		p.log.write(rec, start)
		return
	}
	rec.Status = http.StatusOK
	rec.BytesUp, rec.BytesDown = p.splice(client, buffered, upstream)
	p.log.write(rec, start)
}

// refused answers and logs a refusal.
func (p *Proxy) refused(w http.ResponseWriter, rec *Record, start time.Time, bad *refusal) {
	rec.Allowed = false
	rec.Reason = bad.reason
	rec.Status = bad.status
	rec.Error = bad.detail
	p.log.write(rec, start)
	bad.write(w)
}

// hijack takes the client connection over, answers 200 and returns the
// connection with whatever the client already sent after its request (a TLS
// ClientHello often comes right behind the CONNECT). On failure it closes
// upstream.
func (p *Proxy) hijack(w http.ResponseWriter, upstream io.Closer) (net.Conn, []byte, bool) {
	fail := func(c io.Closer) (net.Conn, []byte, bool) {
		if c != nil {
			c.Close()
		}
		if upstream != nil {
			upstream.Close()
		}
		return nil, nil, false
	}
	client, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fail(nil)
	}
	// The server's header deadline still applies to a hijacked connection.
	if err := client.SetDeadline(time.Time{}); err != nil {
		return fail(client)
	}
	if !p.track(client) {
		return fail(client)
	}
	var buffered []byte
	if n := rw.Reader.Buffered(); n > 0 {
		buffered, _ = rw.Reader.Peek(n)
		buffered = append([]byte(nil), buffered...)
	}
	client.SetWriteDeadline(time.Now().Add(p.timeouts.RequestHeader))
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		p.untrack(client)
		return fail(client)
	}
	client.SetWriteDeadline(time.Time{})
	return client, buffered, true
}

// splice copies both ways until both sides are done, or neither side has
// sent anything for the idle timeout, or the proxy closes. It closes both
// connections and returns the bytes sent up (client to upstream) and down.
func (p *Proxy) splice(client net.Conn, buffered []byte, upstream net.Conn) (up, down int64) {
	if !p.track(upstream) {
		client.Close()
		upstream.Close()
		p.untrack(client)
		return 0, 0
	}
	defer func() {
		client.Close()
		upstream.Close()
		p.untrack(client)
		p.untrack(upstream)
	}()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if len(buffered) > 0 {
			n, err := upstream.Write(buffered)
			up += int64(n)
			if err != nil {
				client.Close()
				upstream.Close()
				return
			}
		}
		n := p.copyIdle(upstream, client, &last)
		up += n
	}()
	go func() {
		defer wg.Done()
		down = p.copyIdle(client, upstream, &last)
	}()
	wg.Wait()
	return up, down
}

// copyIdle copies src to dst. A read that times out ends the copy only when
// neither direction has moved a byte for the idle timeout (last is shared by
// both directions). At EOF it half-closes dst, so the other direction can
// finish; on any other end it closes both.
func (p *Proxy) copyIdle(dst, src net.Conn, last *atomic.Int64) int64 {
	idle := p.timeouts.Idle
	buf := make([]byte, 32<<10)
	var total int64
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			dst.SetWriteDeadline(time.Now().Add(idle))
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				src.Close()
				dst.Close()
				return total
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
			continue
		}
		if errors.Is(err, io.EOF) {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return total
			}
		}
		src.Close()
		dst.Close()
		return total
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap().String()
	}
	return ""
}

// oneConnListener serves exactly one connection to an http.Server: Accept
// returns it once, then blocks until it is closed.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{closed: make(chan struct{})}
	l.conn = &notifyConn{Conn: c, closed: l.closed}
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

type notifyConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// contextWithTarget hands a checked target to the upstream transport's dial.
func contextWithTarget(ctx context.Context, t *target) context.Context {
	return context.WithValue(ctx, targetKey{}, t)
}
