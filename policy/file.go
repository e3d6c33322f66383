package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultFileNames are looked up, in order, in the current directory when no
// agent file is given.
var DefaultFileNames = []string{"clawrun.yaml", "clawrun.yml"}

// File is a loaded and fully validated agent file.
type File struct {
	Path    string           // absolute path of the file
	Version int              // schema version (1)
	Agents  map[string]*Plan // by agent name
	Order   []string         // agent names in file order
	// SlackAPIURL is slack.api_url: the Slack Web API base URL, "" for
	// Slack's own.
	SlackAPIURL string
	// Allowlist is the host allowlist the grants were checked against.
	Allowlist *Allowlist
}

// Agent returns the plan of the named agent.
func (f *File) Agent(name string) (*Plan, error) {
	if p, ok := f.Agents[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("agent %q is not defined in %s (defined: %s)", name, f.Path, strings.Join(f.Order, ", "))
}

// FindFile returns the agent file to use: explicit if non-empty, otherwise
// clawrun.yaml or clawrun.yml in the current directory.
func FindFile(explicit string) (string, error) {
	if explicit != "" {
		fi, err := os.Stat(explicit)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("agent file %s does not exist: check the --config path", explicit)
			}
			return "", fmt.Errorf("agent file %s: %w", explicit, err)
		}
		if fi.IsDir() {
			return "", fmt.Errorf("agent file %s is a directory: pass the file itself, e.g. --config %s", explicit, filepath.Join(explicit, DefaultFileNames[0]))
		}
		return explicit, nil
	}
	var found []string
	for _, name := range DefaultFileNames {
		fi, err := os.Stat(name)
		if err == nil && !fi.IsDir() {
			found = append(found, name)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("agent file %s: %w", name, err)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("no agent file: create %s in the current directory (see docs/agent-file.md) or pass --config PATH", DefaultFileNames[0])
	}
	return "", fmt.Errorf("both %s exist in the current directory: remove one, or pass --config PATH", strings.Join(found, " and "))
}

// Load reads, validates and resolves the agent file at path, and checks its
// grants against the host allowlist (see Option; by default the one named
// by $CLAWRUN_ALLOWLIST or AllowlistPath) and the blocked paths. On any
// problem it returns a nil File and every problem found, each a
// *FieldError, joined with errors.Join (see FieldErrors). Errors name the
// file as path was given; an unreadable or malformed allowlist is reported
// alone, naming the allowlist.
func Load(path string, opts ...Option) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent file: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("agent file %s: %w", path, err)
	}
	ck, err := newChecker(collectOptions(opts), filepath.Dir(abs), abs)
	if err != nil {
		return nil, err
	}
	l := &loader{c: collector{file: path}, abs: abs, dir: filepath.Dir(abs), ck: ck}
	f := l.load(data)
	if err := l.c.err(); err != nil {
		return nil, err
	}
	f.Allowlist = ck.allow
	for _, p := range f.Agents {
		ck.allow.applyTotal(p)
	}
	return f, nil
}

type loader struct {
	c   collector
	abs string   // absolute path of the file
	dir string   // base of relative paths
	ck  *checker // host rules; nil while reading the allowlist itself
	rw  []rwGrant
}

// rwGrant is a read-write grant waiting for self-edit protection, which
// needs every protected file of the whole file (custom seccomp profiles of
// later agents included).
type rwGrant struct {
	field string
	line  int
	host  string
}

var (
	topFields   = []string{"version", "agents", "slack"}
	agentFields = []string{"rootfs", "command", "image", "env", "workdir", "user", "grants", "network", "limits", "seccomp", "tmp_size", "idmap", "hostname", "capabilities", "slack", "workspace", "writable_rootfs", "secrets"}
	grantFields = []string{"host", "path", "mode", "noexec"}
	limitFields = []string{"memory", "cpus", "pids", "io_weight", "enforce"}
	// totalFields are the allowlist's total: the cgroup limits that make
	// sense for a parent (no enforce: a host total is never relaxed).
	totalFields = []string{"memory", "cpus", "pids"}
)

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (l *loader) syntax(err error) {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	l.c.add(line, "", "invalid YAML: %s: fix the syntax (indent with spaces, quote values containing ': ' or '#')", msg)
}

func (l *loader) load(data []byte) *File {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.c.add(0, "", "the file is empty: declare at least one agent under agents: (see docs/agent-file.md)")
		} else {
			l.syntax(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.c.add(extra.Line, "", "a second YAML document starts here: an agent file holds one document; remove the '---' separator")
	} else if !errors.Is(err, io.EOF) {
		l.syntax(err)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			l.c.add(0, "", "the file is empty: declare at least one agent under agents: (see docs/agent-file.md)")
			return nil
		}
		root = root.Content[0]
	}
	m := l.mapping(root, "", topFields)
	if m == nil {
		return nil
	}
	f := &File{Path: l.abs, Version: 1, Agents: map[string]*Plan{}}
	if v := m.get("version"); v != nil {
		if v.Kind != yaml.ScalarNode || v.Value != "1" {
			l.c.add(v.Line, "version", "unsupported version %s: this clawrun reads version 1; write version: 1 or leave it out", describe(v))
		}
	}
	if v := m.get("slack"); v != nil {
		f.SlackAPIURL = l.slackTop(v)
	}
	agents := m.get("agents")
	if agents == nil {
		l.c.add(m.line, "agents", "missing: declare at least one agent, e.g.\n  agents:\n    demo:\n      rootfs: ./rootfs\n      command: [\"/agent\"]")
		return nil
	}
	am := l.mapping(agents, "agents", nil)
	if am == nil {
		return nil
	}
	if len(am.order) == 0 {
		l.c.add(agents.Line, "agents", "no agents declared: add at least one agent under agents:")
	}
	before := l.c.n()
	for _, name := range am.order {
		if err := ValidName(name); err != nil {
			l.c.add(am.keys[name].Line, "agents."+name, "%v", err)
			continue
		}
		if p := l.agent(name, am.keys[name], am.vals[name]); p != nil {
			f.Agents[name] = p
			f.Order = append(f.Order, name)
		}
	}
	for _, g := range l.rw {
		for _, is := range l.ck.selfEdit(g.host) {
			l.c.addRule(g.line, g.field, is.rule, "%s", is.msg)
		}
	}
	if l.c.n() != before {
		return nil
	}
	return f
}

// fields is a YAML mapping whose keys were checked against the known names.
type fields struct {
	line  int
	order []string
	keys  map[string]*yaml.Node
	vals  map[string]*yaml.Node
}

// get returns the value of key, or nil when it is absent or null: an empty
// "limits:" means the same as no limits line at all.
func (f *fields) get(key string) *yaml.Node {
	v := f.vals[key]
	if v == nil || isNull(v) {
		return nil
	}
	return v
}

// mapping checks that n is a mapping and that every key is known (when known
// is non-nil) and unique. It returns nil after reporting if n is no mapping.
func (l *loader) mapping(n *yaml.Node, path string, known []string) *fields {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		what := "KEY: value lines"
		if known != nil {
			what = "fields " + strings.Join(known, ", ")
		}
		l.c.add(n.Line, fieldName(path), "must be a mapping (%s), not %s", what, describe(n))
		return nil
	}
	f := &fields{line: n.Line, keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		sub := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			l.c.add(k.Line, fieldName(path), "a key must be a plain name, not %s", describe(k))
			continue
		}
		if k.Value == "<<" {
			l.c.add(k.Line, sub, "merge keys (<<) are not supported: write the fields out")
			continue
		}
		if prev, dup := f.keys[k.Value]; dup {
			l.c.add(k.Line, sub, "defined twice (first on line %d): remove one", prev.Line)
			continue
		}
		if known != nil && !slices.Contains(known, k.Value) {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := closest(k.Value, known); s != "" {
				msg += fmt.Sprintf(": did you mean %q?", s)
			}
			l.c.add(k.Line, sub, "%s (known fields: %s)", msg, strings.Join(known, ", "))
			continue
		}
		f.keys[k.Value] = k
		f.vals[k.Value] = v
		f.order = append(f.order, k.Value)
	}
	return f
}

// scalar returns the literal text of a scalar value; numbers and booleans are
// taken as written ("0.5", "true").
func (l *loader) scalar(n *yaml.Node, path, example string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		l.c.add(n.Line, path, "must be %s, not %s", example, describe(n))
		return "", false
	}
	return n.Value, true
}

func (l *loader) agent(name string, key, n *yaml.Node) *Plan {
	path := "agents." + name
	m := l.mapping(n, path, agentFields)
	if m == nil {
		return nil
	}
	before := l.c.n()
	p := newPlan(name)
	p.Source = l.abs

	img := m.get("image")
	if v := m.get("rootfs"); v == nil && img == nil {
		l.c.add(key.Line, path+".rootfs", "missing: add rootfs: with the directory holding the agent's root filesystem, e.g. rootfs: ./rootfs, or image: with an image, e.g. image: alpine:3.20")
	} else if v != nil && img != nil {
		l.c.add(img.Line, path+".image", "rootfs (line %d) and image are both set: give one of them", v.Line)
	} else if img != nil {
		p.Image = l.image(img, path+".image")
	} else if s, ok := l.scalar(v, path+".rootfs", "a path"); ok {
		if err := checkPathChars(s); err != nil {
			l.c.addRule(v.Line, path+".rootfs", RuleHostPath, "%q %v", s, err)
		} else if r, err := resolveRootfs(l.dir, s); err != nil {
			l.c.addRule(v.Line, path+".rootfs", RuleHostPath, "%v", err)
		} else if is := l.ck.rootfs(s, r); is != nil {
			l.c.addRule(v.Line, path+".rootfs", is.rule, "%s", is.msg)
		} else {
			p.Rootfs = r
		}
	}

	if v := m.get("command"); v == nil {
		if img == nil { // an image's Entrypoint and Cmd apply instead
			l.c.add(key.Line, path+".command", `missing: add the agent's argv as a list, e.g. command: ["/agent"]`)
		}
	} else {
		p.Command = l.command(v, path+".command")
		p.set.command = true
	}

	vars := map[string]string{}
	envLines := map[string]int{}
	if v := m.get("env"); v != nil {
		if em := l.mapping(v, path+".env", nil); em != nil {
			for _, k := range em.order {
				envLines[k] = em.keys[k].Line
				kp := path + ".env." + k
				if err := checkEnvKey(k); err != nil {
					l.c.add(em.keys[k].Line, kp, "%v", err)
					continue
				}
				val := em.vals[k]
				if isNull(val) {
					l.c.add(val.Line, kp, `has no value: write %s: "" for an empty value, or remove the line`, k)
					continue
				}
				s, ok := l.scalar(val, kp, "a string")
				if !ok {
					continue
				}
				if err := checkEnvValue(k, s); err != nil {
					l.c.add(val.Line, kp, "%v", err)
					continue
				}
				vars[k] = s
			}
		}
	}
	p.set.env = maps.Clone(vars)
	p.Env = buildEnv(vars)

	l.text(m, path, "workdir", "an absolute path", func(s string) error {
		w, err := parseWorkdir(s)
		p.Workdir, p.set.workdir = w, true
		return err
	})
	if v := m.get("user"); v != nil {
		if s, ok := l.scalar(v, path+".user", `a numeric uid or "uid:gid"`); ok {
			if u, err := parseUser(s); err != nil {
				l.c.add(v.Line, path+".user", "%v", err)
			} else {
				p.User, p.UserSet = u, true
			}
		}
	}
	if v := m.get("grants"); v != nil {
		p.Grants = l.grants(v, path+".grants")
	}
	if v := m.get("network"); v != nil {
		l.network(v, path+".network", p)
	}
	if v := m.get("secrets"); v != nil {
		var lines []int
		p.Secrets, lines = l.secrets(v, path+".secrets")
		l.checkSecrets(p, path, lines, envLines)
	}
	l.workspace(p, m, path)
	p.WritableRootfs = l.flag(m, path, "writable_rootfs")
	if v := m.get("limits"); v != nil {
		p.Limits = l.limits(v, path+".limits")
	}
	if v := m.get("seccomp"); v != nil {
		if sc, ok := l.seccompField(v, path+".seccomp"); ok {
			p.Seccomp = sc
		}
	}
	if v := m.get("capabilities"); v != nil {
		p.Capabilities = l.capabilities(v, path+".capabilities")
	}
	if v := m.get("slack"); v != nil {
		p.Slack = l.slackRoute(v, path+".slack")
	}
	l.text(m, path, "tmp_size", "a size such as 64M", func(s string) error {
		n, err := parseTmpSize(s)
		p.TmpSize = n
		return err
	})
	l.text(m, path, "idmap", "auto or single", func(s string) error {
		im, err := parseIDMap(s)
		p.IDMap = im
		return err
	})
	l.text(m, path, "hostname", "a hostname", func(s string) error {
		p.Hostname = s
		return checkHostname(s)
	})

	if l.c.n() != before {
		return nil
	}
	if p.Image == "" {
		p.set = fileSet{} // only an image's config needs to know
	}
	return p
}

// text handles an optional scalar field: set is called with its text and
// reports what is wrong with it.
func (l *loader) text(m *fields, path, key, example string, set func(string) error) {
	v := m.get(key)
	if v == nil {
		return
	}
	fp := join(path, key)
	s, ok := l.scalar(v, fp, example)
	if !ok {
		return
	}
	if err := set(s); err != nil {
		l.c.add(v.Line, fp, "%v", err)
	}
}

func (l *loader) command(v *yaml.Node, path string) []string {
	v = deref(v)
	if v.Kind == yaml.ScalarNode {
		words := strings.Fields(v.Value)
		for i, w := range words {
			words[i] = strconv.Quote(w)
		}
		l.c.add(v.Line, path, "must be a list of strings, not %s (it is not split by a shell): write command: [%s]", describe(v), strings.Join(words, ", "))
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		l.c.add(v.Line, path, `must be a list of strings, e.g. command: ["/agent"], not %s`, describe(v))
		return nil
	}
	if len(v.Content) == 0 {
		l.c.add(v.Line, path, `is empty: give at least the program to run, e.g. command: ["/agent"]`)
		return nil
	}
	cmd := make([]string, 0, len(v.Content))
	for i, a := range v.Content {
		ap := fmt.Sprintf("%s[%d]", path, i)
		s, ok := l.scalar(a, ap, "a string")
		if !ok {
			continue
		}
		if err := checkArg(s); err != nil {
			l.c.add(a.Line, ap, "%v", err)
			continue
		}
		cmd = append(cmd, s)
	}
	if len(cmd) > 0 && cmd[0] == "" {
		l.c.add(v.Line, path+"[0]", "the program to run is empty")
	}
	return cmd
}

func (l *loader) grants(v *yaml.Node, path string) []Grant {
	v = deref(v)
	if v.Kind != yaml.SequenceNode {
		l.c.add(v.Line, path, "must be a list of {host, path, mode} entries, not %s", describe(v))
		return nil
	}
	var out []Grant
	type placed struct {
		path string
		line int
	}
	var mounted []placed
	seen := map[string]int{} // container path -> line
	for i, item := range v.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		m := l.mapping(item, ip, grantFields)
		if m == nil {
			continue
		}
		before := l.c.n()
		g := Grant{Mode: ReadOnly}
		l.boolField(m, ip, "noexec", &g.NoExec)
		hn, pn, mn := m.get("host"), m.get("path"), m.get("mode")
		lineOf := map[string]int{"": m.line, "host": m.line, "path": m.line, "mode": m.line}
		report := func(is issue) {
			field := ip
			if is.part != "" {
				field += "." + is.part
			}
			l.c.addRule(lineOf[is.part], field, is.rule, "%s", is.msg)
		}
		if mn != nil {
			lineOf["mode"] = mn.Line
			if s, ok := l.scalar(mn, ip+".mode", "ro or rw"); ok {
				md, err := parseMode(s)
				if err != nil {
					l.c.add(mn.Line, ip+".mode", "%v", err)
				}
				g.Mode = md
			}
		}
		if pn == nil {
			l.c.add(m.line, ip+".path", "missing: add path: with where the grant appears inside the container, e.g. path: /data")
		} else if s, ok := l.scalar(pn, ip+".path", "an absolute path"); ok {
			lineOf["path"] = pn.Line
			if cp, err := containerPath(s); err != nil {
				report(newIssue("path", RuleContainerPath, "%v", err))
			} else if first, dup := seen[cp]; dup {
				report(newIssue("path", RuleContainerPath, "%s is already granted on line %d: each container path may be granted once", cp, first))
			} else {
				seen[cp] = pn.Line
				g.Path = cp
			}
		}
		if hn == nil {
			l.c.add(m.line, ip+".host", "missing: add host: with the host file or directory to grant")
		} else if s, ok := l.scalar(hn, ip+".host", "a path"); ok && g.Mode != "" {
			lineOf["host"] = hn.Line
			r, issues := l.ck.host(l.dir, s, g.Mode)
			for _, is := range issues {
				report(is)
			}
			g.Host = r
		}
		if l.c.n() != before {
			continue
		}
		// Grants are mounted in order: one mounted over the parent of an
		// earlier one would hide it (and whatever it masks).
		for _, e := range mounted {
			if within(e.path, g.Path) {
				report(newIssue("path", RuleContainerPath, "%s would be mounted over %s (line %d) and hide it: list the grant of %s before the one of %s", g.Path, e.path, e.line, g.Path, e.path))
			}
		}
		if l.c.n() != before {
			continue
		}
		mounted = append(mounted, placed{g.Path, pn.Line})
		if g.Mode == ReadWrite {
			l.rw = append(l.rw, rwGrant{field: ip, line: m.line, host: g.Host})
		}
		out = append(out, g)
	}
	return out
}

// capabilities reads agents.NAME.capabilities: names checked against the
// kernel's list and privileged ones against the allowlist.
func (l *loader) capabilities(v *yaml.Node, path string) []string {
	items := l.stringList(v, path, "a list of capability names, e.g. capabilities: [CAP_NET_BIND_SERVICE]")
	var out []string
	seen := map[string]int{}
	for i, it := range items {
		ip := fmt.Sprintf("%s[%d]", path, i)
		c, err := capName(it.text)
		if err != nil {
			l.c.addRule(it.line, ip, RuleCapabilities, "%v", err)
			continue
		}
		if prev, dup := seen[c]; dup {
			l.c.add(it.line, ip, "%s is already listed on line %d: list each capability once", c, prev)
			continue
		}
		seen[c] = it.line
		if err := checkCapability(c, l.ck.allow); err != nil {
			l.c.addRule(it.line, ip, RuleCapabilities, "%v", err)
			continue
		}
		out = append(out, c)
	}
	return out
}

func (l *loader) limits(v *yaml.Node, path string) Limits {
	return l.limitsOf(v, path, limitFields)
}

// limitsOf reads an agent's limits or the allowlist's total (fields says
// which keys are allowed), with the same syntax and checks for both. An
// agent's cpus above the host's total is an error on the agent's line
// (see aboveTotal).
func (l *loader) limitsOf(v *yaml.Node, path string, fields []string) Limits {
	var lim Limits
	m := l.mapping(v, path, fields)
	if m == nil {
		return lim
	}
	defer func() {
		if l.ck != nil {
			l.aboveTotal(m, path, lim)
		}
	}()
	l.text(m, path, "memory", "a size such as 256M", func(s string) error {
		n, err := parseMemory(s)
		lim.MemoryBytes = n
		return err
	})
	l.text(m, path, "cpus", "a number of cores such as 0.5", func(s string) error {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("invalid cpus %q: give a number of cores, e.g. 0.5 or 2", s)
		}
		lim.CPUs = f
		return checkCPUs(f)
	})
	l.text(m, path, "pids", "a whole number such as 64", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid pids %q: give the maximum number of tasks as a whole number, e.g. 64", s)
		}
		lim.Pids = n
		return checkPids(n)
	})
	l.text(m, path, "io_weight", "a whole number from 10 to 1000 such as 100", func(s string) error {
		n, err := parseIOWeight(s)
		lim.IOWeight = n
		return err
	})
	l.text(m, path, "enforce", "strict or best-effort", func(s string) error {
		e, err := parseEnforce(s)
		lim.Enforce = e
		return err
	})
	return lim
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what the user wrote, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		}
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "nothing"
}

func fieldName(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// closest returns the known name nearest to s by edit distance, or "" when
// none is close enough to be a plausible typo.
func closest(s string, known []string) string {
	s = strings.ToLower(s)
	for _, k := range known {
		if len(s) >= 3 && strings.HasPrefix(k, s) {
			return k // an abbreviation, e.g. "mem"
		}
	}
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestD && d < len(k) {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
