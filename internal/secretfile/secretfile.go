// Package secretfile reads the 0600 KEY=VALUE files that hold clawrun's
// secrets (Slack tokens, agents' API keys), and picks values from a file
// and the environment. It never prints a value.
package secretfile

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Read reads KEY=VALUE lines from path (blank lines, # comments, an
// "export " prefix and quotes around a value are allowed). The file is
// refused unless it is a regular file owned by the user and readable by
// nobody else (mode 0600 or stricter). example is a KEY=… shown when a line
// is malformed.
func Read(path, example string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the file checked is the file read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secrets file %s has mode %04o, so other users can read the secrets in it: run chmod 600 %s", path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return nil, fmt.Errorf("secrets file %s is owned by uid %d, not by you (uid %d): a file someone else controls cannot supply your secrets; chown it or use your own copy", path, st.Uid, os.Getuid())
	}
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			// The line itself is not quoted: it may hold a secret.
			return nil, fmt.Errorf("secrets file %s line %d: expected KEY=VALUE (e.g. %s)", path, n, example)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vals[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("secrets file %s: %w", path, err)
	}
	return vals, nil
}

// Lookup returns the values of names: from the file at path (if not empty),
// overridden by the environment, where set and not empty. Names without a
// value are left out.
func Lookup(path string, names []string) (map[string]string, error) {
	file := map[string]string{}
	if path != "" {
		var err error
		if file, err = Read(path, "API_KEY=…"); err != nil {
			return nil, err
		}
	}
	out := map[string]string{}
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok && v != "" {
			out[n] = v
		} else if v := file[n]; v != "" {
			out[n] = v
		}
	}
	return out, nil
}
