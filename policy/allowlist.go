package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// AllowlistEnv names an allowlist file to use instead of the default
// location; the file must then exist.
const AllowlistEnv = "CLAWRUN_ALLOWLIST"

// AllowedRoot is a host directory under which agent files may grant paths.
type AllowedRoot struct {
	Path string // absolute, cleaned; symlinks resolved where it exists
	Mode Mode   // the strongest mode a grant at or below Path may have
	Line int    // line in the allowlist file; 0 for the built-in default
}

// Allowlist is the host's word on what agent files may grant. It lives
// outside every agent's reach ($XDG_CONFIG_HOME/clawrun/allowlist.yaml, or
// /etc/clawrun/allowlist.yaml as root) and is never shrunk or widened by an
// agent file.
type Allowlist struct {
	// Path is the file that was read, or where it was looked for when
	// Default is true. It is protected from read-write grants either way,
	// so an agent cannot create one.
	Path    string
	Default bool // no file: the built-in defaults apply (DefaultAllowlist)
	// AgentDir is the strongest mode for grants inside the directory of the
	// agent file (the current directory for ad-hoc runs); "" allows none.
	AgentDir Mode
	// Roots are further host directories agent files may grant from. When
	// several hold a path, the deepest decides the mode.
	Roots []AllowedRoot
	// Blocked are patterns refused in addition to the built-in ones.
	Blocked []string
	// Capabilities are privileged capabilities (see PrivilegedCapabilities)
	// that agent files may request. Other capabilities need no entry.
	Capabilities []string
	// CgroupParent is cgroup_parent: the cgroup, one name below the
	// hierarchy root (root) or the delegated subtree (rootless), that holds
	// the agents run under this allowlist; "" is DefaultCgroupParent (see
	// ParentName).
	CgroupParent string
	// Total is total: the cap on all those agents together, written to
	// CgroupParent on every run (see total.go). Zero means uncapped.
	Total Limits
	// TotalLine is the line of total: in the file, for messages.
	TotalLine int
}

// AllowlistPath is where the allowlist is read from when neither
// CLAWRUN_ALLOWLIST nor an option names one: /etc/clawrun/allowlist.yaml for
// root, $XDG_CONFIG_HOME/clawrun/allowlist.yaml (~/.config/...) otherwise.
// It is "" when there is no home directory to look in.
func AllowlistPath() string {
	if os.Geteuid() == 0 {
		return "/etc/clawrun/allowlist.yaml"
	}
	if d := configHome(); d != "" {
		return filepath.Join(d, "clawrun", "allowlist.yaml")
	}
	return ""
}

// DefaultAllowlist is what applies on a host without an allowlist file:
// grants read-write inside the agent file's own directory tree (the current
// directory for ad-hoc runs, unless that is /) and inside the user's home
// directory. Blocked paths still apply within both, so granting all of a
// home that holds .ssh is refused.
func DefaultAllowlist(path string) *Allowlist {
	a := &Allowlist{Path: path, Default: true, AgentDir: ReadWrite}
	if h := homeDir(); h != "" && h != "/" {
		a.Roots = []AllowedRoot{{Path: resolveExisting(h), Mode: ReadWrite}}
	}
	return a
}

// FindAllowlist returns the allowlist named by $CLAWRUN_ALLOWLIST (which
// must exist), or the one at AllowlistPath, or DefaultAllowlist when that
// file does not exist. A file that exists but cannot be read or parsed is
// an error: a host that meant to restrict agents must not silently get the
// defaults.
func FindAllowlist() (*Allowlist, error) {
	if p := os.Getenv(AllowlistEnv); p != "" {
		return LoadAllowlist(p)
	}
	p := AllowlistPath()
	if p == "" {
		return DefaultAllowlist(""), nil
	}
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return DefaultAllowlist(p), nil
	}
	return LoadAllowlist(p)
}

var (
	allowlistFields = []string{"version", "agent_dir", "roots", "blocked", "capabilities", "cgroup_parent", "total"}
	rootFields      = []string{"path", "mode"}
)

// LoadAllowlist reads the allowlist file at path. Problems are *FieldError
// values naming the file, as for agent files.
func LoadAllowlist(path string) (*Allowlist, error) {
	fail := func(format string, args ...any) error {
		return &FieldError{File: path, Msg: fmt.Sprintf(format, args...), Rule: RuleAllowlistFile}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fail("%v", err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fail("the allowlist does not exist: create it (see docs/allowlist.md) or unset %s", AllowlistEnv)
	case err != nil:
		return nil, fail("cannot read the allowlist: %v: make it readable by this user", err)
	case !fi.Mode().IsRegular():
		return nil, fail("the allowlist is not a regular file")
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fail("cannot read the allowlist: %v: make it readable by this user", err)
	}
	l := &loader{c: collector{file: path, rule: RuleAllowlistFile}, abs: abs, dir: filepath.Dir(abs)}
	a := l.allowlist(data)
	if err := l.c.err(); err != nil {
		return nil, err
	}
	a.Path = abs
	return a, nil
}

func (l *loader) allowlist(data []byte) *Allowlist {
	a := &Allowlist{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			// An empty allowlist allows nothing beyond blocked-path rules:
			// the strictest reading of what the host wrote.
			return a
		}
		l.syntax(err)
		return a
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.c.add(extra.Line, "", "a second YAML document starts here: the allowlist holds one document; remove the '---' separator")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return a
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return a
	}
	m := l.mapping(root, "", allowlistFields)
	if m == nil {
		return a
	}
	if v := m.get("version"); v != nil {
		if v.Kind != yaml.ScalarNode || v.Value != "1" {
			l.c.add(v.Line, "version", "unsupported version %s: write version: 1 or leave it out", describe(v))
		}
	}
	l.text(m, "", "agent_dir", "none, ro or rw", func(s string) error {
		if s == "none" {
			return nil
		}
		md, err := parseMode(s)
		if err != nil {
			return fmt.Errorf("invalid agent_dir %q: use none, ro or rw (the strongest mode for grants inside an agent file's own directory)", s)
		}
		a.AgentDir = md
		return nil
	})
	if v := m.get("roots"); v != nil {
		a.Roots = l.allowedRoots(v, "roots")
	}
	if v := m.get("blocked"); v != nil {
		for i, s := range l.stringList(v, "blocked", "a list of patterns, e.g. blocked: [.vault-token, /srv/secrets]") {
			if _, err := parsePattern(s.text, homeDir(), "the allowlist"); err != nil {
				l.c.add(s.line, fmt.Sprintf("blocked[%d]", i), "%v", err)
				continue
			}
			a.Blocked = append(a.Blocked, s.text)
		}
	}
	if v := m.get("capabilities"); v != nil {
		for i, s := range l.stringList(v, "capabilities", "a list of capability names, e.g. capabilities: [CAP_SYS_PTRACE]") {
			c, err := capName(s.text)
			if err != nil {
				l.c.add(s.line, fmt.Sprintf("capabilities[%d]", i), "%v", err)
				continue
			}
			a.Capabilities = append(a.Capabilities, c)
		}
	}
	l.text(m, "", "cgroup_parent", "a cgroup name such as clawrun", func(s string) error {
		if err := checkCgroupParent(s); err != nil {
			return err
		}
		a.CgroupParent = s
		return nil
	})
	if v := m.get("total"); v != nil {
		a.Total, a.TotalLine = l.limitsOf(v, "total", totalFields), deref(v).Line
	}
	return a
}

func (l *loader) allowedRoots(v *yaml.Node, path string) []AllowedRoot {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		l.c.add(v.Line, path, "must be a list of {path, mode} entries, not %s", describe(v))
		return nil
	}
	var out []AllowedRoot
	seen := map[string]int{}
	for i, item := range v.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		m := l.mapping(item, ip, rootFields)
		if m == nil {
			continue
		}
		r := AllowedRoot{Mode: ReadOnly, Line: m.line}
		pn := m.get("path")
		if pn == nil {
			l.c.add(m.line, ip+".path", "missing: add path: with a host directory, e.g. path: ~/projects")
			continue
		}
		s, ok := l.scalar(pn, ip+".path", "a path")
		if !ok {
			continue
		}
		p, err := allowlistPath(s)
		if err != nil {
			l.c.add(pn.Line, ip+".path", "%v", err)
			continue
		}
		if first, dup := seen[p]; dup {
			l.c.add(pn.Line, ip+".path", "%s is already listed on line %d: list each root once", p, first)
			continue
		}
		seen[p] = pn.Line
		r.Path = p
		bad := false
		l.text(m, ip, "mode", "ro or rw", func(s string) error {
			md, err := parseMode(s)
			r.Mode = md
			bad = err != nil
			return err
		})
		if !bad {
			out = append(out, r)
		}
	}
	return out
}

// allowlistPath expands a leading ~ (the allowlist is the host's own file,
// so the home directory is unambiguous), requires an absolute path and
// resolves symlinks where the path exists.
func allowlistPath(s string) (string, error) {
	if err := checkPathChars(s); err != nil {
		return "", err
	}
	p := s
	if p == "~" || strings.HasPrefix(p, "~/") {
		h := homeDir()
		if h == "" {
			return "", fmt.Errorf("%q starts with ~ but there is no home directory: write the absolute path", s)
		}
		p = h + p[1:]
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%q is not absolute: allowlist paths start with / or ~/", s)
	}
	return resolveExisting(filepath.Clean(p)), nil
}

type listItem struct {
	text string
	line int
}

// stringList reads a list of scalars, reporting anything else.
func (l *loader) stringList(v *yaml.Node, path, example string) []listItem {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		l.c.add(v.Line, path, "must be %s, not %s", example, describe(v))
		return nil
	}
	var out []listItem
	for i, item := range v.Content {
		s, ok := l.scalar(item, fmt.Sprintf("%s[%d]", path, i), "a string")
		if ok {
			out = append(out, listItem{s, deref(item).Line})
		}
	}
	return out
}

// describe says, for messages, which allowlist applied and what it allows.
func (a *Allowlist) describe(agentDir string) string {
	var roots []string
	if a.AgentDir != "" && agentDir != "" && agentDir != "/" {
		roots = append(roots, fmt.Sprintf("%s (%s, the agent's own directory)", agentDir, a.AgentDir))
	}
	for _, r := range a.Roots {
		roots = append(roots, fmt.Sprintf("%s (%s)", r.Path, r.Mode))
	}
	allowed := "nothing"
	if len(roots) > 0 {
		allowed = strings.Join(roots, ", ")
	}
	switch {
	case a.Default && a.Path != "":
		return fmt.Sprintf("no allowlist at %s, so the defaults allow %s", a.Path, allowed)
	case a.Default:
		return "no allowlist file, so the defaults allow " + allowed
	}
	return fmt.Sprintf("the allowlist %s allows %s", a.Path, allowed)
}

// where names the allowlist for "add a root to ..." advice.
func (a *Allowlist) where() string {
	switch {
	case a.Path == "":
		return "an allowlist (set " + AllowlistEnv + ")"
	case a.Default:
		return a.Path + " (create it, see docs/allowlist.md)"
	}
	return a.Path
}

func homeDir() string {
	h, err := os.UserHomeDir()
	if err != nil || !filepath.IsAbs(h) {
		return ""
	}
	return filepath.Clean(h)
}

func configHome() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return d
	}
	if h := homeDir(); h != "" {
		return filepath.Join(h, ".config")
	}
	return ""
}

// resolveExisting resolves the symlinks of the longest existing prefix of
// p (absolute, clean) and appends the rest, so that a path which does not
// exist yet is still compared in the same terms as resolved grants.
func resolveExisting(p string) string {
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
