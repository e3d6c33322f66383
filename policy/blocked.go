package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// BuiltinBlocked are the paths no grant may reach, whatever the allowlist
// says; the allowlist can only add to them. A pattern starting with / names
// a host path (and everything below it); any other pattern matches that
// name, or that trailing run of names, anywhere: ".ssh" blocks every .ssh
// directory, ".config/gcloud" every gcloud directory inside a .config. Each
// name may use the glob characters * ? [ ]. Private key files (*.pem, *.key
// holding "PRIVATE KEY") and clawrun's own directories are blocked as well,
// see blockedPatterns.
var BuiltinBlocked = []string{
	// credentials of tools that act on the user's behalf
	".ssh", ".gnupg", ".aws", ".azure", ".kube", ".docker", ".config/gcloud",
	".netrc", ".npmrc", ".pypirc", ".git-credentials",
	"id_rsa*", "id_ed25519*", "id_ecdsa*", "id_dsa*",
	// dotenv files hold API keys; templates are commonly committed and are
	// allowed (see envTemplates)
	".env", ".env.*",
	// container engine sockets and state: access to them is root on the host
	"docker.sock", "containerd.sock", "podman.sock", "crio.sock", "buildkitd.sock",
	"/run/docker", "/run/containerd", "/run/podman", "/run/crio", "/run/buildkit",
	"/var/lib/docker", "/var/lib/containerd", "/var/lib/containers",
	// the kernel's views and the host's password hashes
	"/proc", "/sys", "/dev", "/etc/shadow", "/etc/gshadow",
}

// keyFilePatterns are blocked only when the file holds a private key, so a
// certificate (*.pem) can still be granted.
var keyFilePatterns = []string{"*.pem", "*.key"}

// envTemplates are .env.* names that by convention hold no secrets.
var envTemplates = []string{".env.example", ".env.sample", ".env.template", ".env.dist"}

// maxScan bounds how many entries below a granted directory are examined
// for blocked names. A larger tree is refused rather than granted unchecked.
const maxScan = 200000

// pattern is one blocked-path rule.
type pattern struct {
	text    string   // as written, for messages
	abs     bool     // anchored at /: matches that path and everything below
	parts   []string // one glob per path component
	key     bool     // matches only files holding a private key
	literal bool     // parts are names, not globs (paths from the environment)
	globs   []glob   // parts compiled (nil when literal)
	origin  string   // "built-in", "the allowlist", "clawrun's state" ...
}

// parsePattern reads a pattern: "/abs/path", "~/path" (abs under home) or a
// relative run of names. Globs follow path.Match.
func parsePattern(s, home, origin string) (pattern, error) {
	if err := checkPathChars(s); err != nil {
		return pattern{}, fmt.Errorf("pattern %q %v", s, err)
	}
	p := pattern{text: s, origin: origin}
	t := s
	if t == "~" || strings.HasPrefix(t, "~/") {
		if home == "" {
			return pattern{}, fmt.Errorf("pattern %q starts with ~ but there is no home directory", s)
		}
		t = home + t[1:]
	}
	if strings.HasPrefix(t, "/") {
		p.abs = true
		t = path.Clean(t)
		if t == "/" {
			return pattern{}, fmt.Errorf("pattern %q blocks everything: name a directory or file", s)
		}
	}
	for _, c := range strings.Split(strings.Trim(t, "/"), "/") {
		switch c {
		case "":
			continue
		case ".", "..":
			return pattern{}, fmt.Errorf("pattern %q: '.' and '..' are not allowed in a pattern", s)
		}
		if _, err := path.Match(c, ""); err != nil {
			return pattern{}, fmt.Errorf("pattern %q: bad glob %q: %v", s, c, err)
		}
		p.parts = append(p.parts, c)
	}
	if len(p.parts) == 0 {
		return pattern{}, fmt.Errorf("pattern %q is empty", s)
	}
	p.globs = make([]glob, len(p.parts))
	for i, c := range p.parts {
		p.globs[i] = compileGlob(c)
	}
	return p, nil
}

// glob is one component of a pattern, compiled: the walk below a grant
// matches every entry against every relative pattern (up to maxScan
// entries on each run), and path.Match was most of that time. The common
// shapes, a plain name, "prefix*" and "*suffix", are string comparisons;
// anything else goes to path.Match.
type glob struct {
	kind globKind
	s    string // the name, prefix or suffix; the whole glob for globMatch
}

type globKind uint8

const (
	globName globKind = iota
	globPrefix
	globSuffix
	globMatch
)

func compileGlob(c string) glob {
	const meta = `*?[\`
	switch {
	case !strings.ContainsAny(c, meta):
		return glob{globName, c}
	case strings.HasSuffix(c, "*") && !strings.ContainsAny(c[:len(c)-1], meta):
		return glob{globPrefix, c[:len(c)-1]}
	case strings.HasPrefix(c, "*") && !strings.ContainsAny(c[1:], meta):
		return glob{globSuffix, c[1:]}
	}
	return glob{globMatch, c}
}

// match is path.Match(g, name) for a name (no '/').
func (g glob) match(name string) bool {
	switch g.kind {
	case globName:
		return name == g.s
	case globPrefix:
		return strings.HasPrefix(name, g.s)
	case globSuffix:
		return strings.HasSuffix(name, g.s)
	}
	ok, _ := path.Match(g.s, name)
	return ok
}

func mustPattern(s, origin string) pattern {
	p, err := parsePattern(s, "", origin)
	if err != nil {
		panic(err)
	}
	return p
}

// absPattern blocks one host path exactly (no globbing: the path comes from
// the environment, not from a person writing a pattern).
func absPattern(p, origin string) pattern {
	p = filepath.Clean(p)
	return pattern{text: p, abs: true, parts: strings.Split(strings.Trim(p, "/"), "/"), origin: origin, literal: true}
}

// components splits an absolute clean path; "/" has none.
func components(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func (p pattern) matchPart(i int, name string) bool {
	if p.literal {
		return p.parts[i] == name
	}
	ok := p.globs[i].match(name)
	if ok && p.parts[i] == ".env.*" {
		for _, t := range envTemplates {
			if name == t {
				return false
			}
		}
	}
	return ok
}

// matchRun reports whether comps[i:i+len(p.parts)] match the pattern.
func (p pattern) matchRun(comps []string, i int) bool {
	if i < 0 || i+len(p.parts) > len(comps) {
		return false
	}
	for j := range p.parts {
		if !p.matchPart(j, comps[i+j]) {
			return false
		}
	}
	return true
}

// covers reports whether the path comps lies at or below a path the
// pattern blocks. Key patterns never cover: they need the file's content.
func (p pattern) covers(comps []string) bool {
	if p.key {
		return false
	}
	if p.abs {
		return p.matchRun(comps, 0)
	}
	for i := 0; i+len(p.parts) <= len(comps); i++ {
		if p.matchRun(comps, i) {
			return true
		}
	}
	return false
}

// holds reports whether an absolute pattern names a path strictly below
// comps, so a grant of comps would expose it.
func (p pattern) holds(comps []string) bool {
	if !p.abs || len(comps) >= len(p.parts) {
		return false
	}
	for i, c := range comps {
		if !p.matchPart(i, c) {
			return false
		}
	}
	return true
}

// endsAt reports whether a relative pattern matches the trailing names of
// comps: the walk below a grant uses it on every entry.
func (p pattern) endsAt(comps []string) bool {
	return !p.abs && p.matchRun(comps, len(comps)-len(p.parts))
}

func (p pattern) describe() string {
	return fmt.Sprintf("blocked pattern %q (%s)", p.text, p.origin)
}

// blockedPatterns builds the full list: built-in patterns, private keys,
// clawrun's own directories, the home-relative credential directories as
// absolute paths (so they are found without walking), and the allowlist's.
func blockedPatterns(a *Allowlist, clawrunDirs []string) []pattern {
	var out []pattern
	home := homeDir()
	for _, s := range BuiltinBlocked {
		p := mustPattern(s, "built-in")
		out = append(out, p)
		if p.abs {
			// /var/run is usually a link to /run: block the real path too.
			if r := resolveExisting(s); r != s {
				out = append(out, absPattern(r, "built-in"))
			}
		} else if home != "" && strings.HasPrefix(s, ".") && !strings.ContainsAny(s, "*?[") {
			out = append(out, absPattern(filepath.Join(resolveExisting(home), s), "built-in"))
		}
	}
	for _, s := range keyFilePatterns {
		p := mustPattern(s, "built-in: private key")
		p.key = true
		out = append(out, p)
	}
	for _, d := range clawrunDirs {
		if filepath.IsAbs(d) {
			out = append(out, absPattern(d, "clawrun's own state, data and config"))
			if r := resolveExisting(filepath.Clean(d)); r != filepath.Clean(d) {
				out = append(out, absPattern(r, "clawrun's own state, data and config"))
			}
		}
	}
	if a != nil {
		for _, s := range a.Blocked {
			if p, err := parsePattern(s, home, "the allowlist"); err == nil {
				out = append(out, p)
				if lit := "/" + strings.Join(p.parts, "/"); p.abs && !strings.ContainsAny(s, "*?[") {
					if r := resolveExisting(lit); r != lit {
						out = append(out, absPattern(r, "the allowlist"))
					}
				}
			}
		}
	}
	return out
}

// clawrunDirs lists clawrun's own state, data and config directories in
// their default locations, for root and for the current user alike.
func defaultClawrunDirs() []string {
	dirs := []string{"/run/clawrun", "/var/lib/clawrun", "/etc/clawrun",
		filepath.Join(os.TempDir(), "clawrun-"+strconv.Itoa(os.Geteuid()))}
	if d := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		dirs = append(dirs, filepath.Join(d, "clawrun"))
	}
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		dirs = append(dirs, filepath.Join(d, "clawrun"))
	}
	if h := homeDir(); h != "" {
		dirs = append(dirs, filepath.Join(h, ".local", "share", "clawrun"), filepath.Join(h, ".config", "clawrun"))
	}
	if d := configHome(); d != "" {
		dirs = append(dirs, filepath.Join(d, "clawrun"))
	}
	return dirs
}

// blockedHit is one blocked path a grant would expose.
type blockedHit struct {
	path string
	pat  pattern
}

// blockedAt checks the host path p itself (absolute, clean): it must not
// lie at or below a blocked path, nor be a private key file.
func blockedAt(pats []pattern, p string) (pattern, bool) {
	comps := components(p)
	for _, pat := range pats {
		if pat.covers(comps) {
			return pat, true
		}
	}
	for _, pat := range pats {
		if pat.key && len(comps) > 0 && pat.matchRun(comps, len(comps)-1) && holdsPrivateKey(p) {
			return pat, true
		}
	}
	return pattern{}, false
}

// enoughHits bounds how many blocked paths one message lists.
const enoughHits = 3

// blockedNamed finds the blocked paths inside dir that absolute patterns
// name: no walk is needed, and they are found whether or not they exist
// yet (a read-write grant could create them).
func blockedNamed(pats []pattern, dir string) []blockedHit {
	var hits []blockedHit
	base := components(dir)
	for _, pat := range pats {
		if pat.holds(base) {
			hits = append(hits, blockedHit{"/" + strings.Join(pat.parts, "/"), pat})
			if len(hits) == enoughHits {
				break
			}
		}
	}
	return hits
}

// blockedWalk walks the directory dir for blocked names and private keys.
// It stops after a few hits; err is set when the tree is too large to check.
func blockedWalk(pats []pattern, dir string) ([]blockedHit, error) {
	const enough = enoughHits
	var hits []blockedHit
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return nil, nil
	}
	n := 0
	errTooBig := errors.New("too big")
	// Relative patterns only ever look at an entry's last names.
	depth := 1
	for _, pat := range pats {
		if !pat.abs {
			depth = max(depth, len(pat.parts))
		}
	}
	werr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// What this user cannot read, an agent running as this user
			// cannot read either.
			if d != nil && d.IsDir() && p != dir {
				return fs.SkipDir
			}
			return nil
		}
		if p == dir {
			return nil
		}
		if n++; n > maxScan {
			return errTooBig
		}
		comps := lastComponents(p, depth)
		for _, pat := range pats {
			if pat.abs {
				continue
			}
			if pat.key {
				if d.Type().IsRegular() && pat.matchRun(comps, len(comps)-1) && holdsPrivateKey(p) {
					hits = append(hits, blockedHit{p, pat})
					break
				}
				continue
			}
			if pat.endsAt(comps) {
				hits = append(hits, blockedHit{p, pat})
				if d.IsDir() {
					if len(hits) >= enough {
						return fs.SkipAll
					}
					return fs.SkipDir
				}
				break
			}
		}
		if len(hits) >= enough {
			return fs.SkipAll
		}
		return nil
	})
	if errors.Is(werr, errTooBig) {
		return hits, fmt.Errorf("holds more than %d entries, too many to check for blocked paths", maxScan)
	}
	return hits, nil
}

// lastComponents is the last n names of the absolute clean path p (all of
// them when it has fewer), without splitting the whole path.
func lastComponents(p string, n int) []string {
	i := len(p)
	for k := 0; k < n && i > 0; k++ {
		j := strings.LastIndexByte(p[:i], '/')
		if j < 0 {
			break
		}
		i = j
	}
	return components(p[i:])
}

// holdsPrivateKey reports whether the regular file p holds a PEM private
// key ("-----BEGIN ... PRIVATE KEY-----", which also covers OpenSSH keys).
// Only the first 64 KiB are read; a FIFO is never opened for reading.
func holdsPrivateKey(p string) bool {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	buf, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	return bytes.Contains(buf, []byte("PRIVATE KEY-----"))
}
