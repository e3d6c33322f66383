package egress

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Record is one line of the connection log: one CONNECT tunnel, or one HTTP
// request (plain, base-URL or intercepted). It holds no header values, no
// path or query (either may carry credentials) and never a secret's value:
// only the name of a secret the proxy injected.
type Record struct {
	Time    time.Time `json:"time"`
	Agent   string    `json:"agent"`
	Mode    string    `json:"mode"` // connect, intercept, http, base_url
	Method  string    `json:"method"`
	Host    string    `json:"host"`
	Port    uint16    `json:"port,omitempty"`
	IP      string    `json:"ip,omitempty"`
	Allowed bool      `json:"allowed"`
	// Reason says why a request was refused (not_in_allowlist, ip_literal,
	// non_public_address, resolve_failed, bad_target, host_mismatch).
	Reason string `json:"reason,omitempty"`
	// Status is the HTTP status the client got from the proxy or upstream.
	Status     int     `json:"status,omitempty"`
	Secrets    string  `json:"secrets,omitempty"` // names of injected secrets, comma-separated
	BytesUp    int64   `json:"bytes_up"`
	BytesDown  int64   `json:"bytes_down"`
	DurationMS float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
}

// Modes of Record.
const (
	ModeConnect   = "connect"
	ModeIntercept = "intercept"
	ModeHTTP      = "http"
	ModeBaseURL   = "base_url"
)

// connLog writes records as JSON lines. As a second line of defence it
// replaces any secret value that might have reached a record (say, inside an
// upstream error message) before the line is written.
type connLog struct {
	mu      sync.Mutex
	w       io.Writer
	agent   string
	secrets [][]byte
}

func newConnLog(w io.Writer, agent string, secretValues []string) *connLog {
	l := &connLog{w: w, agent: agent}
	for _, v := range secretValues {
		l.secrets = append(l.secrets, []byte(v))
		// JSON may escape characters of the value, so redact that form too.
		if enc, err := json.Marshal(v); err == nil {
			if q := enc[1 : len(enc)-1]; !bytes.Equal(q, []byte(v)) {
				l.secrets = append(l.secrets, q)
			}
		}
	}
	return l
}

func (l *connLog) write(r *Record, start time.Time) {
	if l.w == nil {
		return
	}
	r.Time = start.UTC()
	r.Agent = l.agent
	r.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	line, err := json.Marshal(r)
	if err != nil {
		return
	}
	for _, s := range l.secrets {
		line = bytes.ReplaceAll(line, s, []byte("[redacted]"))
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	// A failing log writer must not stop traffic; the caller owns the writer
	// and its errors.
	_, _ = l.w.Write(line)
}
