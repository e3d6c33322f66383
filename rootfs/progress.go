package rootfs

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// progress reports a pull: on a terminal one line per layer, rewritten as
// bytes arrive; otherwise (a log, CI) one line when each layer is done.
type progress struct {
	w   io.Writer
	tty bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

type layerProgress struct {
	p     *progress
	label string
	size  int64 // -1: unknown
	mu    sync.Mutex
	n     int64
	last  time.Time
	start time.Time
}

func (p *progress) layer(i, n int, digest string, size int64) *layerProgress {
	short := strings.TrimPrefix(digest, "sha256:")
	short = short[:min(12, len(short))]
	return &layerProgress{p: p, label: fmt.Sprintf("layer %d/%d %s", i+1, n, short), size: size, start: time.Now()}
}

func (l *layerProgress) add(n int64) {
	if l == nil || l.p.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n += n
	if !l.p.tty || time.Since(l.last) < 100*time.Millisecond {
		return
	}
	l.last = time.Now()
	fmt.Fprintf(l.p.w, "\r\033[K%s %s", l.label, l.amount())
}

func (l *layerProgress) amount() string {
	if l.size >= 0 {
		return formatBytes(l.n) + " / " + formatBytes(l.size)
	}
	return formatBytes(l.n)
}

func (l *layerProgress) done() {
	if l == nil || l.p.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	prefix := ""
	if l.p.tty {
		prefix = "\r\033[K"
	}
	fmt.Fprintf(l.p.w, "%s%s %s done in %s\n", prefix, l.label, formatBytes(l.n), time.Since(l.start).Round(time.Millisecond))
}
