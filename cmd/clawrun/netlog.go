package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/clawrun/clawrun/egress"
	"github.com/clawrun/clawrun/runtime"
)

// printNetLog prints the connection log of the container name, or of the
// agent name under serve (DATA/logs/NAME.net.log in both cases unless the
// container recorded another path).
func printNetLog(w io.Writer, rt *runtime.Runtime, name string, asJSON bool) error {
	path := rt.NetLogPath(name)
	if in, err := rt.Get(name); err == nil && in.Meta != nil && in.Meta.NetLog != "" {
		path = in.Meta.NetLog
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no connection log for %s at %s: only an agent with network: {egress: [...]} has one, once it ran", name, path)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if asJSON {
		_, err := io.Copy(w, f)
		return err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var r egress.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(w, "(unreadable line: %v)\n", err)
			continue
		}
		fmt.Fprintln(w, formatRecord(r))
	}
	return sc.Err()
}

// formatRecord is one log record as a line for people.
func formatRecord(r egress.Record) string {
	verdict := "ALLOW"
	if !r.Allowed {
		verdict = "DENY "
	}
	dest := r.Host
	if r.Port != 0 {
		dest = fmt.Sprintf("%s:%d", r.Host, r.Port)
	}
	parts := []string{r.Time.Local().Format(time.DateTime), verdict, r.Mode, r.Method, dest}
	if r.IP != "" {
		parts = append(parts, "("+r.IP+")")
	}
	if r.Status != 0 {
		parts = append(parts, fmt.Sprintf("%d", r.Status))
	}
	if r.Reason != "" {
		parts = append(parts, r.Reason)
	}
	if r.Secrets != "" {
		parts = append(parts, "secrets="+r.Secrets)
	}
	parts = append(parts, fmt.Sprintf("up=%d down=%d %.0fms", r.BytesUp, r.BytesDown, r.DurationMS))
	if r.Error != "" {
		parts = append(parts, "error: "+r.Error)
	}
	return strings.Join(parts, " ")
}
