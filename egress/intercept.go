package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// intercept terminates a CONNECT tunnel to a secret host: the agent's TLS
// ends here with a certificate of the clawrun CA for that host, and each
// request inside goes on over a new TLS connection to the real host with the
// secrets injected.
func (p *Proxy) intercept(w http.ResponseWriter, r *http.Request, rec *Record, start time.Time, sh *secretHost) {
	rec.Mode = ModeIntercept
	rec.Allowed = true
	leaf, err := p.ca.Leaf(sh.host)
	if err != nil {
		rec.Status = http.StatusInternalServerError
		rec.Error = err.Error()
		p.log.write(rec, start)
		(&refusal{status: http.StatusInternalServerError, proxy: "proxy_internal_error", msg: "clawrun egress: " + err.Error()}).write(w)
		return
	}
	client, buffered, ok := p.hijack(w, nil)
	if !ok {
		rec.Error = "client connection could not be taken over"
		p.log.write(rec, start)
		return
	}
	rec.Status = http.StatusOK
	defer p.untrack(client)
	cc := &countConn{Conn: client, r: io.MultiReader(bytes.NewReader(buffered), client)}
	tlsConn := tls.Server(cc, &tls.Config{
		Certificates: []tls.Certificate{*leaf},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	})
	hctx, cancel := context.WithTimeout(p.ctx, p.timeouts.TLSHandshake)
	err = tlsConn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		tlsConn.Close()
		rec.Error = "TLS handshake with the agent failed (does it trust the clawrun CA?): " + err.Error()
		rec.BytesUp, rec.BytesDown = cc.up.Load(), cc.down.Load()
		p.log.write(rec, start)
		return
	}
	srv := p.server(p.injectHandler(sh, ModeIntercept))
	srv.Serve(newOneConnListener(tlsConn))
	rec.BytesUp, rec.BytesDown = cc.up.Load(), cc.down.Load()
	p.log.write(rec, start)
}

// countConn counts the bytes of a connection and reads first what the
// client sent before the tunnel was up.
type countConn struct {
	net.Conn
	r        io.Reader
	up, down atomic.Int64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.up.Add(int64(n))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.down.Add(int64(n))
	return n, err
}
